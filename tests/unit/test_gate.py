"""The gate with planted figures: what it judges, what it writes, and that nothing is lost."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from pytest_tokenguard.baseline.compare import GpuTolerance
from pytest_tokenguard.baseline.gate import Gate, GateSettings
from pytest_tokenguard.baseline.selection import RunFacts
from pytest_tokenguard.baseline.store import SourceRecord, dumps, load
from pytest_tokenguard.figures import GpuFigure, ImageFigure, ResolutionFigures, TestFigures

SOURCE = SourceRecord("HuggingFaceTB/SmolVLM2-2.2B-Instruct", "embedded", "sha256:" + "a" * 64,
                      "5.24.0")


def figures(edge: int, tokens: int, block: int) -> TestFigures:
    return TestFigures((ResolutionFigures(edge, 1, tokens, block, block,
                                          (ImageFigure(384, 384, tokens, block),)),))


LE384 = figures(384, 81, 84)
LE512 = figures(512, 405, 418)


def settings(path: Path, **changes: object) -> GateSettings:
    values: dict[str, object] = dict(path=path, shown="baseline.json", explicit=False,
                                     update=False, allow_new=False, ci=False,
                                     tolerance=GpuTolerance(percent=10))
    values.update(changes)
    return GateSettings(**values)  # type: ignore[arg-type]


def finish_update(gate: Gate, results: dict[str, TestFigures], facts: RunFacts | None = None,
                  ) -> None:
    for nodeid, now in results.items():
        gate.seen.add(nodeid)
        gate.record(nodeid, now, passed=True, excluded=None)
    gate.finish(facts or RunFacts(collected=len(results), reported=len(results)),
                interrupted=False)


def test_the_written_bytes_do_not_depend_on_the_order_reports_arrive(tmp_path: Path) -> None:
    """What xdist changes is the order in which the controller hears of each test."""
    results = {f"t.py::test_{i}": figures(384 + 128 * (i % 3), 81 * (i + 1), 84 * (i + 1))
               for i in range(12)}
    written = set()
    for seed in range(3):
        path = tmp_path / f"run{seed}" / "baseline.json"
        order = list(results.items())
        random.Random(seed).shuffle(order)
        finish_update(Gate(settings(path, update=True), SOURCE), dict(order))
        written.add(path.read_bytes())
    assert len(written) == 1


def test_two_updates_of_different_tests_both_survive(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(dumps({"t.py::a": LE384, "t.py::b": LE384}, SOURCE))
    first = Gate(settings(path, update=True), SOURCE)  # both read the file as it was
    second = Gate(settings(path, update=True), SOURCE)
    subset = RunFacts(options=("-k",), collected=1, reported=1)
    finish_update(first, {"t.py::a": LE512}, subset)
    finish_update(second, {"t.py::b": LE512}, subset)
    assert dict(load(path).entries) == {"t.py::a": LE512, "t.py::b": LE512}
    assert "merged with figures another run wrote since this one started" in second.outcome.note


def test_a_read_only_baseline_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(dumps({"t.py::a": LE384}))
    path.chmod(0o444)  # refused even when running as root, who could write it
    gate = Gate(settings(path, update=True), SOURCE)
    finish_update(gate, {"t.py::a": LE512})
    assert gate.outcome.failed
    assert "read-only" in gate.outcome.note
    assert "chmod u+w" in gate.outcome.note
    assert dict(load(path).entries) == {"t.py::a": LE384}


def test_read_only_check_applies_even_to_root(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Root may write anything; the gate asks the file system, so fake its answer."""
    path = tmp_path / "baseline.json"
    path.write_text(dumps({"t.py::a": LE384}))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == path and
                        mode == os.W_OK else real_access(p, mode))
    gate = Gate(settings(path, update=True), SOURCE)
    finish_update(gate, {"t.py::a": LE512})
    assert gate.outcome.failed
    assert dict(load(path).entries) == {"t.py::a": LE384}


def test_a_resolution_subset_keeps_the_other_entries(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(dumps({"t.py::f[le384]": LE384, "t.py::f[le512]": LE512}))
    gate = Gate(settings(path, update=True), SOURCE)
    facts = RunFacts(resolutions="--tokenguard-resolutions=512 runs fewer resolutions than "
                     "configured (384,512)", collected=1, reported=1)
    finish_update(gate, {"t.py::f[le512]": LE512}, facts)
    assert set(load(path).entries) == {"t.py::f[le384]", "t.py::f[le512]"}
    whole = Gate(settings(path, update=True), SOURCE)
    finish_update(whole, {"t.py::f[le512]": LE512})
    assert set(load(path).entries) == {"t.py::f[le512]"}
    assert whole.outcome.removed == ["t.py::f[le384]"]


def test_in_ci_a_missing_baseline_fails_every_measured_test(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    gate = Gate(settings(path, ci=True), SOURCE)
    message = gate.judge("t.py::test_a", LE384, excluded=None)
    assert message is not None
    assert "there is no baseline file at baseline.json" in message
    assert gate.judge("t.py::test_b", TestFigures(), excluded=None) is None  # nothing measured
    assert gate.judge("t.py::test_a", LE384, excluded="random crops") is None
    allowed = Gate(settings(path, ci=True, allow_new=True), SOURCE)
    assert allowed.judge("t.py::test_a", LE384, excluded=None) is None
    local = Gate(settings(path), SOURCE)
    assert local.judge("t.py::test_a", LE384, excluded=None) is None


def test_another_processor_is_named_before_any_diff(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(dumps({"t.py::a": LE384}, SOURCE))
    other = SourceRecord(SOURCE.model, "folder", "sha256:" + "b" * 64, "5.17.0")
    gate = Gate(settings(path), other)
    assert "uses another processor (processor files sha256:aaaaaaaaaaaa -> " \
           "sha256:bbbbbbbbbbbb; transformers 5.24.0 -> 5.17.0)" in gate.header()[1]
    # what it means and what to do, not only that figures "may differ"
    assert "the ones that did not change pass" in gate.header()[1]
    assert gate.header()[1].endswith("re-record with pytest --tokenguard --tokenguard-update "
                                     "and commit baseline.json")
    message = gate.judge("t.py::a", LE512, excluded=None)
    assert message is not None
    assert message.startswith("note: the baseline was recorded with HuggingFaceTB/")
    assert "if it does, re-record with pytest --tokenguard --tokenguard-update and commit " \
           "baseline.json\n" in message
    assert message.index("another processor") < message.index("image tokens changed")
    assert Gate(settings(path), SOURCE).header()[1:] == []


def test_an_update_records_the_processor_it_counted_with(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    finish_update(Gate(settings(path, update=True), SOURCE), {"t.py::a": LE384})
    assert json.loads(path.read_text())["source"] == SOURCE.to_json()


def test_interrupted_or_stopped_runs_write_nothing(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(dumps({"t.py::a": LE384}))
    before = path.read_bytes()
    gate = Gate(settings(path, update=True), SOURCE)
    gate.record("t.py::a", LE512, passed=True, excluded=None)
    gate.finish(RunFacts(), interrupted=True)
    assert "interrupted" in gate.outcome.note
    stopped = Gate(settings(path, update=True), SOURCE)
    stopped.record("t.py::a", LE512, passed=True, excluded=None)
    stopped.finish(RunFacts(stopped_early="-x"), interrupted=False)
    assert "stopped early" in stopped.outcome.note
    assert path.read_bytes() == before


def test_failing_and_excluded_tests_keep_their_entries(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(dumps({"t.py::a": LE384, "t.py::b": LE384}))
    gate = Gate(settings(path, update=True), SOURCE)
    for nodeid in ("t.py::a", "t.py::b", "t.py::c"):
        gate.seen.add(nodeid)
    gate.record("t.py::a", LE512, passed=False, excluded=None)
    gate.record("t.py::b", LE512, passed=True, excluded="random crops")
    gate.record("t.py::c", TestFigures((), GpuFigure(5, "torch_reserved")), passed=True,
                excluded=None)
    gate.finish(RunFacts(collected=3, reported=3), interrupted=False)
    entries = load(path).entries
    assert entries["t.py::a"] == LE384  # failing: its accepted figures stay
    assert "t.py::b" not in entries  # excluded: its entry goes
    assert entries["t.py::c"].gpu == GpuFigure(5, "torch_reserved")
