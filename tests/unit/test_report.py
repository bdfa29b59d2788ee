"""The summary table: videos get their columns only when a test processed one."""

from __future__ import annotations

from dataclasses import replace

from pytest_tokenguard.figures import ImageFigure, ResolutionFigures, VideoFigure
from pytest_tokenguard.plugin import wire
from pytest_tokenguard.plugin.report import Row, format_table

FRAME = ResolutionFigures(384, 1, 81, 84, 90, (ImageFigure(384, 384, 81, 84),), patches=1)
MINUTE = VideoFigure(frames=60, image_tokens=4860, block_tokens=5040, tokens=5670)
CLIPS = ResolutionFigures(384, 0, 0, 0, 5680, (), per_video=(replace(MINUTE, count=2),))


def test_table_without_videos_has_no_video_columns() -> None:
    header, row = format_table([Row("t.py::frame", FRAME)])
    assert header.split() == ["test", "longest_edge", "images", "patches", "image", "tokens",
                              "block", "tokens", "longest", "seq"]
    assert row.split() == ["t.py::frame", "384", "1", "1", "81", "84", "90"]


def test_table_with_videos_counts_them_apart_from_images() -> None:
    header, clips, frame = format_table([Row("t.py::frame", FRAME), Row("t.py::clips", CLIPS)])
    assert "videos  frames  video tokens  longest seq" in header
    assert clips.split() == ["t.py::clips", "384", "0", "0", "0", "0", "2", "120", "11340",
                             "5680"]
    assert frame.split() == ["t.py::frame", "384", "1", "1", "81", "84", "0", "0", "0", "90"]


def test_videos_travel_on_the_wire() -> None:
    from pytest_tokenguard.figures import TestFigures

    properties: list[tuple[str, object]] = []
    figures = TestFigures((CLIPS,))
    wire.publish(properties, figures, excluded=None)
    assert wire.read(properties).figures == figures
    assert wire.read(properties).figures.resolutions[0].video_tokens == 11340
