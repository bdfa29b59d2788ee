"""The analytic counter: its arithmetic, its errors, and a few fixed checks against the
real processor (the hypothesis property over sizes, files and per-call settings is in
tests/oracle/test_counting.py)."""

from __future__ import annotations

import pytest

from pytest_tokenguard.counting import (
    CountingError,
    ImageCounter,
    ImageSettings,
    count_image,
    rescaled_size,
    settings_from_kwargs,
)
from pytest_tokenguard.specs import KNOWN_SPECS, spec_from_processor
from tests.helpers import MODEL_IDS, RESOLUTIONS, real_image_tokens, real_processor


@pytest.mark.parametrize("checkpoint", MODEL_IDS)
@pytest.mark.parametrize("longest_edge", RESOLUTIONS)
def test_from_pretrained_size_matches_call_size(checkpoint: str, longest_edge: int) -> None:
    """The users' call (size= at load time) and the per-call size= give the same counts."""
    loaded = real_processor(checkpoint, longest_edge)
    per_call = real_processor(checkpoint)
    for width, height in ((384, 384), (1920, 1080), (33, 4000)):
        assert real_image_tokens(loaded, width, height) == real_image_tokens(
            per_call, width, height, size={"longest_edge": longest_edge}
        )


def test_rows_cols_follow_the_grid() -> None:
    spec = KNOWN_SPECS["HuggingFaceTB/SmolVLM2-2.2B-Instruct"]
    cost = count_image(1920, 1080, 1536, spec)
    assert (cost.rows, cost.cols) == (3, 4)
    assert cost.patches == cost.rows * cost.cols + 1
    assert cost.image_tokens == cost.patches * spec.image_seq_len
    assert cost.resized_width % spec.tile_size == cost.resized_height % spec.tile_size == 0
    single = count_image(100, 100, 384, spec)
    assert (single.rows, single.cols, single.patches, single.grid) == (0, 0, 1, "1×1")


def test_small_images_are_upscaled() -> None:
    assert rescaled_size(10, 10, 1536) == (1536, 1536)
    assert rescaled_size(3, 1, 384) == (384, 128)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"width": 0, "height": 10, "longest_edge": 384}, "width must be at least 1"),
        ({"width": 10, "height": -3, "longest_edge": 384}, "height must be at least 1"),
        ({"width": 10, "height": 10, "longest_edge": 0}, 'size={"longest_edge": 384}'),
        ({"width": 10, "height": 10, "longest_edge": -5}, "longest_edge must be at least 1"),
        ({"width": 10.5, "height": 10, "longest_edge": 384}, "width must be an integer"),
        ({"width": True, "height": 10, "longest_edge": 384}, "width must be an integer"),
    ],
)
def test_bad_input_names_the_input_and_fix(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(CountingError) as info:
        count_image(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_large_grids_use_text_markers() -> None:
    """Past 6×6 tiles the <row_r_col_c> markers are plain text; the real tokenizer agrees."""
    checkpoint = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"
    processor = real_processor(checkpoint)
    spec = spec_from_processor(processor, name=checkpoint)
    cost = count_image(4000, 4000, 4096, spec)
    assert cost.rows > spec.special_marker_grid
    assert (cost.image_tokens, cost.block_tokens) == real_image_tokens(
        processor, 4000, 4000, size={"longest_edge": 4096}
    )


def test_per_call_settings_are_validated() -> None:
    spec = KNOWN_SPECS["HuggingFaceTB/SmolVLM2-2.2B-Instruct"]
    with pytest.raises(CountingError, match="tile_size must be at least 1"):
        count_image(10, 10, 384, spec, tile_size=0)
    with pytest.raises(CountingError, match="tile_size must be an integer"):
        count_image(10, 10, 384, spec, tile_size=384.0)  # type: ignore[arg-type]
    with pytest.raises(CountingError, match="do_image_splitting must be True, False or None"):
        count_image(10, 10, 384, spec, do_image_splitting="no")  # type: ignore[arg-type]
    with pytest.raises(CountingError, match="tile_size must be at least 1"):
        ImageCounter(spec, 384, tile_size=-1)


def test_image_counter_folds_settings_into_its_spec() -> None:
    spec = KNOWN_SPECS["HuggingFaceTB/SmolVLM2-2.2B-Instruct"]
    counter = ImageCounter(spec, 1536, do_image_splitting=False, tile_size=512)
    assert (counter.spec.do_image_splitting, counter.spec.tile_size) == (False, 512)
    assert counter(1920, 1080) == count_image(1920, 1080, 1536, spec,
                                              do_image_splitting=False, tile_size=512)
    assert ImageCounter(spec).spec is spec


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ImageSettings()),
        ({"size": {"longest_edge": 768}}, ImageSettings(longest_edge=768)),
        ({"max_image_size": {"longest_edge": 512}, "do_image_splitting": False},
         ImageSettings(do_image_splitting=False, tile_size=512)),
        ({"do_image_splitting": True, "images_kwargs": {"do_image_splitting": False}},
         ImageSettings(do_image_splitting=False)),
        ({"resample": 0, "return_tensors": "pt"}, ImageSettings()),
    ],
)
def test_settings_from_processor_kwargs(kwargs: dict[str, object],
                                        expected: ImageSettings) -> None:
    assert settings_from_kwargs(kwargs) == expected


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"size": {"height": 512, "width": 512}}, "size={'height': 512"),
        ({"size": 1536}, "size=1536 cannot be counted"),
        ({"do_resize": False}, "do_resize=False cannot be counted"),
        ({"max_image_size": {"longest_edge": 0}}, "max_image_size['longest_edge'] must be"),
        ({"do_image_splitting": 1}, "do_image_splitting must be True or False"),
    ],
)
def test_settings_that_cannot_be_counted_are_refused(kwargs: dict[str, object],
                                                      fragment: str) -> None:
    with pytest.raises(CountingError) as info:
        settings_from_kwargs(kwargs)
    assert fragment in str(info.value)
