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

Random conversations rarely land near a realistic limit: at 4,096 tokens a splitter that
is off by a few tokens per image passes hundreds of them. :func:`boundary_conversations`
aims at the limit instead: it prices what it draws with the exact calculator and tunes
one message so that a run of messages is exactly ``max_tokens + delta`` long, ``delta``
a few tokens either side (shrinking towards one token over). Give it the counter of the
processor the chunks are for; inside a test, draw it with ``st.data()``::

    @given(data=st.data())
    def test_my_splitter(tokenguard_counter, data):
        conversation = data.draw(tgst.boundary_conversation_dicts(tokenguard_counter, 4096))

Qwen-VL's edges (``smart_resize``, per-call ``max_pixels``, video sampling) and its
conversations at the limit are in :mod:`pytest_tokenguard.testing.qwen_strategies`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

from ..conversation import (
    PLACEHOLDERS,
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
from ..specs import MAX_IMAGE_SIZE

if TYPE_CHECKING:
    from ..conversation import MessageLike
    from ..tokens import TokenCounter

__all__ = [
    "DELTAS",
    "boundary_conversation_dicts",
    "boundary_conversations",
    "boundary_examples",
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
    ``<video>``, which the processor takes for placeholders."""
    _bounds("min_size", min_size, "max_size", max_size)
    if unicode:
        alphabet = st.characters(codec="utf-8")
    else:
        alphabet = st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from("\n\t")
    return st.text(alphabet, min_size=min_size, max_size=max_size).filter(
        lambda s: not any(token in s for token in PLACEHOLDERS)
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


# ------------------------------------------------------------------ at the limit

#: How far past ``max_tokens`` the tuned run of messages lands (negative: under it).
#: First the few tokens a per-image, per-message or generation-prompt error is made of
#: (shrinking goes to the first), then farther, so the rest of the space is seen too.
DELTAS = (1, 2, 3, 0, -1, 4, 6, 8, -3, 12, 24, 48, 90, -20, 200, -300, 700, -1500, 2500)

#: Frame sizes of common videos; single images draw any size.
VIDEO_SIZES = ((640, 360), (1280, 720), (1920, 1080), (480, 640), (384, 384), (1024, 768))

#: Text for the turns: what a dataset of surgical-video dialogues says, in a few languages.
QUESTIONS = ("What happens here?", "Which instrument is used?", "Describe the next step.",
             "Is the suture complete?", "Que se passe-t-il ?", "这是哪一步?", "")
ANSWERS = ("0", "The surgeon ties a knot.", "A needle driver.",
           "The incision is closed with three sutures.", "Oui, c'est la fin.", "止血。")

#: Words the tuned message is padded with (each one token in SmolVLM2's tokenizer; the
#: tuning re-prices the message either way, so any tokenizer works).
FILLER_WORDS = ("the", "and", "frame", "next")


def boundary_conversations(
    counter: TokenCounter,
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
    """Dialogues over video frames, one run of which is ``max_tokens + delta`` tokens
    long exactly (``counter``'s exact calculator, ``leading`` context included).

    User messages hold frames runs of one video (one frame size, frame numbers
    increasing through the conversation), sometimes single images of other sizes, and
    text; assistant messages hold text. Messages are drawn until the next would pass
    the target, then one message is built (frames and filler words) whose cost makes
    the run exactly ``max_tokens + delta``; more turns follow, so most conversations
    need several chunks. A splitter that under-counts a chunk by ``u`` tokens (per
    image, per message, the template around them, the generation prompt) overflows on
    every example with ``0 < delta <= u``; ``deltas`` starts with 1, 2, 3.

    ``add_generation_prompt`` counts the ``Assistant:`` prompt the chunks will get.
    ``sft`` ends the tuned run and the conversation on an assistant turn, and counts an
    opening system message as context repeated in every chunk, as ``split(sft=True)``
    does. ``oversized`` sometimes adds a message too large for any chunk (tens of frames
    more than fit), which a splitter must refuse or cut between frames.
    """
    return _boundary(counter, max_tokens, leading=leading,
                     add_generation_prompt=add_generation_prompt, sft=sft, max_turns=max_turns,
                     max_frames_per_run=max_frames_per_run, deltas=deltas, oversized=oversized,
                     sizes=sizes, examples=False)  # type: ignore[return-value]


def boundary_examples(
    counter: TokenCounter,
    max_tokens: int = 4096,
    **kwargs: Any,
) -> list[Conversation]:
    """The simplest conversations of :func:`boundary_conversations` (same arguments) with
    one, two and three runs at the limit, each ``deltas[0]`` tokens over it (one token,
    by default), and one with a message too large for a chunk: the explicit examples a
    checker tries first, so that an under-count in the first three chunks, or a wrong cut,
    is caught on every run whatever else hypothesis generates (its choices also depend on
    the constants of the modules loaded, so a derandomized run is not the same run in
    every test session)."""
    return _boundary(counter, max_tokens, examples=True, **kwargs)  # type: ignore[return-value]


class _Drafts:
    """What a boundary conversation draws from, built once per strategy (a strategy built
    inside the draw is rebuilt, and validated, per example), and the messages it drafts:
    shared by SmolVLM2's :func:`boundary_conversations` and Qwen-VL's
    :func:`~pytest_tokenguard.testing.qwen_strategies.qwen_boundary_conversations`.

    Text is mostly whole sentences (one choice each), sometimes drawn: every character
    drawn is a hypothesis choice, and drawing is most of an example's cost (while
    shrinking too); the tokens that matter most here are the images' and the template's.
    """

    def __init__(self, sizes: SearchStrategy[tuple[int, int]], *, max_turns: int,
                 max_frames_per_run: int, deltas: Sequence[int],
                 unicode_questions: bool) -> None:
        self.sizes = sizes
        self.answer_text = st.sampled_from(ANSWERS) | texts(min_size=1, max_size=30,
                                                            unicode=False)
        text_item = st.builds(TextItem, st.sampled_from(QUESTIONS)
                              | texts(max_size=30, unicode=unicode_questions))
        self.some_words = st.lists(text_item, max_size=2)
        self.at_least_a_word = st.lists(text_item, min_size=1, max_size=2)
        self.frame_size = st.sampled_from(VIDEO_SIZES) | sizes
        self.delta_of = st.sampled_from(list(deltas))
        self.filler = st.sampled_from(FILLER_WORDS)
        self.max_frames_per_run = max_frames_per_run
        self._ints = {(lo, hi): st.integers(lo, hi) for lo, hi in (
            (0, 500), (0, 3), (0, 4), (1, max_frames_per_run), (1, 3), (0, max_turns),
            (0, max_frames_per_run - 1), (0, 2), (1, 8), (0, max_turns // 3))}

    def between(self, lo: int, hi: int) -> SearchStrategy[int]:
        found = self._ints.get((lo, hi))
        return found if found is not None else st.integers(lo, hi)

    def user(self, draw: Any, limit: int, block_of: Callable[[int, int], int],
             run_of: Callable[[int], FramesItem], block: int) -> Message:
        """A user message of about ``limit`` tokens at most (one image may pass it): runs
        of ``block``-token frames from ``run_of`` and single images priced by
        ``block_of(width, height)``, with words around them."""
        visuals: list[ContentItem] = []
        for _ in range(draw(self.between(0, 3), label="visuals")):
            if draw(self.between(0, 4), label="single image") == 4:
                image = ImageItem(*draw(self.sizes))
                visuals.append(image)
                limit -= block_of(image.width, image.height)
            else:
                n = draw(self.between(1, self.max_frames_per_run), label="frames")
                n = max(1, min(n, limit // max(block, 1)))
                visuals.append(run_of(n))
                limit -= n * block
            if limit <= 0:
                break
        items: list[ContentItem] = list(draw(self.some_words if visuals
                                             else self.at_least_a_word))
        for item in visuals:
            items.insert(draw(self.between(0, len(items))), item)
        return Message("user", tuple(items))

    def answer(self, draw: Any) -> Message:
        return Message("assistant", (TextItem(draw(self.answer_text)),))


def _boundary_arguments(
    max_tokens: object, max_turns: object, max_frames_per_run: object, deltas: object,
    sizes: object, default_sizes: Callable[[], SearchStrategy[tuple[int, int]]],
) -> SearchStrategy[tuple[int, int]]:
    """The boundary strategies' arguments checked (one ``InvalidArgument`` naming the bad
    one); the image sizes to draw: ``sizes``, or ``default_sizes()`` when None."""
    _int("max_tokens", max_tokens, 1)
    _int("max_turns", max_turns)
    _int("max_frames_per_run", max_frames_per_run, 1)
    if isinstance(deltas, str) or not isinstance(deltas, Sequence) or not deltas or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in deltas
    ):
        raise InvalidArgument(f"deltas must be a non-empty list of integers, got {deltas!r}")
    if sizes is None:
        return default_sizes()
    if not isinstance(sizes, SearchStrategy):
        raise InvalidArgument(f"sizes must be a strategy of (width, height), got {sizes!r}")
    chosen: SearchStrategy[tuple[int, int]] = sizes
    return chosen


def _boundary(
    counter: TokenCounter,
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
    from ..sequence import _facts, base_tokens, message_cost

    sizes = _boundary_arguments(max_tokens, max_turns, max_frames_per_run, deltas, sizes,
                                lambda: image_sizes(max_side=2048))
    facts = _facts(counter)  # a chat template the calculator cannot price fails here, at once
    lead = parse_conversation(leading, label="leading message")
    prompt = facts.generation_tail - facts.newline if add_generation_prompt else 0
    lead_tokens = base_tokens(counter) + prompt + sum(message_cost(m, counter).tokens
                                                     for m in lead)
    drafts = _Drafts(sizes, max_turns=max_turns, max_frames_per_run=max_frames_per_run,
                     deltas=deltas, unicode_questions=True)
    between, delta_of, filler = drafts.between, drafts.delta_of, drafts.filler

    def cost(message: Message) -> int:
        return message_cost(message, counter, facts).tokens

    def block_of(width: int, height: int) -> int:
        return counter.image(width, height).block_tokens

    def build(draw: Any) -> Conversation:
        video = draw(drafts.frame_size, label="frame size")
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

        def message(position: int, limit: int) -> Message:
            return user(limit) if role(position) == "user" else answer()

        messages: list[Message] = []
        context = lead_tokens  # what every chunk starts with
        opening = 0  # what only the first chunk starts with
        if draw(between(0, 3), label="system prompt") == 3:
            system = Message("system", (TextItem(draw(drafts.answer_text)),))
            messages.append(system)
            if sft:  # repeated in every chunk, as split(sft=True) does
                context += cost(system)
            else:
                opening = cost(system)
        start = len(messages)
        room = max_tokens - context  # what one message may cost and still fit alone

        def add(m: Message) -> int:
            messages.append(m)
            return cost(m)

        def frames_message(n: int) -> Message:
            return Message("user", (run_of(max(1, n)),))

        carry = 0  # what the previous boundary left for the next chunk
        for segment in range(draw(between(1, 3), label="chunks at the limit")):
            delta = draw(delta_of, label="delta")
            target = max_tokens + delta
            used = context + carry + (opening if segment == 0 else 0)
            # ---- drawn turns while they leave room, then frames turns until the rest of
            # the run is small enough for one message to fill it exactly
            turns = draw(between(0, max_turns), label="turns before the limit")
            for _ in range(turns if segment == 0 else turns // 3):
                m = message(len(messages) - start, target - used)
                if used + cost(m) > target - 24:
                    break
                used += add(m)
            while target - used > room * 3 // 4:
                if role(len(messages) - start) == "user":
                    # shrinks to full runs: few padding turns, a short readable example
                    n = max_frames_per_run - draw(between(0, max_frames_per_run - 1),
                                                  label="padding frames short of a full run")
                    m = frames_message(min(n, (target - used - 24) // max(block, 1)))
                else:
                    m = answer()
                if used + cost(m) > target - 24:
                    break
                used += add(m)
            # ---- the message(s) that make the run exactly `target` tokens
            word = draw(filler, label="filler word")
            text_first = draw(st.booleans(), label="text first")
            spare = draw(between(0, 2), label="blocks left to text")
            if role(len(messages) - start) == "assistant":
                if sft and len(messages) > start:
                    # a question waits for its answer: replaced below by a tuned turn
                    used -= cost(messages.pop())
                elif not sft and target - used > 64:
                    used += add(answer())  # the tuned message is a user's, with frames
            if sft and role(len(messages) - start) == "user":
                # the user message takes the frames, the answer the last few tokens
                n = (target - used - 60) // max(block, 1) - spare
                used += add(frames_message(n) if n > 0 and block > 0
                            else Message("user", (TextItem("Next?"),)))
            if target - used < 6:
                break
            tuned = _tuned(role(len(messages) - start), target - used, cost, run_of, block,
                           word, text_first, spare)
            add(tuned)
            if delta < -3:
                break  # the next message may join this chunk: no boundary to aim at
            carry = 0
            if delta > 0:  # the tuned message (its turn, in SFT mode) starts the next chunk
                carry = cost(tuned)
                if sft and len(messages) - 2 >= start and messages[-2].role == "user":
                    carry += cost(messages[-2])
                if carry > room:
                    break
        # ---- what follows: more turns, perhaps a message too large for any chunk
        if oversized and draw(between(0, 2), label="oversized") == 2:
            if role(len(messages) - start) == "assistant":
                messages.append(answer())
            extra = draw(between(1, 8), label="frames over")
            messages.append(Message("user", (
                TextItem("All frames:"), run_of(max(1, room // max(block, 1)) + extra))))
        for _ in range(draw(between(0, max_turns // 3), label="turns after")):
            messages.append(message(len(messages) - start, room // 2))
        if sft and messages and messages[-1].role != "assistant":
            messages.append(answer())
        return tuple(messages)

    if examples:
        # the simplest conversation with 1, 2 and 3 runs at the limit, for explicit use
        return [build(_Simplest(overrides)) for overrides in (
            {"chunks at the limit": 1}, {"chunks at the limit": 2}, {"chunks at the limit": 3},
            {"chunks at the limit": 1, "oversized": 2})]
    return st.composite(build)()


class _Simplest:
    """A ``draw`` that gives every strategy its simplest value (what shrinking aims at),
    but the values named by label: builds the explicit examples of
    :func:`boundary_examples` from the same code as the strategy."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        self.overrides = overrides

    def __call__(self, strategy: SearchStrategy[Any], label: str | None = None) -> Any:
        if label in self.overrides:
            return self.overrides[label]
        return _simplest(strategy)


_SIMPLEST: dict[int, tuple[SearchStrategy[Any], Any]] = {}


def _simplest(strategy: SearchStrategy[Any]) -> Any:
    cached = _SIMPLEST.get(id(strategy))
    if cached is None or cached[0] is not strategy:
        from hypothesis import Phase, find, settings

        value = find(strategy, lambda _: True,
                     settings=settings(database=None, max_examples=10, phases=[Phase.generate,
                                                                                Phase.shrink]))
        cached = _SIMPLEST[id(strategy)] = (strategy, value)
    return cached[1]


def _tuned(
    role: str, need: int, cost: Any, run_of: Any, block: int, word: str, text_first: bool,
    spare: int,
) -> Message:
    """A message of ``role`` costing exactly ``need`` tokens where it can (else as near as
    the tokenizer allows): as many frames as fit (for a user) but ``spare`` blocks, then
    filler words, re-priced until exact."""
    visual: tuple[ContentItem, ...] = ()
    if role == "user" and block > 0:
        n = max(0, (need - 16) // block - spare)
        if n:
            visual = (run_of(n),)
    fewest = 0 if visual else 1

    def make(words: int) -> Message:
        text = (TextItem(" ".join([word] * words)),) if words else ()
        return Message(role, (*text, *visual) if text_first else (*visual, *text))

    words = fewest
    best = make(words)
    for _ in range(8):
        miss = need - cost(best)
        if miss == 0:
            break
        words = max(fewest, words + miss)
        candidate = make(words)
        if abs(need - cost(candidate)) >= abs(miss):
            break
        best = candidate
    return best


def boundary_conversation_dicts(
    counter: TokenCounter,
    max_tokens: int = 4096,
    *,
    frames_as: Literal["images", "ranges"] = "images",
    **kwargs: Any,
) -> SearchStrategy[list[dict[str, Any]]]:
    """:func:`boundary_conversations` as dicts: chat-template messages with every frame an
    image item carrying its ``frame`` number (``frames_as="images"``, the form a user's
    splitter usually takes), or this package's ``{"type": "frames", "start", "end"}``
    items (``frames_as="ranges"``). Same keyword arguments."""
    from ..conversation import to_dicts

    if frames_as not in ("images", "ranges"):
        raise InvalidArgument(f"frames_as must be 'images' or 'ranges', got {frames_as!r}")
    convert = to_chat_template if frames_as == "images" else to_dicts
    return boundary_conversations(counter, max_tokens, **kwargs).map(convert)
