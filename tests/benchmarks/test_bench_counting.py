"""Benchmarks: the analytic counter against the real processor, side by side in one run.

Run them (they run once, untimed, in the normal suite):

    pytest tests/benchmarks --benchmark-enable --benchmark-json=benchmarks/raw/cpu.json
    python benchmarks/ratios.py benchmarks/raw/cpu.json --summary benchmarks/summary-cpu.json

Every benchmark also checks that the counter and the processor agree on the result.
"""

from __future__ import annotations

import io
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pytest_tokenguard.cli.count import run_count
from pytest_tokenguard.counting import ImageCounter, count_image
from pytest_tokenguard.specs import ModelSpec
from tests.helpers import (
    FIXTURES,
    RESOLUTIONS,
    loaded,
    model_ref,
    real_image_tokens,
    real_processor,
)

MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"
SIZE = (384, 384)


@pytest.fixture(scope="module")
def frame() -> Image.Image:
    with Image.open(FIXTURES / "frame_384x384.png") as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    """The spec the plugin counts with for this model (the embedded default's, offline)."""
    return loaded(MODEL).source.spec()


@pytest.mark.parametrize("longest_edge", RESOLUTIONS)
def test_processor(benchmark: Any, longest_edge: int, frame: Image.Image, spec: Any) -> None:
    benchmark.group = f"image tokens of a 384x384 frame, longest_edge={longest_edge}"
    processor = real_processor(MODEL, longest_edge)
    ids = benchmark(lambda: processor(text=["<image>"], images=[[frame]])["input_ids"][0])
    cost = count_image(*SIZE, longest_edge, spec)
    assert (ids.count(processor.image_token_id), len(ids)) == (cost.image_tokens,
                                                               cost.block_tokens)


@pytest.mark.parametrize("longest_edge", RESOLUTIONS)
def test_counter(benchmark: Any, longest_edge: int, spec: Any) -> None:
    benchmark.group = f"image tokens of a 384x384 frame, longest_edge={longest_edge}"
    cost = benchmark(count_image, *SIZE, longest_edge, spec)
    assert (cost.image_tokens, cost.block_tokens) == real_image_tokens(
        real_processor(MODEL, longest_edge), *SIZE)


@pytest.mark.parametrize("longest_edge", RESOLUTIONS)
def test_counter_per_call_settings(benchmark: Any, longest_edge: int, spec: Any) -> None:
    """count_image with per-call settings given: the same hot path."""
    benchmark.group = f"image tokens of a 384x384 frame, longest_edge={longest_edge}"
    cost = benchmark(count_image, *SIZE, longest_edge, spec, do_image_splitting=True,
                     tile_size=spec.tile_size)
    assert (cost.image_tokens, cost.block_tokens) == real_image_tokens(
        real_processor(MODEL, longest_edge), *SIZE)


@pytest.mark.parametrize("longest_edge", RESOLUTIONS)
def test_counter_memoised(benchmark: Any, longest_edge: int, spec: Any) -> None:
    benchmark.group = f"image tokens of a 384x384 frame, longest_edge={longest_edge}"
    counter = ImageCounter(spec, longest_edge)
    cost = benchmark(counter, *SIZE)
    assert (cost.image_tokens, cost.block_tokens) == real_image_tokens(
        real_processor(MODEL, longest_edge), *SIZE)


@pytest.fixture(scope="module")
def thousand_frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    data = (FIXTURES / "frame_384x384.png").read_bytes()
    for index in range(1000):
        (folder / f"frame_{index:04d}.png").write_bytes(data)
    return folder


@pytest.mark.parametrize("verify", [False, True], ids=["headers", "verify"])
def test_count_cli_1000_frames(benchmark: Any, thousand_frames: Path, verify: bool) -> None:
    """`tokenguard count` over a folder of 1,000 frames: header reads only, and
    `--verify`, which decodes every frame, side by side."""
    benchmark.group = "tokenguard count, folder of 1000 frames"
    args = Namespace(model=model_ref(MODEL), longest_edge=[384], json=True,
                     paths=[str(thousand_frames)], verify=verify, do_image_splitting=None,
                     tile_size=None)

    def count_folder() -> str:
        out = io.StringIO()
        assert run_count(args, out=out) == 0
        return out.getvalue()

    output = benchmark(count_folder)
    assert output.count("\n") == 1000
