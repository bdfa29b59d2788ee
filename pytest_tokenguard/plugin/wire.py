"""The only reader and writer of tokenguard's entry in a test report's ``user_properties``.

A test's figures travel from the process that ran it (an xdist worker, or the main
process) to the one that prints the summary and writes the baseline inside the test's
reports, as JSON text under the name ``"tokenguard"``: pytest copies
``item.user_properties`` into every report and xdist serialises them. One record per
test, written once, at the end of its call phase::

    ("tokenguard", '{"excluded": null, "figures": {...}, "gpu_checks": [...]}')

Text, not a dict: ``--junitxml`` writes each property's ``str()``, and a dict's is a
Python ``repr`` (single quotes, ``None``) that no CI system can parse; JSON text reads
back with ``json.loads`` there and here alike.

``figures`` is :meth:`pytest_tokenguard.figures.TestFigures.to_json` (the baseline's
form, plus each resolution's ``patches``). Other plugins may report a GPU peak through
the same name, ``("tokenguard", {"gpu_peak_bytes": N, "gpu_measure": "torch_reserved"})``;
it is read as the test's GPU figure (a measured peak wins over a predicted one); as a
dict or as the same object in JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..figures import AuditFigure, GpuFigure, TestFigures, resolution_from_json

__all__ = ["NAME", "GpuCheck", "WireRecord", "publish", "read"]

NAME = "tokenguard"


@dataclass(frozen=True)
class GpuCheck:
    """A memory ceiling checked by the test (measured or predicted), for the summary."""

    measure: str
    peak_bytes: int
    limit_bytes: int
    #: per-device peaks when several devices were measured (device index -> bytes)
    devices: tuple[tuple[int, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"measure": self.measure, "peak_bytes": self.peak_bytes,
                "limit_bytes": self.limit_bytes, "devices": [list(d) for d in self.devices]}


@dataclass(frozen=True)
class WireRecord:
    """What one test's reports carry: its figures, whether they stay out of the baseline
    (and why), and the memory ceilings it checked. ``present`` is False when the test
    carried nothing (it did not reach the end of its call phase under tokenguard)."""

    figures: TestFigures
    excluded: str | None = None
    gpu_checks: tuple[GpuCheck, ...] = ()
    present: bool = False


def publish(properties: list[tuple[str, object]], figures: TestFigures, *,
            excluded: str | None, gpu_checks: Iterable[GpuCheck] = ()) -> None:
    """Append the test's record to ``item.user_properties``, as JSON text."""
    properties.append((NAME, json.dumps({
        "figures": figures.to_json(patches=True),
        "excluded": excluded,
        "gpu_checks": [check.to_json() for check in gpu_checks],
    }, sort_keys=True, ensure_ascii=False)))


def read(properties: Iterable[tuple[str, object]]) -> WireRecord:
    """The test's record from a report's ``user_properties`` (see the module docstring)."""
    figures = TestFigures()
    excluded: str | None = None
    checks: list[GpuCheck] = []
    present = False
    for key, raw in properties:
        if key != NAME:
            continue
        value = _loaded(raw)
        if value is None:
            continue
        if "figures" in value:
            present = True
            data = value["figures"]
            figures = TestFigures(
                tuple(resolution_from_json(r) for r in data.get("resolutions", ())),
                figures.gpu,
            )
            if data.get("gpu") is not None:
                figures = figures.with_gpu(_gpu(data["gpu"]))
            if data.get("audit") is not None:  # a training_set_fits marker's figures
                figures = replace(figures, audit=AuditFigure.from_json(data["audit"]))
            excluded = value.get("excluded")
            checks.extend(GpuCheck(c["measure"], int(c["peak_bytes"]), int(c["limit_bytes"]),
                                   tuple((int(i), int(b)) for i, b in c.get("devices", ())))
                          for c in value.get("gpu_checks", ()))
        elif "gpu_peak_bytes" in value:
            figures = figures.with_gpu(_gpu(value))
    return WireRecord(figures, excluded, tuple(checks), present)


def _loaded(raw: object) -> Mapping[str, Any] | None:
    """A record as a mapping: given as one, or as JSON text of one; None otherwise."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    return raw if isinstance(raw, Mapping) else None


def _gpu(data: Mapping[str, Any]) -> GpuFigure:
    return GpuFigure(int(data["gpu_peak_bytes"]), str(data.get("gpu_measure", "")))
