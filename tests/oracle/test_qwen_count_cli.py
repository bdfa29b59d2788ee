"""``tokenguard count --model Qwen/... --json`` equals the real Qwen processor on image files.

Offline, by hub id: the counts come from the published settings through the family seam;
the expected ones from transformers' processor (tests/qwen_helpers.py) given the same
files opened with PIL: ``image_tokens`` is the number of ``<|image_pad|>`` it writes and
``block_tokens`` adds the two wrappers of the chat template.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_tokenguard.cli import main
from pytest_tokenguard.families.qwen import IMAGE_PAD, VISION_END, VISION_START
from pytest_tokenguard.testing.profiles import processor_examples
from tests.qwen_helpers import GENERATIONS, expand, processor


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
@pytest.mark.parametrize("model", list(GENERATIONS.values()))
@settings(max_examples=processor_examples(12), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.tuples(st.integers(1, 1800), st.integers(1, 1800)), min_size=1,
                      max_size=4),
       max_pixels=st.none() | st.sampled_from([50176, 1003520]))
def test_count_json_equals_the_processor(model: str, sizes: list[tuple[int, int]],
                                         max_pixels: int | None, tmp_path_factory: pytest.
                                         TempPathFactory,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    for i, (w, h) in enumerate(sizes):
        Image.new("RGB", (w, h), (i * 40 % 255, 80, 160)).save(folder / f"{i}.png")
    extra = [] if max_pixels is None else ["--max-pixels", str(max_pixels)]
    code, out, err = run(["count", "--model", model, "--json", *extra, str(folder)], capsys)
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    call = {} if max_pixels is None else {"max_pixels": max_pixels}
    refused = 0
    for i in range(len(sizes)):
        name = f"{i}.png"
        with Image.open(folder / name) as image:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ids, text, _ = expand(processor(model),
                                          VISION_START + IMAGE_PAD + VISION_END,
                                          images=[image], **call)
            except ValueError as exc:  # refused by the processor: refused by count
                reason = str(exc)
            else:
                reason = ""
        if reason:
            refused += 1
            assert name not in rows
            assert f"{name}: {reason}" in err
            continue
        assert rows[name]["image_tokens"] == text.count(IMAGE_PAD)
        assert rows[name]["block_tokens"] == len(ids)
    assert code == (1 if refused else 0), err


def test_refused_sizes_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    Image.new("RGB", (2010, 10)).save(tmp_path / "strip.png")
    code, out, err = run(["count", "--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--json",
                          str(tmp_path / "strip.png")], capsys)
    assert (code, out) == (1, "")
    assert err.strip() == (f"tokenguard count: {tmp_path / 'strip.png'}: absolute aspect ratio "
                           "must be smaller than 200, got 201.0")


def test_smolvlm_options_are_a_usage_error(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["count", "--model", "Qwen/Qwen3-VL-8B-Instruct", "--longest-edge",
                          "384", str(tmp_path)], capsys)
    assert (code, out) == (2, "")
    assert "--longest-edge is a SmolVLM2 setting" in err
    code, _, err = run(["count", "--max-pixels", "1000", str(tmp_path)], capsys)
    assert code == 2
    assert "--min-pixels and --max-pixels are Qwen-VL settings" in err


def test_text_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    Image.new("RGB", (300, 200)).save(tmp_path / "a.png")
    code, out, _ = run(["count", "--model", "Qwen/Qwen2.5-VL-7B-Instruct", str(tmp_path)],
                       capsys)
    assert code == 0
    assert out.splitlines()[-1] == "total images: 1, 77 image tokens, 79 block tokens"

