"""Every tokenguard marker, defined once: its signature, its validation, its check, its help.

:data:`MARKERS` maps a marker's name to a :class:`MarkerDef`. The signature (what
``pytest --markers`` prints and what the arguments are bound against) comes from one
function per marker, as in pytest-memray; :meth:`MarkerDef.parse` binds a marker's
arguments to it and validates every value, at collection, so a bad argument stops the
run before any test runs; :meth:`MarkerDef.check` turns what the test did into a
:class:`~pytest_tokenguard.verdict.Verdict`. The checks themselves are pure functions
of records (no pytest), unit-tested on their own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..families.smolvlm import suggest_longest_edge, suggest_sampling
from ..verdict import PASSED, CheckResult, LimitResult, Verdict

if TYPE_CHECKING:
    from ..families.base import Family
    from ..gpu.measure import DevicesPeak, GpuPeak
    from ..processor.recording import ImageRecord, Recording, SequenceRecord, VideoRecord

__all__ = [
    "MARKERS",
    "Context",
    "MarkerDef",
    "check_image_tokens",
    "check_max_sequence",
    "check_video_tokens",
    "suggest_longest_edge",
    "suggest_sampling",
]


@dataclass(frozen=True)
class Where:
    """What a marker's arguments are validated against: the test and the configuration."""

    model: str
    longest_edge: int | None  # the test's ``tokenguard_longest_edge`` parameter, if any


@dataclass(frozen=True)
class Context:
    """What a check sees once the test ran."""

    recording: Recording | None
    gpu_peak: GpuPeak | DevicesPeak | None


# --------------------------------------------------------------------------- token checks


def _patches(n: int) -> str:
    return f"{n} patch" if n == 1 else f"{n} patches"


def _family(record: ImageRecord | VideoRecord) -> Family:
    from ..families import family_named

    return family_named(getattr(record, "family", "smolvlm"))


_NOTHING_SEEN = (
    "The marker checks what a real SmolVLMProcessor/Idefics3Processor or Qwen2VLProcessor/"
    "Qwen2_5_VLProcessor/Qwen3VLProcessor call produced while "
    "the test (and its fixtures) ran. Call the processor in the test, or remove the marker: "
    "a marker that checks nothing is a bug."
)


def _saw_nothing(declared: str, done: str) -> CheckResult:
    """The failure of a token marker whose test made no call it could check."""
    return CheckResult(False, f"Test declared {declared} but no SmolVLM or Qwen-VL processor call "
                              f"{done} while it ran", _NOTHING_SEEN)


def check_image_tokens(images: Sequence[ImageRecord], expected: int) -> CheckResult:
    """Every image processed during the test must cost exactly ``expected`` ``<image>`` tokens."""
    if not images:
        return _saw_nothing(f"{expected} image tokens per image", "processed an image")
    wrong = [image for image in images if image.image_tokens != expected]
    if not wrong:
        return PASSED
    first = wrong[0]
    family = _family(first)
    message = (
        f"Image {first.width}×{first.height} {family.describe_image(first)} "
        f"but the test declared {expected}; {family.image_fix(first, expected)}"
    )
    lines = [f"{len(wrong)} of {len(images)} images cost other than {expected} "
             f"{family.image_token} tokens:"]
    lines.append(f"  {'image':>11}  {'longest_edge':>12}  {'grid':>5}  {'patches':>7}  "
                 f"{'tokens':>7}  {'block':>6}")
    for image in wrong[:20]:
        edge = "-" if image.longest_edge is None else str(image.longest_edge)
        lines.append(
            f"  {f'{image.width}×{image.height}':>11}  {edge:>12}  "
            f"{image.grid:>5}  {image.patches:>7}  {image.image_tokens:>7}  "
            f"{image.block_tokens:>6}"
        )
    if len(wrong) > 20:
        lines.append(f"  ... and {len(wrong) - 20} more")
    return CheckResult(False, message, "\n".join(lines))


def check_max_sequence(sequences: Sequence[SequenceRecord], limit: int) -> CheckResult:
    """No sequence produced during the test may be longer than ``limit`` tokens, and at
    least one must have been produced (as for ``image_tokens``, a marker that checks
    nothing fails)."""
    if not sequences:
        return _saw_nothing(f"a limit of {limit} tokens per sequence", "returned a sequence")
    over = [sequence for sequence in sequences if sequence.length > limit]
    if not over:
        return PASSED
    worst = max(over, key=lambda sequence: sequence.length)
    message = (
        f"Sequence '{worst.name}' is {worst.length} tokens, over the limit of {limit} "
        f"by {worst.length - limit}"
    )
    lines = [f"{len(over)} of {len(sequences)} sequences are longer than {limit} tokens:"]
    for sequence in over[:20]:
        edge = f" at longest_edge={sequence.longest_edge}" if sequence.longest_edge else ""
        note = f" ({sequence.note})" if getattr(sequence, "note", "") else ""
        lines.append(f"  {sequence.name}: {sequence.length} tokens{edge}{note}  "
                     f"{sequence.preview!r}")
    lines.append(
        "Lower the processor's longest_edge (SmolVLM) or max_pixels (Qwen-VL), send fewer "
        "images per sample, sample fewer "
        "video frames (num_frames=...; @pytest.mark.video_tokens names the value that fits), "
        "or split the sample (pytest_tokenguard.splitting)."
    )
    return CheckResult(False, message, "\n".join(lines))


def _rate(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _describe_video(video: VideoRecord) -> str:
    what = f"Video {video.label!r}"
    if video.total_frames is not None:
        seconds = f", {_rate(video.duration)} s" if video.duration is not None else ""
        rate = f" at {_rate(video.fps)} fps" if video.fps is not None else ""
        return (f"{what} ({video.frames} of {video.total_frames} frames sampled{seconds}"
                f"{rate})")
    return f"{what} ({video.frames} frames)"


def _per_frame(video: VideoRecord) -> int:
    """A video's tokens a sampled frame: its block (placeholders and wrappers) over its
    frames, rounded up (exact for SmolVLM2, whose frames are whole blocks; never lower
    than the real cost where frames share a temporal patch, as Qwen-VL's pairs do)."""
    return -(-video.block_tokens // video.frames)


def check_video_tokens(videos: Sequence[VideoRecord], limit: int,
                       per_frame: int | None = None) -> CheckResult:
    """Every video processed during the test must cost at most ``limit`` tokens (all the
    processor writes in place of its ``<video>``) and, with ``per_frame``, each of its
    sampled frames at most ``per_frame`` tokens (its image block); at least one video
    must have been processed (a marker that checks nothing fails)."""
    if not videos:
        return _saw_nothing(f"at most {limit} tokens per video", "processed a video")
    over = [video for video in videos if video.tokens > limit]
    heavy = [video for video in videos if per_frame is not None and video.frames
             and _per_frame(video) > per_frame]
    if not over and not heavy:
        return PASSED
    if over:
        worst = max(over, key=lambda video: video.tokens)
        message = (f"{_describe_video(worst)} cost {worst.tokens} tokens, over the declared "
                   f"{limit} by {worst.tokens - limit}; {_family(worst).video_fix(worst, limit)}")
    else:
        worst = heavy[0]
        assert per_frame is not None
        family = _family(worst)
        per = _per_frame(worst)
        explain = getattr(family, "frame_fix", None)
        why = (explain(worst, per, per_frame) if explain is not None else
               f"costs {per} tokens a frame, over the declared per_frame={per_frame}")
        message = f"{_describe_video(worst)} {why}"
    lines = [f"{len(set(map(id, over + heavy)))} of {len(videos)} videos are over the "
             "declared cost:",
             f"  {'video':>20}  {'frames':>6}  {'of':>6}  {'<image>':>7}  {'block':>6}  "
             f"{'tokens':>6}"]
    for video in (over + [v for v in heavy if v not in over])[:20]:
        total = "-" if video.total_frames is None else str(video.total_frames)
        lines.append(f"  {video.label[-20:]:>20}  {video.frames:>6}  {total:>6}  "
                     f"{video.image_tokens:>7}  {video.block_tokens:>6}  {video.tokens:>6}")
    return CheckResult(False, message, "\n".join(lines))


# --------------------------------------------------------------------------- the registry


def _count(marker: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive number of tokens, got {value!r}: e.g. "
                         f"@pytest.mark.{marker}(81)")
    return value


def _size(marker: str, value: object) -> int:
    from ..units import parse_size

    try:
        return parse_size(value)
    except ValueError as exc:
        raise ValueError(f"size: {exc}") from None


def _image_tokens(n: int) -> int:
    """fail if any image a SmolVLM processor expanded during the test (fixtures included)
    cost other than n <image> tokens, or if no image was processed at all"""
    return _count("image_tokens", "n", n)


@dataclass(frozen=True)
class VideoLimit:
    """A validated ``video_tokens`` marker."""

    limit: int
    per_frame: int | None = None


def _video_tokens(max: int, *, per_frame: int | None = None) -> VideoLimit:
    """fail if any video a SmolVLM or Qwen-VL processor expanded during the test
    (processor(videos=...) or a chat template's video item; fixtures included) cost more
    than max tokens (all it writes in place of its placeholder: SmolVLM2's intro, a
    timestamp line and an image block per sampled frame, outro; Qwen-VL's
    <|video_pad|> tokens, wrappers and Qwen3-VL's timestamps), or with per_frame if any
    sampled frame costs more than per_frame tokens (its block over its frames); the
    failure names the video, its sampled frames and the num_frames and fps that would fit;
    fails if no video was processed at all"""
    return VideoLimit(_count("video_tokens", "max", max),
                      None if per_frame is None else _count("video_tokens", "per_frame",
                                                            per_frame))


def _max_sequence_tokens(n: int) -> int:
    """fail if any sequence a SmolVLM processor returned during the test (fixtures included)
    is longer than n tokens (padding not counted), or if none was returned at all"""
    return _count("max_sequence_tokens", "n", n)


@dataclass(frozen=True)
class GpuLimit:
    """A validated ``limit_gpu_memory`` marker."""

    limit_bytes: int
    measure: str
    devices: tuple[int, ...] | Literal["all"] | None


def _limit_gpu_memory(size: int | str, measure: str = "max", devices: object = None) -> GpuLimit:
    """measure the test's GPU peak (torch allocated and reserved, NVML device memory) and
    fail over size ("24 GiB", "800MB", "24G" or bytes); measure is max, allocated, reserved
    or nvml; devices is the current device (None), a device index, a list of them, or
    "all" (every visible GPU, through NVML, with the processes the test starts, e.g. a
    torchrun job: fails when any GPU passes size); skips without CUDA unless
    --tokenguard-require-gpu"""
    from ..gpu.measure import MEASURES, validate_devices

    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    chosen = validate_devices(devices)
    if chosen is not None and measure not in ("max", "nvml"):
        raise ValueError(f"measure={measure!r} reads torch's counters of this process's device; "
                         "devices= measures every GPU through NVML: leave measure out")
    return GpuLimit(_size("limit_gpu_memory", size), measure, chosen)


def _tokenguard_no_baseline(reason: str = "") -> str:
    """keep this test's figures out of the tokenguard baseline (inputs that differ run to
    run); hypothesis tests, pytester runs and splitter checks are left out automatically"""
    if not isinstance(reason, str):
        raise ValueError(f"reason must be a string, got {reason!r}")
    return reason or "tokenguard_no_baseline"


def _predicted_signature() -> inspect.Signature:
    """``size``, every keyword of the memory model's one definition of a training step
    (:func:`pytest_tokenguard.gpu.model.shape_fields`) and ``margin``."""
    from ..gpu.model import shape_fields

    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("size", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(field.name, keyword, default=field.default)
               for field in shape_fields()]
    params.append(inspect.Parameter("margin", keyword, default=0.0))
    return inspect.Signature(params)


def _limit_predicted_gpu_memory(where: Where, size: int | str, **shape: Any) -> LimitResult:
    """fail if the memory model predicts one training step of the configured model over
    size; runs on CPU. longest_edge defaults to the test's tokenguard_longest_edge
    parameter, else the checkpoint's own; the failure names the shape predicted"""
    from ..gpu.model import check_predicted_for_model

    if shape.get("longest_edge") is None and where.longest_edge is not None:
        shape["longest_edge"] = where.longest_edge
    return check_predicted_for_model(size, where.model, **shape)


def _training_set_fits(where: Where, data: str, *, max_length: int | None = None,
                       longest_edge: int | None = None, trainer: str | None = None,
                       keep: float = 1.0, num_frames: int | None = None,
                       fps: float | None = None, workers: int = 1,
                       image_root: str | None = None, max_pixels: int | None = None) -> Any:
    """audit the training set at data (JSON Lines, JSON, Parquet or a datasets folder, as
    tokenguard audit reads it) with the configured model and fail if a sample would be
    cut inside an image by the trainer's truncation (TRL's collator raises), is refused
    or unreadable, or if fewer than keep of the samples fit max_length (trainer='trl':
    the installed TRL's SFTConfig default); the failure names the samples by id and the
    settings that fit; longest_edge defaults to the test's tokenguard_longest_edge
    parameter, else the checkpoint's own (a Qwen-VL model: max_pixels, else the
    checkpoint's own); the figures go into the baseline"""
    from ..audit.gate import gate_from_marker

    if longest_edge is None and where.longest_edge is not None:
        longest_edge = where.longest_edge
    if max_length is None and trainer is None:
        raise ValueError("give max_length=N (SFTConfig.max_length) or trainer='trl' (the "
                         "installed TRL's default)")
    return gate_from_marker(where.model, data, max_length=max_length,
                            longest_edge=longest_edge, trainer=trainer, keep=keep,
                            num_frames=num_frames, fps=fps, workers=workers,
                            image_root=image_root, max_pixels=max_pixels)


def _check_training_set(gate: Any, context: Context) -> Verdict:
    from ..audit.gate import check_training_set

    return check_training_set(gate)  # the data set, not what the test did


@dataclass(frozen=True)
class MarkerDef:
    """One marker: name, signature (from its function), validation and check."""

    name: str
    function: Callable[..., Any]
    #: the marker's check once the test ran, given its parsed arguments
    check: Callable[[Any, Context], Verdict] | None = None
    #: whether the function takes the :class:`Where` of the test first
    needs_where: bool = False
    signature_of: Callable[[], inspect.Signature] | None = None

    @property
    def signature(self) -> inspect.Signature:
        if self.signature_of is not None:
            return self.signature_of()
        signature = inspect.signature(self.function)
        return signature.replace(parameters=[
            p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()
            if p.name != "where"], return_annotation=inspect.Signature.empty)

    @property
    def usage(self) -> str:
        return f"@pytest.mark.{self.name}{self.signature}"

    @property
    def help(self) -> str:
        """The ``pytest --markers`` line: signature, then what it does."""
        doc = " ".join((inspect.getdoc(self.function) or "").split())
        return f"{self.name}{self.signature}: under --tokenguard, {doc}"

    def parse(self, args: Sequence[object], kwargs: Mapping[str, object], where: Where) -> Any:
        """The marker's arguments bound and validated; ValueError says what is wrong and how
        to write it."""
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ValueError(f"@pytest.mark.{self.name}: {exc}; write {self.usage}") from None
        try:
            if self.needs_where:
                return self.function(where, *args, **kwargs)
            return self.function(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"@pytest.mark.{self.name}: {exc}") from None


def _unchecked(marker: str, n: int, context: Context,
               kind: Literal["image", "sequence", "video"]) -> Verdict | None:
    """The one rule of both token markers: calls that could not be recorded fail it."""
    from ..processor.recording import unchecked_reason

    if context.recording is None or not context.recording.unseen:
        return None  # an empty recording is judged by the check, with its own message
    reason = unchecked_reason(context.recording, kind)
    return CheckResult(False, f"@pytest.mark.{marker}({n}): {reason}", _NOTHING_SEEN)


def _check_images(n: int, context: Context) -> Verdict:
    return (_unchecked("image_tokens", n, context, "image")
            or check_image_tokens(context.recording.images if context.recording else (), n))


def _check_sequences(n: int, context: Context) -> Verdict:
    return (_unchecked("max_sequence_tokens", n, context, "sequence")
            or check_max_sequence(context.recording.sequences if context.recording else (), n))


def _check_videos(limit: VideoLimit, context: Context) -> Verdict:
    return (_unchecked("video_tokens", limit.limit, context, "video")
            or check_video_tokens(context.recording.videos if context.recording else (),
                                  limit.limit, limit.per_frame))


def _check_gpu(limit: GpuLimit, context: Context) -> Verdict:
    from ..gpu.measure import DevicesPeak, check_gpu_limit, check_gpu_limits

    peak = context.gpu_peak
    assert peak is not None
    if isinstance(peak, DevicesPeak):
        return check_gpu_limits(peak, limit.limit_bytes)
    return check_gpu_limit(peak, limit.limit_bytes, limit.measure)  # type: ignore[arg-type]


def _check_predicted(verdict: LimitResult, context: Context) -> Verdict:
    return verdict  # computed at collection: a prediction depends on nothing the test does


MARKERS: dict[str, MarkerDef] = {
    marker.name: marker for marker in (
        MarkerDef("image_tokens", _image_tokens, _check_images),
        MarkerDef("max_sequence_tokens", _max_sequence_tokens, _check_sequences),
        MarkerDef("video_tokens", _video_tokens, _check_videos),
        MarkerDef("limit_gpu_memory", _limit_gpu_memory, _check_gpu),
        MarkerDef("limit_predicted_gpu_memory", _limit_predicted_gpu_memory, _check_predicted,
                  needs_where=True, signature_of=_predicted_signature),
        MarkerDef("tokenguard_no_baseline", _tokenguard_no_baseline),
        MarkerDef("training_set_fits", _training_set_fits, _check_training_set,
                  needs_where=True),
    )
}
