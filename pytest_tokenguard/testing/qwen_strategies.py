"""Hypothesis strategies aimed at the edges of the Qwen-VL processors (Qwen2-VL, Qwen2.5-VL,
Qwen3-VL): image sizes, per-call settings and video metadata.

Random sizes rarely sit where Qwen's arithmetic turns (``smart_resize`` in
:mod:`pytest_tokenguard.families.qwen`): 1,000 random photos almost never have a rounded
area exactly at ``max_pixels``, a side on a rounding half-point (where Python's
``round`` goes to the even multiple, and ``int(x + 0.5)`` does not), or an aspect ratio of
200 (accepted) against 200.005 (refused). These strategies draw those places on purpose,
both sides of each, for a given checkpoint (:class:`~pytest_tokenguard.families.qwen.QwenSpec`)
and a call's own ``min_pixels``/``max_pixels``::

    from hypothesis import given
    from pytest_tokenguard.families.qwen import KNOWN_QWEN_SPECS
    from pytest_tokenguard.testing import qwen_strategies as qst

    SPEC = KNOWN_QWEN_SPECS["Qwen/Qwen2.5-VL-7B-Instruct"]

    @given(qst.qwen_image_cases(SPEC))
    def test_my_image_budget(case):
        assert my_tokens(case.width, case.height, **case.call) == ...

* :func:`qwen_image_sizes`: ``(width, height)`` at the edges of one call's bounds;
* :func:`qwen_call_settings`: the keyword arguments a processor call takes (``max_pixels``,
  ``min_pixels``, ``size={"shortest_edge", "longest_edge"}``, ``images_kwargs``);
* :func:`qwen_image_cases`: a call's settings and a size at its edges, together;
* :func:`qwen_video_cases`: video metadata (frame count, rate, frame size) and the call's
  sampling (``fps``, ``num_frames``, ``do_sample_frames``) at the sampling edges.

Everything shrinks toward the plainest case: a square image on a multiple of the factor, the
processor's own settings, a short video sampled as the processor samples by default. What
the processor refuses is drawn too (``refused=True``, the default), so a test sees the
refusal it must give; ``refused=False`` leaves it out.

Conversations at a token limit for a Qwen checkpoint are
:func:`~pytest_tokenguard.testing.qwen_strategies.qwen_boundary_conversation_dicts`.

Only hypothesis and the standard library are imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

from ..conversation import (
    Conversation,
    FrameRange,
    FramesItem,
    Message,
    TextItem,
)
from ..families.qwen import (
    QwenSettings,
    QwenSpec,
    QwenVideoCost,
    QwenVision,
    call_bounds,
    count_qwen_video,
    qwen_settings_from_kwargs,
)
from .strategies import DELTAS, VIDEO_SIZES

if TYPE_CHECKING:
    from ..conversation import MessageLike
    from ..families.qwen_text import QwenTokenCounter

__all__ = [
    "ASPECT_LIMIT",
    "EDGES",
    "QWEN_VIDEO_RATES",
    "QwenImageCase",
    "QwenVideoCase",
    "pixel_budgets",
    "qwen_boundary_conversation_dicts",
    "qwen_boundary_conversations",
    "qwen_boundary_examples",
    "qwen_call_settings",
    "qwen_image_cases",
    "qwen_image_sizes",
    "qwen_video_cases",
]

#: The aspect ratio the Qwen processors refuse above (``smart_resize`` raises ValueError).
ASPECT_LIMIT = 200

#: The edges :func:`qwen_image_sizes` aims at, in the order it shrinks to them.
EDGES = ("rounding", "max_pixels", "min_pixels", "small", "aspect")


def _vision(spec: object, what: str = "spec") -> QwenVision:
    if isinstance(spec, QwenSpec):
        return spec.image if what == "spec" else spec.video
    if isinstance(spec, QwenVision):
        return spec
    raise InvalidArgument(f"{what} must be a QwenSpec (KNOWN_QWEN_SPECS[...]) or QwenVision, "
                          f"got {spec!r}")


def _pixels(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument(f"{name} must be a positive number of pixels, got {value!r}")
    return value


# ------------------------------------------------------------------------ image sizes


def qwen_image_sizes(
    spec: QwenSpec | QwenVision,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    refused: bool = True,
    edges: tuple[str, ...] = EDGES,
) -> SearchStrategy[tuple[int, int]]:
    """``(width, height)`` at the edges of ``smart_resize`` for ``spec``'s image processor
    with a call's ``min_pixels``/``max_pixels`` (``None``: the processor's own), both sides
    of each:

    * ``rounding``: sides on a multiple of the factor (28; 32 on Qwen3-VL) and on the
      half-points between (``14 + 28k``: Python rounds them to the even multiple), one
      pixel either side;
    * ``max_pixels``: a rounded area just at or under ``max_pixels`` (kept) and one row
      of patches over it (scaled down);
    * ``min_pixels``: a rounded area just under ``min_pixels`` (scaled up) and at or over it;
    * ``small``: a side under the factor (it rounds to 0 or to one factor);
    * ``aspect``: a long side exactly 200 times the short one (accepted), one pixel
      shorter, and, with ``refused``, one pixel longer (the processor refuses it).

    Sizes stay at most ``ASPECT_LIMIT`` times as long as wide unless ``refused``.
    """
    vision = _vision(spec)
    low = _pixels("min_pixels", min_pixels) or vision.min_pixels
    high = _pixels("max_pixels", max_pixels) or vision.max_pixels
    if not isinstance(edges, tuple) or not edges or any(e not in EDGES for e in edges):
        raise InvalidArgument(f"edges must be a non-empty tuple of {EDGES}, got {edges!r}")
    factor = vision.factor
    makers = {
        "rounding": _rounding(factor, high),
        "max_pixels": _area_edge(factor, high, under_means_strict=False),
        "min_pixels": _area_edge(factor, low, under_means_strict=True),
        "small": _small(factor),
        "aspect": _aspect(refused),
    }
    drawn = st.one_of(*(makers[name] for name in edges))
    return drawn.flatmap(_oriented) if refused else drawn.flatmap(_oriented).filter(_accepted)


def _accepted(size: tuple[int, int]) -> bool:
    return max(size) <= ASPECT_LIMIT * min(size)


def _oriented(size: tuple[int, int]) -> SearchStrategy[tuple[int, int]]:
    """Both orientations of a drawn (long, short) or (a, b) pair; shrinks to as drawn."""
    return st.sampled_from([size, (size[1], size[0])])


def _near(center: int, spread: int) -> SearchStrategy[int]:
    """``center`` first, then up to ``spread`` either side (shrinks towards ``center``)."""
    return st.integers(0, 2 * spread).map(lambda k: center + (k + 1) // 2 * (-1 if k % 2
                                                                              else 1))


def _rounding(factor: int, high: int) -> SearchStrategy[tuple[int, int]]:
    """A side on a multiple of the factor or on a half-point, ±1 pixel; the other side any
    multiple-or-half-point too, or a plain size, all within about ``max_pixels``."""
    biggest = max(1, math.isqrt(high) // factor + 1)

    @st.composite
    def build(draw: Any) -> tuple[int, int]:
        def side() -> int:
            k: int = draw(st.integers(1, biggest))
            half = factor // 2 if draw(st.booleans()) else 0
            off: int = draw(_near(0, 1))
            return max(1, k * factor + half + off)

        first = side()
        second = side() if draw(st.booleans()) else draw(
            st.integers(1, max(1, biggest * factor)))
        return first, second

    return build()


def _area_edge(factor: int, bound: int, *, under_means_strict: bool
               ) -> SearchStrategy[tuple[int, int]]:
    """A size whose rounded area (``round(h/f)·round(w/f)·f²``) is just on either side of
    ``bound``: for ``max_pixels`` (``> bound`` scales down) at-or-under vs one row over;
    for ``min_pixels`` (``< bound`` scales up) one row under vs at-or-over. The grid is
    near square (shrinks to it), each side anywhere in its rounding window."""
    units = bound / (factor * factor)  # the bound in patch-merge blocks (may be fractional)

    @st.composite
    def build(draw: Any) -> tuple[int, int]:
        square = max(1, math.isqrt(max(1, int(units))))
        # a grid width near the square one; a few far ones for elongated images
        longest = max(1, math.isqrt(max(1, int(units * ASPECT_LIMIT * 3 // 4))))
        wide = draw(_near(square, max(1, square // 2)) | st.integers(1, longest))
        wide = max(1, wide)
        over = draw(st.booleans())
        if under_means_strict:  # min_pixels: rows * wide * f² < bound  <=>  rows < units/wide
            rows = math.ceil(units / wide) - 1  # the most rows still under
            rows = rows + 1 if over else rows
        else:  # max_pixels: rows * wide * f² <= bound  <=>  rows <= units/wide
            rows = math.floor(units / wide)
            rows = rows + 1 if over else rows
        if rows < 1:  # one side rounds to zero: the smallest area, always under
            return max(1, draw(st.integers(1, max(1, factor // 2)))), max(1, wide * factor)
        # anywhere in each side's rounding window (round(x/f) == n for x in it)
        half = factor // 2
        h = rows * factor + draw(st.integers(-half + 1, half - 1))
        w = wide * factor + draw(st.integers(-half + 1, half - 1))
        return max(1, h), max(1, w)

    return build()


def _small(factor: int) -> SearchStrategy[tuple[int, int]]:
    """One side under the factor (round(side/f) is 0 up to the half-point, then 1)."""

    @st.composite
    def build(draw: Any) -> tuple[int, int]:
        short = draw(st.sampled_from([factor // 2, factor // 2 + 1, 1, factor - 1])
                     | st.integers(1, factor - 1))
        long_side = draw(st.integers(short, min(ASPECT_LIMIT * short, 4 * factor * factor)))
        return short, long_side

    return build()


def _aspect(refused: bool) -> SearchStrategy[tuple[int, int]]:
    """A long side ``200 × short`` (accepted), one less, and (``refused``) one more."""
    offsets = [0, -1, 1] if refused else [0, -1]

    @st.composite
    def build(draw: Any) -> tuple[int, int]:
        short = draw(st.integers(1, 24))
        return ASPECT_LIMIT * short + draw(st.sampled_from(offsets)), short

    return build()


# ------------------------------------------------------------------------ call settings


def pixel_budgets(factor: int, *, largest: int) -> SearchStrategy[int]:
    """Pixel counts users pass as ``min_pixels``/``max_pixels``: the published ones
    (``256·28·28``, ``1280·28·28``...) when they fit under ``largest``, multiples of
    ``factor²`` (exactly that many tokens' worth) and one pixel either side, one token's
    area (``factor²``), and any count up to ``largest``."""
    _pixels("largest", largest)
    common = [v for v in (factor * factor, 4 * factor * factor, 256 * factor * factor,
                          256 * 28 * 28, 1280 * 28 * 28, 16384 * 28 * 28, 768 * 32 * 32)
              if v <= largest]
    units = max(1, largest // (factor * factor))
    multiple = st.builds(lambda k, d: max(1, k * factor * factor + d),
                         st.integers(1, units), st.sampled_from([0, -1, 1]))
    return (st.sampled_from(common) if common else st.nothing()) | multiple | st.integers(
        1, largest)


def qwen_call_settings(
    spec: QwenSpec | QwenVision,
    *,
    largest: int = 4096 * 4096,
    refused: bool = False,
) -> SearchStrategy[dict[str, Any]]:
    """The image settings a Qwen processor call takes, as keyword arguments: none (the
    processor's own), ``max_pixels``, ``min_pixels``, both, ``size={"shortest_edge",
    "longest_edge"}`` (with or without ``min_pixels``/``max_pixels`` overriding one bound,
    as transformers merges them) and the same inside ``images_kwargs``. Pixel counts are
    from :func:`pixel_budgets` up to ``largest`` (bigger budgets mean bigger test images),
    ``min_pixels`` at most ``max_pixels``. With ``refused``, a ``size`` missing one bound
    (the processor raises ValueError) is drawn too."""
    vision = _vision(spec)
    _pixels("largest", largest)
    budget = pixel_budgets(vision.factor, largest=largest)
    pair = st.tuples(budget, budget).map(sorted).map(tuple)

    @st.composite
    def build(draw: Any) -> dict[str, Any]:
        form = draw(st.sampled_from(["none", "max", "min", "both", "size", "size+max",
                                     "nested", *(["size-incomplete"] if refused else [])]))
        low, high = draw(pair)
        if form == "none":
            return {}
        if form == "max":
            return {"max_pixels": max(high, 1)}
        if form == "min":  # the processor's max_pixels kept: stay under it
            return {"min_pixels": min(low, vision.max_pixels)}
        if form == "both":
            return {"min_pixels": low, "max_pixels": high}
        if form == "size":
            return {"size": {"shortest_edge": low, "longest_edge": high}}
        if form == "size+max":  # max_pixels overrides the size's longest_edge
            return {"size": {"shortest_edge": low, "longest_edge": largest},
                    "max_pixels": high}
        if form == "nested":
            return {"images_kwargs": {"min_pixels": low, "max_pixels": high}}
        return {"size": {"longest_edge": high}}

    return build()


class QwenImageCase(NamedTuple):
    """An image size and the processor call's own settings (keyword arguments)."""

    width: int
    height: int
    call: dict[str, Any]


def qwen_image_cases(
    spec: QwenSpec | QwenVision,
    *,
    calls: SearchStrategy[dict[str, Any]] | None = None,
    refused: bool = True,
    largest: int = 4096 * 4096,
    edges: tuple[str, ...] = EDGES,
) -> SearchStrategy[QwenImageCase]:
    """A call's settings (``calls``, default :func:`qwen_call_settings`) and an image size
    at the edges of *that call's* bounds (:func:`qwen_image_sizes`): the pair a test gives
    the processor, ``processor(text=..., images=[image], **case.call)``."""
    vision = _vision(spec)
    if calls is None:
        calls = qwen_call_settings(spec, largest=largest)
    elif not isinstance(calls, SearchStrategy):
        raise InvalidArgument(f"calls must be a strategy of keyword dicts, got {calls!r}")

    def sized(call: dict[str, Any]) -> SearchStrategy[QwenImageCase]:
        try:
            low, high = call_bounds(vision, qwen_settings_from_kwargs(call))
        except Exception:  # a call the processor refuses: any size shows the refusal
            low, high = vision.min_pixels, vision.max_pixels
        return qwen_image_sizes(vision, min_pixels=low, max_pixels=high, refused=refused,
                                edges=edges).map(lambda wh: QwenImageCase(wh[0], wh[1], call))

    return calls.flatmap(sized)


# ------------------------------------------------------------------------ videos

#: Frame rates real videos have (NTSC's 30000/1001 included).
QWEN_VIDEO_RATES = (1.0, 2.0, 24000 / 1001, 24.0, 25.0, 30000 / 1001, 30.0, 60.0)


class QwenVideoCase(NamedTuple):
    """A video by its metadata and the processor call's own sampling (keyword arguments:
    ``do_sample_frames``, ``fps``, ``num_frames``, ``size``)."""

    total_frames: int
    fps: float
    width: int
    height: int
    call: dict[str, Any]

    @property
    def duration(self) -> float:
        return self.total_frames / self.fps

    def metadata(self) -> dict[str, Any]:
        """``video_metadata`` for the processor call (transformers' ``VideoMetadata``)."""
        return {"total_num_frames": self.total_frames, "fps": self.fps,
                "duration": self.duration}

    def cost(self, spec: QwenSpec, text: Callable[[str], int] | None = None) -> QwenVideoCost:
        """What :func:`~pytest_tokenguard.families.qwen.count_qwen_video` says this call
        costs on ``spec`` (an explicit ``fps=None`` drops the processor's own rate, as the
        processor does); the processor's refusals raise
        :class:`~pytest_tokenguard.families.qwen.QwenRefusal`."""
        from dataclasses import replace

        from ..video import video_info

        call = self.call
        if "fps" in call and call["fps"] is None:
            spec = replace(spec, sampling=replace(spec.sampling, fps=None))
        info = video_info(self.total_frames, self.fps, width=self.width, height=self.height)
        return count_qwen_video(info, spec, num_frames=call.get("num_frames"),
                                fps=call.get("fps"), do_sample_frames=call.get("do_sample_frames"),
                                settings=QwenSettings(call.get("size")), text=text)


def qwen_video_cases(
    spec: QwenSpec,
    *,
    max_total_frames: int = 240,
    max_side: int = 160,
    refused: bool = True,
) -> SearchStrategy[QwenVideoCase]:
    """Videos at the edges of the Qwen video processor's sampling and resize, for ``spec``
    (Qwen2-VL and Qwen2.5-VL sample nothing unless asked; Qwen3-VL samples at ``fps=2``):

    * frame counts around the temporal patch (odd counts are padded with the last
      frame), around ``min_frames`` (4) and where ``total / video_fps * fps`` lands just
      on or under a whole (even) number of frames;
    * the call's ``fps=`` or ``num_frames=`` (odd ones: rounded half to even to the
      temporal patch on Qwen2-VL), ``do_sample_frames`` on or off, and on Qwen3-VL
      ``num_frames`` with ``fps=None`` (its own ``fps=2`` would clash);
    * frame sizes on and between multiples of the factor, under it, and an occasional
      per-call ``size``.

    With ``refused``, what the processor refuses is drawn too (a one-frame Qwen3-VL clip,
    ``num_frames`` with the processor's ``fps``, sampling asked with neither).
    ``max_total_frames`` and ``max_side`` bound the frames a test must build.
    """
    if not isinstance(spec, QwenSpec):
        raise InvalidArgument(f"spec must be a QwenSpec (KNOWN_QWEN_SPECS[...]), got {spec!r}")
    _pixels("max_total_frames", max_total_frames)
    _pixels("max_side", max_side)
    vision = spec.video
    factor, tps = vision.factor, vision.temporal_patch_size
    qwen3 = spec.generation == "qwen3_vl"
    lowest = 1 if refused or not qwen3 else 2
    rates = st.sampled_from(QWEN_VIDEO_RATES) | st.floats(0.5, 60.0)
    call_fps = st.sampled_from([2.0, 1.0, 0.5, 4.0]) | st.floats(0.2, 8.0)
    side_steps = max(1, max_side // factor)

    @st.composite
    def side(draw: Any) -> int:
        k = draw(st.integers(0, side_steps))
        value = k * factor + draw(st.sampled_from([0, factor // 2, 1, -1, factor // 2 + 1]))
        if value < 1 or value > max_side:
            value = draw(st.integers(1, max_side))
        return int(value)

    @st.composite
    def build(draw: Any) -> QwenVideoCase:
        video_fps = draw(rates)
        kind = draw(st.sampled_from(["default", "fps", "num_frames", "all frames"] * 2
                                    + (["clash"] if refused else [])))
        call: dict[str, Any] = {}
        sample_fps = spec.sampling.fps if qwen3 else None
        if kind == "fps":
            sample_fps = draw(call_fps)
            call = {"do_sample_frames": True, "fps": sample_fps}
        elif kind == "num_frames":
            n = draw(st.sampled_from([1, 2, 3, 4, 5, 7, 8, 9]) | st.integers(1, 48))
            if n == 1 and not refused:
                n = 2
            call = {"do_sample_frames": True, "num_frames": n}
            if qwen3:
                call["fps"] = None
        elif kind == "all frames":
            call = {"do_sample_frames": False}
        elif kind == "clash":  # the processor raises: num_frames with fps / neither given
            call = ({"do_sample_frames": True, "num_frames": draw(st.integers(2, 16))} if qwen3
                    else {"do_sample_frames": True})
        # the frame count: small around the temporal patch and min_frames, or where the
        # sampled count total / video_fps * fps crosses a whole number of frames
        how = draw(st.sampled_from(["small", "crossing", "any"]))
        if how == "small" or sample_fps is None:
            total = draw(st.integers(lowest, max(lowest, min(12, max_total_frames))))
        elif how == "crossing":
            whole = draw(st.integers(1, 24)) * tps
            exact = whole * video_fps / sample_fps  # frames for exactly `whole` samples
            total = max(lowest, min(max_total_frames,
                                    math.ceil(exact) + draw(st.sampled_from([0, -1, 1]))))
        else:
            total = draw(st.integers(lowest, max_total_frames))
        if total < 2 and not refused and qwen3:
            total = 2
        if kind == "num_frames" and not refused and not qwen3:
            # more frames than the video has is refused on Qwen2-VL; so is rounding to none
            call["num_frames"] = max(tps, min(call["num_frames"], total // tps * tps))
            if total < tps:
                total = tps
        width, height = draw(side()), draw(side())
        if height in (1, 3):
            # a frame 1 or 3 pixels high is read channels-first by transformers' guess of
            # the channel dimension ((1, W, 3) looks like (C, H, W)): a different video
            height += 1
        if draw(st.integers(0, 5)) == 5:  # a per-call size
            low = draw(st.sampled_from([factor * factor, 4 * factor * factor, 1024]))
            call["size"] = {"shortest_edge": low,
                            "longest_edge": draw(st.sampled_from(
                                [8 * factor * factor, 64 * factor * factor, 8192]))}
        return QwenVideoCase(int(total), float(video_fps), width, height, call)

    return build()


# ------------------------------------------------------------------------ at the limit


def qwen_boundary_conversations(
    counter: QwenTokenCounter,
    max_tokens: int = 4096,
    *,
    leading: Sequence[MessageLike] | Conversation = (),
    add_generation_prompt: bool = False,
    sft: bool = False,
    max_turns: int = 30,
    max_frames_per_run: int = 16,
    deltas: Sequence[int] = DELTAS,
    oversized: bool = True,
    sizes: SearchStrategy[tuple[int, int]] | None = None,
) -> SearchStrategy[Conversation]:
    """Qwen-VL dialogues over video frames (sent as images) and photos, one run of which is
    ``max_tokens + delta`` tokens long exactly as ``counter`` (a
    :class:`~pytest_tokenguard.families.qwen_text.QwenTokenCounter`, at its
    ``min_pixels``/``max_pixels``) counts the chunk that run would be: the chat template
    rendered around it, ``leading`` context first, and on Qwen2-VL's ChatML template the
    default system message every chunk that does not start with one gets.

    The shape is :func:`~pytest_tokenguard.testing.strategies.boundary_conversations`'s:
    messages are drawn until the next would pass the target, then one message (frames
    and filler words) is tuned to make the run exactly ``max_tokens + delta`` by pricing
    the whole chunk; up to three runs at the limit, so a splitter that under-counts the
    second chunk (the default system message, say) fails as surely as one that
    under-counts the first. ``deltas`` start with 1, 2, 3 tokens over. Photos are drawn
    at the edges of the counter's ``max_pixels`` (:func:`qwen_image_sizes`, aspect ratios
    the processor accepts) unless ``sizes`` is given. ``sft`` ends runs and the
    conversation on assistant turns, an opening system message repeated in every chunk;
    ``oversized`` sometimes adds a message too large for any chunk.
    """
    return _qwen_boundary(counter, max_tokens, leading=leading,
                          add_generation_prompt=add_generation_prompt, sft=sft,
                          max_turns=max_turns, max_frames_per_run=max_frames_per_run,
                          deltas=deltas, oversized=oversized, sizes=sizes,
                          examples=False)  # type: ignore[return-value]


def qwen_boundary_examples(counter: QwenTokenCounter, max_tokens: int = 4096,
                           **kwargs: Any) -> list[Conversation]:
    """The simplest conversations of :func:`qwen_boundary_conversations` (same arguments)
    with one, two and three runs at the limit, each ``deltas[0]`` tokens over, one with a
    message too large for a chunk, and two runs after an opening system message: what a
    checker tries first on every run."""
    return _qwen_boundary(counter, max_tokens, examples=True,
                          **kwargs)  # type: ignore[return-value]


def qwen_boundary_conversation_dicts(
    counter: QwenTokenCounter,
    max_tokens: int = 4096,
    *,
    frames_as: Literal["images", "ranges"] = "images",
    **kwargs: Any,
) -> SearchStrategy[list[dict[str, Any]]]:
    """:func:`qwen_boundary_conversations` as chat-template dicts: every frame an image item
    with its ``frame`` number (``frames_as="images"``) or ``{"type": "frames"}`` items
    (``"ranges"``). Same keyword arguments."""
    from ..conversation import to_chat_template, to_dicts

    if frames_as not in ("images", "ranges"):
        raise InvalidArgument(f"frames_as must be 'images' or 'ranges', got {frames_as!r}")
    convert = to_chat_template if frames_as == "images" else to_dicts
    return qwen_boundary_conversations(counter, max_tokens, **kwargs).map(convert)


def _qwen_boundary(
    counter: QwenTokenCounter,
    max_tokens: int = 4096,
    *,
    leading: Sequence[MessageLike] | Conversation = (),
    add_generation_prompt: bool = False,
    sft: bool = False,
    max_turns: int = 30,
    max_frames_per_run: int = 16,
    deltas: Sequence[int] = DELTAS,
    oversized: bool = True,
    sizes: SearchStrategy[tuple[int, int]] | None = None,
    examples: bool = False,
) -> SearchStrategy[Conversation] | list[Conversation]:
    from ..conversation import parse_conversation
    from .strategies import _boundary_arguments, _Drafts, _Simplest, _tuned

    conversation = getattr(counter, "conversation", None)
    spec = getattr(counter, "spec", None)
    if not callable(conversation) or not isinstance(spec, QwenSpec):
        raise InvalidArgument(f"counter must be a QwenTokenCounter, got {counter!r}")
    sizes = _boundary_arguments(
        max_tokens, max_turns, max_frames_per_run, deltas, sizes,
        lambda: qwen_image_sizes(spec, min_pixels=counter.min_pixels,
                                 max_pixels=counter.max_pixels, refused=False))
    lead = parse_conversation(leading, label="leading message")

    def price(messages: Sequence[Message]) -> int:
        """The chunk ``lead + messages`` as the counter counts it (0 for nothing)."""
        chunk = (*lead, *messages)
        if not chunk:
            return 0
        return counter.conversation(chunk, add_generation_prompt=add_generation_prompt).total

    # Rendering a whole chunk of many frames through the template costs milliseconds, so
    # runs are planned with each message's cost after a fixed system message (what it adds
    # to a chunk it does not start: exact for ChatML, where special tokens separate the
    # messages), and every run is priced whole before and after its tuned message.
    probe = (Message("system", (TextItem("."),)),)
    probe_tokens = counter.conversation(probe).total
    added: dict[Message, int] = {}

    def marginal(m: Message) -> int:
        found = added.get(m)
        if found is None:
            found = added[m] = counter.conversation((*probe, m)).total - probe_tokens
        return found

    alone: dict[Message | None, int] = {}

    def planned(messages: Sequence[Message]) -> int:
        """``price(messages)`` as the sum of its messages' costs (checked whole later)."""
        if not lead and not messages:
            return 0
        first = None if lead else messages[0]
        if first not in alone:
            alone[first] = price(() if first is None else (first,))
        return alone[first] + sum(marginal(m) for m in messages[0 if lead else 1:])

    drafts = _Drafts(sizes, max_turns=max_turns, max_frames_per_run=max_frames_per_run,
                     deltas=deltas, unicode_questions=False)
    between, delta_of, filler = drafts.between, drafts.delta_of, drafts.filler

    def block_of(width: int, height: int) -> int:
        return counter.image(width, height).block_tokens

    def build(draw: Any) -> Conversation:
        video = draw(drafts.frame_size, label="frame size")
        block = counter.image(*video).block_tokens
        if block * 256 < max_tokens:
            # thousands of tiny frames a chunk make every pricing slow and test nothing
            # more: tiny sizes stay for single images
            video = VIDEO_SIZES[0]
            block = counter.image(*video).block_tokens
        frame = [draw(between(0, 500), label="first frame")]

        def run_of(n: int) -> FramesItem:
            item = FramesItem(FrameRange(frame[0], frame[0] + n), *video)
            frame[0] += n
            return item

        def user(limit: int) -> Message:
            return drafts.user(draw, limit, block_of, run_of, block)

        def answer() -> Message:
            return drafts.answer(draw)

        def role(position: int) -> str:
            return ("user", "assistant")[position % 2]

        messages: list[Message] = []
        context: list[Message] = []  # what every chunk starts with (after `leading`)
        opening: list[Message] = []  # what only the first chunk starts with
        if draw(between(0, 3), label="system prompt") == 3:
            system = Message("system", (TextItem(draw(drafts.answer_text)),))
            messages.append(system)
            (context if sft else opening).append(system)
        start = len(messages)
        room = max_tokens - price([*context, Message("user", (TextItem(""),))])
        carry: list[Message] = []  # what the previous boundary left for the next chunk

        for segment in range(draw(between(1, 3), label="chunks at the limit")):
            delta = draw(delta_of, label="delta")
            target = max_tokens + delta
            head = [*context, *(opening if segment == 0 else []), *carry]
            run: list[Message] = []
            used = planned(head)

            def cost_of(m: Message, run: list[Message] = run, head: list[Message] = head,
                        used: int = 0) -> int:
                """What ``m`` adds to the chunk so far (whole when it opens the chunk)."""
                return marginal(m) if head or run or lead else price([m]) - used

            turns = draw(between(0, max_turns), label="turns before the limit")
            for _ in range(turns if segment == 0 else turns // 3):
                position = len(messages) - start
                m = user(target - used) if role(position) == "user" else answer()
                cost = cost_of(m, used=used)
                if used + cost > target - 24:
                    break
                run.append(m)
                messages.append(m)
                used += cost
            # padding turns of at most a quarter chunk each, until the rest is at most
            # half a chunk: the tuned message that starts the next chunk leaves it room
            quarter = max(1, room // 4 // max(block, 1))
            while target - used > room // 2:
                if role(len(messages) - start) == "user":
                    n = max_frames_per_run - draw(between(0, max_frames_per_run - 1),
                                                  label="padding frames short of a full run")
                    n = min(n, quarter, (target - used - 24) // max(block, 1))
                    m = Message("user", (run_of(max(1, n)),))
                else:
                    m = answer()
                cost = cost_of(m, used=used)
                if used + cost > target - 24:
                    break
                run.append(m)
                messages.append(m)
                used += cost
            word = draw(filler, label="filler word")
            text_first = draw(st.booleans(), label="text first")
            spare = draw(between(0, 2), label="blocks left to text")
            if role(len(messages) - start) == "assistant":
                if sft and run:
                    # a question waits for its answer: replaced below by a tuned turn
                    messages.pop()
                    run.pop()
                elif not sft and target - used > 64:
                    m = answer()  # the tuned message is a user's, with frames
                    used += cost_of(m, used=used)
                    run.append(m)
                    messages.append(m)
            if sft and role(len(messages) - start) == "user":
                n = (target - used - 60) // max(block, 1) - spare
                m = (Message("user", (run_of(n),)) if n > 0
                     else Message("user", (TextItem("Next?"),)))
                run.append(m)
                messages.append(m)
            used = planned([*head, *run])
            if target - used < 6:
                break
            tuned_role = role(len(messages) - start)
            first_frame = frame[0]
            tuned = _tuned(tuned_role, target - used, lambda m, u=used: cost_of(m, used=u),
                           run_of, block, word, text_first, spare)
            if price([*head, *run, tuned]) != planned([*head, *run, tuned]):
                # a template that is not a sum of its messages: tune against the whole run
                used = price([*head, *run])
                if target - used < 6:
                    break
                frame[0] = first_frame

                def whole(m: Message, run: list[Message] = run, head: list[Message] = head,
                          before: int = used) -> int:
                    return price([*head, *run, m]) - before

                tuned = _tuned(tuned_role, target - used, whole, run_of, block, word,
                               text_first, spare)
            run.append(tuned)
            messages.append(tuned)
            if delta < -3:
                break  # the next message may join this chunk: no boundary to aim at
            carry = []
            if delta > 0:  # the tuned message (its turn, in SFT mode) starts the next chunk
                carry = [tuned]
                if sft and len(run) >= 2 and run[-2].role == "user":
                    carry = [run[-2], tuned]
                if planned([*context, *carry]) > max_tokens:
                    break
        if oversized and draw(between(0, 2), label="oversized") == 2:
            if role(len(messages) - start) == "assistant":
                messages.append(answer())
            extra = draw(between(1, 8), label="frames over")
            messages.append(Message("user", (
                TextItem("All frames:"), run_of(max(1, room // max(block, 1)) + extra))))
        for _ in range(draw(between(0, max_turns // 3), label="turns after")):
            position = len(messages) - start
            messages.append(user(room // 2) if role(position) == "user" else answer())
        if sft and messages and messages[-1].role != "assistant":
            messages.append(answer())
        return tuple(messages)

    if examples:
        return [build(_Simplest(overrides)) for overrides in (
            {"chunks at the limit": 1}, {"chunks at the limit": 2}, {"chunks at the limit": 3},
            {"chunks at the limit": 1, "oversized": 2},
            # an opening system message: it replaces the template's default one in the
            # first chunk (and in SFT mode starts every chunk)
            {"chunks at the limit": 2, "system prompt": 3})]
    return st.composite(build)()
