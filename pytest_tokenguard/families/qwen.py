"""Exact vision-token arithmetic of Qwen2-VL, Qwen2.5-VL and Qwen3-VL, with no pixel decoded.

Read from transformers 5.25 (``models/qwen2_vl/image_processing_qwen2_vl.py``,
``video_processing_qwen2_vl.py``, ``models/qwen3_vl/video_processing_qwen3_vl.py`` and the
three ``processing_*.py``) and repeated here operation for operation, float steps included:

* **an image** is resized by ``smart_resize``: both sides rounded to a multiple of
  ``factor = patch_size * merge_size`` (28; 32 on Qwen3-VL), then scaled down (floor) when
  the area passes ``size["longest_edge"]`` (``max_pixels``) or up (ceil) when it is under
  ``size["shortest_edge"]`` (``min_pixels``). It becomes ``(h/patch)×(w/patch)`` patches, and
  the processor writes one ``<|image_pad|>`` per ``merge_size²`` of them:
  ``(h/factor)·(w/factor)`` tokens, inside the chat template's ``<|vision_start|>`` and
  ``<|vision_end|>``. An aspect ratio over 200 is refused by the processor (``ValueError``);
  so it is here, with the processor's own words, never priced.
* **a video** is sampled (``Qwen2VLVideoProcessor.sample_frames``: ``fps`` or ``num_frames``
  rounded to the temporal patch, clamped to ``min_frames``/``max_frames``; Qwen3-VL's
  ``np.linspace`` over the clip at ``fps=2``), every frame resized by the same rule (Qwen3-VL
  by its three-dimensional ``smart_resize``), padded with copies of the last frame to a
  multiple of ``temporal_patch_size`` (2), and written as
  ``grid_t·(h/factor)·(w/factor)`` ``<|video_pad|>`` tokens. Qwen3-VL writes, per temporal
  patch, ``<{t:.1f} seconds>`` then ``<|vision_start|>`` + pads + ``<|vision_end|>`` (the
  template's outer wrapper collapses), where ``t`` is the mean time of the patch's first
  and last frame: that text needs the checkpoint's tokenizer to count.

Per-call settings are read as the processors read them (:func:`qwen_settings_from_kwargs`):
``size={"shortest_edge", "longest_edge"}`` replaces the processor's own, ``min_pixels`` /
``max_pixels`` then override one bound (deprecated in transformers but still honoured).

Only the standard library is imported here; the suite proves every count equal to the real
image, video and text processors (tests/oracle/test_qwen.py).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from ..errors import CountingError, SpecError
from ..video import VideoInfo, transformers_before

__all__ = [
    "FAMILY",
    "GENERATION_OF",
    "IMAGE_PAD",
    "KNOWN_QWEN_SPECS",
    "NO_SETTINGS",
    "QWEN3_WRAPPER_COLLAPSES_SINCE",
    "VIDEO_PAD",
    "VISION_END",
    "VISION_START",
    "MaxPixelsFit",
    "QwenFamily",
    "QwenGeneration",
    "QwenImageCost",
    "QwenRefusal",
    "QwenSampling",
    "QwenSettings",
    "QwenSpec",
    "QwenVideoCost",
    "QwenVision",
    "call_bounds",
    "count_qwen_image",
    "count_qwen_video",
    "describe_qwen_image",
    "largest_max_pixels",
    "qwen3_keeps_outer_wrapper",
    "qwen_frame_fix",
    "qwen_image_fix",
    "qwen_settings_from_kwargs",
    "qwen_spec_from_configs",
    "qwen_spec_from_folder",
    "qwen_video_fix",
    "sample_qwen_frames",
    "smart_resize",
    "smart_resize_video",
]

IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"

QwenGeneration = Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]


class QwenRefusal(CountingError):
    """An input the Qwen processor itself refuses (it raises); the message is its reason."""


def _positive_int(name: str, value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{where}: {name} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class QwenVision:
    """The resize settings of one Qwen image or video processor: ``min_pixels`` is
    ``size["shortest_edge"]`` and ``max_pixels`` is ``size["longest_edge"]`` (areas in
    pixels, despite the names)."""

    min_pixels: int
    max_pixels: int
    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2

    def __post_init__(self) -> None:
        for name in ("min_pixels", "max_pixels", "patch_size", "merge_size",
                     "temporal_patch_size"):
            _positive_int(name, getattr(self, name), "Qwen processor settings")

    @property
    def factor(self) -> int:
        """What both resized sides are multiples of: ``patch_size * merge_size``."""
        return self.patch_size * self.merge_size


@dataclass(frozen=True)
class QwenSampling:
    """How the video processor samples frames (its attributes, as a checkpoint's
    ``video_preprocessor_config.json`` or the class sets them)."""

    do_sample_frames: bool = False
    fps: float | None = None
    num_frames: int | None = None
    min_frames: int = 4
    max_frames: int = 768
    cap_pixels_per_frame: bool = False
    max_video_tokens: int = 128000


@dataclass(frozen=True)
class QwenSpec:
    """Everything that decides what a Qwen-VL checkpoint's images and videos cost."""

    name: str
    generation: QwenGeneration
    image: QwenVision
    video: QwenVision
    sampling: QwenSampling
    source: str = "known"

    @property
    def timestamps(self) -> bool:
        """Whether the processor writes ``<t seconds>`` text before each temporal patch."""
        return self.generation == "qwen3_vl"


class QwenSettings(NamedTuple):
    """A processor call's own image settings (``None``: the processor's)."""

    size: Mapping[str, Any] | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None


#: a call that passes no image settings of its own
NO_SETTINGS = QwenSettings()

# ------------------------------------------------------------------------------ the table

_CLIP = QwenVision(min_pixels=3136, max_pixels=12845056)
_QWEN2_SAMPLING = QwenSampling()  # the class defaults: no sampling unless asked
_QWEN3_IMAGE = QwenVision(min_pixels=65536, max_pixels=16777216, patch_size=16)
_QWEN3_VIDEO = QwenVision(min_pixels=4096, max_pixels=25165824, patch_size=16)
_QWEN3_SAMPLING = QwenSampling(do_sample_frames=True, fps=2, min_frames=4, max_frames=768,
                               max_video_tokens=768)


def _qwen2(name: str, generation: QwenGeneration) -> QwenSpec:
    # no video_preprocessor_config.json is published: transformers builds the video
    # processor from preprocessor_config.json, so videos get the images' min/max_pixels
    return QwenSpec(name, generation, _CLIP, _CLIP, _QWEN2_SAMPLING)


def _qwen3(name: str) -> QwenSpec:
    return QwenSpec(name, "qwen3_vl", _QWEN3_IMAGE, _QWEN3_VIDEO, _QWEN3_SAMPLING)


#: The published processor settings of the Qwen-VL checkpoints tokenguard knows offline.
#: Provenance: each checkpoint's ``preprocessor_config.json`` (Qwen2-VL, Qwen2.5-VL:
#: ``min_pixels`` 3136, ``max_pixels`` 12845056, patch 14, temporal patch 2, merge 2; no
#: ``video_preprocessor_config.json``) and, for Qwen3-VL, ``preprocessor_config.json``
#: (``size`` shortest 65536, longest 16777216, patch 16) and
#: ``video_preprocessor_config.json`` (``size`` shortest 4096, longest 25165824, patch 16;
#: ``fps`` 2, ``min_frames`` 4, ``max_frames`` 768, ``do_sample_frames`` true, the class
#: defaults, written out in the dumps saved by transformers). Read from copies of those
#: files quoted in public repositories (README, "Models"); the oracle suite builds the real
#: transformers classes from these values.
KNOWN_QWEN_SPECS: dict[str, QwenSpec] = {
    spec.name: spec for spec in (
        _qwen2("Qwen/Qwen2-VL-2B-Instruct", "qwen2_vl"),
        _qwen2("Qwen/Qwen2-VL-7B-Instruct", "qwen2_vl"),
        _qwen2("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl"),
        _qwen2("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl"),
        _qwen2("Qwen/Qwen2.5-VL-32B-Instruct", "qwen2_5_vl"),
        _qwen2("Qwen/Qwen2.5-VL-72B-Instruct", "qwen2_5_vl"),
        _qwen3("Qwen/Qwen3-VL-2B-Instruct"),
        _qwen3("Qwen/Qwen3-VL-4B-Instruct"),
        _qwen3("Qwen/Qwen3-VL-8B-Instruct"),
        _qwen3("Qwen/Qwen3-VL-32B-Instruct"),
    )
}


# ------------------------------------------------------------------- reading config files

#: ``processor_class`` / ``model_type`` values and the generation they mean.
GENERATION_OF: dict[str, QwenGeneration] = {
    "Qwen2VLProcessor": "qwen2_vl", "qwen2_vl": "qwen2_vl",
    "Qwen2_5_VLProcessor": "qwen2_5_vl", "qwen2_5_vl": "qwen2_5_vl",
    "Qwen3VLProcessor": "qwen3_vl", "qwen3_vl": "qwen3_vl",
}

_CLASS_IMAGE = {"qwen2_vl": QwenVision(3136, 28 * 28 * 1280),
                "qwen2_5_vl": QwenVision(3136, 28 * 28 * 1280),
                "qwen3_vl": QwenVision(3136, 28 * 28 * 1280, patch_size=16)}
_CLASS_VIDEO = {"qwen2_vl": QwenVision(128 * 28 * 28, 28 * 28 * 768),
                "qwen2_5_vl": QwenVision(128 * 28 * 28, 28 * 28 * 768),
                "qwen3_vl": QwenVision(128 * 32 * 32, 32 * 32 * 768, patch_size=16)}


def _vision_from_config(config: Mapping[str, Any], default: QwenVision, where: str,
                        *, pixels_keys: bool) -> QwenVision:
    """A processor's settings as its ``__init__`` reads them: ``size`` (else the class's),
    then top-level ``min_pixels``/``max_pixels`` overriding its bounds (the Qwen2-VL image
    and video processors do that; Qwen3-VL's video processor does not)."""
    size = config.get("size")
    bounds: dict[str, Any] = (
        {"shortest_edge": default.min_pixels, "longest_edge": default.max_pixels}
        if size is None else dict(size) if isinstance(size, Mapping) else {"size": size})
    if pixels_keys:
        if config.get("min_pixels") is not None:
            bounds["shortest_edge"] = config["min_pixels"]
        if config.get("max_pixels") is not None:
            bounds["longest_edge"] = config["max_pixels"]
    if not bounds.get("shortest_edge") or not bounds.get("longest_edge"):
        raise SpecError(f"{where}: size {size!r} has no 'shortest_edge' and 'longest_edge' (the "
                        "Qwen processor raises ValueError on every image); write "
                        'size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}')
    if config.get("do_resize", True) is False:
        raise SpecError(f"{where}: do_resize is false, which tokenguard cannot count (images "
                        "are then patched at their own size); set it to true")
    values = {
        "min_pixels": bounds["shortest_edge"], "max_pixels": bounds["longest_edge"],
        "patch_size": config.get("patch_size", default.patch_size),
        "merge_size": config.get("merge_size", default.merge_size),
        "temporal_patch_size": config.get("temporal_patch_size", default.temporal_patch_size),
    }
    for name, value in values.items():
        _positive_int(name, value, where)
    return QwenVision(**values)


def qwen_spec_from_configs(
    name: str, generation: QwenGeneration, image_config: Mapping[str, Any],
    video_config: Mapping[str, Any] | None, *, where: str = "checkpoint",
) -> QwenSpec:
    """A :class:`QwenSpec` from a checkpoint's ``preprocessor_config.json`` (and
    ``video_preprocessor_config.json`` where there is one; without it transformers builds
    the video processor from ``preprocessor_config.json``), as ``from_pretrained`` reads
    them: class defaults for absent keys."""
    image = _vision_from_config(image_config, _CLASS_IMAGE[generation], where,
                                pixels_keys=True)
    video_source = image_config if video_config is None else video_config
    qwen3 = generation == "qwen3_vl"
    video = _vision_from_config(video_source, _CLASS_VIDEO[generation], where,
                                pixels_keys=not qwen3)
    base = _QWEN3_SAMPLING if qwen3 else _QWEN2_SAMPLING
    sampling = QwenSampling(
        do_sample_frames=bool(video_source.get("do_sample_frames", base.do_sample_frames)),
        fps=video_source.get("fps", base.fps),
        num_frames=video_source.get("num_frames", base.num_frames),
        min_frames=int(video_source.get("min_frames", base.min_frames)),
        max_frames=int(video_source.get("max_frames", base.max_frames)),
        cap_pixels_per_frame=bool(video_source.get("cap_pixels_per_frame")),
        max_video_tokens=int(video_source.get("max_video_tokens", base.max_video_tokens)),
    )
    return QwenSpec(name, generation, image, video, sampling, source=where)


# -------------------------------------------------------------------------------- images


def smart_resize(height: int, width: int, factor: int, min_pixels: int,
                 max_pixels: int) -> tuple[int, int]:
    """``(height, width)`` as transformers' Qwen2-VL ``smart_resize`` gives them (the same
    float operations, so the same rounding); an aspect ratio over 200 is the processor's
    ``ValueError``, raised here as :class:`QwenRefusal` with its words."""
    ratio = max(height, width) / min(height, width)
    if ratio > 200:
        raise QwenRefusal(f"absolute aspect ratio must be smaller than 200, got {ratio}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


class QwenImageCost(NamedTuple):
    """What one image costs on a Qwen-VL processor.

    ``grid_h``×``grid_w`` are the patches the vision tower encodes (``image_grid_thw``'s
    last two numbers); ``image_tokens`` the ``<|image_pad|>`` tokens the processor writes;
    ``block_tokens`` those plus the template's ``<|vision_start|>`` and ``<|vision_end|>``.
    """

    width: int
    height: int
    min_pixels: int
    max_pixels: int
    resized_width: int
    resized_height: int
    grid_h: int
    grid_w: int
    image_tokens: int
    block_tokens: int

    @property
    def grid(self) -> str:
        """The patch grid ``grid_h×grid_w`` (``image_grid_thw`` without its 1)."""
        return f"{self.grid_h}×{self.grid_w}"


def call_bounds(vision: QwenVision, settings: QwenSettings) -> tuple[int, int]:
    """``(min_pixels, max_pixels)`` of a call, as ``Qwen2VLImageProcessor._standardize_kwargs``
    merges ``size``, ``min_pixels`` and ``max_pixels`` with the processor's own."""
    size = settings.size
    if size is None:
        bounds: dict[str, Any] = {"shortest_edge": vision.min_pixels,
                                  "longest_edge": vision.max_pixels}
    elif isinstance(size, Mapping):
        bounds = dict(size)
    else:
        raise QwenRefusal(f"size={size!r} cannot be counted: the Qwen processors resize by "
                          'size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}')
    if settings.min_pixels is not None:
        bounds["shortest_edge"] = settings.min_pixels
    if settings.max_pixels is not None:
        bounds["longest_edge"] = settings.max_pixels
    low, high = bounds.get("shortest_edge"), bounds.get("longest_edge")
    if not low or not high:
        raise QwenRefusal(
            f"size={dict(bounds)!r}: the Qwen processor raises ValueError (`size` dict must "
            "contain 'shortest_edge' and 'longest_edge' keys); pass both, e.g. "
            f'size={{"shortest_edge": {vision.min_pixels}, "longest_edge": {vision.max_pixels}}}')
    for name, value in (("shortest_edge", low), ("longest_edge", high)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise QwenRefusal(f"size[{name!r}] must be a positive number of pixels, got {value!r}")
    return low, high


def count_qwen_image(width: int, height: int, spec: QwenSpec | QwenVision,
                     settings: QwenSettings = NO_SETTINGS) -> QwenImageCost:
    """The exact cost of a ``width``×``height`` image on ``spec``'s image processor, with a
    call's own ``size``/``min_pixels``/``max_pixels`` (``settings``)."""
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CountingError(f"{name} must be a positive integer, got {value!r}; pass the "
                                "image's size in pixels")
    vision = spec.image if isinstance(spec, QwenSpec) else spec
    low, high = call_bounds(vision, settings)
    factor = vision.factor
    resized_h, resized_w = smart_resize(height, width, factor, low, high)
    grid_h, grid_w = resized_h // vision.patch_size, resized_w // vision.patch_size
    tokens = grid_h * grid_w // vision.merge_size ** 2
    return QwenImageCost(width, height, low, high, resized_w, resized_h, grid_h, grid_w,
                         tokens, tokens + 2)


def qwen_settings_from_kwargs(kwargs: Mapping[str, object]) -> QwenSettings:
    """The :class:`QwenSettings` of a processor call's keyword arguments: ``size``,
    ``min_pixels`` and ``max_pixels`` at the top level or in ``images_kwargs`` (which wins,
    as transformers merges them). ``do_resize=False`` is refused: the image is then patched
    at its own size, which this module does not model."""
    merged = dict(kwargs)
    nested = merged.pop("images_kwargs", None)
    if isinstance(nested, Mapping):
        merged.update(nested)
    if merged.get("do_resize", True) is False:
        raise QwenRefusal("do_resize=False cannot be counted: resize the image yourself to "
                          "multiples of the factor and count that size")
    size = merged.get("size")
    low, high = merged.get("min_pixels"), merged.get("max_pixels")
    for name, value in (("min_pixels", low), ("max_pixels", high)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise QwenRefusal(f"{name}={value!r} must be a positive number of pixels")
    if size is not None and not isinstance(size, Mapping):
        raise QwenRefusal(f"size={size!r} cannot be counted: give size as "
                          '{"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}')
    return QwenSettings(size, low, high)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- videos


def smart_resize_video(num_frames: int, height: int, width: int, temporal_factor: int,
                       factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen3-VL's three-dimensional ``smart_resize`` (``video_processing_qwen3_vl.py``):
    the pixel bounds count every frame, and sides under ``factor`` are scaled up first."""
    if num_frames < temporal_factor:
        raise QwenRefusal(f"t:{num_frames} must be larger than temporal_factor:{temporal_factor}")
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height = int(height * scale)
        width = int(width * scale)
    ratio = max(height, width) / min(height, width)
    if ratio > 200:
        raise QwenRefusal(f"absolute aspect ratio must be smaller than 200, got {ratio}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    t_bar = round(num_frames / temporal_factor) * temporal_factor
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt((num_frames * height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _linspace_round(stop: int, num: int) -> list[int]:
    """``np.linspace(0, stop, num).round().astype(int)`` without numpy: the same float
    steps (``i * (stop / (num - 1))``, the last one exactly ``stop``) and round half to
    even, as numpy rounds."""
    if num <= 0:
        return []
    if num == 1:
        return [0]
    step = stop / (num - 1)
    values = [i * step for i in range(num)]
    values[-1] = float(stop)
    return [round(v) for v in values]


def sample_qwen_frames(spec: QwenSpec, total: int, video_fps: float | None, *,
                       num_frames: int | None = None, fps: float | None = None,
                       do_sample_frames: bool | None = None) -> list[int]:
    """The frame indices the video processor keeps (``sample_frames``), for a video of
    ``total`` frames at ``video_fps``; every frame when sampling is off. What the processor
    raises (``num_frames`` and ``fps`` together, more frames than the video has, a rate
    that samples none) is a :class:`QwenRefusal` with its reason."""
    sampling = spec.sampling
    sample = sampling.do_sample_frames if do_sample_frames is None else do_sample_frames
    if not sample:
        return list(range(total))
    # the processor's own fps/num_frames fill the call's (_merge_and_standardize_kwargs)
    # before sample_frames sees them: on Qwen3-VL (fps=2) a call's num_frames alone clashes
    fps = sampling.fps if fps is None else fps
    num_frames = sampling.num_frames if num_frames is None else num_frames
    if fps is not None and num_frames is not None:
        raise QwenRefusal("`num_frames` and `fps` are mutually exclusive arguments, please use "
                          "only one!")
    if spec.generation == "qwen3_vl":
        if num_frames is None and fps is not None:
            rate = 24 if video_fps is None else video_fps
            wanted = int(total / rate * fps)
            num_frames = min(max(wanted, sampling.min_frames), sampling.max_frames, total)
        if num_frames is None:
            num_frames = min(max(total, sampling.min_frames), sampling.max_frames)
        return _linspace_round(total - 1, num_frames)
    tps = spec.video.temporal_patch_size
    count: float | int
    if num_frames is not None:
        count = round(num_frames / tps) * tps
    elif fps is not None:
        if video_fps is None:
            raise QwenRefusal("Asked to sample `fps` frames per second but no video metadata "
                              "was provided which is required when sampling with `fps`")
        max_frames = math.floor(min(sampling.max_frames, total) / tps) * tps
        count = total / video_fps * fps
        count = min(max(count, sampling.min_frames), max_frames, total)
        count = math.floor(count / tps) * tps
    else:  # transformers compares None with the frame count
        raise QwenRefusal("'>' not supported between instances of 'NoneType' and 'int': "
                          "do_sample_frames=True on this processor needs fps= or num_frames=")
    if count > total:
        raise QwenRefusal(f"Video can't be sampled. The inferred `num_frames={count}` exceeds "
                          f"`total_num_frames={total}`. Decrease `num_frames` or `fps` for "
                          "sampling.")
    if count == 0:
        raise QwenRefusal("division by zero: the processor samples 0 frames "
                          f"(num_frames or fps too small for a {total}-frame video)")
    step = total / count
    # torch.arange(0, total, step).int(): ceil(total / step) values (computed in double),
    # each i * step computed in double and stored in float32 (torch's default dtype), then
    # truncated; a last value rounded up to ``total`` is an IndexError in the processor
    kept = math.ceil(total / step)
    indices = [int(_float32(i * step)) for i in range(kept)]
    if indices[-1] >= total:
        raise QwenRefusal(
            f"index {indices[-1]} is out of bounds for axis 0 with size {total}: the "
            f"processor's sampler (torch.arange in float32) picks a frame past the end of "
            f"this {total}-frame clip when it keeps {count:g} frames, and raises IndexError; "
            "pass another fps or num_frames")
    return indices


def _float32(value: float) -> float:
    """``value`` rounded to the nearest float32, as torch stores it."""
    return float(struct.unpack("f", struct.pack("f", value))[0])


#: transformers 5.25 collapses the chat template's ``<|vision_start|><|video_pad|>
#: <|vision_end|>`` around a Qwen3-VL video into the bare placeholder, since the processor
#: wraps every temporal patch itself; 5.24 and older keep that outer pair too (2 tokens more)
QWEN3_WRAPPER_COLLAPSES_SINCE = (5, 25)


def qwen3_keeps_outer_wrapper(transformers_version: str | None = None) -> bool:
    """Whether the installed transformers (or ``transformers_version``) keeps the template's
    outer wrapper around a Qwen3-VL video's per-patch blocks (5.24 and older)."""
    return transformers_before(QWEN3_WRAPPER_COLLAPSES_SINCE, transformers_version)


class QwenVideoCost(NamedTuple):
    """What one video costs on a Qwen-VL processor.

    ``frames`` are the sampled frames (``grid_t`` temporal patches after padding to the
    temporal patch); ``video_tokens`` the ``<|video_pad|>`` tokens; ``block_tokens`` those
    plus the vision wrappers (one pair for the whole video on Qwen2/2.5-VL, one per
    temporal patch on Qwen3-VL); ``text`` the timestamp strings Qwen3-VL writes (empty
    before it); ``tokens`` everything written, or None when ``text`` needs a tokenizer that
    was not given (see :class:`~pytest_tokenguard.errors.TokenizerUnavailable`);
    ``outer_wrapper`` whether the template's own pair stays around Qwen3-VL's per-patch
    blocks (:func:`qwen3_keeps_outer_wrapper`), counted in ``block_tokens``.
    """

    total_frames: int
    fps: float | None
    frames: int
    grid_t: int
    resized_width: int
    resized_height: int
    video_tokens: int
    block_tokens: int
    text: tuple[str, ...]
    tokens: int | None
    outer_wrapper: bool = False


def _timestamps(indices: Sequence[int], video_fps: float, merge: int) -> list[float]:
    """``Qwen3VLProcessor._calculate_timestamps``: indices padded with the last to a
    multiple of ``merge``, then the mean of each group's first and last time."""
    padded = list(indices)
    if len(padded) % merge:
        padded.extend(padded[-1] for _ in range(merge - len(padded) % merge))
    times = [i / video_fps for i in padded]
    return [(times[i] + times[i + merge - 1]) / 2 for i in range(0, len(times), merge)]


def count_qwen_video(
    info: VideoInfo, spec: QwenSpec, *, num_frames: int | None = None,
    fps: float | None = None, do_sample_frames: bool | None = None,
    settings: QwenSettings = NO_SETTINGS, text: Callable[[str], int] | None = None,
) -> QwenVideoCost:
    """The exact cost of a video (metadata: frame count, rate, frame size) on ``spec``'s
    video processor and processor. ``settings`` are the call's ``size``/``min_pixels``/
    ``max_pixels`` (videos_kwargs); ``text`` counts Qwen3-VL's timestamp text."""
    if info.width is None or info.height is None:
        raise CountingError(f"{info.path or 'video'}: its frame size is unknown; a Qwen video's "
                            "cost depends on it (pass width and height)")
    indices = sample_qwen_frames(spec, info.total_frames, info.fps, num_frames=num_frames,
                                 fps=fps, do_sample_frames=do_sample_frames)
    vision = spec.video
    frames = len(indices)
    if spec.generation == "qwen3_vl":
        # Qwen3-VL's video processor takes no min_pixels/max_pixels: a call's go to images
        settings = QwenSettings(settings.size)
    low, high = call_bounds(vision, settings)
    factor, tps = vision.factor, vision.temporal_patch_size
    sampling = spec.sampling
    if spec.generation == "qwen3_vl":
        if sampling.cap_pixels_per_frame:
            per_frame = max(min(sampling.max_video_tokens * factor * factor, high // frames),
                            int(low * 1.05))
            high = per_frame * frames
        h, w = smart_resize_video(frames, info.height, info.width, tps, factor, low, high)
    else:
        if sampling.cap_pixels_per_frame:
            total_pixels = int(sampling.max_video_tokens * factor * factor * 0.9)
            high = max(min(high, total_pixels * tps // frames), int(low * 1.05))
        h, w = smart_resize(info.height, info.width, factor, low, high)
    grid_t = (frames + -frames % tps) // tps
    per_patch = (h // vision.patch_size) * (w // vision.patch_size) // vision.merge_size ** 2
    pads = grid_t * per_patch
    if not spec.timestamps:
        return QwenVideoCost(info.total_frames, info.fps, frames, grid_t, w, h, pads, pads + 2,
                             (), pads + 2)
    rate = 24.0 if info.fps is None else info.fps
    pieces = tuple(f"<{t:.1f} seconds>" for t in _timestamps(indices, rate, tps))
    outer = qwen3_keeps_outer_wrapper()
    block = pads + 2 * grid_t + (2 if outer else 0)
    tokens = None if text is None else block + sum(text(p) for p in pieces)
    return QwenVideoCost(info.total_frames, info.fps, frames, grid_t, w, h, pads, block,
                         pieces, tokens, outer)




# ------------------------------------------------------------------------- the fix to name


class MaxPixelsFit(NamedTuple):
    """The ``max_pixels`` values around a wanted token count for one image (the rest of the
    call's settings kept): ``max_pixels`` is the largest that gives at most ``wanted``
    tokens, ``cost`` what it gives; ``unbounded`` says that every larger value gives the
    same. ``max_pixels`` is ``None`` when every value gives more (a side so short that it
    rounds to nothing, which ``min_pixels`` scales up): ``cost`` is then the fewest."""

    max_pixels: int | None
    cost: QwenImageCost
    unbounded: bool


def largest_max_pixels(width: int, height: int, vision: QwenVision, wanted: int) -> MaxPixelsFit:
    """The largest ``max_pixels`` (``vision.min_pixels`` kept) for which a ``width``×``height``
    image costs at most ``wanted`` ``<|image_pad|>`` tokens.

    An image's cost never falls as ``max_pixels`` grows (both resized sides are floors of a
    scale that grows with it, and once ``max_pixels`` reaches the rounded area the resize no
    longer depends on it), so a binary search over ``1 ..`` that area finds it. What it
    gives is computed by :func:`count_qwen_image`, never assumed; the processor's refusals
    (an aspect ratio over 200) are raised as they are.
    """
    def cost(max_pixels: int) -> QwenImageCost:
        return count_qwen_image(width, height, vision, QwenSettings(max_pixels=max_pixels))

    factor = vision.factor
    top = max(round(height / factor) * factor * round(width / factor) * factor, 1)
    if cost(1).image_tokens > wanted:
        return MaxPixelsFit(None, cost(1), False)
    if cost(top).image_tokens <= wanted:  # no max_pixels changes it from here on
        low, high = 1, top  # the smallest value that gives what ``top`` gives
        final = cost(top).image_tokens
        while low < high:
            middle = (low + high) // 2
            if cost(middle).image_tokens >= final:
                high = middle
            else:
                low = middle + 1
        return MaxPixelsFit(low, cost(low), True)
    low, high = 1, top  # cost(low) <= wanted < cost(high)
    while high - low > 1:
        middle = (low + high) // 2
        if cost(middle).image_tokens <= wanted:
            low = middle
        else:
            high = middle
    return MaxPixelsFit(low, cost(low), False)


def _tokens(n: int) -> str:
    return f"{n} token" if n == 1 else f"{n} tokens"


def describe_qwen_image(record: Any) -> str:
    """How a failing ``image_tokens`` marker describes a recorded Qwen image's cost."""
    return (f"cost {record.image_tokens} {IMAGE_PAD} tokens ({record.rows}×{record.cols} patch "
            f"grid at min_pixels={record.min_pixels}, max_pixels={record.max_pixels})")


def qwen_image_fix(record: Any, expected: int) -> str:
    """The fix for a recorded Qwen image that costs other than ``expected`` tokens: the
    largest ``max_pixels`` that gives exactly ``expected`` (the most detail kept), from the
    call's own ``min_pixels``, patch and merge sizes."""
    vision = QwenVision(record.min_pixels, record.max_pixels, record.patch_size,
                        record.merge_size)
    fit = largest_max_pixels(record.width, record.height, vision, expected)
    if fit.max_pixels is None:
        return (f"no max_pixels gives as few as {_tokens(expected)} for a {record.width}×"
                f"{record.height} image: it costs at least {_tokens(fit.cost.image_tokens)} "
                f"(min_pixels={record.min_pixels} scales it up); lower min_pixels (size "
                '"shortest_edge")')
    how = (f"pass max_pixels={fit.max_pixels} to the processor call (or size="
           f'{{"shortest_edge": {record.min_pixels}, "longest_edge": {fit.max_pixels}}})')
    grid = f"{fit.cost.grid_h}×{fit.cost.grid_w} patches"
    if fit.cost.image_tokens == expected:
        if fit.unbounded:
            return (f"max_pixels={fit.max_pixels} or more gives {grid} "
                    f"({_tokens(expected)}): {how}")
        return f"max_pixels={fit.max_pixels} gives {grid} ({_tokens(expected)}): {how}"
    if fit.unbounded:
        return (f"no max_pixels gives {_tokens(expected)} for a {record.width}×{record.height} "
                f"image: from max_pixels={fit.max_pixels} on it costs "
                f"{_tokens(fit.cost.image_tokens)}; raise min_pixels (size "
                '"shortest_edge") for more')
    above = count_qwen_image(record.width, record.height, vision,
                             QwenSettings(max_pixels=fit.max_pixels + 1))
    return (f"no max_pixels gives exactly {_tokens(expected)} for a {record.width}×"
            f"{record.height} image; the nearest are max_pixels={fit.max_pixels} "
            f"({_tokens(fit.cost.image_tokens)}) and max_pixels={fit.max_pixels + 1} "
            f"({_tokens(above.image_tokens)})")


def _rate(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def qwen_video_fix(record: Any, limit: int) -> str:
    """The fix for a recorded Qwen video over ``limit`` tokens: the largest ``num_frames``
    whose exact cost fits, and the largest sampling ``fps`` (Qwen users sample by rate),
    read off the costs the recorder computed (``by_num_frames``, ``by_fps``; a refused
    value never chosen); without them (no frame rate or frame size known), what lowers
    the cost."""
    fitting = [n for n, tokens in enumerate(record.by_num_frames, 1) if tokens <= limit]
    fewest = min(record.by_num_frames, default=None)
    if not fitting and fewest is not None and fewest < 2**62:
        return (f"even the fewest frames cost {_tokens(fewest)}: lower the video processor's "
                'max_pixels (size "longest_edge"), or raise the limit')
    if not fitting:
        return ("sample fewer frames (do_sample_frames=True with a lower fps= or num_frames=) "
                'or lower the video processor\'s max_pixels (size "longest_edge")'
                + ("" if record.by_num_frames else
                   "; pass video_metadata with fps, or frames whose size is known, for the "
                   "value that fits"))
    cap = fitting[-1]
    extra = ", fps=None" if record.processor.startswith("Qwen3") else ""
    fix = (f"num_frames={cap} fits ({_tokens(record.by_num_frames[cap - 1])}; "
           f"processor(..., videos=..., do_sample_frames=True, num_frames={cap}{extra}))")
    rates = [(fps, tokens) for fps, tokens in getattr(record, "by_fps", ()) if tokens <= limit]
    if rates:
        fps, tokens = rates[-1]
        fix += (f"; or fps={_rate(fps)} ({_tokens(tokens)}; processor(..., videos=..., "
                f"do_sample_frames=True, fps={_rate(fps)}))")
    return fix


def qwen_frame_fix(record: Any, per: int, per_frame: int) -> str:
    """Why a recorded Qwen video's frames cost ``per`` tokens each (its pads and wrappers
    over its sampled frames, rounded up), over ``per_frame``, and what lowers it."""
    wrappers = record.block_tokens - record.image_tokens
    return (f"costs {per} tokens a frame ({record.image_tokens} {VIDEO_PAD} and {wrappers} "
            f"wrapper tokens over {record.frames} sampled frames, rounded up), over the "
            f"declared per_frame={per_frame}: a frame's cost follows the size the video "
            "processor resizes it to, not how many are sampled; lower its max_pixels (size "
            f'"longest_edge"), or declare per_frame={per} or more')


# ------------------------------------------------------------------- the family on the seam


def _read(path: Any) -> dict[str, Any] | None:
    from ..specs import read_json_object

    return read_json_object(path) if path.is_file() else None


def qwen_spec_from_folder(folder: Any, name: str | None = None) -> QwenSpec:
    """A :class:`QwenSpec` from a checkpoint folder's JSON files (no transformers import):
    the generation from ``config.json``'s ``model_type`` or the processor class, the image
    settings from ``preprocessor_config.json`` (or ``processor_config.json``'s nested
    ``image_processor``, as transformers 5 saves them), the video settings likewise."""
    from pathlib import Path

    root = Path(folder)
    config = _read(root / "config.json") or {}
    processor = _read(root / "processor_config.json") or {}
    image = processor.get("image_processor") if isinstance(
        processor.get("image_processor"), dict) else _read(root / "preprocessor_config.json")
    video = processor.get("video_processor") if isinstance(
        processor.get("video_processor"), dict) else _read(
        root / "video_preprocessor_config.json")
    if image is None:
        raise SpecError(f"{root}: no preprocessor_config.json; point the model at a Qwen-VL "
                        "checkpoint folder or a hub id")
    keys = (config.get("model_type"), processor.get("processor_class"),
            image.get("processor_class"))
    generation = next((GENERATION_OF[k] for k in keys if k in GENERATION_OF), None)
    if generation is None:
        raise SpecError(f"{root}: not a Qwen-VL checkpoint (model_type {keys[0]!r}, processor "
                        f"class {keys[1] or keys[2]!r})")
    return qwen_spec_from_configs(name or str(root), generation, image, video,
                                  where=f"folder {root}")


class QwenFamily:
    """Qwen2-VL, Qwen2.5-VL and Qwen3-VL (see :mod:`pytest_tokenguard.families.base`)."""

    name = "qwen-vl"
    model_types = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl"})
    processor_classes = frozenset({"Qwen2VLProcessor", "Qwen2_5_VLProcessor",
                                   "Qwen3VLProcessor"})
    placeholders: Mapping[str, str] = {"image": VISION_START + IMAGE_PAD + VISION_END,
                                       "video": VISION_START + VIDEO_PAD + VISION_END}
    wrappers = (VISION_START, VISION_END)
    processor_modules: Mapping[str, str] = {
        "transformers.models.qwen2_vl.processing_qwen2_vl": "Qwen2VLProcessor",
        "transformers.models.qwen2_5_vl.processing_qwen2_5_vl": "Qwen2_5_VLProcessor",
        "transformers.models.qwen3_vl.processing_qwen3_vl": "Qwen3VLProcessor",
    }
    call_reader = "pytest_tokenguard.processor.recording.qwen"
    image_token = IMAGE_PAD
    #: the ``tokenguard audit`` pricer (module:class, imported when an audit runs)
    audit_pricer = "pytest_tokenguard.audit.qwen:QwenPricer"

    def known_models(self) -> tuple[str, ...]:
        return tuple(KNOWN_QWEN_SPECS)

    def describe_image(self, record: Any) -> str:
        return describe_qwen_image(record)

    def image_fix(self, record: Any, expected: int) -> str:
        return qwen_image_fix(record, expected)

    def video_fix(self, record: Any, limit: int) -> str:
        return qwen_video_fix(record, limit)

    def frame_fix(self, record: Any, per: int, per_frame: int) -> str:
        return qwen_frame_fix(record, per, per_frame)

    def spec(self, model: str, folder: Any) -> QwenSpec:
        if folder is not None:
            return qwen_spec_from_folder(folder, name=model)
        spec = KNOWN_QWEN_SPECS.get(model)
        if spec is None:
            raise SpecError(f"no Qwen-VL settings are known for {model!r}; point the model at "
                            "a checkpoint folder")
        return spec

    def call_settings(self, kwargs: Mapping[str, object]) -> QwenSettings:
        return qwen_settings_from_kwargs(kwargs)

    def image_cost(self, spec: QwenSpec, width: int, height: int,
                   settings: QwenSettings | None = None) -> QwenImageCost:
        return count_qwen_image(width, height, spec, settings or NO_SETTINGS)

    def video_cost(self, spec: QwenSpec, info: VideoInfo, *, num_frames: int | None = None,
                   fps: float | None = None,
                   text: Callable[[str], int] | None = None) -> QwenVideoCost:
        # a --num-frames/--fps is a call that samples: do_sample_frames=True, as
        # apply_chat_template sets it
        sample = True if num_frames is not None or fps is not None else None
        return count_qwen_video(info, spec, num_frames=num_frames, fps=fps,
                                do_sample_frames=sample, text=text)

    def text_counter(self, model: str, folder: Any) -> Callable[[str], int]:
        """The folder's ``tokenizer.json``; Qwen's tokenizer is not shipped with tokenguard
        (README, "Models"), so without a folder text is refused by name."""
        from ..errors import TokenizerUnavailable

        path = None if folder is None else folder / "tokenizer.json"
        if path is None or not path.is_file():
            raise TokenizerUnavailable(model)
        from ..specs import tokenizer_counter

        counter: Callable[[str], int] = tokenizer_counter(path)
        return counter

    def memory_architecture(self, model: str, folder: Any) -> Any:
        """The memory model's architecture (Qwen2.5-VL): the folder's ``config.json``, else
        the published values of a known hub id (:mod:`.qwen_memory`)."""
        from ..gpu.model import MemoryModelError
        from .qwen_memory import QWEN_CONFIGS, qwen_architecture

        path = None if folder is None else folder / "config.json"
        if path is not None and path.is_file():
            from ..specs import read_json_object

            return qwen_architecture(read_json_object(path), model, str(path))
        if model in QWEN_CONFIGS:
            return qwen_architecture(QWEN_CONFIGS[model], model)
        raise MemoryModelError(
            f"{model}: no config.json and no published Qwen-VL architecture known; the memory "
            f"model knows {', '.join(QWEN_CONFIGS)} (or a checkpoint folder with config.json)")

    def memory_sample(self, spec: QwenSpec, shape: Any) -> tuple[int, int, str]:
        """``(vision tokens, tokens, setting)`` of one sample of ``shape``."""
        from .qwen_memory import qwen_sample

        return qwen_sample(spec, shape)


FAMILY = QwenFamily()
