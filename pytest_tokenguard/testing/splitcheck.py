"""Check your own conversation splitter against the real processor, in one line.

::

    from pytest_tokenguard.splitcheck import check_splitter

    def test_my_splitter(tokenguard_counter):
        check_splitter(lambda messages: my_split(messages, budget=4096), tokenguard_counter)

Hypothesis generates conversations (chat-template dicts, images by size); your
function returns chunks (lists of message dicts, or this package's ``Chunk``); every
chunk is counted by the real processor on the rendered chunk, and the chunks must
hold every message once, whole and in order. A failure shows the shrunk
conversation and the offending chunk with its real count, so the bug is visible
without a debugger.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias

from hypothesis import given, settings
from hypothesis.strategies import SearchStrategy

from ..conversation import (
    Conversation,
    ConversationError,
    MessageLike,
    parse_conversation,
    to_dicts,
)
from ..errors import SplitterCheckError as SplitterCheckError
from ..processor.loading import LoadedProcessor
from ..sequence import count_conversation, processor_count
from ..splitting import Chunk
from ..tokens import TokenCounter

ChunkLike: TypeAlias = Chunk | Sequence[MessageLike]
SplitFunction: TypeAlias = Callable[[list[dict[str, Any]]], Iterable[ChunkLike]]


class _CalculatedOverflow(AssertionError):
    """An overflow found by the exact calculator; the processor's count is added once,
    for the shrunk example only, instead of on every try while shrinking."""

    def __init__(self, number: int, of: int, chunk: Conversation, source: Conversation) -> None:
        super().__init__(f"chunk {number} of {of} is over the limit")
        self.args_ = (number, of, chunk, source)


def _json(messages: Sequence[Any]) -> str:
    return json.dumps(to_dicts(parse_conversation(messages)), ensure_ascii=False)


def check_chunks(
    conversation: Sequence[MessageLike] | Conversation,
    chunks: Iterable[ChunkLike],
    processor: Any,
    max_tokens: int = 4096,
    *,
    leading: Sequence[MessageLike] | Conversation = (),
    counter: TokenCounter | None = None,
    cache: dict[str, int] | None = None,
    _defer: bool = False,
) -> tuple[int, ...]:
    """The real processor's count of each chunk; raises :class:`SplitterCheckError` if a
    chunk is over ``max_tokens``, lacks the leading context, or if the chunks do not
    hold every message of ``conversation`` exactly once, whole, in order.

    Pure apart from running the processor: no hypothesis, usable on one split result.
    With ``counter`` (for the same processor), chunks are first priced by the exact
    calculator, so a failing example is found and shrunk without running the processor
    on every try; the reported count is always the processor's. ``cache`` memoizes
    the processor's counts by chunk (it is deterministic), for repeated calls while
    hypothesis shrinks.
    """
    source = parse_conversation(conversation)
    lead = parse_conversation(leading, label="leading message")
    parsed: list[Conversation] = []
    for number, chunk in enumerate(chunks):
        messages = chunk.messages if isinstance(chunk, Chunk) else chunk
        try:
            parsed.append(parse_conversation(messages))
        except ConversationError as exc:
            raise SplitterCheckError(f"chunk {number} is not a valid conversation: {exc}") from None
    bodies: list[Conversation] = []
    for number, chunk_messages in enumerate(parsed):
        if chunk_messages[:len(lead)] != lead:
            raise SplitterCheckError(
                f"chunk {number} does not start with the leading context\n"
                f"chunk: {_json(chunk_messages)}"
            )
        if len(chunk_messages) == len(lead):
            raise SplitterCheckError(f"chunk {number} holds no message of the conversation")
        bodies.append(chunk_messages[len(lead):])
    flat = [m for body in bodies for m in body]
    if flat != list(source):
        position = next(
            (i for i, (a, b) in enumerate(zip(flat, source, strict=False)) if a != b),
            min(len(flat), len(source)),
        )
        what = (
            "is missing" if len(flat) < len(source) and position == len(flat)
            else "is followed by extra messages" if position == len(source)
            else "differs (lost, repeated, reordered or changed)"
        )
        raise SplitterCheckError(
            f"the chunks do not hold the conversation's {len(source)} messages once each, in "
            f"order: message {position} {what}\nconversation (shrunk): {_json(source)}\n"
            f"chunks: {json.dumps([to_dicts(b) for b in bodies], ensure_ascii=False)}"
        )
    if counter is not None:
        # exact and cheap: an overflow is found without the processor (then confirmed)
        for number, chunk_messages in enumerate(parsed):
            if count_conversation(chunk_messages, counter).total > max_tokens:
                if _defer:
                    raise _CalculatedOverflow(number, len(parsed), chunk_messages, source)
                _overflow(number, len(parsed), chunk_messages, source, processor, max_tokens)
    counts: list[int] = []
    for number, chunk_messages in enumerate(parsed):
        key = _json(chunk_messages) if cache is not None else ""
        cached = cache.get(key) if cache is not None else None
        real = cached if cached is not None else processor_count(processor, chunk_messages)
        if cache is not None and len(cache) < 4096:
            cache[key] = real
        counts.append(real)
        if real > max_tokens:
            _overflow(number, len(parsed), chunk_messages, source, processor, max_tokens, real)
    return tuple(counts)


def _overflow(
    number: int, of: int, chunk: Conversation, source: Conversation, processor: Any,
    max_tokens: int, real: int | None = None,
) -> None:
    if real is None:
        real = processor_count(processor, chunk)
    raise SplitterCheckError(
        f"chunk {number} of {of} is {real} tokens as the real processor counts the rendered "
        f"chunk, over max_tokens {max_tokens} by {real - max_tokens}\n"
        f"chunk: {_json(chunk)}\nconversation (shrunk): {_json(source)}"
    )


def default_conversations() -> SearchStrategy[list[dict[str, Any]]]:
    """Dialogues over images and video frames (as image items), up to 20 turns."""
    from . import strategies

    return strategies.conversation_dicts(
        max_turns=20, max_images_per_turn=3, max_frames_per_run=8,
        sizes=strategies.image_sizes(max_side=2048),
    )


def check_splitter(
    split_fn: SplitFunction,
    counter: TokenCounter | LoadedProcessor,
    max_tokens: int = 4096,
    *,
    conversations: SearchStrategy[list[dict[str, Any]]] | None = None,
    max_examples: int | None = None,
    leading: Sequence[MessageLike] | Conversation = (),
) -> None:
    """Run the splitting property against ``split_fn`` with hypothesis; raise on a failure.

    ``split_fn(messages)`` gets a list of chat-template message dicts and returns
    its chunks. ``counter`` supplies the real processor (it must be loaded at the
    resolution the chunks are for). ``max_examples`` defaults to the active
    hypothesis profile's.
    """
    processor = counter.processor
    calculator = (
        counter if isinstance(counter, TokenCounter)
        else TokenCounter(counter.processor, counter.spec, counter.longest_edge)
    )
    cache: dict[str, int] = {}
    strategy = conversations if conversations is not None else default_conversations()
    from hypothesis import Phase

    overrides: dict[str, Any] = {
        "deadline": None,
        # "explain" re-runs the failing example many times: minutes of processor calls
        "phases": [p for p in (settings.default or settings()).phases if p != Phase.explain],
    }
    if max_examples is not None:
        overrides["max_examples"] = max_examples

    @settings(**overrides)
    @given(strategy)
    def splitter_property(conversation: list[dict[str, Any]]) -> None:
        chunks = list(split_fn(conversation))
        check_chunks(conversation, chunks, processor, max_tokens, leading=leading,
                     counter=calculator, cache=cache, _defer=True)

    try:
        splitter_property()
    except _CalculatedOverflow as found:
        number, of, chunk, source = found.args_
        _overflow(number, of, chunk, source, processor, max_tokens)


def splitter_checker(
    counter: TokenCounter | LoadedProcessor,
) -> Callable[..., None]:
    """:func:`check_splitter` bound to a processor: what a fixture hands to tests.

    The returned callable takes ``(split_fn, max_tokens=4096, *, conversations=None,
    max_examples=None, leading=())``.
    """

    def check(
        split_fn: SplitFunction,
        max_tokens: int = 4096,
        *,
        conversations: SearchStrategy[list[dict[str, Any]]] | None = None,
        max_examples: int | None = None,
        leading: Sequence[MessageLike] | Conversation = (),
    ) -> None:
        check_splitter(split_fn, counter, max_tokens, conversations=conversations,
                       max_examples=max_examples, leading=leading)

    return check
