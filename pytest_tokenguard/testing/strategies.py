"""Hypothesis strategies for conversations with images and video frames.

Arguments are checked when the strategy is built, so a wrong bound fails at once
with ``InvalidArgument`` naming it, not as a confusing health-check error later.
Everything shrinks toward small, readable counterexamples: few turns, short ASCII
text, tiny images, one-frame runs, short videos at the default sampling.

Videos (``{"type": "video"}`` items, the processor's video path) come by metadata
(:func:`video_items`: frame counts, frame rates, durations, ``num_frames``/``sample_fps``
overrides, clips), so nothing is decoded; pass ``videos=video_items()`` to
:func:`messages` or :func:`conversations` to fuzz a splitter with them. ``frames`` items
stay frames sent as images.

Usage::

    from hypothesis import given
    from pytest_tokenguard import strategies as tgst

    @given(tgst.conversations(max_turns=30, max_images_per_turn=8))
    def test_my_splitter(conversation): ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

from ..conversation import (
    ROLE_PATTERN,
    ContentItem,
    Conversation,
    FrameRange,
    FramesItem,
    ImageItem,
    Message,
    TextItem,
    VideoItem,
    to_chat_template,
)
from ..specs import IMAGE_TOKEN, MAX_IMAGE_SIZE
from ..video import VIDEO_TOKEN

__all__ = [
    "conversation_dicts",
    "conversations",
    "frame_ranges",
    "image_sizes",
    "messages",
    "texts",
    "video_items",
]


def _int(name: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise InvalidArgument(f"{name} must be >= {minimum}, got {value}")
    return value


def _bounds(low_name: str, low: object, high_name: str, high: object, minimum: int = 0) -> None:
    lo, hi = _int(low_name, low, minimum), _int(high_name, high, minimum)
    if lo > hi:
        raise InvalidArgument(f"{low_name}={lo} is greater than {high_name}={hi}")


def image_sizes(
    *, min_side: int = 1, max_side: int = MAX_IMAGE_SIZE, max_aspect: float | None = None
) -> SearchStrategy[tuple[int, int]]:
    """(width, height) pairs; ``max_aspect`` bounds ``long side / short side``."""
    _bounds("min_side", min_side, "max_side", max_side, 1)
    if max_aspect is not None and (
        isinstance(max_aspect, bool) or not isinstance(max_aspect, int | float)
        or not max_aspect >= 1
    ):
        raise InvalidArgument(f"max_aspect must be a number >= 1, got {max_aspect!r}")
    sides = st.integers(min_side, max_side)
    pairs = st.tuples(sides, sides)
    if max_aspect is None:
        return pairs
    limit = float(max_aspect)
    return pairs.filter(lambda wh: max(wh) <= limit * min(wh))


def frame_ranges(
    *, min_frames: int = 0, max_frames: int = 64, max_start: int = 10_000
) -> SearchStrategy[FrameRange]:
    """Half-open frame ranges of ``min_frames..max_frames`` frames (empty ones included
    when ``min_frames`` is 0, the edge most code forgets)."""
    _bounds("min_frames", min_frames, "max_frames", max_frames)
    _int("max_start", max_start)
    return st.builds(
        lambda start, n: FrameRange(start, start + n),
        st.integers(0, max_start),
        st.integers(min_frames, max_frames),
    )


def texts(
    *, min_size: int = 0, max_size: int = 200, unicode: bool = True
) -> SearchStrategy[str]:
    """Message text: any Unicode (no surrogates) or printable ASCII; never ``<image>`` or
    ``<video>`` (the processor takes them for placeholders)."""
    _bounds("min_size", min_size, "max_size", max_size)
    if unicode:
        alphabet = st.characters(codec="utf-8")
    else:
        alphabet = st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from("\n\t")
    return st.text(alphabet, min_size=min_size, max_size=max_size).filter(
        lambda s: IMAGE_TOKEN not in s and VIDEO_TOKEN not in s
    )


#: Frame rates real videos have (NTSC's 30000/1001 included), then any in range.
VIDEO_RATES = (1.0, 2.0, 7.5, 12.0, 24000 / 1001, 24.0, 25.0, 30000 / 1001, 30.0, 50.0, 60.0)


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidArgument(f"{name} must be a positive number, got {value!r}")
    return float(value)


def video_items(
    *, min_frames: int = 1, max_frames: int = 3600, min_fps: float = 0.5,
    max_fps: float = 60.0, sampling: bool = True, clips: bool = True,
    max_num_frames: int = 96,
) -> SearchStrategy[VideoItem]:
    """Videos by metadata: ``min_frames..max_frames`` frames at a rate between ``min_fps``
    and ``max_fps`` (common rates first), a duration of ``frames / fps`` or a little
    off it (containers disagree), and with ``sampling`` per-call ``num_frames`` (up to
    ``max_num_frames``) and ``sample_fps`` overrides; with ``clips`` some are clips
    (``start``/``end``) of the video. Shrinks to a short video at the default sampling."""
    _bounds("min_frames", min_frames, "max_frames", max_frames, 1)
    low, high = _positive("min_fps", min_fps), _positive("max_fps", max_fps)
    if low > high:
        raise InvalidArgument(f"min_fps={low} is greater than max_fps={high}")
    _int("max_num_frames", max_num_frames, 1)
    common = [rate for rate in VIDEO_RATES if low <= rate <= high]
    rates = (st.sampled_from(common) | st.floats(low, high)) if common else st.floats(low, high)
    num_frames = st.none() | st.integers(1, max_num_frames) if sampling else st.none()
    sample_fps = (st.none() | st.sampled_from([0.5, 1.0, 2.0]) | st.floats(0.05, 8.0)
                  if sampling else st.none())

    @st.composite
    def video(draw: Any) -> VideoItem:
        total = draw(st.integers(min_frames, max_frames))
        fps = draw(rates)
        stretch = draw(st.sampled_from([1.0, 0.999]) | st.floats(0.5, 1.5))
        clip = None
        if clips and total > 1 and draw(st.booleans()):
            start = draw(st.integers(0, total - 1))
            clip = FrameRange(start, draw(st.integers(start + 1, total)))
        return VideoItem(total, fps, total / fps * stretch, draw(num_frames), draw(sample_fps),
                         clip)

    return video()


def _roles(roles: Sequence[str]) -> tuple[str, ...]:
    if isinstance(roles, str) or not isinstance(roles, Sequence) or not roles:
        raise InvalidArgument(f"roles must be a non-empty list of role names, got {roles!r}")
    for role in roles:
        if not isinstance(role, str) or not ROLE_PATTERN.match(role):
            raise InvalidArgument(
                f"role {role!r} is not a word starting with a letter (user, assistant, system)"
            )
    return tuple(roles)


def _message_parts(
    *,
    min_images: int,
    max_images: int,
    max_frames: int,
    frames: bool,
    max_texts: int,
    min_text: int,
    max_text: int,
    unicode: bool,
    sizes: SearchStrategy[tuple[int, int]] | None,
    videos: SearchStrategy[VideoItem] | None = None,
) -> SearchStrategy[tuple[ContentItem, ...]]:
    _bounds("min_images", min_images, "max_images", max_images)
    _int("max_frames", max_frames, 1)
    _int("max_texts", max_texts)
    _bounds("min_text", min_text, "max_text", max_text)
    if max_texts == 0 and max_images == 0:
        raise InvalidArgument("max_texts=0 and max_images=0 leave a message with no content")
    if sizes is None:
        sizes = image_sizes(max_side=2048)
    elif not isinstance(sizes, SearchStrategy):
        raise InvalidArgument(f"sizes must be a strategy of (width, height), got {sizes!r}")
    image = st.builds(lambda wh: ImageItem(*wh), sizes)
    visual: SearchStrategy[ContentItem] = image
    if frames:
        run = st.builds(
            lambda r, wh: FramesItem(r, *wh),
            frame_ranges(min_frames=1, max_frames=max_frames, max_start=1000),
            sizes,
        )
        visual = image | run
    if videos is not None:
        if not isinstance(videos, SearchStrategy):
            raise InvalidArgument(f"videos must be a strategy of video items (video_items()), "
                                  f"got {videos!r}")
        visual = visual | videos
    text = st.builds(TextItem, texts(min_size=min_text, max_size=max_text, unicode=unicode))

    @st.composite
    def content(draw: Any) -> tuple[ContentItem, ...]:
        visuals = draw(st.lists(visual, min_size=min_images, max_size=max_images))
        min_texts = 0 if visuals else 1
        words = draw(st.lists(text, min_size=min_texts, max_size=max(max_texts, min_texts)))
        items: list[ContentItem] = list(words)
        # where each visual goes among the text items (shrinks to "text first")
        for item in visuals:
            items.insert(draw(st.integers(0, len(items))), item)
        return tuple(items)

    return content()


def messages(
    *,
    roles: Sequence[str] = ("user", "assistant"),
    min_images: int = 0,
    max_images: int = 4,
    max_frames: int = 16,
    frames: bool = True,
    max_texts: int = 2,
    min_text: int = 0,
    max_text: int = 200,
    unicode: bool = True,
    sizes: SearchStrategy[tuple[int, int]] | None = None,
    videos: SearchStrategy[VideoItem] | None = None,
) -> SearchStrategy[Message]:
    """One message: up to ``max_texts`` text items and ``min_images..max_images`` visuals
    (single images, or with ``frames`` runs of up to ``max_frames`` frames, or with
    ``videos`` video items drawn from it, e.g. :func:`video_items`), in any order."""
    role_names = _roles(roles)
    parts = _message_parts(
        min_images=min_images, max_images=max_images, max_frames=max_frames, frames=frames,
        max_texts=max_texts, min_text=min_text, max_text=max_text, unicode=unicode, sizes=sizes,
        videos=videos,
    )
    return st.builds(Message, st.sampled_from(role_names), parts)


def conversations(
    *,
    min_turns: int = 1,
    max_turns: int = 20,
    roles: Sequence[str] = ("user", "assistant"),
    alternate: bool = True,
    min_images_per_turn: int = 0,
    max_images_per_turn: int = 4,
    max_frames_per_run: int = 16,
    frames: bool = True,
    max_texts_per_turn: int = 2,
    min_text: int = 0,
    max_text: int = 200,
    unicode: bool = True,
    sizes: SearchStrategy[tuple[int, int]] | None = None,
    videos: SearchStrategy[VideoItem] | None = None,
) -> SearchStrategy[Conversation]:
    """Conversations of ``min_turns..max_turns`` messages.

    With ``alternate`` the roles cycle in the given order (user, assistant, user,
    ...) as real dialogues do; otherwise each message draws its role. With ``videos``
    (e.g. :func:`video_items`) visuals may be video items too.
    """
    _bounds("min_turns", min_turns, "max_turns", max_turns)
    role_names = _roles(roles)
    parts = _message_parts(
        min_images=min_images_per_turn, max_images=max_images_per_turn,
        max_frames=max_frames_per_run, frames=frames, max_texts=max_texts_per_turn,
        min_text=min_text, max_text=max_text, unicode=unicode, sizes=sizes, videos=videos,
    )
    if alternate:
        contents = st.lists(parts, min_size=min_turns, max_size=max_turns)
        return contents.map(
            lambda cs: tuple(
                Message(role_names[i % len(role_names)], c) for i, c in enumerate(cs)
            )
        )
    message = st.builds(Message, st.sampled_from(role_names), parts)
    return st.lists(message, min_size=min_turns, max_size=max_turns).map(tuple)


def conversation_dicts(**kwargs: Any) -> SearchStrategy[list[dict[str, Any]]]:
    """:func:`conversations` as plain chat-template dicts (frames as image items), the
    form a user's own splitter takes. Same keyword arguments."""
    return conversations(**kwargs).map(to_chat_template)
