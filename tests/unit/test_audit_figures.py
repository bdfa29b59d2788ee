"""A training set's audit figures (``training_set_fits``) in the baseline: written and read
back canonically, validated like the other figures, compared and merged."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_tokenguard.baseline.compare import (
    DEFAULT_GPU_TOLERANCE,
    Status,
    compare,
    merge,
    parse_tolerance,
    summary_lines,
)
from pytest_tokenguard.baseline.store import BaselineError, dumps, load
from pytest_tokenguard.figures import AuditFigure, GpuFigure, TestFigures
from pytest_tokenguard.plugin import wire

AUDIT = AuditFigure("data/train.jsonl", 1200, 2048, 768, 900, 1400, 1900, 2100, 7, 3, 1, 0)
TOLERANCE = parse_tolerance(DEFAULT_GPU_TOLERANCE)


def test_round_trip_through_the_baseline_and_the_wire(tmp_path: Path) -> None:
    figures = TestFigures((), GpuFigure(10, "predicted"), AUDIT)
    path = tmp_path / "baseline.json"
    path.write_text(dumps({"t.py::test_set": figures}), encoding="utf-8")
    assert load(path).entries["t.py::test_set"] == figures
    assert json.loads(path.read_text())["tests"]["t.py::test_set"]["audit"]["p99"] == 1900
    properties: list[tuple[str, object]] = []
    wire.publish(properties, figures, excluded=None)
    assert wire.read(properties).figures == figures
    assert figures.with_gpu(GpuFigure(20, "nvml")).audit == AUDIT


@pytest.mark.parametrize(("audit", "where"), [
    ({**AUDIT.to_json(), "samples": -1}, ".audit.samples"),
    ({**AUDIT.to_json(), "data": ""}, ".audit.data"),
    ({**AUDIT.to_json(), "max_length": "2048"}, ".audit.max_length"),
    ("audit", ".audit"),
])
def test_a_bad_audit_entry_is_named(tmp_path: Path, audit: object, where: str) -> None:
    path = tmp_path / "baseline.json"
    document = json.loads(dumps({"t.py::test_set": TestFigures(audit=AUDIT)}))
    document["tests"]["t.py::test_set"]["audit"] = audit
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(BaselineError, match=rf"tests\['t.py::test_set'\]\{where}"):
        load(path)


def test_no_max_length_reads_back(tmp_path: Path) -> None:
    figures = TestFigures(audit=replace(AUDIT, max_length=None))
    path = tmp_path / "baseline.json"
    path.write_text(dumps({"t": figures}), encoding="utf-8")
    assert load(path).entries["t"] == figures


def test_compare_and_merge() -> None:
    before = TestFigures(audit=AUDIT)
    now = TestFigures(audit=replace(AUDIT, p99=1950, cut_inside_media=4))
    comparison = compare(before, now, TOLERANCE)
    assert comparison.status is Status.CHANGED
    assert [(c.figure, c.baseline, c.now) for c in comparison.changes] == [
        ("training set p99", "1900", "1950"), ("training set cut inside media", "3", "4")]
    assert comparison.changes[0].headline() == "training set p99 changed: 1900 -> 1950"
    assert compare(None, before, TOLERANCE).new_figures == ("audit",)
    assert compare(TestFigures(), before, TOLERANCE).new_figures == ("audit",)
    assert compare(before, before, TOLERANCE).status is Status.UNCHANGED
    assert merge(before, now) == now
    assert merge(before, TestFigures(), only_new=True) == before
    assert summary_lines(before) == [
        "  training set data/train.jsonl: 1,200 samples at longest_edge 768, tokens p50 900 "
        "p99 1,900 max 2,100; max_length 2048: 7 over, 3 cut inside media, 1 refused"]


QWEN_AUDIT = replace(AUDIT, longest_edge=1003520, knob="max_pixels")


def test_a_qwen_audit_is_stored_under_max_pixels(tmp_path: Path) -> None:
    """A Qwen-VL training set is audited at a ``max_pixels``: the baseline stores it under
    that name (not as a ``longest_edge`` of 1,003,520), reads it back, carries it across
    the xdist wire and names it in the summary; SmolVLM2's entry keeps ``longest_edge``."""
    figures = TestFigures(audit=QWEN_AUDIT)
    path = tmp_path / "baseline.json"
    path.write_text(dumps({"t.py::test_set": figures}), encoding="utf-8")
    stored = json.loads(path.read_text())["tests"]["t.py::test_set"]["audit"]
    assert stored["max_pixels"] == 1003520
    assert "longest_edge" not in stored
    assert set(stored) == {QWEN_AUDIT.field_name(name) for name in AuditFigure.FIELDS}
    assert load(path).entries["t.py::test_set"] == figures
    properties: list[tuple[str, object]] = []
    wire.publish(properties, figures, excluded=None)
    assert wire.read(properties).figures == figures
    assert "samples at max_pixels 1003520," in summary_lines(figures)[0]
    assert "longest_edge" in json.loads(dumps({"t": TestFigures(audit=AUDIT)}))["tests"]["t"][
        "audit"]


def test_an_audit_at_another_knob_or_budget_is_a_change(tmp_path: Path) -> None:
    moved = replace(QWEN_AUDIT, longest_edge=200704)
    changes = compare(TestFigures(audit=QWEN_AUDIT), TestFigures(audit=moved), TOLERANCE).changes
    assert [(c.figure, c.baseline, c.now) for c in changes] == [
        ("training set max pixels", "1003520", "200704")]
    changes = compare(TestFigures(audit=AUDIT), TestFigures(audit=QWEN_AUDIT), TOLERANCE).changes
    assert [(c.figure, c.baseline, c.now) for c in changes] == [
        ("training set audited at", "longest_edge 768", "max_pixels 1003520")]
    path = tmp_path / "baseline.json"
    document = json.loads(dumps({"t": TestFigures(audit=AUDIT)}))
    document["tests"]["t"]["audit"]["max_pixels"] = 1003520
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(BaselineError, match=r"longest_edge, max_pixels"):
        load(path)
