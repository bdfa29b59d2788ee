"""Split a long conversation into chunks that each fit the model's context, exactly.

A chunk is ``leading context + a run of consecutive messages``, rendered as its own
conversation. By :mod:`pytest_tokenguard.seqlen` its length is ``base + sum(message
costs)`` with every cost positive, so the length of a run only grows as messages are
added: then packing greedily (close a chunk only when the next message does not fit)
gives the fewest chunks of any split into consecutive runs (exchange argument: the
greedy chunk ends at or past the end of any other split's chunk, by induction). The
test suite checks that against brute force with chunks rendered and tokenized whole.

Every chunk's length is the exact count, never an estimate: no chunk can exceed
``max_tokens``. A message that cannot fit even alone raises :class:`SplitError`,
unless ``allow_frame_split`` lets a message with video frames be cut between frames
(or between a frames item and its neighbours); text items and images are never cut.

**Videos** (``{"type": "video"}`` items, sent through the processor's video path) are
priced as the processor writes them, and every intro of one processor call spells the
largest sampled frame count of the call's videos, so a chunk holding videos is priced
as a whole (:func:`_split_videos`): the leading context and the run, at the chunk's
own count. A video that cannot fit alone is named with the largest ``num_frames``
that would fit. With ``allow_frame_split`` a long video is cut into consecutive
**clips**: a clip is a video item with ``start``/``end`` (frames of the video, end
exclusive) that the processor gets as a video of its own (those frames, with
``VideoItem.processor_metadata()``: ``end - start`` frames at the video's frame rate),
so it samples, times and introduces it from 00:00 as it would a file holding only
them. Each clip is the longest the search finds that fits, its count exact. Greedy
packing stays exact; fewest chunks is not claimed with videos (a larger video in a
chunk may shorten another's intro by a token).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .conversation import (
    ContentItem,
    Conversation,
    ConversationError,
    FramesItem,
    Message,
    MessageLike,
    VideoItem,
    check_video_strings,
    parse_conversation,
)
from .errors import SplitError as SplitError
from .sequence import _Facts, _facts, _video_entry, base_tokens, message_cost
from .tokens import TokenCounter

DEFAULT_MAX_TOKENS = 4096


@dataclass(frozen=True)
class Chunk:
    """One chunk: a valid conversation of ``leading`` context messages then conversation messages.

    ``sources[i]`` is the input index of ``messages[leading + i]``; an index appears
    in several consecutive chunks only when that message was cut between frames.
    ``tokens`` is the exact length of the rendered chunk.
    """

    index: int
    messages: Conversation
    tokens: int
    leading: int
    sources: tuple[int, ...]

    @property
    def body(self) -> Conversation:
        """The chunk's messages without the leading context."""
        return self.messages[self.leading:]


def _describe(message: Message, index: int, tokens: int) -> str:
    items = len(message.content)
    videos = (f", {message.videos} video{'s' * (message.videos != 1)}" if message.videos
              else "")
    return (f"message {index} ({message.role}, {items} item{'s' * (items != 1)}, "
            f"{message.images} image{'s' * (message.images != 1)}{videos}) is {tokens} "
            "tokens")


def _cuts(message: Message) -> list[tuple[int, int]]:
    """Where ``message`` may be cut: (item index, frames taken from that item).

    ``(i, 0)`` cuts before item ``i``; ``(i, k)`` cuts after the k-th frame of frames
    item ``i``. Cuts are allowed only next to a frame, so a message without frames
    has none.
    """
    content = message.content
    cuts: list[tuple[int, int]] = []
    for i, item in enumerate(content):
        prev_frames = i > 0 and type(content[i - 1]) is FramesItem
        if i > 0 and (prev_frames or type(item) is FramesItem):
            cuts.append((i, 0))
        if type(item) is FramesItem:
            cuts.extend((i, k) for k in range(1, len(item)))
    return cuts


def _cut(message: Message, cut: tuple[int, int]) -> tuple[Message, Message]:
    i, k = cut
    content = message.content
    head: tuple[ContentItem, ...] = content[:i]
    tail: tuple[ContentItem, ...] = content[i:]
    if k:
        item = content[i]
        assert type(item) is FramesItem
        first, rest = item.split_at(item.frames.start + k)
        head = (*head, first)
        tail = (rest, *content[i + 1:])
    return Message(message.role, head), Message(message.role, tail)


def split(
    conversation: Sequence[MessageLike] | Conversation,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    *,
    counter: TokenCounter | None = None,
    longest_edge: int | None = None,
    leading: Sequence[MessageLike] | Conversation = (),
    allow_frame_split: bool = False,
) -> list[Chunk]:
    """Chunks of ``conversation``, each at most ``max_tokens`` as the processor counts it.

    ``counter`` is the token counter of the processor the chunks are for; without it
    the default model (``TOKENGUARD_MODEL`` or SmolVLM2-2.2B) is loaded once. A
    ``longest_edge`` other than the counter's prices images at that resolution.
    ``leading`` messages (system prompt, task description) start every chunk and are
    counted in it. An empty conversation gives no chunks.
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise SplitError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    counter = _counter(counter, longest_edge)
    messages = (conversation if isinstance(conversation, tuple)
                and all(type(m) is Message for m in conversation)
                else parse_conversation(conversation))
    lead = parse_conversation(leading, label="leading message")
    if any(m.videos for m in (*lead, *messages)):
        return _split_videos(messages, lead, max_tokens, counter, allow_frame_split)
    base = base_tokens(counter) + sum(message_cost(m, counter).tokens for m in lead)
    if lead and base >= max_tokens:
        raise SplitError.phrased(
            f"the leading context alone is {base} tokens, and {{max_tokens}} is {max_tokens}: "
            "nothing is left for the conversation; shorten the leading context or raise "
            "{max_tokens}",
            tokens=base, room=max_tokens - base,
        )
    room = max_tokens - base
    chunks: list[Chunk] = []
    run: list[Message] = []
    sources: list[int] = []
    used = 0

    def close() -> None:
        nonlocal used
        if run:
            chunks.append(Chunk(len(chunks), (*lead, *run), base + used, len(lead),
                                tuple(sources)))
            run.clear()
            sources.clear()
            used = 0

    facts = _facts(counter)
    for index, message in enumerate(messages):
        tokens = message_cost(message, counter, facts).tokens
        if tokens > room:
            if not allow_frame_split or not _cuts(message):
                fix = ("{allow_frame_split} lets it be cut between frames"
                       if _cuts(message) else "shorten it or split it into several messages")
                raise SplitError.phrased(
                    f"{_describe(message, index, tokens)}, more than the {room} tokens a chunk "
                    f"has for messages ({{max_tokens}} {max_tokens} - {base} for the "
                    f"{'template and leading context' if lead else 'template'}); {fix}",
                    index=index, tokens=tokens, room=room,
                )
            # cut the message between frames: fill the open chunk, then fresh ones
            rest = message
            while True:
                rest_tokens = message_cost(rest, counter).tokens
                if used + rest_tokens <= room:
                    run.append(rest)
                    sources.append(index)
                    used += rest_tokens
                    break
                head = _longest_head(rest, counter, room - used)
                if head is None:
                    if run:
                        close()
                        continue
                    raise SplitError.phrased(
                        f"{_describe(message, index, tokens)}; even cut between frames, a "
                        f"piece of it does not fit the {room} tokens a chunk has for messages "
                        "(a text item or image next to the frames is too large); raise "
                        "{max_tokens} or shorten the message",
                        index=index, tokens=tokens, room=room,
                    )
                head_message, head_tokens, rest = head
                run.append(head_message)
                sources.append(index)
                used += head_tokens
                close()
            continue
        if used + tokens > room:
            close()
        run.append(message)
        sources.append(index)
        used += tokens
    close()
    return chunks


def _longest_head(
    message: Message, counter: TokenCounter, room: int
) -> tuple[Message, int, Message] | None:
    """The longest leading part of ``message`` (cut at a legal point) that fits ``room``.

    Binary search over the cut points: a head only grows in tokens as it takes more
    items; the chosen head's cost is the exact count either way.
    """
    cuts = _cuts(message)
    lo, hi = 0, len(cuts) - 1
    best: tuple[Message, int, Message] | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        head, tail = _cut(message, cuts[mid])
        tokens = message_cost(head, counter).tokens
        if tokens <= room:
            best = (head, tokens, tail)
            lo = mid + 1
        else:
            hi = mid - 1
    return best


# ------------------------------------------------------------------------------ videos


class _VideoPricer:
    """Exact chunk lengths for conversations with videos: a chunk is priced whole, at the
    frame count its intros spell (the largest of its videos), from per-message costs
    cached by (message, count)."""

    def __init__(self, counter: TokenCounter, facts: _Facts, lead: Conversation) -> None:
        self.counter = counter
        self.facts = facts
        self.lead = lead
        self.base = base_tokens(counter)
        self._costs: dict[tuple[Message, int | None], int] = {}

    def frames(self, message: Message) -> int | None:
        """The largest frame count the message's videos sample (None: no video)."""
        counts = [_video_entry(item, self.counter, self.facts, None)[0].frames
                  for item in message.content if type(item) is VideoItem]
        return max(counts, default=None)

    def cost(self, message: Message, intro: int | None) -> int:
        key = (message, intro if message.videos else None)
        tokens = self._costs.get(key)
        if tokens is None:
            tokens = message_cost(message, self.counter, self.facts, intro).tokens
            if len(self._costs) > 65536:
                self._costs.clear()
            self._costs[key] = tokens
        return tokens

    def tokens(self, body: Sequence[Message]) -> int:
        """The exact length of the chunk ``leading context + body``."""
        messages = (*self.lead, *body)
        counts = [f for f in map(self.frames, messages) if f is not None]
        intro = max(counts, default=None)
        return self.base + sum(self.cost(m, intro) for m in messages)


class _VideoCuts:
    """Where a message with videos may be cut, in order, without listing them (a video of
    an hour has 100,000 frames): ``(i, 0)`` before item ``i`` when it or the item before
    it is a video or frames item, ``(i, k)`` after ``k`` frames of a frames item or of a
    video (the two parts are then consecutive clips). ``cuts[j]`` is found by bisection
    over the items."""

    def __init__(self, message: Message) -> None:
        content = message.content
        self._segments: list[tuple[int, int, int]] = []  # (item, first k, how many)
        self._ends: list[int] = []
        total = 0
        for i, item in enumerate(content):
            kind = type(item)
            prev = type(content[i - 1]) if i else None
            if i > 0 and (kind in (FramesItem, VideoItem) or prev in (FramesItem, VideoItem)):
                total += 1
                self._segments.append((i, 0, 1))
                self._ends.append(total)
            frames = (len(item) if kind is FramesItem  # type: ignore[arg-type]
                      else len(item.frame_range) if kind is VideoItem  # type: ignore[union-attr]
                      else 0)
            if frames > 1:
                total += frames - 1
                self._segments.append((i, 1, frames - 1))
                self._ends.append(total)
        self._total = total

    def __len__(self) -> int:
        return self._total

    def __getitem__(self, j: int) -> tuple[int, int]:
        from bisect import bisect_right

        if not 0 <= j < self._total:
            raise IndexError(j)
        at = bisect_right(self._ends, j)
        item, first, _ = self._segments[at]
        before = self._ends[at - 1] if at else 0
        return item, first + (j - before)


def _video_cut(message: Message, cut: tuple[int, int]) -> tuple[Message, Message]:
    i, k = cut
    content = message.content
    if not k:
        return Message(message.role, content[:i]), Message(message.role, content[i:])
    item = content[i]
    if type(item) is VideoItem:
        first, rest = item.split_at(item.frame_range.start + k)
    else:
        assert type(item) is FramesItem
        first, rest = item.split_at(item.frames.start + k)  # type: ignore[assignment]
    return (Message(message.role, (*content[:i], first)),
            Message(message.role, (rest, *content[i + 1:])))


def _video_head(message: Message, run: Sequence[Message], pricer: _VideoPricer,
                max_tokens: int) -> tuple[Message, Message] | None:
    """The longest leading part of ``message`` (cut at a legal point) that fits after
    ``run`` in one chunk, found by binary search over the cut points (a head's length
    grows with its end but for a token or two of timestamp digits, so the search may
    stop short of the very longest); the part returned always fits, counted exactly."""
    cuts = _VideoCuts(message)
    lo, hi = 0, len(cuts) - 1
    best: tuple[Message, Message] | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        head, tail = _video_cut(message, cuts[mid])
        if pricer.tokens((*run, head)) <= max_tokens:
            best = (head, tail)
            lo = mid + 1
        else:
            hi = mid - 1
    return best


def _fitting_num_frames(message: Message, pricer: _VideoPricer, max_tokens: int
                        ) -> str:
    """The fix for a message whose videos cannot fit a chunk: the largest ``num_frames``
    (given to every video of the message, as a processor call gives it) that fits."""
    videos = [item for item in message.content if type(item) is VideoItem]
    if not videos:
        return ""
    most = max(max(v.num_frames or 0, pricer.counter.video_counter.sampling.max_frames)
               for v in videos)
    for cap in range(most, 0, -1):
        capped = Message(message.role, tuple(
            replace(item, num_frames=cap) if type(item) is VideoItem else item
            for item in message.content))
        if pricer.tokens((capped,)) <= max_tokens:
            frames = max(filter(None, map(pricer.frames, (message,))), default=0)
            return (f"; its video{'s' * (len(videos) > 1)} sample{'s' * (len(videos) == 1)} "
                    f"{frames} frames, and num_frames={cap} fits (write \"num_frames\": "
                    f"{cap} in the video item and pass num_frames={cap} to the processor)")
    return "; even at num_frames=1 its videos do not fit"


def _split_videos(messages: Conversation, lead: Conversation, max_tokens: int,
                  counter: TokenCounter, allow_frame_split: bool) -> list[Chunk]:
    """:func:`split` for a conversation (or leading context) holding videos."""
    check_video_strings((*lead, *messages), label="message")
    pricer = _VideoPricer(counter, _facts(counter), lead)
    base = pricer.tokens(())
    if lead and base >= max_tokens:
        raise SplitError.phrased(
            f"the leading context alone is {base} tokens, and {{max_tokens}} is {max_tokens}: "
            "nothing is left for the conversation; shorten the leading context or raise "
            "{max_tokens}",
            tokens=base, room=max_tokens - base,
        )
    room = max_tokens - base
    chunks: list[Chunk] = []
    run: list[Message] = []
    sources: list[int] = []

    def close() -> None:
        if run:
            chunks.append(Chunk(len(chunks), (*lead, *run), pricer.tokens(run), len(lead),
                                tuple(sources)))
            run.clear()
            sources.clear()

    for index, message in enumerate(messages):
        if pricer.tokens((*run, message)) <= max_tokens:
            run.append(message)
            sources.append(index)
            continue
        alone = pricer.tokens((message,))
        if alone <= max_tokens:
            close()
            run.append(message)
            sources.append(index)
            continue
        tokens = alone - base
        cuts = len(_VideoCuts(message))
        if not allow_frame_split or not cuts:
            fix = ("{allow_frame_split} lets it be cut between frames and into clips"
                   if cuts else "shorten it or split it into several messages")
            raise SplitError.phrased(
                f"{_describe(message, index, tokens)}, more than the {room} tokens a chunk "
                f"has for messages ({{max_tokens}} {max_tokens} - {base} for the "
                f"{'template and leading context' if lead else 'template'})"
                f"{_fitting_num_frames(message, pricer, max_tokens)}; {fix}",
                index=index, tokens=tokens, room=room,
            )
        rest = message
        while True:
            if pricer.tokens((*run, rest)) <= max_tokens:
                run.append(rest)
                sources.append(index)
                break
            head = _video_head(rest, run, pricer, max_tokens)
            if head is None:
                if run:
                    close()
                    continue
                raise SplitError.phrased(
                    f"{_describe(message, index, tokens)}; even cut between frames and into "
                    f"clips, a piece of it does not fit the {room} tokens a chunk has for "
                    "messages (a text item or image next to the frames is too large, or one "
                    "frame of a video is)"
                    f"{_fitting_num_frames(rest, pricer, max_tokens)}; raise {{max_tokens}} "
                    "or shorten the message",
                    index=index, tokens=tokens, room=room,
                )
            run.append(head[0])
            sources.append(index)
            close()
            rest = head[1]
    close()
    return chunks


_DEFAULT_COUNTERS: dict[tuple[str, int | None], TokenCounter] = {}


def _counter(counter: TokenCounter | None, longest_edge: int | None) -> TokenCounter:
    if counter is None:
        from .processor.loading import load_processor
        from .processor.source import model_or_default

        model = model_or_default()
        key = (model, longest_edge)
        if key not in _DEFAULT_COUNTERS:
            loaded = load_processor(model, longest_edge)
            _DEFAULT_COUNTERS[key] = TokenCounter(loaded.processor, loaded.spec,
                                                  loaded.longest_edge)
        return _DEFAULT_COUNTERS[key]
    if longest_edge is not None and longest_edge != counter.longest_edge:
        key = (f"{id(counter)}", longest_edge)
        cached = _DEFAULT_COUNTERS.get(key)
        if cached is None or cached.processor is not counter.processor:
            cached = TokenCounter(counter.processor, counter.spec, longest_edge)
            _DEFAULT_COUNTERS[key] = cached
        return cached
    return counter


def validate_chunks(
    chunks: Sequence[Chunk], conversation: Conversation, leading: Conversation = ()
) -> None:
    """Raise ``ConversationError`` unless the chunks hold every message once, in order.

    A message cut between frames must come back whole from its consecutive parts.
    """
    from .conversation import atoms

    position = 0
    pending: list[object] = []
    for chunk in chunks:
        if chunk.messages[:chunk.leading] != tuple(leading):
            raise ConversationError(f"chunk {chunk.index} does not start with the leading context")
        for source, part in zip(chunk.sources, chunk.body, strict=True):
            if source != position:
                raise ConversationError(
                    f"chunk {chunk.index} holds message {source} where message {position} "
                    "was due: a message is lost, repeated or out of order"
                )
            original = conversation[position]
            if part.role != original.role:
                raise ConversationError(f"chunk {chunk.index}: message {source} changed role")
            pending.extend(atoms(part))
            whole = atoms(original)
            if tuple(pending) == whole:
                position += 1
                pending = []
            elif tuple(pending) != whole[:len(pending)]:
                raise ConversationError(
                    f"chunk {chunk.index}: message {source}'s content differs from the input"
                )
    if position != len(conversation) or pending:
        raise ConversationError(
            f"the chunks end at message {position} of {len(conversation)}: messages are missing"
        )
