"""CI gating: compare each test with the committed baseline, and write accepted figures.

The gate has no pytest hooks; the plugin's session object calls it. Why the work is
split the way it is:

* **Per test, where the test runs.** :meth:`Gate.judge` compares a test's figures at
  the end of its call phase, so a change fails *that* test with the diff in its own
  report (and ``xfail`` applies to it like to any failure). Every process, xdist
  workers included, reads the baseline read-only when the run starts.
* **Writes, only on the controller, only at the end.** Figures reach the controller
  inside the test reports; :meth:`Gate.finish` writes the baseline once, atomically,
  under a lock, and not at all when the run was interrupted or stopped early. Under
  the lock the file is read again and this run's figures are merged into what is on
  disk now, so two updates running at once (on different tests) both survive.
* **Removal needs the whole suite** (:mod:`pytest_tokenguard.baseline.selection`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BaselineError
from ..figures import ResolutionFigures, TestFigures
from ..files import write_atomic
from .compare import (
    ACCEPT_HINT,
    Change,
    Comparison,
    GpuTolerance,
    Status,
    compare,
    failure_message,
    headline_change,
    merge,
)
from .selection import RunFacts, subset_reason
from .store import Baseline, SourceRecord, dumps, load

__all__ = ["REPORT_FORMAT", "REPORT_VERSION", "Gate", "GateSettings", "MeasuredTest"]

REPORT_FORMAT = "pytest-tokenguard report"
REPORT_VERSION = 1

#: How long a run waits for another run's write of the same baseline.
LOCK_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class GateSettings:
    """The gating part of the plugin's settings."""

    path: Path
    shown: str  # the path as messages print it (relative to the rootdir when inside it)
    explicit: bool  # configured by an option or ini value, not the default location
    update: bool
    allow_new: bool
    ci: bool
    tolerance: GpuTolerance
    json_path: Path | None = None


@dataclass(frozen=True)
class MeasuredTest:
    """What the controller learnt about one test that reached its call phase."""

    nodeid: str
    now: TestFigures
    passed: bool
    excluded: str | None
    comparison: Comparison | None


@dataclass
class _Outcome:
    removed: list[str] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    note: str = ""
    failed: bool = False


class Gate:
    """One per process (controller or worker); see the module docstring."""

    def __init__(self, settings: GateSettings, source: SourceRecord | None = None,
                 *, is_worker: bool = False) -> None:
        self.settings = settings
        self.source = source
        self.is_worker = is_worker
        self.baseline: Baseline = load(settings.path, settings.shown)
        writing = settings.update or settings.allow_new
        if settings.explicit and not self.baseline.exists and settings.ci and not writing:
            raise BaselineError(
                f"tokenguard baseline {settings.shown} is configured but does not exist, and "
                "CI is set: the gate would pass without checking anything. Create it with "
                "pytest --tokenguard --tokenguard-update and commit it."
            )
        # in CI every figure must be accepted: a test missing from the baseline (or a
        # baseline missing altogether) fails, unless new entries may be added
        self.new_fails = settings.ci and not writing
        self.results: dict[str, MeasuredTest] = {}
        self.seen: set[str] = set()
        self.failed_phases: set[str] = set()
        self.outcome = _Outcome()
        self.subset: str | None = None

    # ------------------------------------------------------------------ every process

    @property
    def source_differences(self) -> list[str]:
        if self.source is None or self.baseline.source is None:
            return []
        return self.source.differences(self.baseline.source)

    def header(self) -> list[str]:
        shown = self.settings.shown
        if not self.baseline.exists:
            writing = self.settings.update or self.settings.allow_new
            state = "none yet" + (", will be created" if writing else "")
        else:
            state = f"{len(self.baseline.entries)} tests"
            state += (", updating" if self.settings.update else
                      ", adding new" if self.settings.allow_new else "")
        lines = [f"tokenguard baseline: {shown} ({state}){' [CI]' if self.settings.ci else ''}"]
        differences = self.source_differences
        if differences and self.baseline.source is not None:
            lines.append(
                f"tokenguard baseline: recorded with {self.baseline.source.describe()}; this run "
                f"uses another processor ({'; '.join(differences)}). Every figure is still "
                "compared: the ones that did not change pass. A test whose figures changed "
                "fails, and if the processor change explains it (a new transformers counts "
                "differently), re-record with pytest --tokenguard --tokenguard-update and "
                f"commit {shown}"
            )
        return lines

    def judge(self, nodeid: str, now: TestFigures, excluded: str | None) -> str | None:
        """The failure text when the gate fails this test, else None."""
        if excluded is not None or self.settings.update:
            return None
        old = self.baseline.entries.get(nodeid)
        if old is None and now.empty:
            return None
        comparison = compare(old, now, self.settings.tolerance)
        if not (comparison.fails or (comparison.status is Status.NEW and self.new_fails)):
            return None
        message = failure_message(nodeid, comparison, now, old, self.settings.shown)
        if old is None and not self.baseline.exists:
            message = message.replace(
                "has no baseline entry",
                f"has no baseline entry (there is no baseline file at {self.settings.shown})")
        differences = self.source_differences
        if differences and self.baseline.source is not None:
            message = (f"note: the baseline was recorded with {self.baseline.source.describe()}; "
                       f"this run uses another processor ({'; '.join(differences)}), which alone "
                       "can explain the difference: if it does, re-record with pytest "
                       f"--tokenguard --tokenguard-update and commit {self.settings.shown}"
                       f"\n{message}")
        return message

    # ------------------------------------------------------------------ controller

    def record(self, nodeid: str, now: TestFigures, passed: bool, excluded: str | None) -> None:
        """A test's call phase, as its report reached the controller."""
        old = self.baseline.entries.get(nodeid)
        comparison = None
        if excluded is None and not (old is None and now.empty):
            comparison = compare(old, now, self.settings.tolerance)
        self.results[nodeid] = MeasuredTest(nodeid, now, passed, excluded, comparison)

    def finish(self, facts: RunFacts, *, interrupted: bool) -> None:
        """End of the run, on the controller: write the baseline when asked to."""
        self.subset = subset_reason(facts)
        if not (self.settings.update or self.settings.allow_new):
            return
        shown = self.settings.shown
        if interrupted:
            self.outcome.note = (f"baseline {shown} not written: the run was interrupted; "
                                 "re-run to completion")
            return
        if facts.stopped_early:
            self.outcome.note = (f"baseline {shown} not written: the run stopped early "
                                 f"({facts.stopped_early}); re-run without -x/--maxfail")
            return
        path = self.settings.path
        if path.exists() and (not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222):
            # no write bit at all is read-only by intent, even for root, who may write it
            self.outcome.note = (f"baseline {shown} not written: the file is read-only; make it "
                                 f"writable (chmod u+w {shown}) to accept new figures")
            self.outcome.failed = True
            return
        try:
            self._write()
        except (OSError, BaselineError) as exc:
            self.outcome.accepted.clear()
            self.outcome.note = f"baseline {shown} not written: {exc}"
            self.outcome.failed = True

    def _write(self) -> None:
        from .store import locked

        shown = self.settings.shown
        with locked(self.settings.path, LOCK_TIMEOUT_S, shown):
            # what is on disk now: another run may have written since this one started
            current = load(self.settings.path, shown)
            entries = dict(current.entries)
            merged_others = current.entries != self.baseline.entries
            for nodeid, result in self.results.items():
                if not result.passed or nodeid in self.failed_phases:
                    continue  # a failing test keeps its accepted figures
                old = entries.get(nodeid)
                if self.settings.update:
                    new = None if result.excluded else merge(old, result.now)
                elif result.comparison is not None and result.comparison.status is Status.NEW:
                    new = merge(old, result.now, only_new=True)
                else:
                    continue
                if new is None:
                    entries.pop(nodeid, None)
                else:
                    entries[nodeid] = new
                if new != old:
                    self.outcome.accepted.add(nodeid)
            if self.settings.update and self.subset is None:
                self.outcome.removed = sorted(n for n in entries if n not in self.seen)
                for nodeid in self.outcome.removed:
                    del entries[nodeid]
            source = self.source if self.source is not None else current.source
            written = write_atomic(self.settings.path, dumps(entries, source))
        note = (f"baseline {shown} {'written' if written else 'already up to date'} "
                f"({len(entries)} tests)")
        if merged_others:
            note += "; merged with figures another run wrote since this one started"
        changed = (self.source.differences(current.source)
                   if self.source is not None and current.source is not None else [])
        if changed:
            note += (f"; its processor changed ({'; '.join(changed)}): review the diff "
                     "before committing")
        self.outcome.note = note

    # ------------------------------------------------------------------ reporting

    def statuses(self) -> dict[str, Status]:
        """Status of every test the run measured or the baseline holds."""
        statuses: dict[str, Status] = {}
        for nodeid, result in self.results.items():
            if result.excluded is not None:
                statuses[nodeid] = Status.EXCLUDED
            elif result.comparison is not None:
                statuses[nodeid] = result.comparison.status
        removed = set(self.outcome.removed)
        for nodeid in self.baseline.entries:
            if nodeid not in statuses and nodeid not in self.results:
                statuses[nodeid] = Status.REMOVED if nodeid in removed else Status.MISSING
        return statuses

    def counts(self) -> dict[Status, int]:
        counts = dict.fromkeys(Status, 0)
        for status in self.statuses().values():
            counts[status] += 1
        return counts

    def table_mark(self, nodeid: str, row: ResolutionFigures | None) -> str:
        """``! `` a changed figure in this row, ``+ `` not in the baseline, else blank."""
        result = self.results.get(nodeid)
        comparison = result.comparison if result else None
        if comparison is None:
            return "  "
        if comparison.status is Status.CHANGED:
            key = row.key if row is not None else (None, None)
            if key in comparison.changed_keys() or any(
                    c.kind == "gpu" for c in comparison.changes):
                return "! "
        elif comparison.status is Status.NEW:
            return "+ "
        return "  "

    def summary_lines(self) -> list[str]:
        settings = self.settings
        shown = settings.shown
        lines: list[str] = []
        statuses = self.statuses()
        counts = self.counts()
        writing = settings.update or settings.allow_new
        if not self.baseline.exists and not writing:
            lines.append(f"tokenguard baseline: none at {shown}; create it with pytest "
                         "--tokenguard --tokenguard-update and commit it")
        else:
            # on a subset run, the entries of the tests left out are simply not run
            label = {Status.MISSING: "not run"} if self.subset is not None else {}
            described = ", ".join(f"{n} {label.get(s, s.value)}" for s, n in counts.items() if n)
            lines.append(f"tokenguard baseline {shown}: {described or 'no figures'} "
                         "(! changed, + not in baseline)")
        lines.extend(f"  {line}" for line in self.header()[1:])
        for nodeid in sorted(n for n, s in statuses.items() if s is Status.CHANGED):
            comparison = self.results[nodeid].comparison
            assert comparison is not None
            lines.append(f"  changed: {nodeid} {headline_change(comparison).headline()}")
        new = sorted(n for n, s in statuses.items() if s is Status.NEW)
        lines.extend(f"  new: {nodeid}" for nodeid in new[:20])
        if len(new) > 20:
            lines.append(f"  ... and {len(new) - 20} more new")
        if new and not writing:
            lines.append("  new figures are not added by themselves: run pytest --tokenguard "
                         "--tokenguard-update (or pass --tokenguard-allow-new) to record them")
        # skipped tests were seen: their entries are kept and are not stale
        missing = sorted(n for n, s in statuses.items()
                         if s is Status.MISSING and n not in self.seen)
        if missing and self.subset is None:
            stale = ("1 baseline entry belongs" if len(missing) == 1 else
                     f"{len(missing)} baseline entries belong")
            lines.append(f"  {stale} to tests that no longer exist: "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; "
                         "pytest --tokenguard --tokenguard-update on the whole suite removes them")
        elif missing and settings.update:
            kept = ("1 entry of a test that did not run was kept" if len(missing) == 1 else
                    f"{len(missing)} entries of tests that did not run were kept")
            lines.append(f"  {kept} ({self.subset})")
        lines.extend(f"  removed: {nodeid}" for nodeid in self.outcome.removed)
        if counts[Status.CHANGED] and not settings.update:
            lines.append(f"  {ACCEPT_HINT}.")
        if self.outcome.note:
            lines.append(self.outcome.note)
        return lines

    def report_document(self, exitstatus: int) -> dict[str, Any]:
        """The ``--tokenguard-json`` report: every measured figure and its status."""
        statuses = self.statuses()
        tests: dict[str, Any] = {}
        for nodeid in sorted(statuses):
            result = self.results.get(nodeid)
            old = self.baseline.entries.get(nodeid)
            comparison = result.comparison if result else None
            tests[nodeid] = {
                "status": statuses[nodeid].value,
                "now": result.now.to_json() if result else None,
                "baseline": old.to_json() if old else None,
                "fails": bool(comparison and (comparison.fails or (
                    comparison.status is Status.NEW and self.new_fails))),
                "changes": [_change_json(c) for c in (comparison.changes if comparison else ())],
                "new_figures": list(comparison.new_figures) if comparison else [],
                "notes": list(comparison.notes) if comparison else [],
                "excluded": result.excluded if result else None,
                "ran": nodeid in self.seen,
                "accepted": nodeid in self.outcome.accepted,
            }
        settings = self.settings
        return {
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "baseline": {"path": settings.shown, "exists": self.baseline.exists,
                         "note": self.outcome.note or None,
                         "source": (self.baseline.source.to_json()
                                    if self.baseline.source else None)},
            "run": {"update": settings.update, "allow_new": settings.allow_new,
                    "ci": settings.ci, "whole_suite": self.subset is None,
                    "subset_reason": self.subset, "exitstatus": int(exitstatus),
                    "gpu_tolerance": str(settings.tolerance),
                    "source": self.source.to_json() if self.source else None},
            "counts": {status.value: n for status, n in self.counts().items()},
            "tests": tests,
        }

    def write_report(self, exitstatus: int) -> None:
        """Write the JSON report when one was asked for (OSError on failure)."""
        if self.settings.json_path is not None:
            write_atomic(self.settings.json_path, _json_text(self.report_document(exitstatus)))


def _change_json(change: Change) -> dict[str, Any]:
    """One change in the JSON report; a pixel budget's (Qwen-VL) adds ``min_pixels`` and
    ``max_pixels`` to its ``longest_edge`` (None)."""
    data: dict[str, Any] = {"longest_edge": change.longest_edge, "figure": change.figure,
                            "baseline": change.baseline, "now": change.now,
                            "fails": change.fails}
    if change.pixels is not None:
        data["min_pixels"] = change.pixels.min_pixels
        data["max_pixels"] = change.pixels.max_pixels
    return data


def _json_text(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
