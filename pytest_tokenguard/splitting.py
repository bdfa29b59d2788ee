"""Split a long conversation into chunks that each fit the model's context, exactly.

A chunk is ``leading context + a run of consecutive messages``, rendered as its own
conversation. By :mod:`pytest_tokenguard.sequence` its length is ``base + sum(message
costs)`` with every cost positive, so the length of a run only grows as messages are
added. Every chunk's length is the exact count, never an estimate: no chunk can exceed
``max_tokens``.

Two modes:

* **plain** (default): chunks break between messages. A message that cannot fit even
  alone raises :class:`SplitError`, unless ``allow_frame_split`` lets it be cut between
  video frames or images: inside a frames item, between a frames item and its
  neighbours, and between two adjacent images (the usual TRL form of frames: a message
  of plain ``{"type": "image"}`` items). Text items are never cut, and the parts of a
  cut message put back together are the message.
* **SFT** (``sft=True``, for supervised fine-tuning): chunks break only between *turns*,
  a turn being the user (or other non-assistant) messages and the assistant answer that
  follows them, so every chunk ends on an assistant turn and no user turn is separated
  from its answer. The conversation's opening ``system`` messages join the leading
  context and start every chunk. With ``allow_frame_split`` a turn too large for a chunk
  is cut in its user message between images or frames; every part keeps the message's
  text before its first image and after its last image, and the whole answer, so each
  part is a complete training example. A conversation that cannot be split this way
  (an unanswered last turn, no assistant turn, a turn too large) raises
  :class:`SplitError` saying why, on one line.

Fewest chunks. Packing greedily (close a chunk only when the next piece does not fit)
gives the fewest chunks

* of any split into runs of whole messages (plain mode without cuts): the greedy chunk
  ends at or past the end of any other split's chunk, by induction (exchange argument);
  the test suite checks it against brute force with chunks rendered whole;
* with ``allow_frame_split``, of any split that cuts only messages too large for a
  chunk, at the cut points above: the same argument over positions in the stream of
  frames, since a piece's length grows with its end and shrinks with its start (also
  checked by brute force). A split that may also cut messages that fit can need fewer
  chunks; this splitter does not cut a message that fits, as a model sees a cut
  message as two turns;
* in SFT mode, of any split into runs of whole turns (the same argument, turns for
  messages); a turn cut into parts takes the longest part that fits each time, and two
  parts of one turn never share a chunk (one part holding both image runs is shorter),
  so the argument carries over to cut turns as well.

Frame counts are handled arithmetically: a frames item of ten million frames is
neither listed nor walked frame by frame; its cut is found by binary search over the
items and one division inside the frames item. ``max_chunks`` refuses at once a
conversation that would need more chunks than that (usually a frames ``end`` that is a
timestamp or a typo), instead of building a list of hundreds of thousands of chunks.

**Videos** (``{"type": "video"}`` items, sent through the processor's video path) are
priced as the processor writes them, and up to transformers 5.24 every intro of one
processor call spells the largest sampled frame count of the call's videos, so a chunk
holding videos is priced as a whole (:func:`_split_videos`): the leading context and the
run, at the chunk's own count. A video (or SFT turn) that cannot fit alone is named with
the largest ``num_frames`` that would fit. In plain mode, ``allow_frame_split`` also
cuts a long video into consecutive **clips**: a clip is a video item with
``start``/``end`` (frames of the video, end exclusive) that the processor gets as a
video of its own (those frames, with ``VideoItem.processor_metadata()``: ``end - start``
frames at the video's frame rate), so it samples, times and introduces it from 00:00 as
it would a file holding only them. Each clip is the longest the search finds that fits,
its count exact. Every chunk is exact; the fewest-chunks argument above is not claimed
with videos (a larger video in a chunk changes the others' intros by a token or two, and
a clip's length grows with its end only up to its timestamp digits). SFT mode keeps
turns with videos whole.

**Other model families** (a Qwen-VL :class:`~pytest_tokenguard.families.qwen_text.
QwenTokenCounter` as ``counter``): the counter prices a chunk by rendering it whole
(:class:`ChunkPricer`: its exact length as the processor counts it), and the same greedy
packing runs on those prices (:func:`_split_whole`), plain and SFT, ``leading`` and
``allow_frame_split`` (cuts between images and inside frames items; a video is never cut:
a message whose video alone cannot fit is refused, naming it). A chunk's length only grows
as messages are added (ChatML closes every message with ``<|im_end|>``), so greedy is the
fewest chunks here as above; every chunk's count is the renderer's, exact.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from . import conversation as _conv
from .conversation import (
    ContentItem,
    ConversationError,
    FrameRange,
    FramesItem,
    Message,
    VideoItem,
    check_video_strings,
    parse_conversation,
)
from .counting import count_image
from .errors import SplitError as SplitError
from .images import path_loader_of
from .sequence import _Facts, _facts, _video_entry, base_tokens, message_cost
from .tokens import TokenCounter

if TYPE_CHECKING:  # names used in annotations only
    from .conversation import Conversation, MessageLike

__all__ = [
    "DEFAULT_MAX_CHUNKS",
    "DEFAULT_MAX_TOKENS",
    "Chunk",
    "ChunkPricer",
    "SplitError",
    "split",
    "validate_chunks",
]

DEFAULT_MAX_TOKENS = 4096
#: The most chunks one conversation may be split into before it is refused as hostile.
DEFAULT_MAX_CHUNKS = 10_000

ASSISTANT = "assistant"
SYSTEM = "system"
#: the fix a message names (``{allow_frame_split}`` is spelt for where it is shown:
#: ``allow_frame_split=True`` in Python, ``--allow-frame-split`` on the command line)
FRAME_SPLIT_FIX = "{allow_frame_split}"


@runtime_checkable
class ChunkPricer(Protocol):
    """A counter that prices a whole chunk (a family other than SmolVLM2's:
    :class:`~pytest_tokenguard.families.qwen_text.QwenTokenCounter`)."""

    def parse(self, messages: Sequence[MessageLike] | Conversation, *,
              label: str = "message") -> Conversation:
        """The messages validated as this family's processor takes them."""
        ...

    def chunk_tokens(self, messages: Sequence[Message]) -> int:
        """The exact length of ``messages`` rendered as one conversation."""
        ...


@dataclass(frozen=True)
class Chunk:
    """One chunk: a valid conversation of ``leading`` context messages then conversation messages.

    ``sources[i]`` is the input index of ``messages[leading + i]``. An index appears in
    several consecutive chunks only when that message was cut between frames or images
    (plain mode), or, in SFT mode, when its turn was cut: then every message of the
    turn (the answer too) is in each chunk holding a part. ``tokens`` is the exact
    length of the rendered chunk.
    """

    index: int
    """Its place among the conversation's chunks, from 0."""
    messages: Conversation
    """The leading context, then the conversation's messages (or parts of them)."""
    tokens: int
    """The exact length of the rendered chunk."""
    leading: int
    """How many of ``messages`` are the leading context."""
    sources: tuple[int, ...]
    """The input index of each message after the leading context."""

    @property
    def body(self) -> Conversation:
        """The chunk's messages without the leading context."""
        return self.messages[self.leading:]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _describe(message: Message, index: int, tokens: int) -> str:
    videos = f", {_plural(message.videos, 'video')}" if message.videos else ""
    return (f"message {index} ({message.role}, {_plural(len(message.content), 'item')}, "
            f"{_plural(message.images, 'image')}{videos}) is {tokens} tokens")


# ------------------------------------------------------------------ cut points, lazily

_Rule = Callable[[ContentItem, ContentItem], bool]


def _frames_rule(before: ContentItem, after: ContentItem) -> bool:
    """Plain mode: next to a frames item, or between two images."""
    kb, ka = type(before), type(after)
    return kb is FramesItem or ka is FramesItem or (kb is ka is _conv.ImageItem)


def _any_rule(before: ContentItem, after: ContentItem) -> bool:
    """SFT mode, inside the run from the first image to the last: anywhere."""
    return True


def _frame_count(item: FramesItem) -> int:
    return item.frames.end - item.frames.start  # no len(): fine beyond sys.maxsize


class _Cuts:
    """The legal cut points of ``content`` in order, as a sequence that lists none of them.

    ``(i, 0)`` cuts before item ``i``; ``(i, k)`` after the k-th frame of frames item
    ``i``. Built in O(items): a frames item of ten million frames adds one number.
    """

    __slots__ = ("before", "content", "firsts", "total")

    def __init__(self, content: tuple[ContentItem, ...], rule: _Rule) -> None:
        self.content = content
        self.firsts: list[int] = []  # index of item i's first cut
        self.before: list[bool] = []  # whether (i, 0) is a cut
        total = 0
        for i, item in enumerate(content):
            self.firsts.append(total)
            allowed = i > 0 and rule(content[i - 1], item)
            self.before.append(allowed)
            total += allowed
            if type(item) is FramesItem:
                total += max(0, _frame_count(item) - 1)
        self.total = total

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, j: int) -> tuple[int, int]:
        i = bisect_right(self.firsts, j) - 1
        offset = j - self.firsts[i]
        return (i, offset) if self.before[i] else (i, offset + 1)

    def index(self, i: int, k: int) -> int:
        return self.firsts[i] + (k if self.before[i] else k - 1)


def _has_cuts(content: tuple[ContentItem, ...], rule: _Rule) -> bool:
    return any(type(item) is FramesItem and _frame_count(item) > 1 for item in content) or any(
        rule(a, b) for a, b in pairwise(content)
    )


def _cut(
    content: tuple[ContentItem, ...], i: int, k: int
) -> tuple[tuple[ContentItem, ...], tuple[ContentItem, ...]]:
    if not k:
        return content[:i], content[i:]
    item = content[i]
    assert type(item) is FramesItem
    start, end, at = item.frames.start, item.frames.end, item.frames.start + k
    first = FramesItem(FrameRange(start, at), item.width, item.height, item.video)
    rest = FramesItem(FrameRange(at, end), item.width, item.height, item.video)
    return (*content[:i], first), (rest, *content[i + 1:])


class _Pricer:
    """Exact cost of a piece built from content items (``wrap`` adds the fixed text
    around the piece and makes it a message)."""

    def __init__(self, counter: TokenCounter, facts: _Facts) -> None:
        self.counter = counter
        self.facts = facts

    def __call__(self, message: Message) -> int:
        return message_cost(message, self.counter, self.facts).tokens

    def frame_block(self, item: FramesItem) -> int:
        c = self.counter
        return count_image(item.width, item.height, c.longest_edge, c.spec).block_tokens


def _longest_head(
    content: tuple[ContentItem, ...],
    rule: _Rule,
    price: _Pricer,
    room: int,
    wrap: Callable[[tuple[ContentItem, ...]], Message],
) -> tuple[tuple[ContentItem, ...], int, tuple[ContentItem, ...]] | None:
    """The longest leading part of ``content`` (cut at a legal point) whose wrapped
    message fits ``room``: (head items, its exact cost, the rest), or None.

    A head only grows in tokens as it takes more items, so the cut is found by binary
    search; inside a frames item the cost grows by exactly one image block per frame,
    so the search there ends with one division. Every returned cost is the exact
    count of the returned head.
    """
    cuts = _Cuts(content, rule)
    if room <= 0 or not len(cuts):
        return None
    lo, hi = 0, len(cuts) - 1
    best: tuple[tuple[ContentItem, ...], int, tuple[ContentItem, ...]] | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        i, k = cuts[mid]
        head, tail = _cut(content, i, k)
        tokens = price(wrap(head))
        if k:
            item = content[i]
            assert type(item) is FramesItem
            block = price.frame_block(item)
            last = _frame_count(item) - 1
            jump = min(last, k + (room - tokens) // block) if block > 0 else k
            if jump >= 1:
                head, tail = _cut(content, i, jump)
                jumped = price(wrap(head))
                if jumped <= room:
                    best = (head, jumped, tail)
                    if jump < last:
                        break  # frame jump + 1 of this item does not fit
                    lo = cuts.index(i, jump) + 1
                    continue
                # not linear after all (cannot happen with additive costs): search plainly
            elif tokens > room:
                hi = cuts.index(i, 1) - 1
                continue
        if tokens <= room:
            best = (head, tokens, tail)
            lo = mid + 1
        else:
            hi = mid - 1
    return best


# ------------------------------------------------------------------ packing


#: what a conversation that needs too many chunks should check (frames runs)
_FRAME_RANGES = "its frame ranges (frames 'end' is exclusive, not a timestamp)"


class _Packer:
    """Greedy packing of pieces into chunks that start with the leading context.

    A chunk's tokens are ``base`` plus what its pieces were added with, or, where chunks
    are priced whole (videos, a :class:`ChunkPricer`), ``whole(messages)`` when it closes;
    ``check`` is what a conversation needing more than ``max_chunks`` chunks should check.
    """

    def __init__(self, lead: Conversation, base: int, room: int, max_chunks: int, *,
                 whole: Callable[[Sequence[Message]], int] | None = None,
                 check: str = _FRAME_RANGES) -> None:
        self.lead = lead
        self.base = base
        self.room = room
        self.max_chunks = max_chunks
        self.whole = whole
        self.check = check
        self.chunks: list[Chunk] = []
        self.run: list[Message] = []
        self.sources: list[int] = []
        self.used = 0

    @property
    def free(self) -> int:
        return self.room - self.used

    def add(self, messages: Sequence[Message], sources: Sequence[int], tokens: int) -> None:
        self.run.extend(messages)
        self.sources.extend(sources)
        self.used += tokens

    def close(self) -> None:
        if not self.run:
            return
        if len(self.chunks) >= self.max_chunks:
            raise SplitError.phrased(
                f"the conversation needs more than {{max_chunks}}={self.max_chunks} chunks; "
                f"check {self.check} or pass a larger " + "{max_chunks}"
            )
        tokens = self.whole(self.run) if self.whole is not None else self.base + self.used
        self.chunks.append(Chunk(len(self.chunks), (*self.lead, *self.run), tokens,
                                 len(self.lead), tuple(self.sources)))
        self.run.clear()
        self.sources.clear()
        self.used = 0

    def fill(
        self,
        rest: tuple[ContentItem, ...],
        rule: _Rule,
        price: _Pricer,
        wrap: Callable[[tuple[ContentItem, ...]], Message],
        pieces: Callable[[Message], tuple[Message, ...]],
        sources: tuple[int, ...],
        fixed: int,
        too_large: Callable[[], SplitError],
    ) -> None:
        """Pack a message too large for a chunk, cut at ``rule``'s points: fill the open
        chunk with the longest head that fits, then fresh chunks. ``wrap`` makes a part
        from a run of items; ``pieces`` gives the messages a part brings (the part alone,
        or the whole SFT turn with the part in it), ``fixed`` tokens besides the part."""
        while True:
            part = wrap(rest)
            tokens = fixed + price(part)
            if tokens <= self.free:
                self.add(pieces(part), sources, tokens)
                return
            head = _longest_head(rest, rule, price, self.free - fixed, wrap)
            if head is None:
                if self.run:
                    self.close()
                    continue
                raise too_large()
            items, head_tokens, rest = head
            self.add(pieces(wrap(items)), sources, fixed + head_tokens)
            self.close()


# ------------------------------------------------------------------ split


def _leading_too_long(first: int, base: int, max_tokens: int) -> SplitError:
    """The refusal when the leading context (with the conversation's opening system
    messages, ``first`` of them) leaves no room for the conversation."""
    what = ("the leading context and the conversation's opening system messages"
            if first else "the leading context")
    return SplitError.phrased(
        f"{what} alone {'are' if first else 'is'} {base} tokens, and {{max_tokens}} is "
        f"{max_tokens}: nothing is left for the conversation; shorten the leading context "
        "or raise {max_tokens}",
        tokens=base, room=max_tokens - base,
    )


def split(
    conversation: Sequence[MessageLike] | Conversation,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    *,
    counter: TokenCounter | ChunkPricer | None = None,
    longest_edge: int | None = None,
    leading: Sequence[MessageLike] | Conversation = (),
    allow_frame_split: bool = False,
    sft: bool = False,
    max_chunks: int = DEFAULT_MAX_CHUNKS,
) -> list[Chunk]:
    """Chunks of ``conversation``, each at most ``max_tokens`` as the processor counts it.

    ``counter`` is the token counter of the processor the chunks are for; without it
    the default model (``TOKENGUARD_MODEL`` or SmolVLM2-2.2B) is loaded once. A
    ``longest_edge`` other than the counter's prices images at that resolution. A
    Qwen-VL :class:`~pytest_tokenguard.families.qwen_text.QwenTokenCounter` prices
    every chunk by rendering it (its settings are its own: ``with_settings``).
    ``leading`` messages (system prompt, task description) start every chunk and are
    counted in it. An empty conversation gives no chunks. ``sft`` splits for
    supervised fine-tuning (see the module docstring): ``tokenguard split --sft``
    is this flag. Raises :class:`SplitError` (one line, naming the message and the
    fix) when the conversation cannot be split under these rules.
    """
    for name, value in (("max_tokens", max_tokens), ("max_chunks", max_chunks)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SplitError(f"{name} must be a positive integer, got {value!r}")
    if counter is not None and not isinstance(counter, TokenCounter):
        if longest_edge is not None:
            raise SplitError(f"longest_edge is SmolVLM2's resolution; a {type(counter).__name__} "
                             "has settings of its own (counter.with_settings(...))")
        return _split_whole(conversation, max_tokens, counter, leading, allow_frame_split,
                            sft, max_chunks)
    counter = _counter(counter, longest_edge)
    loader = path_loader_of(counter.processor)
    messages = (conversation if isinstance(conversation, tuple)
                and all(type(m) is Message for m in conversation)
                else parse_conversation(conversation, image_loader=loader))
    lead = parse_conversation(leading, label="leading message", image_loader=loader)
    first = 0
    if sft:
        while first < len(messages) and messages[first].role == SYSTEM:
            first += 1
        lead = (*lead, *messages[:first])
    facts = _facts(counter)
    if any(m.videos for m in (*lead, *messages)):
        return _split_videos(messages, lead, first, max_tokens, counter, facts,
                             allow_frame_split, sft, max_chunks)
    price = _Pricer(counter, facts)
    base = base_tokens(counter) + sum(price(m) for m in lead)
    context = ("template and leading context" if lead else "template")
    if lead and base >= max_tokens:
        raise _leading_too_long(first, base, max_tokens)
    room = max_tokens - base
    if room < 1 and len(messages) > first:
        raise SplitError.phrased(
            f"{{max_tokens}} {max_tokens} leaves no room for a message: the chat template "
            f"alone is {base} tokens; raise {{max_tokens}}",
            tokens=base, room=room,
        )
    costs = [price(m) for m in messages]
    body = sum(costs[first:])
    if allow_frame_split and body > max_chunks * room:
        # each chunk holds at most `room` tokens of messages: refuse before building any
        largest = max(range(first, len(messages)), key=costs.__getitem__)
        described = _describe(messages[largest], largest, costs[largest])
        raise SplitError.phrased(
            f"the conversation needs at least {-(-body // room)} chunks of {max_tokens} tokens, "
            f"more than {{max_chunks}}={max_chunks} ({described}); check its frame ranges "
            "(frames 'end' is exclusive, not a timestamp) or pass a larger {max_chunks}",
            index=largest, tokens=costs[largest], room=room,
        )
    packer = _Packer(lead, base, room, max_chunks)
    limits = (f"the {room} tokens a chunk has for messages ({{max_tokens}} {max_tokens} - "
              f"{base} for the {context})")
    if sft:
        _split_sft(messages, first, costs, packer, price, limits, allow_frame_split)
    else:
        _split_plain(messages, costs, packer, price, limits, allow_frame_split)
    packer.close()
    return packer.chunks


def _split_plain(
    messages: Conversation, costs: list[int], packer: _Packer, price: _Pricer, limits: str,
    allow_frame_split: bool,
) -> None:
    room = packer.room
    for index, message in enumerate(messages):
        tokens = costs[index]
        if tokens <= room:
            if tokens > packer.free:
                packer.close()
            packer.add((message,), (index,), tokens)
            continue
        cuttable = _has_cuts(message.content, _frames_rule)
        if not allow_frame_split or not cuttable:
            fix = (f"{FRAME_SPLIT_FIX} lets it be cut between frames or images" if cuttable
                   else "shorten it or split it into several messages")
            raise SplitError.phrased(f"{_describe(message, index, tokens)}, more than {limits}; "
                                     f"{fix}", index=index, tokens=tokens, room=room)

        def too_large(message: Message = message, index: int = index,
                      tokens: int = tokens) -> SplitError:
            return SplitError.phrased(
                f"{_describe(message, index, tokens)}; even cut between frames, a piece of it "
                f"does not fit {limits} (a text item or image next to the frames is too "
                "large); raise {max_tokens} or shorten the message",
                index=index, tokens=tokens, room=room,
            )

        def wrap(items: tuple[ContentItem, ...], role: str = message.role) -> Message:
            return Message(role, items)

        packer.fill(message.content, _frames_rule, price, wrap, _alone, (index,), 0, too_large)


def _alone(part: Message) -> tuple[Message, ...]:
    return (part,)


def _turns(messages: Conversation, first: int) -> list[tuple[int, int]]:
    """[start, end) of each turn: non-assistant messages, then the assistant answer."""
    turns: list[tuple[int, int]] = []
    start = first
    for i in range(first, len(messages)):
        if messages[i].role == ASSISTANT and (
            i + 1 == len(messages) or messages[i + 1].role != ASSISTANT
        ):
            turns.append((start, i + 1))
            start = i + 1
    if start < len(messages):
        m = messages[start]
        last = len(messages) - 1
        raise SplitError(
            f"message {last} ({messages[last].role}) has no assistant answer after it"
            + (f" (nor has message {start}, where the unanswered turn starts)"
               if start < last else "")
            + "; an SFT chunk ends on an assistant turn: add the answer or drop the "
            f"unanswered {m.role} turn",
            index=last,
        )
    return turns


def _units(messages: Conversation, first: int, sft: bool
           ) -> list[tuple[list[int], Conversation]]:
    """What chunks are packed from, with their message indices: each message, or in SFT
    mode each turn after the ``first`` opening system messages."""
    if sft and first == len(messages) and first:
        raise SplitError("the conversation has only system messages: no assistant turn for an "
                         "SFT chunk to end on; add the dialogue or drop the record", index=0)
    return ([(list(range(a, b)), messages[a:b]) for a, b in _turns(messages, first)] if sft
            else [([i], (m,)) for i, m in enumerate(messages)])


def _split_sft(
    messages: Conversation, first: int, costs: list[int], packer: _Packer, price: _Pricer,
    limits: str, allow_frame_split: bool,
) -> None:
    room = packer.room
    for unit, turn in _units(messages, first, sft=True):
        start, end, indices = unit[0], unit[-1] + 1, tuple(unit)
        tokens = sum(costs[start:end])
        if tokens <= room:
            if tokens > packer.free:
                packer.close()
            packer.add(turn, indices, tokens)
            continue
        what = _turn_what(turn, start, tokens)
        position = _turn_cut(turn, start, what, limits, allow_frame_split, tokens=tokens,
                             room=room)
        cut = turn[position]
        prefix, middle, suffix = _middle(cut.content)
        fixed = tokens - costs[start + position]
        wrap_role = cut.role

        def wrap(items: tuple[ContentItem, ...], role: str = wrap_role,
                 prefix: tuple[ContentItem, ...] = prefix,
                 suffix: tuple[ContentItem, ...] = suffix) -> Message:
            return Message(role, (*prefix, *items, *suffix))

        def pieces(part: Message, turn: Conversation = turn,
                   position: int = position) -> tuple[Message, ...]:
            return (*turn[:position], part, *turn[position + 1:])

        def too_large(what: str = what, fixed: int = fixed, start: int = start,
                      tokens: int = tokens, cut_at: int = start + position,
                      prefix: tuple[ContentItem, ...] = prefix,
                      suffix: tuple[ContentItem, ...] = suffix) -> SplitError:
            return SplitError.phrased(
                f"{what}; even cut between the images of message {cut_at}, a part does not fit "
                f"{limits}: each part repeats the answer and the rest of the turn "
                f"({fixed} tokens) and the message's "
                f"{'text' if prefix or suffix else 'role header'} around the images; raise "
                "{max_tokens} or shorten the turn",
                index=start, tokens=tokens, room=room,
            )

        packer.fill(middle, _any_rule, price, wrap, pieces, indices, fixed, too_large)


def _turn_what(turn: Conversation, start: int, tokens: int) -> str:
    """``messages S-E (a turn: ..., N images) are T tokens``: an SFT turn in a message."""
    span = (f"messages {start}-{start + len(turn) - 1}" if len(turn) > 1
            else f"message {start}")
    images = sum(m.images for m in turn)
    return (f"{span} (a turn: {'the user messages and ' if len(turn) > 1 else ''}"
            f"the assistant answer, {_plural(images, 'image')}) are {tokens} tokens")


def _turn_cut(turn: Conversation, start: int, what: str, limits: str,
              allow_frame_split: bool, **error: int) -> int:
    """Which message of an SFT turn too large for a chunk is cut between its images: the
    non-assistant one with the most images that has cut points; else the refusal (with
    ``error``'s figures) saying whether ``allow_frame_split`` would have helped."""
    candidates = [p for p in range(len(turn)) if turn[p].role != ASSISTANT
                  and _middle(turn[p].content)[1]
                  and _has_cuts(_middle(turn[p].content)[1], _any_rule)]
    if not allow_frame_split or not candidates:
        fix = (f"{FRAME_SPLIT_FIX} lets message "
               f"{start + max(candidates, key=lambda p: turn[p].images)} be cut between its "
               "images, each part keeping its text and the answer" if candidates
               else "shorten the turn")
        raise SplitError.phrased(f"{what}, more than {limits}; {fix}", index=start, **error)
    return max(candidates, key=lambda p: (turn[p].images, p))


def _middle(
    content: tuple[ContentItem, ...],
) -> tuple[tuple[ContentItem, ...], tuple[ContentItem, ...], tuple[ContentItem, ...]]:
    """(text before the first image, first image .. last image, text after the last)."""
    visual = [i for i, item in enumerate(content) if type(item) is not _conv.TextItem]
    if not visual:
        return content, (), ()
    return content[:visual[0]], content[visual[0]:visual[-1] + 1], content[visual[-1] + 1:]


# ------------------------------------------------------------------------------ videos


class _VideoPricer:
    """Exact chunk lengths for conversations with videos: a chunk is priced whole, at the
    largest frame count of its videos (which its intros spell under transformers <=
    5.24), from per-message costs cached by (message, count)."""

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
        intro = None
        if self.counter.video_counter.shared_intro:
            intro = max((f for f in map(self.frames, messages) if f is not None), default=None)
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


def _fitting_num_frames(unit: Sequence[Message], pricer: _VideoPricer, max_tokens: int
                        ) -> str:
    """The fix for messages whose videos cannot fit a chunk: the largest ``num_frames``
    (given to every video of them, as a processor call gives it) that fits."""
    videos = [item for m in unit for item in m.content if type(item) is VideoItem]
    if not videos:
        return ""
    most = max(max(v.num_frames or 0, pricer.counter.video_counter.sampling.max_frames)
               for v in videos)
    frames = max((f for f in map(pricer.frames, unit) if f is not None), default=0)
    for cap in range(most, 0, -1):
        capped = [Message(m.role, tuple(
            replace(item, num_frames=cap) if type(item) is VideoItem else item
            for item in m.content)) for m in unit]
        if pricer.tokens(capped) <= max_tokens:
            return (f"; its video{'s' * (len(videos) > 1)} sample{'s' * (len(videos) == 1)} "
                    f"{frames} frames, and num_frames={cap} fits (write \"num_frames\": "
                    f"{cap} in the video item and pass num_frames={cap} to the processor)")
    return "; even at num_frames=1 its videos do not fit"


def _split_videos(messages: Conversation, lead: Conversation, first: int, max_tokens: int,
                  counter: TokenCounter, facts: _Facts, allow_frame_split: bool, sft: bool,
                  max_chunks: int) -> list[Chunk]:
    """:func:`split` for a conversation (or leading context) holding videos: units (a
    message, or an SFT turn) packed greedily, every chunk priced whole at its own intro
    count; in plain mode a message too large is cut between frames and into clips."""
    check_video_strings((*lead, *messages), label="message")
    pricer = _VideoPricer(counter, facts, lead)
    base = pricer.tokens(())
    if lead and base >= max_tokens:
        raise _leading_too_long(first, base, max_tokens)
    room = max_tokens - base
    limits = (f"the {room} tokens a chunk has for messages ({{max_tokens}} {max_tokens} - "
              f"{base} for the {'template and leading context' if lead else 'template'})")
    packer = _Packer(lead, base, room, max_chunks, whole=pricer.tokens,
                     check="its videos' frame counts")
    for indices, unit in _units(messages, first, sft):
        if pricer.tokens((*packer.run, *unit)) <= max_tokens:
            packer.add(unit, indices, 0)
            continue
        alone = pricer.tokens(unit)
        if alone <= max_tokens:
            packer.close()
            packer.add(unit, indices, 0)
            continue
        index, tokens = indices[0], alone - base
        if sft:
            span = (f"messages {indices[0]}-{indices[-1]}" if len(indices) > 1
                    else f"message {indices[0]}")
            raise SplitError.phrased(
                f"{span} (a turn with {_plural(sum(m.videos for m in unit), 'video')}) are "
                f"{tokens} tokens, more than {limits}"
                f"{_fitting_num_frames(unit, pricer, max_tokens)}; SFT mode keeps a turn with "
                "videos whole: lower num_frames or split without SFT",
                index=index, tokens=tokens, room=room,
            )
        message = unit[0]
        cuts = len(_VideoCuts(message))
        if not allow_frame_split or not cuts:
            fix = (f"{FRAME_SPLIT_FIX} lets it be cut between frames and into clips"
                   if cuts else "shorten it or split it into several messages")
            raise SplitError.phrased(
                f"{_describe(message, index, tokens)}, more than {limits}"
                f"{_fitting_num_frames((message,), pricer, max_tokens)}; {fix}",
                index=index, tokens=tokens, room=room,
            )
        rest = message
        while True:
            if pricer.tokens((*packer.run, rest)) <= max_tokens:
                packer.add((rest,), (index,), 0)
                break
            head = _video_head(rest, packer.run, pricer, max_tokens)
            if head is None:
                if packer.run:
                    packer.close()
                    continue
                raise SplitError.phrased(
                    f"{_describe(message, index, tokens)}; even cut between frames and into "
                    f"clips, a piece of it does not fit {limits} (a text item or image next "
                    "to the frames is too large, or one frame of a video is)"
                    f"{_fitting_num_frames((rest,), pricer, max_tokens)}; raise "
                    "{max_tokens} or shorten the message",
                    index=index, tokens=tokens, room=room,
                )
            packer.add((head[0],), (index,), 0)
            packer.close()
            rest = head[1]
    packer.close()
    return packer.chunks


# ------------------------------------------------------------------ whole chunks


def _whole_head(content: tuple[ContentItem, ...], rule: _Rule,
                fits: Callable[[tuple[ContentItem, ...]], bool]
                ) -> tuple[tuple[ContentItem, ...], tuple[ContentItem, ...]] | None:
    """The longest leading part of ``content`` cut at ``rule``'s points for which ``fits``
    (the chunk holding it is priced whole), by binary search; None when none fits."""
    cuts = _Cuts(content, rule)
    lo, hi = 0, len(cuts) - 1
    best: tuple[tuple[ContentItem, ...], tuple[ContentItem, ...]] | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        head, tail = _cut(content, *cuts[mid])
        if fits(head):
            best, lo = (head, tail), mid + 1
        else:
            hi = mid - 1
    return best


def _split_whole(conversation: Sequence[MessageLike] | Conversation, max_tokens: int,
                 pricer: ChunkPricer, leading: Sequence[MessageLike] | Conversation,
                 allow_frame_split: bool, sft: bool, max_chunks: int) -> list[Chunk]:
    """:func:`split` with every chunk priced whole by ``pricer`` (see the module
    docstring): units (a message, or an SFT turn) packed greedily; a unit too large for a
    chunk cut between images or frames when ``allow_frame_split`` allows it."""
    messages = pricer.parse(conversation)
    lead = pricer.parse(leading, label="leading message")
    first = 0
    if sft:
        while first < len(messages) and messages[first].role == SYSTEM:
            first += 1
        lead = (*lead, *messages[:first])
    prices: dict[tuple[Message, ...], int] = {}

    def tokens(body: Sequence[Message]) -> int:
        key = (*lead, *body)
        price = prices.get(key)
        if price is None:
            price = pricer.chunk_tokens(key)
            if len(prices) > 4096:
                prices.clear()
            prices[key] = price
        return price

    base = tokens(()) if lead else 0
    if lead and base >= max_tokens:
        raise _leading_too_long(first, base, max_tokens)
    limits = ("{max_tokens} " + str(max_tokens) + " as a chunk of its own"
              + (" (with the leading context)" if lead else ""))
    packer = _Packer(lead, base, max_tokens - base, max_chunks, whole=tokens)
    run = packer.run  # cleared in place when a chunk closes
    for indices, unit in _units(messages, first, sft):
        if run and tokens((*run, *unit)) <= max_tokens:
            packer.add(unit, indices, 0)
            continue
        alone = tokens(unit)
        if alone <= max_tokens:
            packer.close()
            packer.add(unit, indices, 0)
            continue
        if sft:
            wrap, pieces, content, rule, too_large = _whole_sft_cut(
                unit, indices, alone, limits, allow_frame_split)
        else:
            wrap, pieces, content, rule, too_large = _whole_plain_cut(
                unit[0], indices[0], alone, limits, allow_frame_split)
        rest = content
        while True:
            if tokens((*run, *pieces(wrap(rest)))) <= max_tokens:
                packer.add(pieces(wrap(rest)), indices, 0)
                break
            head = _whole_head(rest, rule, _fitting(tokens, tuple(run), pieces, wrap,
                                                    max_tokens))
            if head is None:
                if run:
                    packer.close()
                    continue
                raise too_large()
            packer.add(pieces(wrap(head[0])), indices, 0)
            packer.close()
            rest = head[1]
    packer.close()
    return packer.chunks


_Wrap = Callable[[tuple[ContentItem, ...]], Message]
_Pieces = Callable[[Message], tuple[Message, ...]]
_Cutting = tuple[_Wrap, _Pieces, tuple[ContentItem, ...], _Rule, Callable[[], SplitError]]


def _fitting(tokens: Callable[[Sequence[Message]], int], before: tuple[Message, ...],
             pieces: _Pieces, wrap: _Wrap, max_tokens: int
             ) -> Callable[[tuple[ContentItem, ...]], bool]:
    """Whether the part made of some items fits after ``before`` in one chunk."""
    def fits(items: tuple[ContentItem, ...]) -> bool:
        return tokens((*before, *pieces(wrap(items)))) <= max_tokens

    return fits


def _whole_plain_cut(message: Message, index: int, tokens: int, limits: str,
                     allow_frame_split: bool) -> _Cutting:
    """How a message too large for a chunk is cut in plain mode, or the refusal."""
    what = (f"{_describe(message, index, tokens)} as a chunk of its own (the template and "
            "any leading context included)")
    video = (" (a video is never cut: lower its num_frames or the processor's max_pixels)"
             if message.videos else "")
    cuttable = _has_cuts(message.content, _frames_rule)
    if not allow_frame_split or not cuttable:
        fix = (f"{FRAME_SPLIT_FIX} lets it be cut between frames or images" if cuttable
               else "shorten it or split it into several messages")
        raise SplitError.phrased(f"{what}, more than {limits}; {fix}{video}", index=index,
                                 tokens=tokens)

    def too_large() -> SplitError:
        return SplitError.phrased(
            f"{what}; even cut between frames, a piece of it does not fit {limits} (a text "
            f"item, image or video next to the frames is too large){video}; raise "
            "{max_tokens} or shorten the message", index=index, tokens=tokens)

    def wrap(items: tuple[ContentItem, ...]) -> Message:
        return Message(message.role, items)

    return wrap, _alone, message.content, _frames_rule, too_large


def _whole_sft_cut(turn: Conversation, indices: list[int], tokens: int, limits: str,
                   allow_frame_split: bool) -> _Cutting:
    """How an SFT turn too large for a chunk is cut (in its user message with the most
    images, between them, each part keeping the text around them and the whole answer),
    or the refusal."""
    start = indices[0]
    what = (_turn_what(turn, start, tokens)
            + " as a chunk of their own (the template and any leading context included)")
    position = _turn_cut(turn, start, what, limits, allow_frame_split, tokens=tokens)
    cut = turn[position]
    prefix, middle, suffix = _middle(cut.content)

    def wrap(items: tuple[ContentItem, ...]) -> Message:
        return Message(cut.role, (*prefix, *items, *suffix))

    def pieces(part: Message) -> tuple[Message, ...]:
        return (*turn[:position], part, *turn[position + 1:])

    def too_large() -> SplitError:
        return SplitError.phrased(
            f"{what}; even cut between the images of message {start + position}, a part does "
            f"not fit {limits}: each part repeats the answer and the rest of the turn and the "
            "message's text around the images; raise {max_tokens} or shorten the turn",
            index=start, tokens=tokens)

    return wrap, pieces, middle, _any_rule, too_large


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
        return counter.with_settings(longest_edge=longest_edge)
    return counter


# ------------------------------------------------------------------ validation


class _VideoKey(NamedTuple):
    """What identifies a video among the pieces of :func:`runs` (its clips merge)."""

    path: str | None
    total_frames: int
    fps: float
    duration: float
    num_frames: int | None
    sample_fps: float | None


def runs(items: Sequence[ContentItem]) -> list[object]:
    """Content as its indivisible pieces, frames kept as ranges: adjoining frames items
    of one video merge, and so do adjoining clips of one video item, so a message and
    its parts put back together compare equal whatever the cut points, without listing
    every frame."""
    out: list[object] = []
    for item in items:
        if type(item) in (FramesItem, VideoItem):
            if type(item) is VideoItem:
                key: object = _VideoKey(item.path, item.total_frames, item.fps, item.duration,
                                        item.num_frames, item.sample_fps)
                frames = item.frame_range
            else:
                key = (item.video, item.width, item.height)  # type: ignore[union-attr]
                frames = item.frames  # type: ignore[union-attr]
            last = out[-1] if out else None
            if (isinstance(last, tuple) and len(last) == 3 and last[0] == key
                    and last[2] == frames.start):
                out[-1] = (key, last[1], frames.end)
            else:
                out.append((key, frames.start, frames.end))
        else:
            out.append(item)
    return out


def is_prefix(part: Sequence[object], whole: Sequence[object]) -> bool:
    """Whether the pieces ``part`` (from :func:`runs`) start ``whole``."""
    if len(part) > len(whole):
        return False
    if not part:
        return True
    if list(part[:-1]) != list(whole[:len(part) - 1]):
        return False
    a, b = part[-1], whole[len(part) - 1]
    if a == b:
        return True
    return (isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) == 3
            and a[0] == b[0] and a[1] == b[1] and a[2] <= b[2])


def validate_chunks(
    chunks: Sequence[Chunk], conversation: Conversation, leading: Conversation = ()
) -> None:
    """Raise ``ConversationError`` unless the chunks hold every message once, in order
    (plain mode). A message cut between frames or images must come back whole from its
    consecutive parts, one part per chunk. For SFT chunks use
    :func:`pytest_tokenguard.testing.splitcheck.check_chunks` with ``sft=True``."""
    position = 0
    pending: list[object] = []
    for chunk in chunks:
        if chunk.messages[:chunk.leading] != tuple(leading):
            raise ConversationError(f"chunk {chunk.index} does not start with the leading context")
        for n, (source, part) in enumerate(zip(chunk.sources, chunk.body, strict=True)):
            if source != position:
                raise ConversationError(
                    f"chunk {chunk.index} holds message {source} where message {position} "
                    "was due: a message is lost, repeated or out of order"
                )
            original = conversation[position]
            if part.role != original.role:
                raise ConversationError(f"chunk {chunk.index}: message {source} changed role")
            if pending and n != 0:
                raise ConversationError(
                    f"chunk {chunk.index}: the parts of message {source} are in one chunk")
            pending = runs([*_unrun(pending), *part.content])
            whole = runs(original.content)
            if pending == whole:
                position += 1
                pending = []
            elif not is_prefix(pending, whole):
                raise ConversationError(
                    f"chunk {chunk.index}: message {source}'s content differs from the input"
                )
            elif n != len(chunk.body) - 1:
                raise ConversationError(
                    f"chunk {chunk.index}: message {source} is cut but its part is not the "
                    "chunk's last message")
    if position != len(conversation) or pending:
        raise ConversationError(
            f"the chunks end at message {position} of {len(conversation)}: messages are missing"
        )


def _unrun(pieces: Sequence[object]) -> list[ContentItem]:
    out: list[ContentItem] = []
    for piece in pieces:
        if isinstance(piece, tuple) and isinstance(piece[0], _VideoKey):
            key, start, end = piece
            whole = (start, end) == (0, key.total_frames)
            out.append(VideoItem(key.total_frames, key.fps, key.duration, key.num_frames,
                                 key.sample_fps, None if whole else FrameRange(start, end),
                                 key.path))
        elif isinstance(piece, tuple):
            (video, width, height), start, end = piece
            out.append(FramesItem(FrameRange(start, end), width, height, video))
        else:
            assert isinstance(piece, _conv.TextItem | _conv.ImageItem)
            out.append(piece)
    return out
