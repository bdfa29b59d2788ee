"""The one walk over a counting command's files (``cli.common.FileWalk``), shared by
``tokenguard count`` for SmolVLM2 and for the other families, and the CLI's wording of
the messages it passes on (the command itself: tests/integration/test_count_cli.py)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from pytest_tokenguard.cli.common import EXIT_FAILED, EXIT_OK, FileWalk
from pytest_tokenguard.errors import CLI_WORDING, CountingError, ImageReadError, SpecError
from pytest_tokenguard.specs import image_processor_config


def test_it_yields_files_and_reports_skipped_and_unreadable_once(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(b"")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "photos" / "linked")
    err = io.StringIO()
    walk = FileWalk("count", [str(tmp_path / "photos"), str(tmp_path / "empty")], err)
    assert not walk.has_video
    files = list(walk)
    assert files == [(tmp_path / "photos" / "a.png", str(tmp_path / "photos" / "a.png")),
                     (tmp_path / "empty", str(tmp_path / "empty"))]
    lines = err.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"tokenguard count: skipped {tmp_path / 'photos' / 'linked'}: ")
    assert walk.failures == 0


def test_refused_files_and_the_exit_status(tmp_path: Path) -> None:
    err = io.StringIO()
    walk = FileWalk("count", [], err)
    assert walk.exit_status() == EXIT_FAILED
    assert err.getvalue() == ("tokenguard count: no image or video was counted; pass image or "
                              "video files, or folders that hold some\n")
    err = io.StringIO()
    walk = FileWalk("count", [], err)
    walk.refused("a.tif", ImageReadError("a.tif", "TIFF cannot be loaded from a path"))
    walk.refused("b.png", CountingError.phrased("too wide; see {model}"))
    assert err.getvalue().splitlines() == [
        "tokenguard count: a.tif: TIFF cannot be loaded from a path",
        "tokenguard count: b.png: too wide; see --model (or $TOKENGUARD_MODEL)"]
    assert walk.exit_status() == EXIT_FAILED
    walk = FileWalk("count", [], io.StringIO())
    walk.counted()
    assert walk.exit_status() == EXIT_OK


def test_a_videos_name_is_known_before_counting(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"")
    assert FileWalk("count", [str(tmp_path)], io.StringIO()).has_video


def test_a_folder_without_processor_settings_names_the_cli_option(tmp_path: Path) -> None:
    """specs.py's message for a folder with no image processor settings refers to the
    model setting as each front end spells it (the plugin's option, the CLI's)."""
    with pytest.raises(SpecError) as info:
        image_processor_config(tmp_path)
    assert "point --tokenguard-model (or $TOKENGUARD_MODEL" in str(info.value)
    assert info.value.reworded(CLI_WORDING).endswith(
        "point --model (or $TOKENGUARD_MODEL) at a SmolVLM checkpoint folder or a hub id")
