"""The Qwen-VL arithmetic equals transformers' real Qwen image, video and text processors.

Built offline from the published settings (tests/qwen_helpers.py): the image processor's
``image_grid_thw``, the video processor's ``video_grid_thw`` and what the processor writes
into the text (``<|image_pad|>`` and ``<|video_pad|>`` counts, and on Qwen3-VL the
timestamp text, read back through a one-character-a-token stand-in tokenizer) are compared
with :mod:`pytest_tokenguard.families.qwen` on hypothesis-generated sizes, per-call
settings and video metadata. What the processor refuses is refused, with its reason.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pytest_tokenguard.families.qwen import (
    IMAGE_PAD,
    KNOWN_QWEN_SPECS,
    VIDEO_PAD,
    VISION_END,
    VISION_START,
    QwenRefusal,
    QwenSettings,
    count_qwen_image,
    count_qwen_video,
    qwen3_keeps_outer_wrapper,
    qwen_settings_from_kwargs,
    qwen_spec_from_configs,
)
from pytest_tokenguard.testing.profiles import processor_examples
from pytest_tokenguard.video import video_info
from tests.qwen_helpers import (
    GENERATIONS,
    PUBLISHED,
    expand,
    image_processor,
    model_spec,
    processor,
    video_processor,
)

MODELS = list(GENERATIONS.values())
IMAGE_BLOCK = VISION_START + IMAGE_PAD + VISION_END
VIDEO_BLOCK = VISION_START + VIDEO_PAD + VISION_END

SIDES = st.integers(1, 2400) | st.sampled_from([1, 2, 27, 28, 29, 31, 32, 33, 56, 4032])
#: a call's own settings, as users pass them (keywords or images_kwargs)
CALL_SETTINGS = st.sampled_from([
    {}, {"max_pixels": 50176}, {"max_pixels": 1003520}, {"min_pixels": 200704},
    {"min_pixels": 3136, "max_pixels": 3136 * 4},
    {"size": {"shortest_edge": 3136, "longest_edge": 401408}},
    {"size": {"shortest_edge": 65536, "longest_edge": 65536}},
    {"size": {"longest_edge": 401408}},  # refused: the processor needs both bounds
    {"size": {"longest_edge": 401408}, "min_pixels": 4096},  # completed by min_pixels
    {"images_kwargs": {"max_pixels": 230400}},
])


@pytest.mark.parametrize("model", list(PUBLISHED))
def test_known_specs_are_the_published_settings(model: str) -> None:
    """The built-in table equals the published files read as from_pretrained reads them,
    and the processors built from those files agree with it."""
    image, video = PUBLISHED[model]
    spec = model_spec(model)
    read = qwen_spec_from_configs(model, spec.generation, image, video, where="published")
    assert (read.image, read.video, read.sampling) == (spec.image, spec.video, spec.sampling)
    ip, vp = image_processor(model), video_processor(model)
    assert (ip.size.shortest_edge, ip.size.longest_edge, ip.patch_size, ip.merge_size) == (
        spec.image.min_pixels, spec.image.max_pixels, spec.image.patch_size,
        spec.image.merge_size)
    assert (vp.size.shortest_edge, vp.size.longest_edge, vp.patch_size,
            vp.temporal_patch_size) == (spec.video.min_pixels, spec.video.max_pixels,
                                        spec.video.patch_size, spec.video.temporal_patch_size)
    assert (bool(vp.do_sample_frames), vp.fps, vp.min_frames, vp.max_frames) == (
        spec.sampling.do_sample_frames, spec.sampling.fps, spec.sampling.min_frames,
        spec.sampling.max_frames)


def _run(fn: Any) -> tuple[Any, str | None]:
    """``fn()``'s result, or None and the message of the exception it raised."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(), None
    except (ValueError, ZeroDivisionError, TypeError) as exc:
        return None, str(exc)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
@settings(max_examples=processor_examples(40), deadline=None)
@given(width=SIDES, height=SIDES, call=CALL_SETTINGS)
@example(width=4032, height=3024, call={})  # a phone photo at the defaults
@example(width=201, height=1, call={})  # aspect ratio over 200: refused
@example(width=1, height=1, call={})  # scaled up to min_pixels
@example(width=2400, height=12, call={})  # aspect 200 exactly: accepted
def test_image_tokens_equal_the_processor(model: str, width: int, height: int,
                                          call: dict[str, Any]) -> None:
    from PIL import Image

    spec = model_spec(model)
    image = Image.new("RGB", (width, height), (90, 120, 30))
    ours: Any
    try:
        ours, refusal = count_qwen_image(width, height, spec, qwen_settings_from_kwargs(call)), None
    except QwenRefusal as exc:
        ours, refusal = None, str(exc)
    result, error = _run(lambda: expand(processor(model), "x" + IMAGE_BLOCK + "y",
                                        images=[image], **call))
    if error is not None:
        assert refusal is not None, f"the processor refused: {error}"
        assert error.split(" but got")[0].split(", got")[0] in refusal or (
            "shortest_edge" in error and "shortest_edge" in refusal)
        return
    assert refusal is None, f"refused what the processor takes: {refusal}"
    ids, text, out = result
    assert [int(v) for v in out["image_grid_thw"][0]] == [1, ours.grid_h, ours.grid_w]
    assert text == "x" + VISION_START + IMAGE_PAD * ours.image_tokens + VISION_END + "y"
    assert len(ids) - 2 == ours.block_tokens


VIDEO_RATES = st.sampled_from([1.0, 2.0, 24.0, 25.0, 30000 / 1001, 30.0, 60.0]) | st.floats(0.3, 90)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
@settings(max_examples=processor_examples(40), deadline=None)
@given(
    total=st.integers(1, 240), video_fps=VIDEO_RATES, width=st.integers(8, 160),
    height=st.integers(8, 160), sample=st.none() | st.booleans(),
    num_frames=st.none() | st.integers(1, 40), fps=st.none() | st.sampled_from([0.5, 1, 2, 4.5]),
    size=st.none() | st.sampled_from([{"shortest_edge": 1024, "longest_edge": 8192},
                                      {"shortest_edge": 100000, "longest_edge": 400000}]),
    cap=st.booleans(),
)
@example(total=1800, video_fps=30.0, width=64, height=36, sample=True, num_frames=None,
         fps=None, size=None, cap=False)  # a minute at the defaults
@example(total=1, video_fps=30.0, width=40, height=40, sample=None, num_frames=None,
         fps=None, size=None, cap=False)  # one frame: padded, or refused on Qwen3-VL
def test_video_tokens_equal_the_processor(
    model: str, total: int, video_fps: float, width: int, height: int, sample: bool | None,
    num_frames: int | None, fps: float | None, size: dict[str, int] | None, cap: bool,
) -> None:
    import numpy as np

    spec = model_spec(model)
    kwargs: dict[str, Any] = {"cap_pixels_per_frame": cap}
    if sample is not None:
        kwargs["do_sample_frames"] = sample
    if num_frames is not None:
        kwargs["num_frames"] = num_frames
    if fps is not None:
        kwargs["fps"] = fps
    if size is not None:
        kwargs["size"] = size
    if spec.timestamps and sample is False:  # as transformers' loaders report a whole file
        metadata: dict[str, Any] = {"frames_indices": list(range(total))}
    else:
        metadata = {}
    metadata.update(total_num_frames=total, fps=video_fps, duration=total / video_fps)
    frames = np.zeros((total, height, width, 3), np.uint8)
    info = video_info(total, video_fps, width=width, height=height)
    from dataclasses import replace

    sized = replace(spec, sampling=replace(spec.sampling, cap_pixels_per_frame=cap))
    ours: Any
    try:
        ours, refusal = count_qwen_video(
            info, sized, num_frames=num_frames, fps=fps, do_sample_frames=sample,
            settings=QwenSettings(size), text=len), None
    except QwenRefusal as exc:
        ours, refusal = None, str(exc)
    result, error = _run(lambda: expand(processor(model), "x" + VIDEO_BLOCK + "y",
                                        videos=[frames], video_metadata=[metadata], **kwargs))
    if error is not None:
        assert refusal is not None, f"the processor refused: {error}"
        assert error[:20] in refusal or "division by zero" in refusal
        return
    assert refusal is None, f"refused what the processor takes: {refusal}"
    ids, text, out = result
    grid = [int(v) for v in out["video_grid_thw"][0]]
    patch = spec.video.patch_size
    assert grid == [ours.grid_t, ours.resized_height // patch, ours.resized_width // patch]
    assert text.count(VIDEO_PAD) == ours.video_tokens
    if spec.timestamps:
        per = ours.video_tokens // ours.grid_t
        block = "".join(t + VISION_START + VIDEO_PAD * per + VISION_END for t in ours.text)
        if ours.outer_wrapper:  # transformers 5.24 and older keep the template's pair
            block = VISION_START + block + VISION_END
        assert ours.outer_wrapper == qwen3_keeps_outer_wrapper()
        assert text == "x" + block + "y"
        assert len(ids) - 2 == ours.tokens  # one character a token: len counts the text
    else:
        assert text == "x" + VISION_START + VIDEO_PAD * ours.video_tokens + VISION_END + "y"
        assert len(ids) - 2 == ours.block_tokens == ours.tokens


def test_qwen3_video_text_needs_a_tokenizer() -> None:
    """Without a text counter the Qwen3-VL total is None (never guessed); the vision
    tokens are still exact."""
    spec = KNOWN_QWEN_SPECS["Qwen/Qwen3-VL-8B-Instruct"]
    cost = count_qwen_video(video_info(300, 30.0, width=640, height=360), spec)
    assert cost.tokens is None
    assert cost.video_tokens > 0
    assert len(cost.text) == cost.grid_t


@pytest.mark.parametrize("model", MODELS)
def test_transformers_helper_agrees_on_images(model: str) -> None:
    """The README's comparison: ``get_number_of_image_patches`` (what vLLM calls) agrees
    with tokenguard on Qwen images, refusals included (15,000 sizes there; 2,000 here)."""
    import random

    rng = random.Random(0)
    helper, spec = image_processor(model), model_spec(model)
    for _ in range(2000):
        w, h = rng.randint(1, 5000), rng.randint(1, 5000)
        mp = rng.choice([None, 50176, 1003520])
        try:
            ours: int | None = count_qwen_image(w, h, spec,
                                                QwenSettings(None, None, mp)).image_tokens
        except QwenRefusal:
            ours = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs: int | None = helper.get_number_of_image_patches(
                    h, w, {} if mp is None else {"max_pixels": mp}) // 4
        except ValueError:
            theirs = None
        assert ours == theirs, (w, h, mp)
