"""The verdict of a memory ceiling, shared by the measured (GPU) and predicted checks.

One frozen value carries everything a pytest hook needs to report: whether the test
passed, a one-line message for the short summary, and a multi-line detail section
for the failure report. Keeping it separate from pytest lets the same checks run in
scripts and in the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LimitResult:
    """Outcome of comparing one peak with one ceiling.

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
