"""``tokenguard audit`` refusals for Qwen-VL models, one line each with exit 2: a hub id
whose tokenizer is not on this machine (text is never guessed), and each family's
resolution setting given to the other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_tokenguard.cli import main

QWEN = "Qwen/Qwen2.5-VL-7B-Instruct"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                             {"role": "assistant", "content": "Hello"}]})
                    + "\n")
    return path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["audit", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_hub_id_without_its_tokenizer_is_refused_with_the_fix(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run([str(data), "--model", QWEN, "--max-length", "2048"], capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"tokenguard audit: {QWEN}: text cannot be counted exactly")
    assert f"hf download {QWEN} tokenizer.json" in err
    assert "--model" in err


@pytest.mark.parametrize(("args", "words"), [
    (["--model", QWEN, "--longest-edge", "768"],
     ["longest_edge=768 is SmolVLM2's resolution", "give --max-pixels"]),
    (["--model", QWEN, "--num-frames", "8"], ["num_frames=8", "drop --num-frames"]),
    (["--max-pixels", "401408"],
     ["max_pixels=401408 is a Qwen-VL setting", "give --longest-edge"]),
])
def test_the_other_familys_resolution_is_a_usage_error(
        data: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        words: list[str]) -> None:
    code, out, err = run([str(data), *args], capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    for word in words:
        assert word in err
