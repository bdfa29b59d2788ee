"""The exact token cost of a video, as ``SmolVLMProcessor`` writes it, from metadata alone.

For every ``<video>`` placeholder, transformers' ``SmolVLMProcessor`` (5.x,
``models/smolvlm/processing_smolvlm.py`` and ``video_processing_smolvlm.py``) writes::

    You are provided the following series of {N in words} frames from a {duration as
    H:MM:SS} [H:MM:SS] video.\\n
    \\nFrame from MM:SS:<fake_token_around_image><global-img><image>*seq<fake_token_around_image>
    ... one line and one image block per sampled frame ...
    \\n\\n

Every frame is resized to a ``max_image_size`` square and never split, so each costs
one single-image block (84 tokens on SmolVLM2-2.2B, 67 on the 256M and 500M) whatever
its size and whatever ``longest_edge`` says for images. The ``{N in words}`` of the intro
is the one thing that changed across 5.x: up to 5.24 every video of one processor call
spells the call's *largest* sampled frame count (the padded batch's frame axis); from
5.25 on each spells its own (:func:`intros_spell_the_largest` reads the installed
version). What varies is *which* frames
are sampled (``SmolVLMVideoProcessor.sample_frames``: ``video_sampling.fps`` per second
up to ``max_frames``, a one-second skip at both ends of long videos, ``np.linspace``
then ``np.unique``), their timestamps and the duration: all functions of the video's
frame count, frame rate and duration. This module reproduces that arithmetic operation
for operation (the float steps of ``np.linspace`` included), so the count needs no
pixel, no torch and no transformers; the suite proves it equal to the real processor's
``input_ids`` with hypothesis (tests/oracle/test_video.py).

Three ways in, one result (:class:`VideoCost`):

* metadata (:class:`VideoInfo`: frame count, frame rate, duration), sampled as the
  processor samples (``do_sample_frames=True``: what ``apply_chat_template`` does, and
  ``processor(..., do_sample_frames=True)``) or, for a file, not at all
  (``do_sample_frames=False``: the default of a direct ``processor(text, videos=...)``
  call, which keeps *every* frame; metadata without frame indices is refused unsampled,
  as the processor refuses it);
* a file (:func:`read_video_info`), whose metadata is read the way transformers' own
  loader reads it, without decoding a frame (PyAV, imported lazily);
* frames the user sampled (:func:`plan_frames`: their timestamps, or indices and fps).

The text pieces need the checkpoint's tokenizer: :class:`VideoCounter` takes any
``str -> int`` counter (``TokenCounter.text``, or :func:`tokenizer_text_counter` over a
bare ``tokenizers.Tokenizer`` for code that never imports transformers).

Nothing heavy is imported at module level.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal, NamedTuple

from .errors import CountingError, SpecError, VideoReadError
from .specs import ModelSpec, has_processor_config, known_spec

__all__ = [
    "FALLBACK_FPS",
    "FRAME_TIMESTAMP",
    "KNOWN_VIDEO_SAMPLING",
    "MEDIA_OUTRO",
    "OWN_INTRO_SINCE",
    "VIDEO_INTRO",
    "VIDEO_SUFFIXES",
    "VIDEO_TOKEN",
    "MetadataBackend",
    "SplicedPrompt",
    "VideoCost",
    "VideoCounter",
    "VideoInfo",
    "VideoPlan",
    "VideoReadError",
    "VideoSampling",
    "frame_block_tokens",
    "intros_spell_the_largest",
    "is_video_path",
    "iter_video_paths",
    "largest_within",
    "plan_frames",
    "plan_video",
    "read_video_info",
    "sample_frame_indices",
    "splice_videos",
    "text_counter_from_folder",
    "tokenizer_text_counter",
    "transformers_before",
    "video_info",
    "video_pieces",
    "video_sampling_for",
    "video_sampling_from_config",
    "video_sampling_from_folder",
    "video_sampling_from_processor",
]

#: The placeholder a prompt holds for each video.
VIDEO_TOKEN = "<video>"
#: transformers' ``DEFAULT_VIDEO_INTRO``, ``FRAME_TIMESTAMP_MESSAGE`` and
#: ``DEFAULT_MEDIA_OUTTRO`` (the same in 5.17 and 5.24).
VIDEO_INTRO = (
    "You are provided the following series of {frame_count} frames from a {video_duration} "
    "[H:MM:SS] video.\n"
)
FRAME_TIMESTAMP = "\nFrame from {timestamp}:"
MEDIA_OUTRO = "\n\n"
#: The first transformers release whose ``SmolVLMProcessor.replace_video_token`` spells each
#: video's own sampled frame count in its intro (``num_frames = len(timestamps)``); 5.0
#: to 5.24 spell ``video_inputs["pixel_values"].shape[1]``, the padded batch's frame axis:
#: the largest count among the videos of the call, in every intro.
OWN_INTRO_SINCE = (5, 25)
#: The frame rate ``replace_video_token`` assumes when a video comes without one.
FALLBACK_FPS = 24
#: ``sample_frames``' ``skip_secs``: seconds skipped at both ends of a long video.
SKIP_SECS = 1

#: File suffixes ``tokenguard count`` treats as videos (GIF stays an image).
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts",
     ".m2ts", ".flv", ".wmv", ".3gp", ".ogv"}
)

#: Which loader's numbers :func:`read_video_info` reproduces. ``"torchcodec"`` is what
#: the processor uses for a path (transformers 5.x decodes paths with torchcodec; its
#: torchvision fallback is gone from torchvision 0.26 on): a scan of every packet, in
#: torchcodec's ``seek_mode="exact"``. ``"pyav"`` is ``transformers.video_utils.
#: load_video(path, backend="pyav")``: the container header's frame count and average
#: rate, for users who decode with it and pass the frames with its metadata.
MetadataBackend = Literal["torchcodec", "pyav"]


def _checked(name: str, value: object, fix: str, *, minimum: float = 0,
             integer: bool = False, inclusive: bool = True) -> Any:
    """``value`` checked as a number >= (or >) ``minimum``; a CountingError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or (
        integer and not isinstance(value, int)
    ):
        kind = "an integer" if integer else "a number"
        raise CountingError(f"{name} must be {kind}, got {value!r}; {fix}")
    if not math.isfinite(value) or (value < minimum if inclusive else value <= minimum):
        bound = f"at least {minimum}" if inclusive else f"greater than {minimum}"
        raise CountingError(f"{name} must be {bound}, got {value!r}; {fix}")
    return value


# ----------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class VideoSampling:
    """A checkpoint's ``video_sampling`` (``preprocessor_config.json``).

    ``fps`` frames are sampled per second of video, at most ``max_frames`` of them.
    ``video_size`` is the longest edge of the first resize of each frame; it never
    changes the count, because every frame is resized again to a ``max_image_size``
    square and never split (kept to say what the checkpoint declares).
    """

    fps: float
    max_frames: int
    video_size: int

    def __post_init__(self) -> None:
        fix = "check video_sampling in the checkpoint's preprocessor_config.json"
        try:
            _checked("video_sampling.fps", self.fps, fix, inclusive=False)
            _checked("video_sampling.max_frames", self.max_frames, fix, minimum=1, integer=True)
            _checked("video_sampling.video_size", self.video_size, fix, minimum=1, integer=True)
        except CountingError as exc:
            raise SpecError(str(exc)) from None


#: The published ``video_sampling`` of the known checkpoints; checked against the real
#: files in tests/unit/test_video.py.
KNOWN_VIDEO_SAMPLING: dict[str, VideoSampling] = {
    "HuggingFaceTB/SmolVLM2-2.2B-Instruct": VideoSampling(fps=1, max_frames=64, video_size=384),
    "HuggingFaceTB/SmolVLM2-500M-Video-Instruct": VideoSampling(
        fps=1, max_frames=64, video_size=512),
    "HuggingFaceTB/SmolVLM2-256M-Video-Instruct": VideoSampling(
        fps=1, max_frames=64, video_size=512),
}


def video_sampling_from_config(config: dict[str, Any], source: str = "config") -> VideoSampling:
    """The ``video_sampling`` of a preprocessor config dict; a SpecError naming ``source``."""
    sampling = config.get("video_sampling")
    if not isinstance(sampling, dict):
        raise SpecError(
            f"{source}: no 'video_sampling' object (got {sampling!r}); is this a SmolVLM2 "
            "checkpoint? SmolVLM (v1) checkpoints do not take videos"
        )
    size = sampling.get("video_size")
    edge = size.get("longest_edge") if isinstance(size, dict) else size
    try:
        # VideoSampling checks the values and names the bad one
        values: dict[str, Any] = {"fps": sampling.get("fps"),
                                  "max_frames": sampling.get("max_frames"), "video_size": edge}
        return VideoSampling(**values)
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None


def video_sampling_from_folder(folder: str | os.PathLike[str]) -> VideoSampling:
    """The ``video_sampling`` of a checkpoint folder, from its image processor's settings
    (``preprocessor_config.json``, or the ``image_processor`` section of
    ``processor_config.json`` that ``save_pretrained`` writes)."""
    from .specs import image_processor_config

    config, path = image_processor_config(Path(folder))
    return video_sampling_from_config(config, str(path))


def video_sampling_from_processor(processor: Any) -> VideoSampling:
    """The sampling a loaded processor applies: its video processor's ``fps`` and
    ``num_frames`` (which it took from ``video_sampling``)."""
    video_processor = getattr(processor, "video_processor", None)
    if video_processor is None:
        # the tokenizer-only stand-in of `tokenguard split` (processor/light.py): the
        # checkpoint folder's video_sampling, or the known checkpoint's
        name = str(getattr(processor, "name_or_path", "") or "")
        if name and Path(name).is_dir() and has_processor_config(name):
            return video_sampling_from_folder(name)
        known = video_sampling_for(name) if name else None
        if known is not None and type(processor).__name__ == "LightProcessor":
            return known
        raise SpecError(
            f"{type(processor).__name__} has no video_processor: videos need a SmolVLM2 "
            "processor (transformers >= 5)"
        )
    size = getattr(video_processor, "size", None) or {}
    edge = size.get("longest_edge") if hasattr(size, "get") else None
    max_size = getattr(video_processor, "max_image_size", None) or {}
    return VideoSampling(
        fps=video_processor.fps,
        max_frames=video_processor.num_frames,
        video_size=int(edge or max_size.get("longest_edge") or 1),
    )


def video_sampling_for(model: str) -> VideoSampling | None:
    """The built-in sampling of a known checkpoint (hub id or a folder named like one)."""
    spec = known_spec(model)
    return KNOWN_VIDEO_SAMPLING.get(spec.name) if spec is not None else None


def _linspace_floor(start: int, stop: int, num: int) -> list[int]:
    """``np.linspace(start, stop, num, dtype=int)``, float step for float step.

    numpy computes ``i * ((stop - start) / (num - 1)) + start`` in float64, sets the
    last value to ``stop`` and floors; Python floats are the same IEEE doubles.
    """
    if num == 1:
        return [start]
    div = num - 1
    delta = float(stop) - float(start)
    step = delta / div
    if step == 0:
        values = [(i / div) * delta + start for i in range(num)]
    else:
        values = [i * step + start for i in range(num)]
    values[-1] = float(stop)
    return [math.floor(v) for v in values]


def sample_frame_indices(
    total_frames: int, video_fps: float, duration: float, *, max_frames: int, fps: float,
    skip_secs: float = SKIP_SECS,
) -> tuple[int, ...]:
    """The frame indices ``SmolVLMVideoProcessor.sample_frames`` returns, sorted, unique.

    ``max_frames`` and ``fps`` are the per-call ``num_frames``/``fps`` or, when a call
    gives none, the checkpoint's ``video_sampling``. Rules, as transformers has them:
    ``round(fps * duration)`` frames, at most ``max_frames``, at least one; a video
    longer than ``2 * skip_secs + max_frames * fps`` seconds loses ``skip_secs`` at
    both ends; ``np.linspace`` over the remaining range, floored, duplicates dropped
    (a target rate above the video's own gives fewer frames than asked).
    """
    desired = min(round(fps * duration), max_frames)  # transformers: int(round(...))
    if desired < 1:
        desired = 1
    start, end = 0, total_frames - 1
    if skip_secs > 0 and (duration - 2 * skip_secs) > (max_frames * fps):
        start = int(skip_secs * video_fps)
        end = int(total_frames - skip_secs * video_fps)
    start = max(0, start)
    end = min(end, total_frames - 1)
    if start >= end:
        start, end = 0, total_frames - 1
    return tuple(sorted(set(_linspace_floor(start, end, desired))))


# ----------------------------------------------------------------------------- metadata


class VideoInfo(NamedTuple):
    """What the processor knows of a video before sampling (transformers'
    ``VideoMetadata``): ``total_frames``, ``fps`` (the video's own average rate) and
    ``duration`` in seconds. ``backend`` says whose numbers they are."""

    total_frames: int
    fps: float | None
    duration: float | None
    width: int | None = None
    height: int | None = None
    path: str | None = None
    backend: str = "metadata"


def video_info(
    total_frames: int, fps: float | None, duration: float | None = None, *,
    width: int | None = None, height: int | None = None, path: str | None = None,
) -> VideoInfo:
    """Checked :class:`VideoInfo` from numbers the user gives (``VideoMetadata`` fields).

    ``duration`` defaults to ``total_frames / fps``, which is what transformers'
    pyav, decord and opencv loaders report.
    """
    _checked("total_frames", total_frames, "pass the video's frame count", minimum=1, integer=True)
    if fps is not None:
        _checked("fps", fps, "pass the video's frame rate (frames per second)", inclusive=False)
    if duration is None and fps is not None:
        duration = total_frames / fps
    if duration is not None:
        _checked("duration", duration, "pass the video's length in seconds")
    return VideoInfo(total_frames, fps, duration, width, height, path)


def _open_container(path: str | os.PathLike[str]) -> Any:
    file = Path(path)
    if not file.exists():
        raise VideoReadError(path, "no such file; check the path")
    if file.is_dir():
        raise VideoReadError(path, "is a folder; pass video files, or the folder to "
                                "`tokenguard count`")
    if file.stat().st_size == 0:
        raise VideoReadError(path, "is empty (0 bytes); re-export or remove it")
    try:
        import av
        from av.error import FFmpegError  # PyAV >= 7; av.FFmpegError only in recent ones
    except ImportError:
        raise VideoReadError(
            path, "reading videos needs PyAV: pip install 'pytest-tokenguard[video]'"
        ) from None
    try:
        return av.open(str(file), "r")
    except (FFmpegError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc  # FFmpeg's words, without the path again
        raise VideoReadError(
            path, f"is not a video FFmpeg can read (corrupt, truncated or another format: {why})"
        ) from None


def read_video_info(
    path: str | os.PathLike[str], backend: MetadataBackend = "torchcodec"
) -> VideoInfo:
    """Frame count, frame rate and duration of a video file, no frame decoded.

    ``backend="torchcodec"`` (default) gives the numbers transformers' own loader gives
    the processor for a path: torchcodec's exact mode, which reads every packet of the
    best video stream (no decoding) and takes the packet count, the span from the
    first packet's pts to the end of the last (``duration``), and count / span
    (``fps``; the header's ``r_frame_rate`` when the span is 0). The container header's
    frame count and duration are not used: Matroska and WebM have none, and an MP4's
    can disagree with its packets. ``backend="pyav"`` gives what
    ``load_video(path, backend="pyav")`` reports: the header frame count and average
    rate, and count / rate as the duration.

    Unreadable files raise :class:`VideoReadError` with one line naming the file.
    """
    if backend not in ("torchcodec", "pyav"):
        raise CountingError(f"backend must be 'torchcodec' or 'pyav', got {backend!r}")
    container = _open_container(path)
    from av.error import FFmpegError  # PyAV is there: _open_container imported it

    try:
        format_name = container.format.name or ""
        if format_name == "image2" or format_name.endswith("_pipe"):
            raise VideoReadError(path, f"is an image ({format_name}), not a video; count it as "
                                    "an image")
        if not container.streams:
            raise VideoReadError(path, "is not a video FFmpeg can read (no streams: truncated, "
                                       "or the index is missing); re-export it")
        try:
            stream = container.streams.best("video")
        except (FFmpegError, ValueError):
            stream = None
        if stream is None:
            raise VideoReadError(path, "has no video stream (audio or data only, or truncated); "
                                       "pass a video file or re-export it")
        width = int(stream.codec_context.width or 0) or None
        height = int(stream.codec_context.height or 0) or None
        if backend == "pyav":
            return _header_info(path, stream, width, height)
        return _scanned_info(path, container, stream, width, height)
    except FFmpegError as exc:
        raise VideoReadError(path, f"cannot be read to the end ({exc}); the file is corrupt or "
                                "truncated: re-export it") from None
    finally:
        container.close()


def _header_info(path: str | os.PathLike[str], stream: Any, width: int | None,
                 height: int | None) -> VideoInfo:
    total = int(stream.frames)
    rate = stream.average_rate
    if total < 1:
        raise VideoReadError(
            path, "its container records no frame count (Matroska/WebM do not), so "
                  "load_video(backend='pyav') reads 0 frames; count it with the torchcodec "
                  "backend, as the processor reads paths")
    if not rate:
        raise VideoReadError(path, "its container records no frame rate; count it with the "
                                "torchcodec backend, as the processor reads paths")
    fps = float(rate)
    return VideoInfo(total, fps, total / fps, width, height, str(path), "pyav")


def _scanned_info(path: str | os.PathLike[str], container: Any, stream: Any,
                  width: int | None, height: int | None) -> VideoInfo:
    count = 0
    begin: int | None = None
    end: int | None = None
    # demux(stream) yields that stream's packets only; the loop is the cost (~5 µs a
    # packet in PyAV), so it does as little as it can
    for packet in container.demux(stream):
        pts = packet.pts
        if pts is None:
            pts = packet.dts
            if pts is None:  # PyAV's end-of-stream flush packet, not one of the file
                continue
        if packet.is_discard:
            continue
        count += 1
        if begin is None:
            begin = end = pts
        elif pts < begin:
            begin = pts
        stop = pts + packet.duration if packet.duration else pts
        if stop > end:
            end = stop
    if count == 0 or begin is None or end is None:
        raise VideoReadError(path, "has a video stream with no frames; re-export it")
    time_base = stream.time_base
    # torchcodec's pts_to_seconds: double(pts) * num / den, in that order
    duration = (float(end) * time_base.numerator / time_base.denominator
                - float(begin) * time_base.numerator / time_base.denominator)
    if duration != 0.0:
        fps: float | None = count / duration
    else:
        rate = stream.base_rate  # r_frame_rate
        fps = rate.numerator / rate.denominator if rate and rate > 0 else None
    if fps is None:
        raise VideoReadError(path, "has no frame rate (one frame, no rate in the header); "
                                "pass its metadata instead")
    return VideoInfo(count, fps, duration, width, height, str(path), "torchcodec")


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``tokenguard count`` treats ``path`` as a video (by suffix)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def iter_video_paths(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Files named directly, and video files inside folders (sorted, recursive)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and is_video_path(p))
        else:
            yield path


# ------------------------------------------------------------------------------- plans


class VideoPlan(NamedTuple):
    """Which frames the processor keeps, and what it writes about them.

    ``indices`` are frame numbers (None when the user gave timestamps), ``timestamps``
    their times in seconds (index / fps), ``duration`` what the intro states (None:
    the last timestamp is used, as transformers does). ``total_frames``, ``fps``,
    ``max_frames`` and ``sample_fps`` echo the inputs (None where they do not apply).
    """

    timestamps: tuple[float, ...]
    duration: float | None
    indices: tuple[int, ...] | None = None
    total_frames: int | None = None
    fps: float | None = None
    sampled: bool = False
    max_frames: int | None = None
    sample_fps: float | None = None
    path: str | None = None

    @property
    def frames(self) -> int:
        return len(self.timestamps)


def plan_video(
    info: VideoInfo, sampling: VideoSampling, *, num_frames: int | None = None,
    fps: float | None = None, do_sample_frames: bool = True,
) -> VideoPlan:
    """The frames the processor keeps of a video with this metadata.

    ``do_sample_frames=True`` is ``apply_chat_template``'s behaviour (it passes the
    checkpoint's ``num_frames``/``fps`` and turns sampling on) and that of
    ``processor(..., do_sample_frames=True)``: ``num_frames`` caps the count and
    ``fps`` sets the rate, each falling back to ``sampling`` when not given.
    ``do_sample_frames=False`` is a direct ``processor(text, videos=...)`` call's
    default: every frame of a file is kept (its loader reports them all), and
    ``num_frames``/``fps`` are ignored, as there. Metadata alone (:func:`video_info`) has
    no frame indices, which the processor refuses unsampled: a :class:`CountingError`
    says to count the frames passed with :func:`plan_frames` instead.
    """
    if num_frames is not None:
        _checked("num_frames", num_frames, "pass the most frames to sample, e.g. num_frames=8",
                 minimum=1, integer=True)
    if fps is not None:
        _checked("fps", fps, "pass the frames to sample per second, e.g. fps=1", inclusive=False)
    where = info.path or "the video"
    total = info.total_frames
    if do_sample_frames:
        if info.fps is None or info.duration is None:
            missing = "fps" if info.fps is None else "duration"
            raise CountingError(
                f"{where}: sampling frames needs the video's {missing}, and the metadata has "
                f"none; give {missing}= (transformers refuses to sample without it too)"
            )
        cap: int | None = num_frames if num_frames is not None else sampling.max_frames
        rate: float | None = fps if fps is not None else sampling.fps
        indices = sample_frame_indices(total, info.fps, info.duration,
                                       max_frames=num_frames or sampling.max_frames,
                                       fps=fps or sampling.fps)
    else:
        if info.backend == "metadata":
            # transformers' VideoMetadata.timestamps raises on metadata without indices
            raise CountingError(
                f"{where} ({total} frames at {info.fps} fps): do_sample_frames=False with "
                "metadata that has no frame indices cannot be counted, as the processor "
                "cannot time the frames (it raises \"Cannot infer video `timestamps`\"); "
                "count the frames you pass with plan_frames(indices=..., fps=...) and give "
                "the processor video_metadata with 'frames_indices', or pass "
                "do_sample_frames=True"
            )
        cap, rate = None, None
        indices = tuple(range(total))
    video_fps = info.fps if info.fps is not None else FALLBACK_FPS
    return VideoPlan(
        timestamps=tuple(i / video_fps for i in indices), duration=info.duration,
        indices=indices, total_frames=total, fps=info.fps, sampled=do_sample_frames,
        max_frames=cap, sample_fps=rate, path=info.path,
    )


def plan_frames(
    timestamps: Sequence[float] | None = None, *, indices: Sequence[int] | None = None,
    fps: float | None = None, duration: float | None = None,
) -> VideoPlan:
    """Frames the user sampled, passed to the processor as frames (not a path).

    Give their ``timestamps`` in seconds, or their ``indices`` with the video's ``fps``
    (``video_metadata={"fps": ..., "frames_indices": ...}``; without an fps the
    processor assumes 24). Frames passed with no metadata at all are
    ``indices=range(n)`` at 24 fps. ``duration`` is the metadata's duration; without
    one the intro states the last timestamp, as transformers does.
    """
    if (timestamps is None) == (indices is None):
        raise CountingError("give the sampled frames' timestamps or their indices (one of "
                            "the two); e.g. plan_frames([0.0, 1.0, 2.0])")
    if fps is not None:
        _checked("fps", fps, "pass the video's frame rate", inclusive=False)
    if duration is not None:
        _checked("duration", duration, "pass the video's length in seconds")
    if indices is not None:
        index_list = list(indices)
        for index in index_list:
            _checked("frame index", index, "frame indices are whole numbers from 0", integer=True)
        video_fps = fps if fps is not None else FALLBACK_FPS
        times = tuple(i / video_fps for i in index_list)
        kept: tuple[int, ...] | None = tuple(index_list)
    else:
        times = tuple(timestamps or ())
        for time in times:
            _checked("timestamp", time, "timestamps are seconds from the start, 0 or more")
        kept = None
    if not times:
        raise CountingError("a video needs at least one frame; pass one timestamp or index "
                            "or more")
    return VideoPlan(timestamps=times, duration=duration, indices=kept, fps=fps)


# -------------------------------------------------------------------------------- text


@cache
def _spell(number: int) -> str:
    from num2words import num2words  # the processor's own speller (a transformers need)

    return str(num2words(number))


def _mm_ss(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{int(seconds % 60):02d}"


@cache
def _installed_transformers() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformers")
    except PackageNotFoundError:
        return None


def transformers_before(since: tuple[int, int], transformers_version: str | None = None) -> bool:
    """Whether transformers (the installed one, read from its metadata with no import, or
    ``transformers_version``) is older than ``since`` (major, minor). With no transformers
    installed the newest behaviour is assumed (False), and a version string that does not
    start with two numbers is a :class:`CountingError`."""
    import re

    text = transformers_version if transformers_version is not None \
        else _installed_transformers()
    if text is None:
        return False
    match = re.match(r"(\d+)\.(\d+)", text)
    if match is None:
        raise CountingError(f"transformers version {text!r} is not of the form MAJOR.MINOR; "
                            "reinstall transformers")
    return (int(match[1]), int(match[2])) < since


def intros_spell_the_largest(transformers_version: str | None = None) -> bool:
    """Whether every intro of one processor call spells the call's largest sampled frame
    count (transformers 5.0 to 5.24) rather than its own video's (5.25 on,
    :data:`OWN_INTRO_SINCE`).

    ``transformers_version`` defaults to the installed one (:func:`transformers_before`).
    """
    return transformers_before(OWN_INTRO_SINCE, transformers_version)


def video_pieces(plan: VideoPlan, intro_frames: int | None = None) -> tuple[str, ...]:
    """The text the processor writes for a video, cut at the frame blocks.

    ``len(plan.timestamps) + 1`` pieces: the intro with the first frame's line, one
    line per further frame, and the outro; an image block stands between each pair.
    The blocks start and end with special tokens, so each piece tokenizes alone.
    ``intro_frames`` is the count the intro spells (default: this video's own); which
    count that is, is :meth:`VideoCounter.cost`'s business (see
    :func:`intros_spell_the_largest`).
    """
    frames = intro_frames if intro_frames is not None else plan.frames
    # the metadata's duration, else the last timestamp; truncated to whole seconds
    seconds = int(plan.duration if plan.duration is not None else plan.timestamps[-1])
    intro = VIDEO_INTRO.format(frame_count=_spell(frames),
                               video_duration=str(timedelta(seconds=seconds)))
    lines = [FRAME_TIMESTAMP.format(timestamp=_mm_ss(t)) for t in plan.timestamps]
    return (intro + lines[0], *lines[1:], MEDIA_OUTRO)


def frame_block_tokens(spec: ModelSpec) -> int:
    """Tokens of one frame's block: ``<fake><global-img><image>*seq<fake>``."""
    return spec.image_seq_len + 3


class VideoCost(NamedTuple):
    """What one video costs, by origin; ``tokens`` is everything the processor writes in
    place of its ``<video>``, tokenized alone.

    In a prompt, the intro and the outro meet the text around the placeholder and may
    tokenize a token or two differently (``": " + "You"`` is one token less, ``"\\n\\n"
    + "hi"`` one more): count a prompt with :func:`splice_videos`, never by adding
    ``tokens`` to the rest.
    """

    frames: int
    timestamps: tuple[float, ...]
    indices: tuple[int, ...] | None
    total_frames: int | None
    fps: float | None
    duration: float | None
    intro_frames: int
    image_tokens: int
    block_tokens: int
    text_tokens: int
    tokens: int
    pieces: tuple[str, ...]
    max_frames: int | None = None
    sample_fps: float | None = None
    path: str | None = None

    def json_fields(self) -> dict[str, Any]:
        """The ``tokenguard count`` JSON Lines fields of a video (``path`` and ``kind``
        first; ``frames`` is the sampled count)."""
        return {
            "path": self.path, "kind": "video", "duration": self.duration, "fps": self.fps,
            "total_frames": self.total_frames, "frames": self.frames,
            "image_tokens": self.image_tokens, "block_tokens": self.block_tokens,
            "tokens": self.tokens,
        }


class SplicedPrompt(NamedTuple):
    """A prompt with its ``<video>`` placeholders expanded: the text pieces between frame
    blocks (they may still hold ``<image>`` placeholders) and the frames' tokens."""

    pieces: tuple[str, ...]
    frames: int
    image_tokens: int
    block_tokens: int


def splice_videos(text: str, videos: Sequence[VideoCost]) -> SplicedPrompt:
    """Expand each ``<video>`` of ``text`` as the processor does, keeping text apart from
    blocks: the prompt costs ``sum(count(piece)) + block_tokens`` (plus whatever its
    ``<image>`` placeholders and the tokenizer's own special tokens add)."""
    parts = text.split(VIDEO_TOKEN)
    if len(parts) - 1 != len(videos):
        raise CountingError(
            f"the prompt has {len(parts) - 1} {VIDEO_TOKEN} placeholders but {len(videos)} "
            "videos were given: pass one video per placeholder, in order"
        )
    pieces = [parts[0]]
    for video, after in zip(videos, parts[1:], strict=True):
        pieces[-1] += video.pieces[0]
        pieces.extend(video.pieces[1:])
        pieces[-1] += after
    return SplicedPrompt(
        pieces=tuple(pieces), frames=sum(v.frames for v in videos),
        image_tokens=sum(v.image_tokens for v in videos),
        block_tokens=sum(v.block_tokens for v in videos),
    )


# ----------------------------------------------------------------------------- counting


def tokenizer_text_counter(tokenizer: Any) -> Callable[[str], int]:
    """``text -> tokens`` over a bare ``tokenizers.Tokenizer`` (no special tokens), cached:
    the same count as transformers' ``tokenizer(text, add_special_tokens=False)``."""
    encode = tokenizer.encode

    @cache
    def count(text: str) -> int:
        return len(encode(text, add_special_tokens=False).ids)

    return count


def text_counter_from_folder(folder: str | os.PathLike[str]) -> Callable[[str], int]:
    """A text counter over a checkpoint folder's ``tokenizer.json`` (no transformers)."""
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise SpecError(f"{path}: not found; video text needs the checkpoint's tokenizer")
    from tokenizers import Tokenizer

    return tokenizer_text_counter(Tokenizer.from_file(str(path)))


VideoInput = VideoInfo | VideoPlan | str | os.PathLike[str]


class VideoCounter:
    """Exact video costs for one checkpoint: its spec (image block), its sampling defaults
    and a text counter (``TokenCounter.text`` or :func:`tokenizer_text_counter`).

    Call it with a path, a :class:`VideoInfo` or a :class:`VideoPlan`. Text pieces
    repeat across videos ("\\nFrame from 00:01:"), so their counts are cached.
    """

    def __init__(
        self, spec: ModelSpec, count_text: Callable[[str], int],
        sampling: VideoSampling | None = None, backend: MetadataBackend = "torchcodec",
        *, shared_intro: bool | None = None,
    ) -> None:
        """``shared_intro``: whether every intro of a call spells the call's largest frame
        count; ``None`` (default) follows the installed transformers
        (:func:`intros_spell_the_largest`)."""
        if sampling is None:
            sampling = KNOWN_VIDEO_SAMPLING.get(spec.name) or video_sampling_for(spec.name)
            if sampling is None:
                raise SpecError(
                    f"{spec.name}: no video_sampling known; pass sampling= (e.g. "
                    "video_sampling_from_folder(folder))"
                )
        self.spec = spec
        self.sampling = sampling
        self.backend: MetadataBackend = backend
        self.shared_intro = (intros_spell_the_largest() if shared_intro is None
                             else bool(shared_intro))
        self._count_text = count_text
        self._text_cache: dict[str, int] = {}

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str], name: str | None = None,
                    backend: MetadataBackend = "torchcodec") -> VideoCounter:
        """Everything from a checkpoint folder's JSON files: no transformers import."""
        from .specs import spec_from_folder

        return cls(spec_from_folder(Path(folder), name=name), text_counter_from_folder(folder),
                   video_sampling_from_folder(folder), backend)

    def text(self, piece: str) -> int:
        count = self._text_cache.get(piece)
        if count is None:
            count = int(self._count_text(piece))
            if len(self._text_cache) < 65536:
                self._text_cache[piece] = count
        return count

    def plan(
        self, video: VideoInput, *, num_frames: int | None = None, fps: float | None = None,
        video_size: int | None = None, do_sample_frames: bool = True,
    ) -> VideoPlan:
        """The frames kept of ``video`` (a plan is returned as it is)."""
        if video_size is not None:
            _checked("video_size", video_size,
                     'pass the longest edge, e.g. {"longest_edge": 384}', minimum=1, integer=True)
        if isinstance(video, VideoPlan):
            return video
        if not isinstance(video, VideoInfo):
            video = read_video_info(video, self.backend)
        return plan_video(video, self.sampling, num_frames=num_frames, fps=fps,
                          do_sample_frames=do_sample_frames)

    def cost(self, plan: VideoPlan, intro_frames: int | None = None) -> VideoCost:
        """The cost of a plan in a processor call whose videos sample at most
        ``intro_frames`` frames (default: this one's, a call of its own). The intro
        spells that count where the call's largest is shared (:attr:`shared_intro`),
        else the plan's own."""
        if intro_frames is not None:
            _checked("intro_frames", intro_frames, "pass the largest frame count of the call",
                     minimum=plan.frames, integer=True)
            if not self.shared_intro:
                intro_frames = None
        pieces = video_pieces(plan, intro_frames)
        frames = plan.frames
        seq = self.spec.image_seq_len
        text_tokens = sum(self.text(piece) for piece in pieces)
        block = frames * frame_block_tokens(self.spec)
        return VideoCost(
            frames=frames, timestamps=plan.timestamps, indices=plan.indices,
            total_frames=plan.total_frames, fps=plan.fps, duration=plan.duration,
            intro_frames=intro_frames if intro_frames is not None else frames,
            image_tokens=frames * seq, block_tokens=block, text_tokens=text_tokens,
            tokens=text_tokens + block, pieces=pieces, max_frames=plan.max_frames,
            sample_fps=plan.sample_fps, path=plan.path,
        )

    def __call__(
        self, video: VideoInput, *, num_frames: int | None = None, fps: float | None = None,
        video_size: int | None = None, do_sample_frames: bool = True,
        intro_frames: int | None = None,
    ) -> VideoCost:
        """The exact cost of one video (see :func:`plan_video` for the arguments;
        ``video_size`` is accepted as the processor accepts ``size=`` per call, and does
        not change the count)."""
        return self.cost(
            self.plan(video, num_frames=num_frames, fps=fps, video_size=video_size,
                      do_sample_frames=do_sample_frames),
            intro_frames,
        )

    def many(
        self, videos: Sequence[VideoInput], *, num_frames: int | None = None,
        fps: float | None = None, video_size: int | None = None, do_sample_frames: bool = True,
    ) -> tuple[VideoCost, ...]:
        """The costs of the videos of ONE processor call (one batch), as the installed
        transformers writes them: up to 5.24 every intro spells the largest frame count
        among them, from 5.25 on each its own."""
        return self.costs([self.plan(v, num_frames=num_frames, fps=fps, video_size=video_size,
                                     do_sample_frames=do_sample_frames) for v in videos])

    def costs(self, plans: Sequence[VideoPlan]) -> tuple[VideoCost, ...]:
        """The costs of the plans of ONE processor call, in order (see :meth:`many`)."""
        most = max((plan.frames for plan in plans), default=0)
        return tuple(self.cost(plan, most) for plan in plans)

    def tokens_by_num_frames(
        self, video: VideoInfo | str | os.PathLike[str], *, fps: float | None = None,
    ) -> tuple[int, ...]:
        """The video's exact tokens at ``num_frames=1, 2, ..., max_frames`` (sampled at
        ``fps``, else the checkpoint's rate): entry ``n - 1`` is ``num_frames=n``. The
        recorder keeps it, so a marker can name the fix without the tokenizer."""
        info = video if isinstance(video, VideoInfo) else read_video_info(video, self.backend)
        return tuple(self(info, num_frames=cap, fps=fps).tokens
                     for cap in range(1, self.sampling.max_frames + 1))

    def tokens_by_fps(
        self, video: VideoInfo | str | os.PathLike[str], *, num_frames: int | None = None,
    ) -> tuple[tuple[float, int], ...]:
        """``(fps, tokens)`` for the sampling rates that give the video each frame count
        from 1 to ``max_frames``: ``n / duration`` rounded down to 3 decimals (a rate a
        person would write), each counted exactly at that rate. Ascending rates."""
        info = video if isinstance(video, VideoInfo) else read_video_info(video, self.backend)
        if not info.duration:
            return ()
        out: dict[float, int] = {}
        for frames in range(1, (num_frames or self.sampling.max_frames) + 1):
            rate = math.floor(frames / info.duration * 1000) / 1000
            if rate > 0 and rate not in out:
                out[rate] = self(info, num_frames=num_frames, fps=rate).tokens
        return tuple(sorted(out.items()))

    def max_frames_within(
        self, video: VideoInfo | str | os.PathLike[str], limit: int, *,
        fps: float | None = None,
    ) -> int | None:
        """The largest ``num_frames`` (up to the checkpoint's ``max_frames``) whose cost
        is at most ``limit`` tokens, or None when even one frame does not fit: the fix a
        failure message offers. Every candidate is counted exactly (at most
        ``max_frames`` plans, no search shortcut: the count is not monotone in every
        digit of the intro)."""
        _checked("limit", limit, "pass a token budget", minimum=0, integer=True)
        return largest_within(self.tokens_by_num_frames(video, fps=fps), limit)


def largest_within(tokens_by_num_frames: Sequence[int], limit: int) -> int | None:
    """The largest ``n`` whose entry ``tokens_by_num_frames[n - 1]`` is at most ``limit``
    (see :meth:`VideoCounter.tokens_by_num_frames`), or None."""
    for cap in range(len(tokens_by_num_frames), 0, -1):
        if tokens_by_num_frames[cap - 1] <= limit:
            return cap
    return None
