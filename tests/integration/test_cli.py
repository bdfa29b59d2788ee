"""``tokenguard count``: header-only counting, JSON Lines, and clear per-file errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_tokenguard.cli import main
from tests.helpers import FIXTURES, model_ref, real_image_tokens, real_processor

MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"
REQUIRED_KEYS = {"path", "width", "height", "longest_edge", "rows", "cols", "patches",
                 "image_tokens", "block_tokens"}


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_lines_match_real_processor(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["count", "--model", model_ref(MODEL), "--longest-edge", "384",
                          "--longest-edge", "1536", "--json", str(FIXTURES)], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 2 * len(list(FIXTURES.glob("*.png")))
    processor = real_processor(MODEL)
    for row in rows:
        assert row.keys() >= REQUIRED_KEYS
        assert (row["image_tokens"], row["block_tokens"]) == real_image_tokens(
            processor, row["width"], row["height"], size={"longest_edge": row["longest_edge"]}
        )


def test_table_output_defaults_to_model_longest_edge(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["count", "--model", model_ref(MODEL),
                        str(FIXTURES / "frame_384x384.png")], capsys)
    assert code == 0
    header, row, total = out.splitlines()
    assert total.startswith("total at longest_edge 1536: 1 image, ")
    assert header.split()[:4] == ["path", "width", "height", "longest_edge"]
    assert row.split()[1:4] == ["384", "384", "1536"]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("corrupt.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image PIL can read"),
        ("notes.txt", b"just some text\n", "not an image PIL can read"),
        ("empty.jpg", b"", "is empty (0 bytes)"),
    ],
)
def test_bad_file_is_one_line_and_others_still_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes, reason: str
) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    good = tmp_path / "good.png"
    shutil.copy(FIXTURES / "frame_384x384.png", good)
    code, out, err = run(["count", "--json", "--longest-edge", "384", str(bad), str(good)],
                         capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"tokenguard count: {bad}: ")
    assert reason in lines[0]
    assert [json.loads(line)["path"] for line in out.splitlines()] == [str(good)]


def test_missing_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(["count", str(tmp_path / "nope.png")], capsys)
    assert code == 1
    assert "nope.png: no such file; check the path" in err


@pytest.mark.parametrize("edge", ["0", "-384", "abc"])
def test_bad_longest_edge_is_a_usage_error(capsys: pytest.CaptureFixture[str], edge: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["count", f"--longest-edge={edge}", str(FIXTURES / "frame_384x384.png")])
    assert info.value.code == 2
    assert "--longest-edge" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["someorg/unknown-model", "./missing/folder"])
def test_unknown_model(capsys: pytest.CaptureFixture[str], model: str,
                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    code, _, err = run(["count", "--model", model, str(FIXTURES / "frame_384x384.png")], capsys)
    assert code == 2
    assert model in err
    assert "--model" in err


def test_known_model_works_without_files(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Offline and uncached, the built-in spec still counts images exactly."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    code, out, _ = run(["count", "--model", MODEL, "--json", "--longest-edge", "1536",
                        str(FIXTURES / "frame_384x384.png")], capsys)
    assert code == 0
    row = json.loads(out)
    assert (row["image_tokens"], row["block_tokens"]) == real_image_tokens(
        real_processor(MODEL), 384, 384, size={"longest_edge": 1536})


def test_console_script_imports_no_torch(tmp_path: Path) -> None:
    """The count path reads headers only, and videos' container metadata: neither torch
    nor transformers is imported, for images or videos."""
    from tests.helpers import write_clip

    clip = write_clip(tmp_path / "clip.mp4", 30, 10)
    code = (
        "import sys; from pytest_tokenguard.cli import main; "
        f"rc = main(['count', '--json', {str(FIXTURES / 'frame_384x384.png')!r}, "
        f"{str(clip)!r}]); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules)); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path),
                                            "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    *rows, imported = done.stdout.strip().splitlines()
    assert imported == "[]"
    assert [json.loads(row)["kind"] for row in rows] == ["image", "video"]
