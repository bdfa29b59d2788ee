"""The baseline file and the comparison, without pytest in between."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_tokenguard.baseline.compare import (
    ACCEPT_HINT,
    GpuTolerance,
    Status,
    compare,
    failure_message,
    merge,
    parse_tolerance,
)
from pytest_tokenguard.baseline.store import BaselineError, SourceRecord, dumps, load
from pytest_tokenguard.figures import GpuFigure, ImageFigure, ResolutionFigures, VideoFigure
from pytest_tokenguard.figures import TestFigures as Entry
from pytest_tokenguard.files import write_atomic

TEN_PERCENT = GpuTolerance(percent=10)


def frame(edge: int, tokens: int, block: int, images: int = 1) -> ResolutionFigures:
    return ResolutionFigures(edge, images, tokens * images, block * images, block,
                           (ImageFigure(384, 384, tokens, block),))


LE384 = Entry((frame(384, 81, 84),))
LE512 = Entry((frame(512, 405, 418),))


def test_dumps_is_canonical_and_round_trips(tmp_path: Path) -> None:
    entries = {"t.py::b": Entry((frame(512, 405, 418), frame(384, 81, 84))),
               "t.py::a[le384]": Entry((frame(384, 81, 84),), GpuFigure(2**30, "torch_reserved"))}
    text = dumps(entries)
    assert text == dumps(dict(reversed(list(entries.items()))))  # insertion order is irrelevant
    assert text.endswith("}\n")
    assert "\t" not in text
    document = json.loads(text)
    assert list(document["tests"]) == ["t.py::a[le384]", "t.py::b"]
    assert [r["longest_edge"] for r in document["tests"]["t.py::b"]["resolutions"]] == [384, 512]
    assert document["tests"]["t.py::a[le384]"]["gpu"] == {"gpu_peak_bytes": 2**30,
                                                          "gpu_measure": "torch_reserved"}
    path = tmp_path / "baseline.json"
    path.write_text(text)
    loaded = load(path)
    assert loaded.exists
    assert dict(loaded.entries) == entries
    assert loaded.dumps() == text


def test_missing_file_is_an_empty_baseline(tmp_path: Path) -> None:
    baseline = load(tmp_path / "nope.json")
    assert not baseline.exists
    assert not baseline.entries


def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    text = dumps({"t.py::a": LE384}).replace('"images": 1,', '"images": 1', 1)
    path.write_text(text)
    with pytest.raises(BaselineError) as info:
        load(path, ".tokenguard/baseline.json")
    line = text.splitlines().index('          "images": 1') + 2  # the error is on the next key
    assert str(info.value).startswith(f"tokenguard baseline .tokenguard/baseline.json:{line}:")
    assert "not valid JSON" in str(info.value)
    assert "--tokenguard-update" in str(info.value)


def test_merge_conflict_markers_are_named(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text('{\n<<<<<<< HEAD\n  "a": 1\n=======\n  "a": 2\n>>>>>>> branch\n}\n')
    with pytest.raises(BaselineError, match=r"baseline\.json:2: contains a git merge conflict"):
        load(path)


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d.update(format="something else"), "not a tokenguard baseline"),
    (lambda d: d.update(version=0), "version: expected 1, got 0"),
    (lambda d: d.update(tests=[]), "tests: expected an object"),
    (lambda d: d["tests"]["t.py::a"]["resolutions"][0].update(image_tokens="81"),
     r"tests\['t.py::a'\].resolutions\[0\].image_tokens: expected a non-negative integer, "
     "got '81'"),
    (lambda d: d["tests"]["t.py::a"]["resolutions"][0].update(longest_edge=0),
     "longest_edge: expected a positive integer or null"),
    (lambda d: d["tests"]["t.py::a"].update(gpu={"gpu_peak_bytes": 1}),
     r"\.gpu\.gpu_measure: expected a counter name"),
], ids=["format", "version", "tests", "type", "edge", "gpu"])
def test_wrong_schema_is_a_clear_error(tmp_path: Path, mutate: object, expected: str) -> None:
    document = json.loads(dumps({"t.py::a": LE384}))
    mutate(document)  # type: ignore[operator]
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(document, indent=2))
    with pytest.raises(BaselineError, match=expected):
        load(path)


def test_schema_error_points_at_the_entry_line(tmp_path: Path) -> None:
    document = json.loads(dumps({"t.py::a": LE384, "t.py::b": LE384}))
    document["tests"]["t.py::b"]["resolutions"][0]["images"] = -1
    path = tmp_path / "baseline.json"
    text = json.dumps(document, indent=2, sort_keys=True)
    path.write_text(text)
    line = text.splitlines().index('    "t.py::b": {') + 1
    with pytest.raises(BaselineError, match=rf"baseline\.json:{line}: tests\['t.py::b'\]"):
        load(path)


def test_newer_format_asks_for_an_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"format": "pytest-tokenguard baseline", "version": 7,
                                "tests": {}}))
    with pytest.raises(BaselineError, match=r"newer pytest-tokenguard.*upgrade"):
        load(path)


def test_equal_figures_are_unchanged() -> None:
    assert compare(LE384, LE384, TEN_PERCENT).status == Status.UNCHANGED


def test_no_entry_is_new() -> None:
    comparison = compare(None, LE384, TEN_PERCENT)
    assert (comparison.status, comparison.new_figures, comparison.fails) == (
        Status.NEW, ("tokens",), False)


def test_moved_resolution_headline_names_old_and_new_counts() -> None:
    comparison = compare(LE384, LE512, TEN_PERCENT)
    assert comparison.status == Status.CHANGED
    assert comparison.fails
    message = failure_message("tests/t.py::test_x[le384]", comparison, LE512, LE384,
                              ".tokenguard/baseline.json")
    lines = message.splitlines()
    assert lines[0] == ("tokenguard baseline: test_x[le384] image tokens changed at "
                        "longest_edge=384: 81 -> 405, now at longest_edge=512 "
                        "(baseline .tokenguard/baseline.json)")
    assert any(line.split() == ["384", "->", "512", "image", "tokens", "81", "405"]
               for line in lines)
    assert lines[-1].startswith(ACCEPT_HINT)
    assert comparison.changed_edges() == {384, 512}


def test_same_resolution_different_cost() -> None:
    now = Entry((ResolutionFigures(384, 1, 405, 418, 418, (ImageFigure(384, 384, 405, 418),)),))
    comparison = compare(LE384, now, TEN_PERCENT)
    assert failure_message("t.py::test_x[le384]", comparison, now, LE384, "b.json").splitlines()[
        0] == "tokenguard baseline: test_x[le384] image tokens changed at longest_edge=384: 81 " \
              "-> 405 (baseline b.json)"


def test_more_images_of_the_same_cost_is_a_change() -> None:
    comparison = compare(LE384, Entry((frame(384, 81, 84, images=2),)), TEN_PERCENT)
    assert [(c.figure, c.baseline, c.now) for c in comparison.changes] == [
        ("images", "1", "2"), ("total image tokens", "81", "162"),
        ("total block tokens", "84", "168")]


def test_extra_resolution_is_a_change() -> None:
    comparison = compare(LE384, Entry((frame(384, 81, 84), frame(512, 405, 418))), TEN_PERCENT)
    assert [(c.longest_edge, c.figure, c.baseline) for c in comparison.changes] == [
        (512, "resolution", "not recorded")]


def test_no_recording_any_more_is_a_change() -> None:
    comparison = compare(LE384, Entry(), TEN_PERCENT)
    assert comparison.fails
    assert comparison.changes[0].now == "not recorded"


@pytest.mark.parametrize(("now", "tolerance", "fails", "changed"), [
    (1_050, "10%", False, False),
    (1_101, "10%", True, True),
    (1_101, "200B", False, False),
    (1_201, "200B", True, True),
    (800, "10%", False, True),  # a lower peak is reported, never fails
])
def test_gpu_peak_tolerance(now: int, tolerance: str, fails: bool, changed: bool) -> None:
    old = Entry((), GpuFigure(1_000, "torch_reserved"))
    comparison = compare(old, Entry((), GpuFigure(now, "torch_reserved")),
                         parse_tolerance(tolerance))
    assert comparison.fails is fails
    assert (comparison.status == Status.CHANGED) is changed


def test_gpu_peaks_of_different_counters_are_not_compared() -> None:
    comparison = compare(Entry((), GpuFigure(10, "torch_reserved")),
                         Entry((), GpuFigure(10, "nvml")), TEN_PERCENT)
    assert comparison.fails
    assert comparison.changes[0].figure == "gpu measure"


def test_gpu_not_measured_keeps_the_baseline_peak() -> None:
    old = Entry((frame(384, 81, 84),), GpuFigure(10, "torch_reserved"))
    comparison = compare(old, LE384, TEN_PERCENT)
    assert comparison.status == Status.UNCHANGED
    assert comparison.notes
    assert merge(old, LE384) == old
    assert merge(None, Entry()) is None


def test_new_gpu_figure_in_an_existing_entry_is_new() -> None:
    comparison = compare(LE384, Entry(LE384.resolutions, GpuFigure(5, "torch_reserved")),
                         TEN_PERCENT)
    assert (comparison.status, comparison.new_figures) == (Status.NEW, ("gpu",))
    merged = merge(LE384, Entry(LE512.resolutions, GpuFigure(5, "torch_reserved")),
                   only_new=True)
    assert merged == Entry(LE384.resolutions, GpuFigure(5, "torch_reserved"))


@pytest.mark.parametrize(("raw", "expected"), [
    ("10%", GpuTolerance(percent=10)),
    ("2.5 %", GpuTolerance(percent=2.5)),
    ("512MiB", GpuTolerance(bytes=512 * 2**20)),
    ("1gib", GpuTolerance(bytes=2**30)),
    ("1.5 GB", GpuTolerance(bytes=1_500_000_000)),
    ("300MB", GpuTolerance(bytes=300_000_000)),
    ("0", GpuTolerance(bytes=0)),
])
def test_parse_tolerance(raw: str, expected: GpuTolerance) -> None:
    assert parse_tolerance(raw) == expected


@pytest.mark.parametrize("raw", ["", "ten", "-5%", "5 parsecs", "%"])
def test_bad_tolerance_says_what_is_accepted(raw: str) -> None:
    with pytest.raises(ValueError, match=r"percentage of the baseline peak \(10%\)"):
        parse_tolerance(raw)


def test_write_atomic_replaces_and_skips_identical(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "baseline.json"
    assert write_atomic(path, "one\n")
    path.chmod(0o640)
    assert write_atomic(path, "two\n")
    assert path.read_text() == "two\n"
    assert path.stat().st_mode & 0o777 == 0o640
    mtime = path.stat().st_mtime_ns
    assert not write_atomic(path, "two\n")
    assert path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in path.parent.iterdir()) == ["baseline.json"]


def test_failed_write_leaves_the_old_file_whole(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "baseline.json"
    path.write_text("old\n")

    def crash(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["baseline.json"]  # no temp file left


def test_source_record_round_trips_and_old_files_without_it_load(tmp_path: Path) -> None:
    source = SourceRecord("HuggingFaceTB/SmolVLM2-2.2B-Instruct", "embedded", "sha256:" + "a" * 64,
                          "5.24.0")
    path = tmp_path / "baseline.json"
    path.write_text(dumps({"t.py::a": LE384}, source))
    assert load(path).source == source
    path.write_text(dumps({"t.py::a": LE384}))  # a file written before the source was recorded
    assert load(path).source is None
    other = SourceRecord(source.model, "folder", "sha256:" + "b" * 64, "5.17.0")
    assert other.differences(source) == ["processor files sha256:aaaaaaaaaaaa -> "
                                         "sha256:bbbbbbbbbbbb", "transformers 5.24.0 -> 5.17.0"]
    assert source.differences(source) == []


def test_deeply_nested_baseline_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BaselineError, match="nested too deeply to be a baseline"):
        load(path)


# ------------------------------------------------------------------ videos


def with_videos(edge: int, *videos: VideoFigure) -> ResolutionFigures:
    return ResolutionFigures(edge, 0, 0, 0, 5680, (), per_video=tuple(sorted(videos)))


MINUTE = VideoFigure(frames=60, image_tokens=4860, block_tokens=5040, tokens=5670)


def test_videos_are_an_optional_key_old_files_load_and_write_the_same(tmp_path: Path) -> None:
    """Suites without videos write byte for byte what they wrote before videos existed;
    a test with videos adds ``videos`` to its resolution entry, and it round-trips."""
    plain = {"t.py::a": LE384}
    assert '"videos"' not in dumps(plain)
    entries = {"t.py::a": LE384, "t.py::v": Entry((with_videos(384, MINUTE, replace(MINUTE,
        frames=8, image_tokens=648, block_tokens=672, tokens=782, count=2)),))}
    text = dumps(entries)
    document = json.loads(text)
    assert document["tests"]["t.py::v"]["resolutions"][0]["videos"] == [
        {"block_tokens": 672, "count": 2, "frames": 8, "image_tokens": 648, "tokens": 782},
        {"block_tokens": 5040, "count": 1, "frames": 60, "image_tokens": 4860, "tokens": 5670}]
    path = tmp_path / "baseline.json"
    path.write_text(text)
    assert dict(load(path).entries) == entries
    assert load(path).dumps() == text


def test_bad_videos_entry_is_a_clear_error(tmp_path: Path) -> None:
    text = dumps({"t.py::v": Entry((with_videos(384, MINUTE),))})
    path = tmp_path / "baseline.json"
    path.write_text(text.replace('"frames": 60', '"frames": -60'))
    with pytest.raises(BaselineError, match=r"resolutions\[0\]\.videos\[0\]\.frames: expected a "
                       "non-negative integer, got -60"):
        load(path)


def test_video_cost_change_is_a_change() -> None:
    before = Entry((with_videos(384, MINUTE),))
    after = Entry((with_videos(384, replace(MINUTE, tokens=5700)),))
    comparison = compare(before, after, TEN_PERCENT)
    assert comparison.status is Status.CHANGED
    assert [(c.figure, c.baseline, c.now) for c in comparison.changes] == [
        ("video tokens", "5670", "5700")]
    more = compare(before, Entry((with_videos(384, replace(MINUTE, count=2)),)), TEN_PERCENT)
    assert [c.figure for c in more.changes] == ["videos", "video frames", "video tokens"]
    assert compare(before, before, TEN_PERCENT).status is Status.UNCHANGED


def _edited(tmp_path: Path, edit: object) -> Path:
    """A baseline of one test with one 384x384 image and two 512x384 ones, edited."""
    entry = Entry((ResolutionFigures(384, 3, 81 + 2 * 97, 84 + 2 * 100, 300, (
        ImageFigure(384, 384, 81, 84), ImageFigure(512, 384, 97, 100))),))
    document = json.loads(dumps({"t.py::a": entry}))
    assert callable(edit)
    edit(document["tests"]["t.py::a"]["resolutions"][0])
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(document, indent=2))
    return path


def test_a_recorded_entry_is_consistent(tmp_path: Path) -> None:
    assert load(_edited(tmp_path, lambda r: None)).entries["t.py::a"].resolutions[0].images == 3


@pytest.mark.parametrize(("edit", "where", "problem"), [
    (lambda r: r.update(image_tokens=276), ".image_tokens",
     "276 is not what per_image adds up to for 3 images (between 259 and 275)"),
    (lambda r: r["per_image"][0].update(image_tokens=70), ".image_tokens",
     "275 is not what per_image adds up to for 3 images (between 237 and 264)"),
    (lambda r: r.update(block_tokens=1), ".block_tokens", "1 is not what per_image"),
    (lambda r: r.update(images=1), ".images", "1 images cannot have 2 distinct sizes"),
    (lambda r: r["per_image"][1].update(block_tokens=90), ".per_image[1].block_tokens",
     "90 is less than its image_tokens 97"),
], ids=["total", "per-image", "block total", "images", "block under image"])
def test_hand_edited_totals_are_a_corrupt_baseline(tmp_path: Path, edit: object, where: str,
                                                   problem: str) -> None:
    """A baseline whose totals no longer add up was accepted as it was (for a test with
    one image, the gate compares the per_image row alone)."""
    path = _edited(tmp_path, edit)
    with pytest.raises(BaselineError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"tokenguard baseline {path}:")
    assert f"tests['t.py::a'].resolutions[0]{where}: {problem}" in message


def test_one_images_total_must_be_its_per_image_row(tmp_path: Path) -> None:
    document = json.loads(dumps({"t.py::a": LE384}))
    document["tests"]["t.py::a"]["resolutions"][0]["image_tokens"] = 64
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(document))
    with pytest.raises(BaselineError, match=r"\.image_tokens: 64 is not what per_image adds up "
                                            r"to for 1 image \(81\)"):
        load(path)


def test_a_duplicate_key_is_a_corrupt_baseline(tmp_path: Path) -> None:
    """A key given twice (a bad merge) was read as the last one and accepted."""
    text = dumps({"t.py::a": LE384, "t.py::b": LE512})
    # the second entry's image_tokens given twice, the last one wrong
    doubled = text.replace('"image_tokens": 405,', '"image_tokens": 405,\n'
                           '          "image_tokens": 1,', 1)
    assert doubled != text
    path = tmp_path / "baseline.json"
    path.write_text(doubled)
    line = doubled.splitlines().index('          "image_tokens": 1,') + 1
    with pytest.raises(BaselineError) as caught:
        load(path)
    assert str(caught.value).startswith(
        f"tokenguard baseline {path}:{line}: the key 'image_tokens' appears twice in one object")
    same_test = text.replace('"t.py::b":', '"t.py::a":')
    path.write_text(same_test)
    with pytest.raises(BaselineError, match=r"the key 't\.py::a' appears twice"):
        load(path)
