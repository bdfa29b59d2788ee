"""What the recorder records: each image, video and sequence a real processor call
produced, and everything charged to one test (:class:`Recording`).

Plain frozen dataclasses (a :class:`Recording` aside, which the recorder fills): they
travel from a child process as JSON and feed the markers and the figures. Only the
standard library is imported here.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ...figures import PixelBounds

__all__ = [
    "ImageRecord",
    "Recording",
    "SequenceRecord",
    "Stray",
    "VideoRecord",
    "unchecked_reason",
]


@dataclass(frozen=True)
class ImageRecord:
    """One image as a real processor call expanded it, at the settings that call used.

    ``family`` names the model family (:mod:`pytest_tokenguard.families`) whose processor
    made the call; the fields a family does not use keep their defaults. SmolVLM2 /
    Idefics3 (``smolvlm``): ``longest_edge``, ``tile_size``, ``do_image_splitting`` and the
    rows×cols tile grid. Qwen-VL (``qwen-vl``): ``longest_edge`` is ``None`` (the
    processor resizes by area), ``min_pixels``/``max_pixels`` are the call's bounds,
    rows×cols the patch grid the vision tower encodes (``image_grid_thw``), merged
    ``merge_size``² patches a token.
    """

    width: int
    height: int
    """The size the processor was given (a decoded path: upright, as it decoded it)."""
    longest_edge: int | None
    tile_size: int
    """``size["longest_edge"]`` and ``max_image_size["longest_edge"]`` of that call."""
    rows: int
    cols: int
    """The processor's own grid (0 and 0 for an image that is not split)."""
    image_tokens: int
    block_tokens: int
    """Placeholder tokens (``<image>``, ``<|image_pad|>``), and everything written for the
    image (wrappers, markers)."""
    processor: str
    """The processor's class name."""
    do_image_splitting: bool = True
    family: str = "smolvlm"
    min_pixels: int = 0
    max_pixels: int = 0
    patch_size: int = 0
    merge_size: int = 0

    @property
    def patches(self) -> int:
        """What the vision tower encodes: tiles (SmolVLM), patches (Qwen-VL)."""
        if self.merge_size:  # a pixel-budget processor: the patch grid itself
            return self.rows * self.cols
        return self.rows * self.cols + 1 if self.rows or self.cols else 1

    @property
    def grid(self) -> str:
        return f"{max(self.rows, 1)}×{max(self.cols, 1)}"


@dataclass(frozen=True)
class VideoRecord:
    """One video as a real processor call expanded it (``videos=``).

    ``name`` is the path or URL the call was given ("" for decoded frames). ``frames``
    is what the call sampled (``sampled``: ``do_sample_frames`` was on), ``tokens``
    everything written in place of the ``<video>``, tokenized alone. ``total_frames``,
    ``fps`` and ``duration`` are the metadata the processor had (None when unknown).
    ``num_frames``/``sample_fps`` are the call's sampling (None: the processor's
    ``video_sampling``, whose cap is ``max_frames``). ``by_num_frames[n - 1]`` is the
    exact cost at ``num_frames=n`` and ``by_fps`` lists ``(fps, tokens)`` pairs, both
    computed when the call was recorded (empty when the metadata lacks a rate or a
    duration): what a failing marker reads its fix from.
    """

    name: str
    frames: int
    image_tokens: int
    block_tokens: int
    tokens: int
    total_frames: int | None
    fps: float | None
    duration: float | None
    sampled: bool
    num_frames: int | None
    sample_fps: float | None
    max_frames: int
    processor: str
    longest_edge: int | None = None
    by_num_frames: tuple[int, ...] = ()
    by_fps: tuple[tuple[float, int], ...] = ()
    family: str = "smolvlm"

    @property
    def label(self) -> str:
        """How messages name the video: its file name, else the call's position."""
        return os.path.basename(self.name) if self.name else "(decoded frames)"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["by_num_frames"] = list(self.by_num_frames)
        data["by_fps"] = [list(pair) for pair in self.by_fps]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VideoRecord:
        values = dict(data)
        values["by_num_frames"] = tuple(int(t) for t in data.get("by_num_frames", ()))
        values["by_fps"] = tuple((float(f), int(t)) for f, t in data.get("by_fps", ()))
        return cls(**values)


@dataclass(frozen=True)
class SequenceRecord:
    """One sequence (one sample of one processor call) and its length in tokens.

    ``note`` is empty when ``length`` is exact; otherwise it says why ``length`` is an
    upper bound (it is never lower than the real length). ``pixels`` is the pixel budget
    of a Qwen-VL call that processed images (its images' resolution, which the sequence's
    figures are grouped with), else None.
    """

    name: str
    length: int
    preview: str
    longest_edge: int | None = None
    note: str = ""
    pixels: PixelBounds | None = None


@dataclass
class Recording:
    """Everything charged to one test.

    ``unseen`` names calls the test made that could not be recorded (a child process
    that could not load the recorder, a call cut short): a marker cannot pass over them.
    ``phase`` is set by the caller (``"setup"``, ``"call"``, ``"teardown"``) and shows in
    the names of the sequences recorded while it holds.
    """

    images: list[ImageRecord] = field(default_factory=list)
    sequences: list[SequenceRecord] = field(default_factory=list)
    videos: list[VideoRecord] = field(default_factory=list)
    calls: int = 0
    name: str = ""
    unseen: list[str] = field(default_factory=list)
    phase: str = ""
    closed: bool = False
    #: the folder this recording's child processes write to (its owner token)
    token: str = field(default="", repr=False)


@dataclass(frozen=True)
class Stray:
    """Processor calls not charged to any test: ``owner`` is the test that started the
    thread or process (``None``: started outside any test) and had ended."""

    owner: str | None
    where: str
    calls: int

    def describe(self) -> str:
        plural, were = ("s", "were") if self.calls != 1 else ("", "was")
        if self.owner is None:
            return (f"{self.calls} processor call{plural} from {self.where}, started outside "
                    f"any test, {were} charged to no test")
        return (f"{self.calls} processor call{plural} from {self.where}, started by "
                f"{self.owner}, came after that test ended and {were} charged to no test")


def unchecked_reason(recording: Recording,
                     kind: Literal["image", "sequence", "video"]) -> str | None:
    """Why a token marker on this recording would check nothing, or ``None``.

    The rule the token markers share (``image_tokens`` with ``kind="image"``,
    ``max_sequence_tokens`` with ``kind="sequence"``, ``video_tokens`` with
    ``kind="video"``): a marker fails, with this reason as its message, when the test
    made calls that could not be recorded, or when no call produced what it checks. A
    marker that checks nothing is a bug.
    """
    if recording.unseen:
        count = len(recording.unseen)
        return (f"{count} processor call{'s' if count > 1 else ''} of this test could not be "
                f"recorded: {'; '.join(recording.unseen[:3])}")
    if kind == "image" and not recording.images:
        return "no SmolVLM or Qwen-VL processor call processed an image while the test ran"
    if kind == "video" and not recording.videos:
        return "no SmolVLM or Qwen-VL processor call processed a video while the test ran"
    if kind == "sequence" and not recording.sequences:
        return "no SmolVLM or Qwen-VL processor call returned a sequence while the test ran"
    return None

