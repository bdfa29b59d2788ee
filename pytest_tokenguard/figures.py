"""What one test cost: the typed figures that the summary, the baseline and the JSON
report share, with ONE JSON form.

A test's figures are made once, from its recording (:func:`figures_from_recording`),
travel from an xdist worker to the controller inside the test report
(:mod:`pytest_tokenguard.plugin.wire`), are printed in the summary table and are
stored, in the very same JSON, as the test's entry of the committed baseline
(:mod:`pytest_tokenguard.baseline.store`). Pure Python: no pytest, no transformers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .processor.recording import Recording

__all__ = [
    "AuditFigure",
    "GpuFigure",
    "ImageFigure",
    "PixelBounds",
    "ResolutionFigures",
    "ResolutionKey",
    "TestFigures",
    "VideoFigure",
    "figures_from_recording",
    "resolution_label",
    "resolution_order",
    "video_figures_from_json",
]


class PixelBounds(NamedTuple):
    """The pixel budget that decides what a Qwen-VL image costs: the call's ``min_pixels``
    and ``max_pixels`` (``size["shortest_edge"]`` / ``size["longest_edge"]``, areas in
    pixels). A Qwen image's figures are kept under it, as SmolVLM2's under
    ``longest_edge``: two runs at other budgets never share an entry."""

    min_pixels: int
    max_pixels: int

    def label(self) -> str:
        return f"max_pixels={self.max_pixels} (min_pixels={self.min_pixels})"


#: what a test's figures are grouped by: ``(longest_edge, None)`` for SmolVLM2,
#: ``(None, PixelBounds)`` for a pixel-budget family (Qwen-VL), ``(None, None)`` for
#: sequences and videos of calls that had no image resolution
ResolutionKey = tuple[int | None, PixelBounds | None]


def resolution_label(longest_edge: int | None, pixels: PixelBounds | None = None, *,
                     named: bool = True) -> str:
    """How messages name a resolution: ``longest_edge=384`` (``384`` unnamed),
    ``max_pixels=200704 (min_pixels=3136)``, or ``-`` for none."""
    if pixels is not None:
        return pixels.label()
    if longest_edge is None:
        return "-"
    return f"longest_edge={longest_edge}" if named else str(longest_edge)


def resolution_order(key: ResolutionKey) -> tuple[bool, int, bool, tuple[int, int]]:
    """Edges ascending, then pixel budgets ascending, then no resolution last."""
    edge, pixels = key
    return (edge is None, edge or 0, pixels is None,
            (pixels.max_pixels, pixels.min_pixels) if pixels is not None else (0, 0))


@dataclass(frozen=True, order=True)
class ImageFigure:
    """What one distinct image size cost at one resolution."""

    width: int
    height: int
    image_tokens: int
    block_tokens: int

    @property
    def size(self) -> str:
        return f"{self.width}×{self.height}"

    def to_json(self) -> dict[str, int]:
        return {"width": self.width, "height": self.height, "image_tokens": self.image_tokens,
                "block_tokens": self.block_tokens}


@dataclass(frozen=True, order=True)
class VideoFigure:
    """What ``count`` videos of one test cost each, alike: the frames the processor
    sampled, their ``<image>`` and block tokens, and ``tokens``, everything written in
    place of one ``<video>`` (tokenized alone)."""

    frames: int
    image_tokens: int
    block_tokens: int
    tokens: int
    count: int = 1

    def to_json(self) -> dict[str, int]:
        return {"frames": self.frames, "image_tokens": self.image_tokens,
                "block_tokens": self.block_tokens, "tokens": self.tokens, "count": self.count}


def video_figures_from_json(data: object) -> tuple[VideoFigure, ...]:
    """The ``videos`` list of a resolution entry (trusted data: the wire)."""
    if not isinstance(data, list):
        return ()
    return tuple(sorted(VideoFigure(int(v["frames"]), int(v["image_tokens"]),
                                    int(v["block_tokens"]), int(v["tokens"]),
                                    int(v.get("count", 1))) for v in data))


@dataclass(frozen=True)
class ResolutionFigures:
    """The token figures of one test at one ``longest_edge`` (``None``: sequences that had
    no image), or, for a pixel-budget family (Qwen-VL), at one ``pixels``
    (``longest_edge`` is then ``None``). ``per_image`` lists each distinct image size
    once, sorted.

    ``per_video`` lists the videos (processed through ``videos=``) recorded with it, one
    entry per distinct cost with how many had it; video frames are not images, so
    ``images``, ``image_tokens`` and ``block_tokens`` count still images only. In JSON
    the videos are the optional ``videos`` key, written only when there are some, so a
    suite without videos writes the same bytes as before and older files still load.
    """

    longest_edge: int | None
    images: int
    image_tokens: int
    block_tokens: int
    longest_sequence: int
    per_image: tuple[ImageFigure, ...] = ()
    #: tiles encoded by the vision tower; shown in the summary, not kept in the baseline
    #: (it follows from the per-image counts)
    patches: int = field(default=0, compare=False)
    per_video: tuple[VideoFigure, ...] = ()
    pixels: PixelBounds | None = None

    @property
    def key(self) -> ResolutionKey:
        return self.longest_edge, self.pixels

    def label(self, *, named: bool = True) -> str:
        return resolution_label(self.longest_edge, self.pixels, named=named)

    @property
    def videos(self) -> int:
        return sum(video.count for video in self.per_video)

    @property
    def video_frames(self) -> int:
        return sum(video.frames * video.count for video in self.per_video)

    @property
    def video_tokens(self) -> int:
        """Everything the processor wrote for the videos (each tokenized alone)."""
        return sum(video.tokens * video.count for video in self.per_video)

    def to_json(self, *, patches: bool = False) -> dict[str, Any]:
        """The baseline's form; ``patches=True`` adds the tile count (the wire's form)."""
        data: dict[str, Any] = {
            "longest_edge": self.longest_edge,
            "images": self.images,
            "image_tokens": self.image_tokens,
            "block_tokens": self.block_tokens,
            "longest_sequence": self.longest_sequence,
            "per_image": [image.to_json() for image in self.per_image],
        }
        if patches:
            data["patches"] = self.patches
        if self.pixels is not None:
            data["min_pixels"] = self.pixels.min_pixels
            data["max_pixels"] = self.pixels.max_pixels
        if self.per_video:
            data["videos"] = [video.to_json() for video in self.per_video]
        return data


@dataclass(frozen=True)
class GpuFigure:
    """Peak GPU memory of one test, in bytes, and the counter that measured it
    (``torch_reserved``, ``torch_allocated``, ``nvml``..., or ``predicted`` for the memory
    model): peaks taken with different counters are never compared with each other."""

    peak_bytes: int
    measure: str

    @property
    def predicted(self) -> bool:
        return self.measure.startswith("predicted")

    def to_json(self) -> dict[str, Any]:
        return {"gpu_peak_bytes": self.peak_bytes, "gpu_measure": self.measure}


@dataclass(frozen=True)
class AuditFigure:
    """What ``@pytest.mark.training_set_fits`` found in a training set: ``data`` as the
    marker names it, the settings it was audited at, the sample count, the length
    percentiles and how many samples were over ``max_length``, cut inside media,
    refused or unreadable. Deterministic, like the token figures: any change is one."""

    data: str
    samples: int
    max_length: int | None
    longest_edge: int
    p50: int
    p90: int
    p99: int
    max: int
    over_max_length: int
    cut_inside_media: int
    refused: int = 0
    errors: int = 0
    #: the processor setting ``longest_edge`` holds: SmolVLM2's ``longest_edge``, a Qwen-VL
    #: model's ``max_pixels`` (stored under that name; not a compared figure itself)
    knob: str = "longest_edge"

    #: the figures compared and stored, in the baseline's order
    FIELDS = ("data", "samples", "max_length", "longest_edge", "p50", "p90", "p99", "max",
              "over_max_length", "cut_inside_media", "refused", "errors")
    #: the settings an audit may be taken at, by the name the baseline stores
    KNOBS = ("longest_edge", "max_pixels")

    def field_name(self, name: str) -> str:
        """A figure's name as stored and shown (``longest_edge`` is the audited knob's)."""
        return self.knob if name == "longest_edge" else name

    def to_json(self) -> dict[str, Any]:
        return {self.field_name(name): getattr(self, name) for name in self.FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditFigure:
        """Trusted data (the wire); the baseline validates first."""
        knob = next((k for k in cls.KNOBS if k in data), "longest_edge")
        values = {name: data.get(name, 0 if name in ("refused", "errors") else None)
                  for name in cls.FIELDS}
        values["longest_edge"] = data.get(knob)
        return cls(**values, knob=knob)

    def line(self) -> str:
        """One line for the summary: ``data: N samples, p50/p99/max, over, cut``."""
        limit = "no max_length" if self.max_length is None else f"max_length {self.max_length}"
        return (f"{self.data}: {self.samples:,} samples at {self.knob} {self.longest_edge}, "
                f"tokens p50 {self.p50:,} p99 {self.p99:,} max {self.max:,}; {limit}: "
                f"{self.over_max_length:,} over, {self.cut_inside_media:,} cut inside media"
                + (f", {self.refused:,} refused" if self.refused else "")
                + (f", {self.errors:,} unreadable" if self.errors else ""))


def _edge_key(entry: ResolutionFigures) -> tuple[bool, int, bool, tuple[int, int]]:
    return resolution_order(entry.key)


@dataclass(frozen=True)
class TestFigures:
    """Everything measured for one test: token figures per resolution and a GPU peak."""

    __test__ = False  # not a pytest test class, whatever its name

    resolutions: tuple[ResolutionFigures, ...] = ()
    gpu: GpuFigure | None = None
    #: the training set a ``training_set_fits`` marker audited (optional ``audit`` key)
    audit: AuditFigure | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "resolutions", tuple(sorted(self.resolutions, key=_edge_key)))

    @property
    def empty(self) -> bool:
        return not self.resolutions and self.gpu is None and self.audit is None

    def resolution(self, longest_edge: int | None,
                   pixels: PixelBounds | None = None) -> ResolutionFigures | None:
        for entry in self.resolutions:
            if entry.key == (longest_edge, pixels):
                return entry
        return None

    def with_gpu(self, figure: GpuFigure) -> TestFigures:
        """These figures with ``figure`` as the GPU peak: a measured peak wins over a
        memory-model prediction, and of two of the same kind the later is kept."""
        if self.gpu is not None and figure.predicted and not self.gpu.predicted:
            return self
        return TestFigures(self.resolutions, figure, self.audit)

    def to_json(self, *, patches: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "resolutions": [r.to_json(patches=patches) for r in self.resolutions]}
        if self.gpu is not None:
            data["gpu"] = self.gpu.to_json()
        if self.audit is not None:
            data["audit"] = self.audit.to_json()
        return data


def _image_key(image: Any) -> ResolutionKey:
    """A recorded image's resolution: a pixel-budget family's (``merge_size`` set) by its
    call's ``min_pixels``/``max_pixels``, SmolVLM2's by ``longest_edge``."""
    if getattr(image, "merge_size", 0):
        return image.longest_edge, PixelBounds(image.min_pixels, image.max_pixels)
    return image.longest_edge, None


def figures_from_recording(recording: Recording) -> tuple[ResolutionFigures, ...]:
    """A test's recording aggregated per resolution (``longest_edge``, or a Qwen call's
    pixel budget), sorted for stable output."""
    recorded_videos = getattr(recording, "videos", ())
    keys: set[ResolutionKey] = {_image_key(image) for image in recording.images}
    keys.update((s.longest_edge, getattr(s, "pixels", None)) for s in recording.sequences)
    keys.update((video.longest_edge, None) for video in recorded_videos)
    figures = []
    for key in sorted(keys, key=resolution_order):
        edge, pixels = key
        images = [image for image in recording.images if _image_key(image) == key]
        sequences = [s.length for s in recording.sequences
                     if (s.longest_edge, getattr(s, "pixels", None)) == key]
        alike: dict[tuple[int, int, int, int], int] = {}
        for video in recorded_videos:
            if (video.longest_edge, None) == key:
                video_key = (video.frames, video.image_tokens, video.block_tokens, video.tokens)
                alike[video_key] = alike.get(video_key, 0) + 1
        figures.append(ResolutionFigures(
            longest_edge=edge,
            images=len(images),
            image_tokens=sum(image.image_tokens for image in images),
            block_tokens=sum(image.block_tokens for image in images),
            longest_sequence=max(sequences, default=0),
            per_image=tuple(sorted({
                ImageFigure(image.width, image.height, image.image_tokens, image.block_tokens)
                for image in images
            })),
            patches=sum(image.patches for image in images),
            per_video=tuple(sorted(VideoFigure(*k, count) for k, count in alike.items())),
            pixels=pixels,
        ))
    return tuple(figures)


def resolution_from_json(data: Mapping[str, Any]) -> ResolutionFigures:
    """The inverse of :meth:`ResolutionFigures.to_json` for trusted data (the wire).
    Files a user may have edited are validated by :mod:`pytest_tokenguard.baseline.store`."""
    return ResolutionFigures(
        longest_edge=data["longest_edge"],
        images=data["images"],
        image_tokens=data["image_tokens"],
        block_tokens=data["block_tokens"],
        longest_sequence=data["longest_sequence"],
        per_image=tuple(sorted(ImageFigure(int(i["width"]), int(i["height"]),
                                           int(i["image_tokens"]), int(i["block_tokens"]))
                               for i in data.get("per_image", ()))),
        patches=int(data.get("patches", 0)),
        per_video=video_figures_from_json(data.get("videos", ())),
        pixels=(PixelBounds(int(data["min_pixels"]), int(data["max_pixels"]))
                if data.get("max_pixels") is not None else None),
    )
