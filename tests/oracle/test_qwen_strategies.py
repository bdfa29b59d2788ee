"""The Qwen-VL strategies against the real transformers processors: on what they draw (the
edges of ``smart_resize``, per-call settings, the video sampling edges), the Qwen
arithmetic equals the ``<|image_pad|>`` / ``<|video_pad|>`` count the processor writes, and
both sides of each edge, found in the strategy, are counted right by both (so the edge is
real: the processor's resize goes the other way across it)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, find, given, settings

from pytest_tokenguard.families.qwen import (
    IMAGE_PAD,
    VIDEO_PAD,
    VISION_END,
    VISION_START,
    QwenRefusal,
    count_qwen_image,
    qwen_settings_from_kwargs,
)
from pytest_tokenguard.testing import qwen_strategies as qst
from pytest_tokenguard.testing.profiles import processor_examples
from tests.qwen_helpers import GENERATIONS, expand, model_spec, processor
from tests.unit.test_qwen_strategies import branch, near

MODELS = list(GENERATIONS.values())
#: per-call budgets up to 2048² pixels: test images stay under ~12 MB
LARGEST = 2048 * 2048


def processor_image(model: str, width: int, height: int, call: dict[str, Any]
                    ) -> tuple[int | None, str | None]:
    """(``<|image_pad|>`` tokens the processor writes, None) or (None, its refusal)."""
    from PIL import Image

    image = Image.new("RGB", (width, height), (90, 120, 30))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, text, out = expand(processor(model), "x" + VISION_START + IMAGE_PAD + VISION_END,
                                  images=[image], **call)
    except ValueError as exc:
        return None, str(exc)
    assert int(out["image_grid_thw"][0][0]) == 1
    return text.count(IMAGE_PAD), None


def ours_image(model: str, width: int, height: int, call: dict[str, Any]
               ) -> tuple[int | None, str | None]:
    try:
        return count_qwen_image(width, height, model_spec(model),
                                qwen_settings_from_kwargs(call)).image_tokens, None
    except QwenRefusal as exc:
        return None, str(exc)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
@settings(max_examples=processor_examples(40), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=qst.qwen_image_cases(model_spec(MODELS[0]), largest=LARGEST)
       | qst.qwen_image_cases(model_spec(MODELS[2]), largest=LARGEST,
                              calls=qst.qwen_call_settings(model_spec(MODELS[2]),
                                                           largest=LARGEST, refused=True)))
def test_image_cases_cost_what_the_processor_writes(model: str, data: qst.QwenImageCase
                                                   ) -> None:
    """The strategy's sizes and settings (drawn for patch 14 and for Qwen3-VL's 16, each
    run on every generation) cost what the processor writes; refusals agree."""
    ours, refusal = ours_image(model, data.width, data.height, data.call)
    theirs, error = processor_image(model, data.width, data.height, data.call)
    if error is not None:
        assert refusal is not None, f"the processor refused {data}: {error}"
        return
    assert refusal is None, f"refused what the processor takes ({data}): {refusal}"
    assert ours == theirs, data


@pytest.mark.tokenguard_no_baseline("its examples are found by hypothesis, which may "
                                      "draw others in another session")
@pytest.mark.parametrize("model", MODELS)
def test_both_sides_of_each_edge_cost_what_the_processor_writes(model: str) -> None:
    """One example each side of each edge, found in the strategy, run through the real
    processor: the resize goes the other way across the edge, and the counts agree."""
    spec = model_spec(model)
    vision = spec.image
    f = vision.factor
    low, high = 3136 * 4, 200704
    call = {"min_pixels": low, "max_pixels": high}
    sizes = qst.qwen_image_sizes(spec, min_pixels=low, max_pixels=high)
    search = settings(database=None, max_examples=3000, derandomize=True,
                      suppress_health_check=list(HealthCheck))
    picks = {
        "over max_pixels": lambda s: branch(s, vision, low, high) == "down"
        and near(s, f, high),
        "at or under max_pixels": lambda s: branch(s, vision, low, high) == "kept"
        and near(s, f, high),
        "under min_pixels": lambda s: branch(s, vision, low, high) == "up"
        and near(s, f, low),
        "at or over min_pixels": lambda s: branch(s, vision, low, high) == "kept"
        and near(s, f, low),
        "half-point rounding down": lambda s: s[0] % f == f // 2 and (s[0] // f) % 2 == 0
        and s[0] > f and branch(s, vision, low, high) == "kept",
        "half-point rounding up": lambda s: s[0] % f == f // 2 and (s[0] // f) % 2 == 1
        and branch(s, vision, low, high) == "kept",
        "aspect 200": lambda s: max(s) == 200 * min(s),
        "aspect over 200": lambda s: 200 * min(s) < max(s) <= 200 * min(s) + 1,
        "side under the factor": lambda s: min(s) < f // 2,
    }
    for what, condition in picks.items():
        width, height = find(sizes, condition, settings=search)
        ours, refusal = ours_image(model, width, height, call)
        theirs, error = processor_image(model, width, height, call)
        assert (ours, refusal is None) == (theirs, error is None), (what, width, height,
                                                                     refusal, error)
        if what == "aspect over 200":
            assert error is not None
            assert "aspect ratio" in error


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
@settings(max_examples=processor_examples(30), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=qst.qwen_video_cases(model_spec(MODELS[1]), max_total_frames=120, max_side=96)
       | qst.qwen_video_cases(model_spec(MODELS[2]), max_total_frames=120, max_side=96))
def test_video_cases_cost_what_the_processor_writes(model: str, data: qst.QwenVideoCase
                                                   ) -> None:
    """The strategy's clips and sampling (drawn for Qwen2.5-VL and Qwen3-VL, each run on
    every generation): the sampled frames, ``<|video_pad|>`` tokens and (Qwen3-VL)
    everything written equal the processor's; refusals agree."""
    import numpy as np

    spec = model_spec(model)
    try:
        ours, refusal = data.cost(spec, text=len), None
    except QwenRefusal as exc:
        ours, refusal = None, str(exc)
    frames = np.zeros((data.total_frames, data.height, data.width, 3), np.uint8)
    metadata = data.metadata()
    if spec.timestamps and data.call.get("do_sample_frames") is False:
        metadata["frames_indices"] = list(range(data.total_frames))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ids, text, out = expand(processor(model), "x" + VISION_START + VIDEO_PAD + VISION_END,
                                    videos=[frames], video_metadata=[metadata], **data.call)
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        error: str | None = str(exc)
    else:
        error = None
    if error is not None:
        assert refusal is not None, f"the processor refused {data}: {error}"
        return
    assert ours is not None, f"refused what the processor takes ({data}): {refusal}"
    assert int(out["video_grid_thw"][0][0]) == ours.grid_t
    assert text.count(VIDEO_PAD) == ours.video_tokens
    assert len(ids) - 1 == ours.tokens  # "x" + everything written for the video
