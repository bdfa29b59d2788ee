"""What a Qwen2-VL / Qwen2.5-VL / Qwen3-VL processor call wrote for its images and videos,
read off its own output at the settings the call used.

The counts are the processor's: an image's ``<|image_pad|>`` tokens are counted in the
text it wrote for it, its patch grid is ``image_grid_thw``. The call's pixel bounds are
read as the image processor reads them (its ``size``, then the call's ``size`` /
``min_pixels`` / ``max_pixels``, through
:func:`~pytest_tokenguard.families.qwen.qwen_settings_from_kwargs`), so that a marker can
name the ``max_pixels`` that fits. A setting that arithmetic cannot follow (``do_resize``
off) leaves the call unrecorded, named, never guessed.

transformers is imported only inside functions, on a call the recorder reads.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ...errors import CountingError
from ...families.qwen import (
    GENERATION_OF,
    VIDEO_PAD,
    VISION_END,
    VISION_START,
    QwenRefusal,
    QwenSampling,
    QwenSettings,
    QwenSpec,
    QwenVision,
    call_bounds,
    count_qwen_video,
    qwen3_keeps_outer_wrapper,
    qwen_settings_from_kwargs,
)
from ...video import video_info
from .reading import flat, float_or_none, image_size, int_or_none, setting
from .records import ImageRecord, VideoRecord

__all__ = ["REFUSED", "costs_by_fps", "costs_by_num_frames", "read_images", "read_videos",
           "spec_of", "text_call_edge", "vision_of"]

#: the entry of ``by_num_frames`` for a ``num_frames`` the processor refuses (never fits)
REFUSED = 2**62

def _size_bound(size: Any, key: str) -> Any:
    if isinstance(size, Mapping):
        return size.get(key)
    return getattr(size, key, None)


def vision_of(sub_processor: Any) -> QwenVision:
    """The resize settings of a Qwen image or video processor object, from its attributes."""
    size = getattr(sub_processor, "size", None)
    return QwenVision(
        min_pixels=int(_size_bound(size, "shortest_edge") or 0) or 1,
        max_pixels=int(_size_bound(size, "longest_edge") or 0) or 1,
        patch_size=int(getattr(sub_processor, "patch_size", 14)),
        merge_size=int(getattr(sub_processor, "merge_size", 2)),
        temporal_patch_size=int(getattr(sub_processor, "temporal_patch_size", 2)),
    )


def spec_of(processor: Any) -> QwenSpec | None:
    """The :class:`QwenSpec` of a processor object, from its image and video processors'
    attributes; None for a class whose generation is not known."""
    generation = next((GENERATION_OF[c.__name__] for c in type(processor).__mro__
                       if c.__name__ in GENERATION_OF), None)
    if generation is None:
        return None
    video = processor.video_processor
    base = QwenSampling()

    def attribute(name: str, default: Any) -> Any:
        value = getattr(video, name, None)
        return default if value is None else value

    sampling = QwenSampling(
        do_sample_frames=bool(attribute("do_sample_frames", False)),
        fps=getattr(video, "fps", None), num_frames=getattr(video, "num_frames", None),
        min_frames=int(attribute("min_frames", base.min_frames)),
        max_frames=int(attribute("max_frames", base.max_frames)),
        cap_pixels_per_frame=bool(attribute("cap_pixels_per_frame", False)),
        max_video_tokens=int(attribute("max_video_tokens", base.max_video_tokens)),
    )
    return QwenSpec(type(processor).__name__, generation, vision_of(processor.image_processor),
                    vision_of(video), sampling, source="processor")


def costs_by_num_frames(spec: QwenSpec, info: Any, settings: QwenSettings,
                        count: Callable[[str], int]) -> tuple[int, ...]:
    """``[n - 1]``: everything a call with ``num_frames=n`` (``do_sample_frames=True``;
    ``fps=None`` where the processor has its own) writes for the video, counted by the
    arithmetic; :data:`REFUSED` where the processor refuses ``n``. Up to the video's
    frame count and the processor's ``max_frames``."""
    unsampled = replace(spec, sampling=replace(spec.sampling, fps=None, num_frames=None))
    out = []
    for n in range(1, min(info.total_frames, spec.sampling.max_frames) + 1):
        try:
            cost = count_qwen_video(info, unsampled, num_frames=n, do_sample_frames=True,
                                    settings=settings, text=count)
        except CountingError:
            out.append(REFUSED)
            continue
        out.append(REFUSED if cost.tokens is None else cost.tokens)
    return tuple(out)


def costs_by_fps(spec: QwenSpec, info: Any, settings: QwenSettings,
                 count: Callable[[str], int]) -> tuple[tuple[float, int], ...]:
    """``(fps, tokens)``: everything a call with ``fps=F`` (``do_sample_frames=True``, no
    ``num_frames``) writes for the video, counted by the arithmetic, for the rates that
    give it each frame count up to its length and ``max_frames``: ``n / duration`` rounded
    down to 3 decimals (a rate a person would write), as SmolVLM2's recorder lists them.
    Rates the processor refuses (it would sample no frame) are left out. Ascending."""
    duration = info.total_frames / info.fps
    unsampled = replace(spec, sampling=replace(spec.sampling, fps=None, num_frames=None))
    out: dict[float, int] = {}
    for n in range(1, min(info.total_frames, spec.sampling.max_frames) + 1):
        rate = math.floor(n / duration * 1000) / 1000
        if rate <= 0 or rate in out:
            continue
        try:
            cost = count_qwen_video(info, unsampled, fps=rate, do_sample_frames=True,
                                    settings=settings, text=count)
        except CountingError:
            continue
        if cost.tokens is not None:
            out[rate] = cost.tokens
    return tuple(sorted(out.items()))


def _meta(meta: Any, key: str) -> Any:
    """A ``VideoMetadata`` field, or a metadata dict's key (None when absent)."""
    return meta.get(key) if isinstance(meta, Mapping) else getattr(meta, key, None)


def _frame_size(meta: Any, source: Any) -> tuple[int | None, int | None]:
    """(width, height) of a video's frames: its metadata, else its first decoded frame."""
    width, height = _meta(meta, "width"), _meta(meta, "height")
    if width and height:
        return int(width), int(height)
    if source is None or isinstance(source, str | os.PathLike):
        return None, None
    try:
        return image_size(source[0])
    except (TypeError, IndexError, ValueError):
        return None, None


def _grids(processed: Any, key: str) -> list[list[int]]:
    grid = processed.get(key) if hasattr(processed, "get") else None
    values = flat(grid)
    return [values[i:i + 3] for i in range(0, len(values) - 2, 3)]


def read_images(processor: Any, images: Any, kwargs: dict[str, Any], processed: Any,
                replacements: list[str]) -> tuple[int | None, list[ImageRecord]]:
    """The images of one call: no ``longest_edge`` (``None``), each with the call's pixel
    bounds and the processor's own patch grid and ``<|image_pad|>`` tokens."""
    from transformers.image_utils import make_flat_list_of_images

    image_processor = processor.image_processor
    if not setting(kwargs, "do_resize", getattr(image_processor, "do_resize", True)):
        raise QwenRefusal("do_resize=False: the image is patched at its own size, which "
                          "tokenguard does not count; leave do_resize on")
    vision = vision_of(image_processor)
    low, high = call_bounds(vision, qwen_settings_from_kwargs(kwargs))
    image_token = getattr(processor, "image_token", "<|image_pad|>")
    grids = _grids(processed, "image_grid_thw")
    name = type(processor).__name__
    records = []
    for index, (image, text) in enumerate(
            zip(make_flat_list_of_images(images), replacements, strict=False)):
        width, height = image_size(image)
        _, grid_h, grid_w = grids[index] if index < len(grids) else (0, 0, 0)
        tokens = text.count(image_token)
        records.append(ImageRecord(
            width=width, height=height, longest_edge=None, tile_size=0, rows=grid_h,
            cols=grid_w, image_tokens=tokens, block_tokens=tokens + 2, processor=name,
            do_image_splitting=False, family="qwen-vl", min_pixels=low, max_pixels=high,
            patch_size=vision.patch_size, merge_size=vision.merge_size,
        ))
    return None, records


def read_videos(processor: Any, videos: Any, kwargs: dict[str, Any], processed: Any,
                replacements: list[str]) -> list[VideoRecord]:
    """The videos of one call, read off the processor's own replacement text: the sampled
    frames, the ``<|video_pad|>`` tokens, the wrappers and (Qwen3-VL) timestamp text,
    tokenized with the call's own tokenizer."""
    from transformers.video_utils import make_batched_videos

    video_processor = processor.video_processor
    sampled = bool(setting(kwargs, "do_sample_frames",
                           getattr(video_processor, "do_sample_frames", False)))
    num_frames = kwargs.get("num_frames")
    sample_fps = kwargs.get("fps")
    inputs = make_batched_videos(videos)
    metadata = list(processed.get("video_metadata") or []) if hasattr(processed, "get") \
        else []
    if not metadata and isinstance(kwargs.get("video_metadata"), list | tuple):
        metadata = list(kwargs["video_metadata"])  # what the call gave (Qwen2-VL keeps none)
    grids = _grids(processed, "video_grid_thw")
    temporal = int(getattr(video_processor, "temporal_patch_size", 2))
    video_token = getattr(processor, "video_token", VIDEO_PAD)
    start = getattr(processor, "vision_start_token", VISION_START)
    end = getattr(processor, "vision_end_token", VISION_END)
    tokenizer = processor.tokenizer
    spec = spec_of(processor)
    if spec is not None:  # the call's own sampling bounds
        overrides = {name: kwargs[name] for name in ("min_frames", "max_frames",
                                                      "cap_pixels_per_frame", "max_video_tokens")
                     if kwargs.get(name) is not None}
        spec = replace(spec, sampling=replace(spec.sampling, **overrides))
    settings = QwenSettings(kwargs.get("size"), kwargs.get("min_pixels"),
                            kwargs.get("max_pixels"))
    counted: dict[str, int] = {}

    def count(piece: str) -> int:  # timestamp strings repeat: tokenize each once
        if piece not in counted:
            counted[piece] = len(tokenizer(piece, add_special_tokens=False)["input_ids"])
        return counted[piece]

    records = []
    for index, text in enumerate(replacements):
        pads = text.count(video_token)
        grid_t = grids[index][0] if index < len(grids) else 0
        meta = metadata[index] if index < len(metadata) else None
        indices = _meta(meta, "frames_indices")
        frames = len(list(indices)) if indices is not None else grid_t * temporal
        tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        # Qwen3-VL wraps every temporal patch itself (the template's wrapper collapses);
        # Qwen2/2.5-VL write the pads only, inside the template's one pair of wrappers
        # (transformers 5.24 and older keep the template's pair around those too)
        wrappers = text.count(start) + text.count(end)
        if not wrappers or qwen3_keeps_outer_wrapper():
            wrappers, tokens = wrappers + 2, tokens + 2
        source = inputs[index] if index < len(inputs) else None
        total = int_or_none(_meta(meta, "total_num_frames"))
        rate = float_or_none(_meta(meta, "fps"))
        width, height = _frame_size(meta, source)
        by_num: tuple[int, ...] = ()
        by_fps: tuple[tuple[float, int], ...] = ()
        if spec is not None and total and rate and width and height:
            info = video_info(total, rate, width=width, height=height)
            by_num = costs_by_num_frames(spec, info, settings, count)
            by_fps = costs_by_fps(spec, info, settings, count)
        records.append(VideoRecord(
            name=os.fspath(source) if isinstance(source, str | os.PathLike) else "",
            frames=frames, image_tokens=pads, block_tokens=pads + wrappers, tokens=tokens,
            total_frames=total, fps=rate,
            duration=float_or_none(_meta(meta, "duration")), sampled=sampled,
            num_frames=int_or_none(num_frames), sample_fps=float_or_none(sample_fps),
            max_frames=int(getattr(video_processor, "max_frames", 0) or 0),
            processor=type(processor).__name__, by_num_frames=by_num, by_fps=by_fps,
            family="qwen-vl",
        ))
    return records


def text_call_edge(processor: Any, kwargs: dict[str, Any]) -> int | None:
    """A Qwen call has no ``longest_edge``: its sequences are grouped under ``None``."""
    return None
