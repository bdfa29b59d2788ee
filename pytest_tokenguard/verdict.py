"""The verdict of a check, one protocol for every marker: token counts and memory ceilings.

A check is a pure function (records in, a verdict out), so the same checks run in the
pytest plugin, in scripts and in the CLI. Every verdict says whether the check passed,
gives a one-line ``message`` (what a reader sees in the short summary) and a ``detail``
section (the table that explains it); the plugin renders every kind with one function,
:func:`longrepr`. No pytest import.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["PASSED", "CheckResult", "LimitResult", "Verdict", "longrepr"]


class Verdict(Protocol):
    """What every check returns."""

    @property
    def passed(self) -> bool: ...

    @property
    def message(self) -> str: ...

    @property
    def detail(self) -> str: ...


@dataclass(frozen=True)
class CheckResult:
    """The verdict of a token check (``image_tokens``, ``max_sequence_tokens``...)."""

    passed: bool
    message: str = ""
    detail: str = ""


PASSED = CheckResult(True)


@dataclass(frozen=True)
class LimitResult:
    """The verdict of a memory ceiling, measured (GPU) or predicted (memory model).

    ``measure`` names the number that was compared (e.g. ``"torch reserved"``), so a
    failure says which counter crossed the line; ``detail`` lists every measure.
    """

    passed: bool
    limit_bytes: int
    peak_bytes: int
    measure: str
    message: str
    detail: str

    @property
    def headroom_bytes(self) -> int:
        """Bytes left under the ceiling (negative when over it)."""
        return self.limit_bytes - self.peak_bytes


def longrepr(verdicts: Iterable[Verdict]) -> str:
    """The failure text of the verdicts that failed: each message, then its detail."""
    parts = []
    for verdict in verdicts:
        if not verdict.passed:
            parts.append(f"{verdict.message}\n\n{verdict.detail}" if verdict.detail
                         else verdict.message)
    return "\n\n".join(parts)
