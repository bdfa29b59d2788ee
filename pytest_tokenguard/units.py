"""Byte sizes as people write them in markers and on the command line, and back.

A ceiling such as ``limit_gpu_memory("24 GiB")`` is read here. Both the SI units
(``KB`` = 1000 bytes) and the IEC units (``KiB`` = 1024 bytes) are accepted and
kept distinct, because a GPU sold as "80 GB" holds 79.6 GiB and a ceiling that
silently mixed the two would be off by 7%. A bad unit is rejected with a message
that names the input and every accepted unit, so the mistake is fixed at collection
rather than discovered as a wrong pass.

The spellings users copy from their tools are read as those tools mean them:

* nvidia-smi prints ``81559MiB``: IEC, accepted as written (any case: ``24 gib``);
* Docker (``--memory 24g``, ``512m``), ``free -g``, Slurm (``--mem=24G``) and
  Kubernetes (``24Gi``) use a bare letter, or the letter and ``i``, for powers of
  1024: so ``K``, ``M``, ``G``, ``T``, ``P`` (and ``Ki``, ``Mi``... ) are **binary**,
  ``24G`` is 24 GiB. Only the two-letter SI spelling (``GB``) is powers of 1000
  (Docker also reads ``24gb`` as binary; here it keeps its SI meaning, as on a GPU's
  label, so the two spellings a user can tell apart stay apart).

A bare number is bytes, as in torch's counters; but ``24`` is almost always a
forgotten unit (24 bytes fits no GPU workload), so a bare number below
:data:`MIN_BARE_BYTES` (1 MiB) is refused with a message saying to write ``24G`` or
``24GiB``. ``"24 B"`` still says 24 bytes on purpose.

Pure Python, no imports beyond the standard library.
"""

from __future__ import annotations

import math
import re

__all__ = ["MIN_BARE_BYTES", "UNITS", "accepted_units", "format_bytes", "parse_size"]

#: Accepted units and their size in bytes. Matching is case-insensitive.
UNITS: dict[str, int] = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "PB": 1000**5,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
    "PiB": 1024**5,
}
#: Docker / Kubernetes spellings: a bare letter (or letter and ``i``) is binary.
ALIASES: dict[str, int] = {
    **{letter: 1024**power for power, letter in enumerate("KMGTP", start=1)},
    **{f"{letter}i": 1024**power for power, letter in enumerate("KMGTP", start=1)},
}
_BY_LOWER = {unit.lower(): size for unit, size in {**UNITS, **ALIASES}.items()}

#: The smallest number of bytes accepted without a unit (1 MiB): below it, a bare
#: number is a forgotten unit (``24`` for 24 GiB), not a ceiling anyone means.
MIN_BARE_BYTES = 1024**2
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")

#: What :func:`format_bytes` prints, smallest first (binary steps, as pytest-memray).
_FORMAT_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def accepted_units() -> str:
    """The accepted units as one line, for error messages and help texts."""
    return (", ".join(UNITS) + "; G, M, K, T, P (or Gi, Mi...) as Docker writes them are "
            "binary: 24G = 24 GiB")


def _bare(value: object, number: str) -> ValueError:
    """The refusal of a bare number (``number`` as the user wrote it) below the minimum."""
    shown = f"{value!r}" if isinstance(value, str) else f"{value}"
    return ValueError(
        f"size {shown} has no unit, so it means {number} bytes; write {number}G or "
        f"{number}GiB for gibibytes, {number}GB for 10^9 bytes (or '{number} B' if you "
        f"mean bytes: a bare number must be at least {MIN_BARE_BYTES} bytes, 1 MiB)")


def parse_size(value: object) -> int:
    """Bytes in ``value``: an int (bytes) or a string like ``"24 GiB"``, ``"800MB"``,
    ``"1.5 GB"``, ``"24G"`` (Docker's: binary, 24 GiB) or ``"81559MiB"`` (nvidia-smi's).

    An int or a string without a unit is bytes, and must be at least
    :data:`MIN_BARE_BYTES` (``24`` is refused: write ``24G``). Fractions are rounded up
    to whole bytes, so a limit is never silently loosened. Zero, negative, non-finite,
    ``bool`` and unknown units raise :class:`ValueError` naming the input and the
    accepted units.
    """
    if isinstance(value, bool):
        raise ValueError(
            f"size {value!r} is a bool; give bytes as an int or a string like '24 GiB'"
        )
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"size {value!r} must be a positive number of bytes")
        if value < MIN_BARE_BYTES:
            raise _bare(value, str(value))
        return value
    if isinstance(value, float):
        raise ValueError(
            f"size {value!r} is a float; give whole bytes as an int or a string with a unit "
            f"like '1.5 GiB' (accepted units: {accepted_units()})"
        )
    if not isinstance(value, str):
        raise ValueError(
            f"size {value!r} must be an int (bytes) or a string like '24 GiB', "
            f"not {type(value).__name__}"
        )
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(
            f"cannot read size {value!r}: write a number and a unit, like '24 GiB' or '800MB' "
            f"(accepted units: {accepted_units()})"
        )
    number, unit = match.groups()
    factor = _BY_LOWER.get((unit or "B").lower())
    if factor is None:
        raise ValueError(
            f"unknown unit {unit!r} in size {value!r}; accepted units: {accepted_units()} "
            "(KB/MB/GB are powers of 1000; KiB/MiB/GiB, and G/M/K as Docker writes them, powers "
            "of 1024)"
        )
    amount = float(number)
    size = math.ceil(amount * factor)
    if not math.isfinite(amount) or size < 1:
        raise ValueError(f"size {value!r} must be positive")
    if not unit and size < MIN_BARE_BYTES:
        raise _bare(value, number)
    return size


def format_bytes(size: float) -> str:
    """``size`` bytes as ``"117.2KiB"``: one decimal, binary units, as pytest-memray prints."""
    value = float(size)
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in _FORMAT_UNITS:
        if value < 1024 or unit == _FORMAT_UNITS[-1]:
            return f"{sign}{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
