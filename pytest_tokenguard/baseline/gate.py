"""CI gating under ``--tokenguard``: compare each test with the committed baseline.

Why the work is split the way it is:

* **Per test, in the worker.** Each test's figures are compared in its own
  ``pytest_runtest_makereport``, so a change fails *that* test with the diff in its
  own report (users of session-end regression tools complain that a red build names
  no test). Every process, xdist workers included, reads the baseline read-only at
  configure time.
* **Writes, only on the controller, only at the end.** Figures reach the controller
  inside ``report.user_properties`` (as the summary table's do); the controller alone
  (no ``config.workerinput``) writes the baseline, once, in ``pytest_sessionfinish``,
  atomically, and not at all when the run was interrupted or stopped early. So a
  ``-n 2`` run writes the bytes a serial run writes and no crash leaves half a file.
* **Removal needs the whole suite.** ``--tokenguard-update`` drops entries of tests
  that did not run only when nothing narrowed the run (no ``-k``/``-m``/``--lf``/
  ``--sw``/``--deselect``, no path or node arguments narrower than ``testpaths`` or the
  rootdir, no deselected items, no collection error, every collected test reported),
  as syrupy does for unused snapshots: a ``-k`` update never loses other entries.

The comparison itself and the file format live in :mod:`pytest_tokenguard.baseline`.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..plugin.summary import USER_PROPERTY
from .store import (
    ACCEPT_HINT,
    CHANGED,
    DEFAULT_BASELINE,
    DEFAULT_GPU_TOLERANCE,
    EXCLUDED,
    MISSING,
    NEW,
    REMOVED,
    UNCHANGED,
    Baseline,
    BaselineError,
    Comparison,
    Entry,
    GpuTolerance,
    compare,
    dumps,
    entry_from_properties,
    failure_message,
    headline_change,
    load,
    merge,
    parse_tolerance,
    write_atomic,
)

GATE_KEY = pytest.StashKey["BaselineGate"]()
NO_BASELINE_MARKER = "tokenguard_no_baseline"
NO_BASELINE_HELP = (
    "tokenguard_no_baseline(reason): keep this test's figures out of the tokenguard baseline "
    "(inputs that differ run to run); hypothesis tests are left out automatically"
)
_WORKER_DESELECTED = "tokenguard_deselected"
REPORT_FORMAT = "pytest-tokenguard report"
REPORT_VERSION = 1


def add_options(parser: pytest.Parser, group: Any) -> None:
    """The gating options, each mirrored in the ini file except ``--tokenguard-update``:
    an ini switch that always accepts changes would turn the gate off for good."""
    group.addoption(
        "--tokenguard-baseline",
        default=None,
        metavar="PATH",
        help=f"baseline file to compare against (default {DEFAULT_BASELINE} under the rootdir)",
    )
    parser.addini("tokenguard_baseline", default="",
                  help="same as --tokenguard-baseline, relative to the ini file")
    group.addoption(
        "--tokenguard-update",
        action="store_true",
        default=False,
        help="accept the figures measured now: rewrite the baseline entries of the tests that "
        "ran and otherwise passed (entries of deleted tests go only on a whole-suite run)",
    )
    group.addoption(
        "--tokenguard-allow-new",
        action="store_true",
        default=None,
        help="add entries for tests missing from the baseline instead of failing them in CI",
    )
    parser.addini("tokenguard_allow_new", type="bool", default=False,
                  help="same as --tokenguard-allow-new")
    group.addoption(
        "--tokenguard-gpu-tolerance",
        default=None,
        metavar="TOL",
        help="how far a GPU peak may rise above the baseline before the test fails: a percentage "
        f"(10%%) or memory (512MiB) (default {DEFAULT_GPU_TOLERANCE.replace('%', '%%')})",
    )
    parser.addini("tokenguard_gpu_tolerance", default="",
                  help="same as --tokenguard-gpu-tolerance")
    group.addoption(
        "--tokenguard-json",
        default=None,
        metavar="PATH",
        help="write every measured figure and its baseline status as JSON (for dashboards)",
    )
    parser.addini("tokenguard_json", default="", help="same as --tokenguard-json, relative to "
                  "the ini file")


def in_ci() -> bool:
    """``CI`` set to anything but an empty string, 0, false or no (GitHub Actions, GitLab,
    CircleCI... all set ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _ini_path(config: pytest.Config, value: str) -> Path:
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    return (base / value).resolve()


def configured_tolerance(config: pytest.Config) -> GpuTolerance:
    cli = config.getoption("tokenguard_gpu_tolerance")
    origin, raw = ("--tokenguard-gpu-tolerance", cli) if cli is not None else (
        "tokenguard_gpu_tolerance (ini)", str(config.getini("tokenguard_gpu_tolerance") or ""))
    try:
        return parse_tolerance(raw or DEFAULT_GPU_TOLERANCE)
    except ValueError as exc:
        raise pytest.UsageError(f"{origin}: {exc}") from None


def configured_baseline_path(config: pytest.Config) -> tuple[Path, bool]:
    """(path, explicitly configured): CLI relative to where pytest was started, ini
    relative to the ini file, default under the rootdir."""
    cli = config.getoption("tokenguard_baseline")
    if cli:
        return (config.invocation_params.dir / str(cli)).resolve(), True
    ini = str(config.getini("tokenguard_baseline") or "")
    if ini:
        return _ini_path(config, ini), True
    return (config.rootpath / DEFAULT_BASELINE).resolve(), False


def configured_json(config: pytest.Config) -> Path | None:
    cli = config.getoption("tokenguard_json")
    if cli:
        return (config.invocation_params.dir / str(cli)).resolve()
    ini = str(config.getini("tokenguard_json") or "")
    return _ini_path(config, ini) if ini else None


def configure(config: pytest.Config, enabled: bool) -> BaselineGate | None:
    """Validate the gating options and, under ``--tokenguard``, register the gate."""
    config.addinivalue_line("markers", f"{NO_BASELINE_MARKER}: {NO_BASELINE_HELP}")
    tolerance = configured_tolerance(config)  # a bad value fails now, with or without the gate
    if not enabled:
        given = [flag for flag, dest in (("--tokenguard-update", "tokenguard_update"),
                                         ("--tokenguard-allow-new", "tokenguard_allow_new"),
                                         ("--tokenguard-json", "tokenguard_json"))
                 if config.getoption(dest)]
        if given:
            verb = "needs" if len(given) == 1 else "need"
            raise pytest.UsageError(
                f"{', '.join(given)} {verb} --tokenguard (or ini tokenguard = true): "
                "run pytest --tokenguard " + " ".join(given)
            )
        return None
    gate = BaselineGate(config, tolerance)
    config.stash[GATE_KEY] = gate
    config.pluginmanager.register(gate, "tokenguard-gate")
    return gate


@dataclass(frozen=True)
class MeasuredTest:
    """What the controller learnt about one test that reached its call phase."""

    nodeid: str
    now: Entry
    otherwise_passed: bool
    excluded: str | None
    comparison: Comparison | None


class BaselineGate:
    """The gating hooks; one instance per process (controller or worker)."""

    __test__ = False

    def __init__(self, config: pytest.Config, tolerance: GpuTolerance) -> None:
        self.config = config
        self.tolerance = tolerance
        self.path, explicit = configured_baseline_path(config)
        self.shown = _shown(self.path, config.rootpath)
        self.update = bool(config.getoption("tokenguard_update"))
        allow_new = config.getoption("tokenguard_allow_new")
        self.allow_new = bool(allow_new if allow_new is not None else
                              config.getini("tokenguard_allow_new"))
        self.ci = in_ci()
        self.json_path = configured_json(config)
        self.is_worker = hasattr(config, "workerinput")
        try:
            self.baseline: Baseline = load(self.path, self.shown)
        except BaselineError as exc:
            raise pytest.UsageError(str(exc)) from None
        if explicit and not self.baseline.exists and self.ci and not (self.update or
                                                                     self.allow_new):
            raise pytest.UsageError(
                f"tokenguard baseline {self.shown} is configured but does not exist, and CI is "
                "set: the gate would pass without checking anything. Create it with pytest "
                f"--tokenguard --tokenguard-update and commit it."
            )
        # Missing entries fail only where a baseline is in use: a suite that merely turned
        # on --tokenguard (no file at the default path) is not gated.
        self.new_fails = self.ci and self.baseline.exists and not (self.allow_new or
                                                                   self.update)
        self.results: dict[str, MeasuredTest] = {}
        self.seen: set[str] = set()
        self.failed_phases: set[str] = set()
        self.deselected = 0
        self.collect_errors = 0
        self.worker_errors = 0
        self.removed: list[str] = []
        self.accepted: set[str] = set()  # tests whose figures this run wrote
        self.write_note = ""
        self.subset_reason: str | None = None

    # ------------------------------------------------------------------ every process

    def pytest_report_header(self, config: pytest.Config) -> str:
        if not self.baseline.exists:
            state = "none yet" + (", will be created" if self.update or self.allow_new else "")
        else:
            state = f"{len(self.baseline.entries)} tests"
            state += ", updating" if self.update else ", adding new" if self.allow_new else ""
        return f"tokenguard baseline: {self.shown} ({state}){' [CI]' if self.ci else ''}"

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += len(items)
        if self.is_worker:
            self.config.workeroutput[_WORKER_DESELECTED] = self.deselected  # type: ignore[attr-defined]

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors += 1

    @pytest.hookimpl(tryfirst=True, wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        # tryfirst makes this the outermost wrapper: the figures and marker verdicts that
        # other tokenguard wrappers attach are in place when the code after yield runs.
        report = yield
        if report.when != "call" or report.skipped:
            return report
        excluded = _excluded(item)
        report.user_properties.append(
            (USER_PROPERTY, {"gate": {"otherwise_passed": report.passed, "excluded": excluded}})
        )
        if excluded is not None or self.update:
            return report
        now = entry_from_properties(report.user_properties, USER_PROPERTY)
        old = self.baseline.entries.get(report.nodeid)
        if old is None and now.empty:
            return report
        comparison = compare(old, now, self.tolerance)
        if not (comparison.fails or (comparison.status == NEW and self.new_fails)):
            return report
        message = failure_message(report.nodeid, comparison, now, old, self.shown)
        if report.passed:
            report.outcome = "failed"
            report.longrepr = message
        else:
            report.sections.append(("tokenguard baseline", message))
        return report

    # ------------------------------------------------------------------ controller

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seen.add(report.nodeid)
        if report.failed and report.when != "call":
            self.failed_phases.add(report.nodeid)
        if report.when != "call":
            return
        gate = _gate_property(report.user_properties)
        if gate is None:
            return
        now = entry_from_properties(report.user_properties, USER_PROPERTY)
        excluded = gate.get("excluded")
        old = self.baseline.entries.get(report.nodeid)
        comparison = None
        if excluded is None and not (old is None and now.empty):
            comparison = compare(old, now, self.tolerance)
        self.results[report.nodeid] = MeasuredTest(
            report.nodeid, now, bool(gate.get("otherwise_passed")),
            str(excluded) if excluded is not None else None, comparison)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """xdist: each worker collects the whole suite, so the deselected count is the
        largest any worker reported, not their sum."""
        output = getattr(node, "workeroutput", None) or {}
        self.deselected = max(self.deselected, int(output.get(_WORKER_DESELECTED, 0)))
        if error:
            self.worker_errors += 1

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker:
            return
        self.subset_reason = self._subset_reason(session)
        if self.update or self.allow_new:
            self._write_baseline(session, exitstatus)
        if self.json_path is not None:
            try:
                write_atomic(self.json_path, _json_text(self.report_document(exitstatus)))
            except OSError as exc:
                self.write_note += f"\ntokenguard: could not write the JSON report: {exc}"
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _write_baseline(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR):
            self.write_note = (f"baseline {self.shown} not written: the run was interrupted; "
                               "re-run to completion")
            return
        if session.shouldstop or session.shouldfail:
            self.write_note = (f"baseline {self.shown} not written: the run stopped early "
                               f"({session.shouldstop or session.shouldfail}); re-run without "
                               "-x/--maxfail")
            return
        entries = dict(self.baseline.entries)
        for nodeid, result in self.results.items():
            if not result.otherwise_passed or nodeid in self.failed_phases:
                continue  # a failing test keeps its accepted figures
            old = entries.get(nodeid)
            if self.update:
                merged = None if result.excluded else merge(old, result.now)
            elif result.comparison is not None and result.comparison.status == NEW:
                merged = merge(old, result.now, only_new=True)
            else:
                continue
            if merged is None:
                entries.pop(nodeid, None)
            else:
                entries[nodeid] = merged
            if merged != old:
                self.accepted.add(nodeid)
        if self.update and self.subset_reason is None:
            self.removed = sorted(n for n in entries if n not in self.seen)
            for nodeid in self.removed:
                del entries[nodeid]
        try:
            written = write_atomic(self.path, dumps(entries))
        except OSError as exc:
            self.accepted.clear()
            self.write_note = f"baseline {self.shown} not written: {exc}"
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            return
        self.write_note = (f"baseline {self.shown} {'written' if written else 'already up to date'}"
                           f" ({len(entries)} tests)")

    def _subset_reason(self, session: pytest.Session) -> str | None:
        """Why this run was not the whole suite, or None when it was."""
        option = self.config.option
        for flag, dest in (("-k", "keyword"), ("-m", "markexpr"), ("--lf", "lf"),
                           ("--sw", "stepwise"), ("--sw-skip", "stepwise_skip"),
                           ("--deselect", "deselect")):
            if getattr(option, dest, None):
                return f"{flag} given"
        narrowed = _narrowing_argument(self.config)
        if narrowed:
            return f"run on {narrowed}"
        if self.deselected:
            return f"{_plural(self.deselected, 'test')} deselected"
        if self.collect_errors:
            return "collection errors"
        if self.worker_errors:
            return "an xdist worker crashed"
        if session.shouldstop or session.shouldfail:
            return "the run stopped early"
        if len(self.seen) < session.testscollected:
            return "not every collected test ran"
        return None

    # ------------------------------------------------------------------ reporting

    def statuses(self) -> dict[str, str]:
        """Status of every test the run measured or the baseline holds."""
        statuses: dict[str, str] = {}
        for nodeid, result in self.results.items():
            if result.excluded is not None:
                statuses[nodeid] = EXCLUDED
            elif result.comparison is not None:
                statuses[nodeid] = result.comparison.status
        removed = set(self.removed)
        for nodeid in self.baseline.entries:
            if nodeid not in statuses and nodeid not in self.results:
                statuses[nodeid] = REMOVED if nodeid in removed else MISSING
        return statuses

    def table_marks(self, rows: list[Any]) -> dict[tuple[str, int | None], str]:
        """Marks for the summary table: ``!`` a changed figure, ``+`` not in the baseline."""
        marks: dict[tuple[str, int | None], str] = {}
        for row in rows:
            result = self.results.get(row.nodeid)
            comparison = result.comparison if result else None
            mark = "  "
            if comparison is not None and comparison.status == CHANGED and (
                    row.longest_edge in comparison.changed_edges() or any(
                        c.figure.startswith("gpu") for c in comparison.changes)):
                mark = "! "
            elif comparison is not None and comparison.status == NEW:
                mark = "+ "
            marks[(row.nodeid, row.longest_edge)] = mark
        return marks

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker:
            return
        write = terminalreporter.write_line
        statuses = self.statuses()
        counts = {status: 0 for status in (UNCHANGED, CHANGED, NEW, MISSING, REMOVED, EXCLUDED)}
        for status in statuses.values():
            counts[status] += 1
        if not self.baseline.exists and not (self.update or self.allow_new):
            write(f"tokenguard baseline: none at {self.shown}, nothing gated; create it with "
                  "pytest --tokenguard --tokenguard-update and commit it")
        else:
            described = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            write(f"tokenguard baseline {self.shown}: {described or 'no figures'} "
                  "(! changed, + not in baseline)")
        for nodeid in sorted(n for n, s in statuses.items() if s == CHANGED):
            comparison = self.results[nodeid].comparison
            assert comparison is not None
            write(f"  changed: {nodeid} {headline_change(comparison).headline()}")
        new = sorted(n for n, s in statuses.items() if s == NEW)
        for nodeid in new[:20]:
            write(f"  new: {nodeid}")
        if len(new) > 20:
            write(f"  ... and {len(new) - 20} more new")
        if new and not (self.update or self.allow_new):
            write("  new figures are not added by themselves: run pytest --tokenguard "
                  "--tokenguard-update (or pass --tokenguard-allow-new) to record them")
        # skipped tests were seen: their entries are kept and are not stale
        missing = sorted(n for n, s in statuses.items() if s == MISSING and n not in self.seen)
        if missing and self.subset_reason is None:
            stale = ("1 baseline entry belongs" if len(missing) == 1 else
                     f"{len(missing)} baseline entries belong")
            write(f"  {stale} to tests that no longer exist: "
                  f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; "
                  "pytest --tokenguard --tokenguard-update on the whole suite removes them")
        elif missing and self.update:
            kept = ("1 entry of a test that did not run was kept" if len(missing) == 1 else
                    f"{len(missing)} entries of tests that did not run were kept")
            write(f"  {kept} ({self.subset_reason})")
        for nodeid in self.removed:
            write(f"  removed: {nodeid}")
        if counts[CHANGED] and not self.update:
            write(f"  {ACCEPT_HINT}.")
        if self.write_note:
            write(self.write_note.strip())

    def report_document(self, exitstatus: int) -> dict[str, Any]:
        """The ``--tokenguard-json`` report: every measured figure and its status."""
        statuses = self.statuses()
        tests: dict[str, Any] = {}
        for nodeid in sorted(statuses):
            result = self.results.get(nodeid)
            old = self.baseline.entries.get(nodeid)
            comparison = result.comparison if result else None
            tests[nodeid] = {
                "status": statuses[nodeid],
                "now": result.now.to_json() if result else None,
                "baseline": old.to_json() if old else None,
                "fails": bool(comparison and (comparison.fails or (
                    comparison.status == NEW and self.new_fails and not self.update))),
                "changes": [
                    {"longest_edge": c.longest_edge, "figure": c.figure, "baseline": c.baseline,
                     "now": c.now, "fails": c.fails}
                    for c in (comparison.changes if comparison else ())
                ],
                "new_figures": list(comparison.new_figures) if comparison else [],
                "notes": list(comparison.notes) if comparison else [],
                "excluded": result.excluded if result else None,
                "ran": nodeid in self.seen,
                "accepted": nodeid in self.accepted,
            }
        counts = {status: 0 for status in (UNCHANGED, CHANGED, NEW, MISSING, REMOVED, EXCLUDED)}
        for status in statuses.values():
            counts[status] += 1
        return {
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "baseline": {"path": self.shown, "exists": self.baseline.exists,
                         "note": self.write_note.strip() or None},
            "run": {"update": self.update, "allow_new": self.allow_new, "ci": self.ci,
                    "whole_suite": self.subset_reason is None, "subset_reason": self.subset_reason,
                    "exitstatus": int(exitstatus), "gpu_tolerance": str(self.tolerance)},
            "counts": counts,
            "tests": tests,
        }


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def _json_text(document: Mapping[str, Any]) -> str:
    import json

    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _gate_property(properties: list[tuple[str, object]]) -> Mapping[str, Any] | None:
    for name, value in properties:
        if name == USER_PROPERTY and isinstance(value, Mapping) and "gate" in value:
            gate = value["gate"]
            return gate if isinstance(gate, Mapping) else None
    return None


def _excluded(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker(NO_BASELINE_MARKER)
    if marker is not None:
        return str(marker.args[0]) if marker.args else NO_BASELINE_MARKER
    if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
        return "hypothesis test: generated inputs differ between runs"
    return None


def _shown(path: Path, rootdir: Path) -> str:
    try:
        return path.relative_to(rootdir).as_posix()
    except ValueError:
        return str(path)


def _narrowing_argument(config: pytest.Config) -> str | None:
    """The first command-line argument that selects less than the whole suite.

    The whole suite is what ``pytest`` with no arguments collects from the rootdir:
    the ``testpaths`` (globbed, relative to the rootdir) or else the rootdir. Arguments
    that contain all of those (``pytest .``, ``pytest tests`` with ``testpaths = tests``)
    are the whole suite; a node id or a narrower path is not.
    """
    if config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        return None
    rootdir = config.rootpath
    testpaths = config.getini("testpaths")
    roots = [Path(p).resolve() for pattern in testpaths
             for p in sorted(glob.iglob(str(rootdir / pattern), recursive=True))] or [rootdir]
    given: list[Path] = []
    for arg in config.args:
        if "::" in arg:
            return arg
        given.append((config.invocation_params.dir / arg).resolve())
    for root in roots:
        if not any(path == root or path in root.parents for path in given):
            return " ".join(config.args)
    return None
