"""Qwen-VL figures under their own resolution key, the pixel budget (``min_pixels``,
``max_pixels``), in the figures, the baseline file, the comparison, the summary and the
gate's messages; SmolVLM2 entries keep their bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_tokenguard.baseline.compare import (
    GpuTolerance,
    Status,
    compare,
    diff_table,
    failure_message,
    summary_lines,
)
from pytest_tokenguard.baseline.gate import Gate, GateSettings
from pytest_tokenguard.baseline.store import BaselineError, dumps, load
from pytest_tokenguard.figures import (
    ImageFigure,
    PixelBounds,
    ResolutionFigures,
    figures_from_recording,
)
from pytest_tokenguard.figures import TestFigures as Entry
from pytest_tokenguard.plugin.report import Row, format_table
from pytest_tokenguard.processor.recording import ImageRecord, Recording, SequenceRecord

TEN_PERCENT = GpuTolerance(percent=10)
REPOSITORY = Path(__file__).resolve().parents[2]
INTENDED = PixelBounds(3136, 200704)
FITS = PixelBounds(3136, 204885)  # the largest max_pixels that still gives 234 tokens
MISTAKE = PixelBounds(3136, 1003520)

#: a baseline as 0.2 writes it: SmolVLM2 entries, and a Qwen video test whose figures sit
#: under longest_edge null (videos and text-only sequences keep no pixel budget)
OLD_FORMAT = {
    "format": "pytest-tokenguard baseline",
    "tests": {
        "t.py::frame[le384]": {"resolutions": [{
            "block_tokens": 84, "image_tokens": 81, "images": 1, "longest_edge": 384,
            "longest_sequence": 90, "per_image": [
                {"block_tokens": 84, "height": 384, "image_tokens": 81, "width": 384}]}]},
        "t.py::qwen_video": {"resolutions": [{
            "block_tokens": 0, "image_tokens": 0, "images": 0, "longest_edge": None,
            "longest_sequence": 28, "per_image": [], "videos": [
                {"block_tokens": 8, "count": 1, "frames": 2, "image_tokens": 6, "tokens": 8}]}]},
    },
    "version": 1,
}


def qwen(pixels: PixelBounds | None, tokens: int = 234, images: int = 2,
         sequence: int = 250) -> ResolutionFigures:
    return ResolutionFigures(None, images, tokens * images, (tokens + 2) * images, sequence,
                             (ImageFigure(1024, 768, tokens, tokens + 2),), pixels=pixels)


def test_an_old_format_baseline_loads_and_writes_the_same_bytes(tmp_path: Path) -> None:
    text = json.dumps(OLD_FORMAT, indent=2, sort_keys=True) + "\n"
    path = tmp_path / "baseline.json"
    path.write_text(text)
    baseline = load(path)
    assert all(r.pixels is None for e in baseline.entries.values() for r in e.resolutions)
    assert baseline.dumps() == text


def test_the_committed_baseline_loads_and_writes_the_same_bytes() -> None:
    path = REPOSITORY / ".tokenguard" / "baseline.json"
    if not path.is_file():
        pytest.skip("no committed baseline in this checkout")
    text = path.read_text(encoding="utf-8")
    baseline = load(path)
    assert len(baseline.entries) > 0
    assert baseline.dumps() == text
    # and compares unchanged with itself, key by key
    for entry in baseline.entries.values():
        assert compare(entry, entry, TEN_PERCENT).status is Status.UNCHANGED


def test_qwen_entries_round_trip_with_their_pixel_budget(tmp_path: Path) -> None:
    entries = {"t.py::collate": Entry((qwen(MISTAKE, 999, 1), qwen(INTENDED),
                                       ResolutionFigures(None, 0, 0, 0, 12)))}
    text = dumps(entries)
    document = json.loads(text)
    rows = document["tests"]["t.py::collate"]["resolutions"]
    assert [(r["longest_edge"], r.get("min_pixels"), r.get("max_pixels")) for r in rows] == [
        (None, 3136, 200704), (None, 3136, 1003520), (None, None, None)]
    path = tmp_path / "baseline.json"
    path.write_text(text)
    loaded = load(path)
    assert dict(loaded.entries) == entries
    assert loaded.dumps() == text


@pytest.mark.parametrize(("edit", "message"), [
    (lambda r: r.pop("min_pixels"), r"\.min_pixels: missing beside max_pixels"),
    (lambda r: r.update(max_pixels=0), r"\.max_pixels: expected a positive integer, got 0"),
    (lambda r: r.update(max_pixels="200704"), r"\.max_pixels: expected a positive integer"),
    (lambda r: r.update(longest_edge=384), r"\.longest_edge: expected null beside max_pixels"),
])
def test_a_bad_pixel_budget_is_a_corrupt_baseline(tmp_path: Path, edit: object,
                                                    message: str) -> None:
    document = json.loads(dumps({"t.py::a": Entry((qwen(INTENDED),))}))
    edit(document["tests"]["t.py::a"]["resolutions"][0])  # type: ignore[operator]
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(document))
    with pytest.raises(BaselineError, match=message):
        load(path)


def test_two_entries_at_one_resolution_are_a_corrupt_baseline(tmp_path: Path) -> None:
    document = json.loads(dumps({"t.py::a": Entry((qwen(INTENDED),))}))
    rows = document["tests"]["t.py::a"]["resolutions"]
    rows.append(dict(rows[0]))
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(document))
    with pytest.raises(BaselineError,
                       match=r"a second entry at max_pixels=200704 \(min_pixels=3136\)"):
        load(path)


def test_a_changed_max_pixels_is_a_changed_key_even_at_the_same_cost() -> None:
    """204885 gives the 1024×768 photo the same 234 tokens as 200704: the figures are
    equal, the budget is not, and the budget is what the suite pinned."""
    comparison = compare(Entry((qwen(INTENDED),)), Entry((qwen(FITS),)), TEN_PERCENT)
    assert comparison.status is Status.CHANGED
    assert comparison.fails
    [change] = comparison.changes
    assert (change.figure, change.baseline, change.now) == ("max_pixels", "200704", "204885")
    assert change.headline() == "max_pixels changed: 200704 -> 204885 (min_pixels=3136)"
    assert comparison.changed_keys() == {(None, INTENDED), (None, FITS)}


def test_a_changed_max_pixels_names_both_budgets_and_the_counts_that_moved() -> None:
    old, now = Entry((qwen(INTENDED),)), Entry((qwen(MISTAKE, 999),))
    comparison = compare(old, now, TEN_PERCENT)
    message = failure_message("t.py::test_batch", comparison, now, old, "b.json")
    assert message.splitlines()[0] == (
        "tokenguard baseline: test_batch image tokens changed at max_pixels=200704 "
        "(min_pixels=3136): 234 -> 999, now at max_pixels=1003520 (min_pixels=3136) "
        "(baseline b.json)")
    table = diff_table(comparison.changes)
    assert table[0].split() == ["resolution", "figure", "baseline", "now"]
    assert "max_pixels=200704 (min_pixels=3136) -> max_pixels=1003520 (min_pixels=3136)" \
        in table[1]


def test_a_changed_min_pixels_is_a_changed_key_too() -> None:
    comparison = compare(Entry((qwen(INTENDED),)), Entry((qwen(PixelBounds(200704, 200704)),)),
                         TEN_PERCENT)
    assert comparison.status is Status.CHANGED
    assert (comparison.changes[0].figure, comparison.changes[0].now) == (
        "pixel budget", "max_pixels=200704 (min_pixels=200704)")


def test_an_older_qwen_entry_without_a_budget_compares_as_changed() -> None:
    """An entry recorded before pixel keys (images under longest_edge null) is not taken
    as equal to one with a budget: the test fails until it is re-recorded."""
    comparison = compare(Entry((qwen(None),)), Entry((qwen(INTENDED),)), TEN_PERCENT)
    assert comparison.status is Status.CHANGED
    assert {c.figure for c in comparison.changes} == {"resolution"}


def test_smolvlm_moves_keep_their_wording() -> None:
    def frame(edge: int, tokens: int) -> ResolutionFigures:
        return ResolutionFigures(edge, 1, tokens, tokens + 3, tokens + 3,
                                 (ImageFigure(384, 384, tokens, tokens + 3),))

    comparison = compare(Entry((frame(384, 81),)), Entry((frame(512, 405),)), TEN_PERCENT)
    assert comparison.changes[0].figure == "longest_edge"
    assert diff_table(comparison.changes)[0].split()[0] == "longest_edge"
    assert comparison.changed_keys() == {(384, None), (512, None)}


def _qwen_image(bounds: PixelBounds, tokens: int, rows: int, cols: int) -> ImageRecord:
    return ImageRecord(1024, 768, None, 0, rows, cols, tokens, tokens + 2, "Qwen2_5_VLProcessor",
                       do_image_splitting=False, family="qwen-vl",
                       min_pixels=bounds.min_pixels, max_pixels=bounds.max_pixels,
                       patch_size=14, merge_size=2)


def test_figures_group_qwen_images_and_their_sequences_by_pixel_budget() -> None:
    recording = Recording(
        images=[_qwen_image(INTENDED, 234, 26, 36), _qwen_image(MISTAKE, 999, 54, 74)],
        sequences=[SequenceRecord("a", 250, "", None, "", INTENDED),
                   SequenceRecord("b", 1015, "", None, "", MISTAKE),
                   SequenceRecord("c", 7, "", None, "")])
    figures = figures_from_recording(recording)
    assert [(f.pixels, f.images, f.image_tokens, f.patches, f.longest_sequence)
            for f in figures] == [(INTENDED, 1, 234, 936, 250), (MISTAKE, 1, 999, 3996, 1015),
                                  (None, 0, 0, 0, 7)]


def test_the_summary_names_a_pixel_budget_as_such() -> None:
    rows = [Row("t.py::collate", qwen(INTENDED)),
            Row("t.py::frame[le384]", ResolutionFigures(384, 1, 81, 84, 90))]
    header, *lines = format_table(rows)
    assert header.split()[:2] == ["test", "resolution"]
    assert "max_pixels=200704 (min_pixels=3136)" in lines[0]
    assert "longest_edge=384" in lines[1]
    assert summary_lines(Entry((qwen(INTENDED),)))[0].startswith(
        "  max_pixels=200704 (min_pixels=3136): 2 images, 468 image tokens")


def test_the_gate_flags_the_changed_pixel_row_in_the_summary(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(dumps({"t.py::a": Entry((qwen(INTENDED),))}))
    gate = Gate(GateSettings(path, "b.json", explicit=True, update=False, allow_new=False,
                             ci=False, tolerance=TEN_PERCENT))
    now = Entry((qwen(FITS),))
    message = gate.judge("t.py::a", now, None)
    assert message is not None
    assert (
        "tokenguard baseline: a max_pixels changed: 200704 -> 204885 (min_pixels=3136) "
        "(baseline b.json)") in message
    gate.record("t.py::a", now, False, None)
    assert gate.table_mark("t.py::a", now.resolutions[0]) == "! "
    [change] = gate.report_document(1)["tests"]["t.py::a"]["changes"]
    assert (change["min_pixels"], change["max_pixels"]) == (3136, 200704)


def test_the_pixel_budget_travels_in_the_test_report() -> None:
    """xdist: a worker's figures reach the controller with their pixel budget."""
    from pytest_tokenguard.plugin import wire

    figures = Entry((qwen(INTENDED), ResolutionFigures(384, 1, 81, 84, 90)))
    properties: list[tuple[str, object]] = []
    wire.publish(properties, figures, excluded=None)
    record = wire.read(properties)
    assert record.figures == figures
    assert [r.pixels for r in record.figures.resolutions] == [None, INTENDED]
