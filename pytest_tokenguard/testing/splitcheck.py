"""Check your own conversation splitter against the real processor, in one line.

::

    from pytest_tokenguard.testing.splitcheck import check_splitter

    def test_my_splitter(tokenguard_check_splitter):
        tokenguard_check_splitter(lambda messages: my_split(messages, budget=4096),
                                  max_tokens=4096)

Hypothesis generates conversations aimed at the limit
(:func:`~pytest_tokenguard.testing.strategies.boundary_conversation_dicts`: a run of
messages lands exactly a few tokens under, at or over ``max_tokens``, with many video
frames and the chat template's wrapper tokens in play); your function returns chunks
(lists of message dicts, this package's ``Chunk``, or objects/dicts with ``messages``
and optionally ``tokens``). Every chunk must be at most ``max_tokens`` as the processor
counts the rendered chunk, claim no fewer tokens than it has, and the chunks must hold
every message once, in order; a message may be cut between frames or images, its parts
in consecutive chunks. With ``sft=True`` every chunk must also end on an assistant
turn, with each user turn and its answer in one chunk (a cut user message's parts each
keep its text and the answer), as ``split(sft=True)`` makes them.

**Refusing.** Your splitter may refuse a conversation it cannot split by raising one of
``refuses`` (``SplitError`` by default): refusals are counted in the returned
:class:`SplitterReport`, not failures, unless the conversation could have been split
(every message, or in SFT mode every turn, fits a chunk alone with the leading
context): then refusing is a failure.

**What it costs.** Each example costs your splitter's time plus a few milliseconds:
chunks are priced by the exact calculator (:mod:`pytest_tokenguard.sequence`, itself
checked against the processor by this project's oracle suite), not by running the
processor. The real processor runs only to report a failure (once, on the shrunk
example) and, on a pass, to recount the ``confirm`` fullest chunks seen (default 3;
about half a second each for 4,096 tokens at ``longest_edge`` 384 on two cores). So
one resolution is about ``examples x (your splitter + ~5 ms) + 2 s``: seconds under
the ``tokenguard-ci`` profile (60 examples). ``processor_counts=True`` runs the
processor on every chunk of every example instead (minutes). Each resolution asked for
is one such run.

A failure raises :class:`SplitterCheckError` whose message is the evidence and nothing
else: the shrunk conversation as JSON (what your splitter was given, ready to paste
into a test), the offending chunk, and its claimed and real token counts.
"""

from __future__ import annotations

import inspect
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from ..conversation import (
    Conversation,
    ConversationError,
    FramesItem,
    ImageItem,
    Message,
    MessageLike,
    TextItem,
    parse_conversation,
    to_dicts,
)
from ..errors import SplitError, TemplateError
from ..errors import SplitterCheckError as SplitterCheckError
from ..images import PathLoader, path_loader_of
from ..processor.loading import LoadedProcessor
from ..sequence import _facts, base_tokens, count_conversation, message_cost, processor_count
from ..splitting import ASSISTANT, SYSTEM, Chunk, _middle, is_prefix, runs
from ..tokens import TokenCounter
from . import generated
from .qwen_oracle import QwenOracle

__all__ = [
    "ChunkLike",
    "SplitFunction",
    "SplitterCheckError",
    "SplitterChecker",
    "SplitterReport",
    "check_chunks",
    "check_splitter",
]

ChunkLike: TypeAlias = Chunk | Sequence[MessageLike] | Mapping[str, Any] | Any
SplitFunction: TypeAlias = Callable[..., Iterable[ChunkLike]]
Refusals: TypeAlias = type[BaseException] | tuple[type[BaseException], ...]
#: What a check needs: a counter (its processor is the oracle), a loaded processor, or
#: a bare processor (then every chunk is counted by running it); for Qwen-VL a Qwen
#: processor, a ``QwenTokenCounter`` or a ``QwenOracle``.
Oracle: TypeAlias = TokenCounter | LoadedProcessor | Any
#: What prices chunks exactly: SmolVLM2's calculator, or a Qwen-VL oracle's counter.
Calculator: TypeAlias = "TokenCounter | QwenOracle"


# ------------------------------------------------------------------ failures


@dataclass
class _Failure:
    """The evidence of one broken rule; turned into the message at the end, once."""

    headline: str
    conversation: Any  # what the splitter was given (JSON-ready)
    chunk: int | None = None
    chunks: int = 0
    chunk_json: Any = None
    chunk_messages: Conversation | None = None  # to count with the processor, for overflows
    claimed: int | None = None
    calculated: int | None = None
    real: int | None = None
    detail: str = ""
    overflow: bool = False
    prompt: bool = False  # counted with the generation prompt

    def message(self, max_tokens: int, longest_edge: int | str | None) -> str:
        headline = self.headline
        if self.overflow:
            count = self.real if self.real is not None else self.calculated
            by = "the real processor" if self.real is not None else "the exact calculator"
            headline = (f"chunk {self.chunk} of {self.chunks} is {count} tokens as {by} counts "
                        "the rendered chunk" + (" with the generation prompt" if self.prompt
                                                else "")
                        + f", over max_tokens {max_tokens} by {(count or 0) - max_tokens}")
        notes = []
        if self.chunk is not None and (self.overflow or self.claimed is not None):
            notes.append(f"the splitter claimed {self.claimed} tokens" if self.claimed is not None
                         else "the splitter claimed no count")
        if isinstance(longest_edge, str):  # another family's setting: "max_pixels N"
            notes.append(longest_edge)
        elif longest_edge is not None:
            notes.append(f"longest_edge {longest_edge}")
        lines = [headline + (f" ({'; '.join(notes)})" if notes else "")]
        if self.detail:
            lines.append(self.detail)
        if self.chunk is not None and self.chunk_json is not None:
            shown = ("the whole conversation below" if self.chunk_json == self.conversation
                     else _dump(self.chunk_json))
            lines.append(f"chunk {self.chunk}: {shown}")
        lines.append(f"conversation (shrunk): {_dump(self.conversation)}")
        qwen = (longest_edge.split()[1] if isinstance(longest_edge, str)
                and longest_edge.startswith("max_pixels ") else None)
        lines.append("to reproduce, paste the conversation into a test: check_chunks("
                     "conversation, my_split(conversation), "
                     + ("processor" if qwen else "counter") + f", {max_tokens}"
                     + (", sft=True" if "SFT" in self.headline else "")
                     + (f", max_pixels={qwen}" if qwen else "") + ")")
        return "\n".join(lines)


class _Found(Exception):
    """A failure inside the hypothesis property; carries the evidence out unchanged."""

    def __init__(self, failure: _Failure) -> None:
        super().__init__(failure.headline)
        self.failure = failure


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_unjson)


def _unjson(value: Any) -> Any:
    size = getattr(value, "size", None)
    if isinstance(size, tuple):  # a PIL image: its size is what counts
        return f"<image {size[0]}x{size[1]}>"
    return repr(value)


# ------------------------------------------------------------------ oracles


def _oracle(against: Oracle, min_pixels: int | None = None, max_pixels: int | None = None,
            ) -> tuple[Any, Calculator | None, int | str | None]:
    """(processor, exact calculator or None, longest_edge) from what the user passed; for
    Qwen-VL (a processor, a ``QwenTokenCounter`` or a ``QwenOracle``, at ``min_pixels``/
    ``max_pixels``) the oracle is both the processor and the calculator, and the setting
    is ``"max_pixels N"``."""
    from .qwen_oracle import qwen_oracle

    qwen = qwen_oracle(against, min_pixels=min_pixels, max_pixels=max_pixels)
    if qwen is not None:
        return qwen, qwen, qwen.setting
    if min_pixels is not None or max_pixels is not None:
        raise TemplateError("min_pixels/max_pixels are Qwen-VL settings; this is not a Qwen-VL "
                            "processor or counter (SmolVLM2's setting is its longest_edge)")
    if isinstance(against, TokenCounter):
        counter: TokenCounter | None = against
    elif isinstance(against, LoadedProcessor):
        counter = TokenCounter(against.processor, against.spec, against.longest_edge)
    else:
        from ..specs import spec_from_processor

        try:
            counter = TokenCounter(against, spec_from_processor(against))
        except Exception:  # not a SmolVLM processor: count everything by running it
            counter = None
    if counter is not None:
        try:
            _facts(counter)
        except TemplateError:
            counter = None
    processor = against.processor if isinstance(against, TokenCounter | LoadedProcessor) \
        else against
    edge = counter.longest_edge if counter is not None else getattr(against, "longest_edge", None)
    return processor, counter, edge


# ------------------------------------------------------------------ the pieces of a message


def _raw_pieces(message: Any, parsed: Message) -> tuple[str, list[object]]:
    """(role, pieces) of a chat-format dict, frames identified by their ``frame`` number
    and ``video`` where the image items carry them (``parsed`` is the same message,
    parsed, for the sizes)."""
    content = message["content"]
    if isinstance(content, str):
        return parsed.role, runs(parsed.content)
    items: list[Any] = []
    for raw, item in zip(content, parsed.content, strict=True):
        frame = raw.get("frame") if isinstance(raw, Mapping) else None
        if type(item) is ImageItem and isinstance(frame, int) and not isinstance(frame, bool):
            items.append(FramesItem(_range(frame), item.width, item.height, raw.get("video")))
        else:
            items.append(item)
    return parsed.role, runs(items)


def _range(frame: int) -> Any:
    from ..conversation import FrameRange

    return FrameRange(frame, frame + 1)


def _parsed_pieces(message: Message) -> tuple[str, list[object]]:
    return message.role, runs(message.content)


@dataclass
class _Form:
    """How messages are compared: by their dicts (frame numbers kept) when the input and
    every chunk are dicts, else by the parsed values (sizes, paths, frame ranges)."""

    raw: bool

    def pieces(self, raw: Any, parsed: Message) -> tuple[str, list[object]]:
        if self.raw and isinstance(raw, Mapping):
            return _raw_pieces(raw, parsed)
        return _parsed_pieces(parsed)


# ------------------------------------------------------------------ check_chunks


@dataclass
class _Chunks:
    raw: list[list[Any]]  # each chunk's messages as given
    parsed: list[Conversation]
    claimed: list[int | None]
    shown: list[Any]  # JSON-ready chunk for the report


def _unpack(chunk: Any) -> tuple[Any, int | None]:
    if isinstance(chunk, Chunk):
        return chunk.messages, chunk.tokens
    if isinstance(chunk, Mapping) and "messages" in chunk:
        return chunk["messages"], _claim(chunk.get("tokens"))
    messages = getattr(chunk, "messages", None)
    if messages is not None and not isinstance(chunk, Sequence):
        return messages, _claim(getattr(chunk, "tokens", None))
    return chunk, None


def _claim(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _read_chunks(chunks: Iterable[ChunkLike], conversation: Any,
                 loader: PathLoader | None = None) -> _Chunks | _Failure:
    if isinstance(chunks, str | bytes | Mapping) or not isinstance(chunks, Iterable):
        return _Failure(f"the splitter returned {type(chunks).__name__}, not a list of chunks",
                        conversation)
    out = _Chunks([], [], [], [])
    for number, chunk in enumerate(chunks):
        messages, claimed = _unpack(chunk)
        if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Iterable):
            return _Failure(f"chunk {number} is a {type(messages).__name__}, not a list of "
                            "messages", conversation)
        listed = list(messages)
        try:
            parsed = parse_conversation(listed, image_loader=loader)
        except ConversationError as exc:
            return _Failure(f"chunk {number} is not a valid conversation: {exc}", conversation,
                            chunk_json=None)
        out.raw.append(listed)
        out.parsed.append(parsed)
        out.claimed.append(claimed)
        out.shown.append(listed if all(isinstance(m, Mapping) for m in listed)
                         else to_dicts(parsed))
    return out


def _lead_of(source: Conversation, leading: Conversation, sft: bool) -> tuple[Conversation, int]:
    """The context every chunk starts with, and where the body of the input begins."""
    first = 0
    if sft:
        while first < len(source) and source[first].role == SYSTEM:
            first += 1
    return (*leading, *source[:first]), first


def _coverage_plain(
    source: Conversation, raw_source: list[Any], chunks: _Chunks, lead: Conversation,
    form: _Form, conversation: Any,
) -> _Failure | None:
    position = 0
    pending: list[object] = []
    for number, (parsed, raw) in enumerate(zip(chunks.parsed, chunks.raw, strict=True)):
        body = parsed[len(lead):]
        for n, message in enumerate(body):
            if position >= len(source):
                return _lost(number, chunks, position, source, "is followed by extra messages",
                             conversation)
            role, pieces = form.pieces(raw[len(lead) + n], message)
            want_role, whole = form.pieces(_at(raw_source, position), source[position])
            if pending and n:
                return _lost(number, chunks, position, source,
                             "is cut, and its next part is not at the start of the next chunk",
                             conversation)
            merged = runs([*_unrun(pending), *_unrun(pieces)]) if pending else pieces
            if role != want_role:
                return _lost(number, chunks, position, source,
                             f"differs: its role is {role!r}, not {want_role!r}", conversation)
            if merged == whole:
                position += 1
                pending = []
            elif is_prefix(merged, whole) and n == len(body) - 1:
                pending = merged
            else:
                return _lost(number, chunks, position, source,
                             f"differs (lost, repeated, reordered or changed): "
                             f"{_difference(merged, whole)}", conversation)
    if position < len(source) or pending:
        what = "is missing"
        if pending:
            whole = form.pieces(_at(raw_source, position), source[position])[1]
            what = f"is cut, and its last part is missing: {_difference(pending, whole)}"
        return _lost(len(chunks.parsed) - 1, chunks, position, source, what, conversation)
    return None


def _atoms(pieces: Sequence[object]) -> Iterable[object]:
    from ..splitting import _VideoKey

    for piece in pieces:
        if isinstance(piece, tuple) and isinstance(piece[0], _VideoKey):
            key, start, end = piece
            for frame in range(start, end):
                yield ("video frame", frame, key)
        elif isinstance(piece, tuple):
            (video, width, height), start, end = piece
            for frame in range(start, end):
                yield ("frame", frame, video, width, height)
        else:
            yield piece


def _show(atom: object) -> str:
    if isinstance(atom, tuple) and atom[0] == "video frame":
        _, frame, key = atom
        return (f"frame {frame} of the video " + (key.path or f"of {key.total_frames} frames")
                + " (video item)")
    if isinstance(atom, tuple):
        _, frame, video, width, height = atom
        return f"frame {frame}" + (f" of {video}" if video else "") + f" ({width}x{height})"
    if isinstance(atom, TextItem):
        text = atom.text if len(atom.text) <= 40 else atom.text[:37] + "..."
        return f"text {text!r}"
    if isinstance(atom, ImageItem):
        return f"image {atom.width}x{atom.height}" + (f" {atom.path}" if atom.path else "")
    return repr(atom)


def _difference(got: Sequence[object], want: Sequence[object]) -> str:
    """Where the chunks' version of a message first departs from the input's."""
    mine, theirs = iter(_atoms(got)), iter(_atoms(want))
    n = 0
    while True:
        a, b = next(mine, None), next(theirs, None)
        if a is None and b is None:
            return "the same pieces in another grouping"
        if a != b:
            return (f"at item {n} the input has "
                    + (_show(b) if b is not None else "nothing more")
                    + ", the chunks have " + (_show(a) if a is not None else "nothing more"))
        n += 1


def _at(raw_source: list[Any], index: int) -> Any:
    return raw_source[index] if index < len(raw_source) else None


def _unrun(pieces: Sequence[object]) -> list[Any]:
    from ..splitting import _unrun as unrun

    return unrun(pieces)


def _lost(number: int, chunks: _Chunks, position: int, source: Conversation, what: str,
          conversation: Any) -> _Failure:
    return _Failure(
        f"the chunks do not hold the conversation's {len(source)} messages once each, in "
        f"order (a cut message's parts in consecutive chunks): message {position} {what}",
        conversation, chunk=number, chunks=len(chunks.parsed),
        chunk_json=chunks.shown[number] if 0 <= number < len(chunks.shown) else None,
    )


def _turn_spans(roles: Sequence[str], first: int = 0) -> tuple[list[tuple[int, int]], int]:
    """[start, end) of each turn (non-assistant messages, then assistant answers) and
    where the unanswered rest begins (== len(roles) when every turn is answered)."""
    spans: list[tuple[int, int]] = []
    start = first
    for i in range(first, len(roles)):
        if roles[i] == ASSISTANT and (i + 1 == len(roles) or roles[i + 1] != ASSISTANT):
            spans.append((start, i + 1))
            start = i + 1
    return spans, start


def _coverage_sft(
    source: Conversation, raw_source: list[Any], first: int, chunks: _Chunks,
    lead: Conversation, form: _Form, conversation: Any,
) -> _Failure | None:
    turns, unanswered = _turn_spans([m.role for m in source], first)
    if unanswered < len(source):
        return _Failure(
            f"message {len(source) - 1} ({source[-1].role}) has no assistant answer, so no SFT "
            "chunk can hold it: the splitter must refuse this conversation", conversation)
    wanted = [[form.pieces(_at(raw_source, i), source[i]) for i in range(a, b)]
              for a, b in turns]
    turn = 0
    pending: list[object] = []
    cut_at: int | None = None
    for number, (parsed, raw) in enumerate(zip(chunks.parsed, chunks.raw, strict=True)):
        body = parsed[len(lead):]
        if body[-1].role != ASSISTANT:
            return _sft_failure(number, chunks, f"chunk {number} ends on a {body[-1].role} turn, "
                                "not an assistant answer", conversation)
        spans, _ = _turn_spans([m.role for m in body])
        for a, b in spans:
            got = [form.pieces(raw[len(lead) + i], body[i]) for i in range(a, b)]
            if turn >= len(wanted):
                return _sft_failure(number, chunks, "the chunks hold more turns than the "
                                    "conversation", conversation)
            want = wanted[turn]
            start = turns[turn][0]
            if not pending and got == want:
                turn += 1
                continue
            # a part: the same turn with one non-assistant message holding some of its images
            differ = [i for i, (g, w) in enumerate(zip(got, want, strict=False)) if g != w]
            if (len(got) != len(want) or len(differ) != 1 or got[differ[0]][0] != want[differ[0]][0]
                    or want[differ[0]][0] == ASSISTANT
                    or (cut_at is not None and differ[0] != cut_at)):
                return _sft_failure(
                    number, chunks, f"turn {turn} (messages {start}-{turns[turn][1] - 1}) is "
                    "missing, changed, or split apart from its answer", conversation)
            p = differ[0]
            prefix, middle, suffix = _middle(tuple(_unrun(want[p][1])))
            pieces = got[p][1]
            head, tail = runs(prefix), runs(suffix)
            inner = pieces[len(head):len(pieces) - len(tail)] if tail else pieces[len(head):]
            if pieces[:len(head)] != head or (tail and pieces[len(pieces) - len(tail):] != tail) \
                    or not inner:
                return _sft_failure(
                    number, chunks, f"message {start + p} is cut, but a part does not keep the "
                    "message's text before its first image and after its last", conversation)
            merged = runs([*_unrun(pending), *_unrun(inner)])
            whole = runs(middle)
            if merged == whole:
                turn, pending, cut_at = turn + 1, [], None
            elif is_prefix(merged, whole):
                pending, cut_at = merged, p
            else:
                return _sft_failure(
                    number, chunks, f"message {start + p} is cut, but its parts do not put its "
                    "images back together, once each and in order", conversation)
    if turn < len(wanted) or pending:
        return _sft_failure(len(chunks.parsed) - 1, chunks,
                            f"turn {turn} (messages {turns[turn][0]}-{turns[turn][1] - 1}) is "
                            + ("missing" if not pending else "cut, and its last part is missing"),
                            conversation)
    return None


def _sft_failure(number: int, chunks: _Chunks, what: str, conversation: Any) -> _Failure:
    return _Failure(
        f"not an SFT split: {what}", conversation, chunk=number, chunks=len(chunks.parsed),
        chunk_json=chunks.shown[number],
    )


def _inspect(
    conversation: Any,
    chunks: Iterable[ChunkLike],
    counter: Calculator | None,
    processor: Any,
    max_tokens: int,
    lead: Conversation,
    sft: bool,
    add_generation_prompt: bool,
    processor_counts: bool,
    cache: dict[str, int] | None,
) -> tuple[tuple[int, ...], _Chunks | None, _Failure | None]:
    """Every rule on one split result: (exact counts, the chunks, the first failure)."""
    shown = conversation if isinstance(conversation, list) else (
        to_dicts(conversation) if isinstance(conversation, tuple) else conversation)
    loader = path_loader_of(processor)
    source = parse_conversation(conversation, image_loader=loader)
    read = _read_chunks(chunks, shown, loader)
    if isinstance(read, _Failure):
        return (), None, read
    everything, first = _lead_of(source, lead, sft)
    for number, parsed in enumerate(read.parsed):
        if parsed[:len(everything)] != everything:
            return (), read, _Failure(
                f"chunk {number} does not start with the leading context"
                + (" (in SFT mode, with the conversation's opening system messages)"
                   if first else ""), shown, chunk=number, chunks=len(read.parsed),
                chunk_json=read.shown[number])
        if len(parsed) == len(everything):
            return (), read, _Failure(f"chunk {number} holds no message of the conversation",
                                      shown, chunk=number, chunks=len(read.parsed),
                                      chunk_json=read.shown[number])
    raw_source = list(conversation) if all(isinstance(m, Mapping) for m in conversation) else []
    form = _Form(raw=bool(raw_source) and all(isinstance(m, Mapping) for c in read.raw for m in c))
    body = source[first:]
    failure = (
        _coverage_sft(source, raw_source, first, read, everything, form, shown) if sft
        else _coverage_plain(body, raw_source[first:], read, everything, form, shown)
    )
    if failure is not None:
        return (), read, failure
    counts: list[int] = []
    for number, parsed in enumerate(read.parsed):
        if counter is not None and not processor_counts:
            exact = _exact(counter, parsed, add_generation_prompt)
            real = None
        elif isinstance(processor, QwenOracle) and processor.processor is None:
            exact, real = processor.exact(parsed, add_generation_prompt), None
        else:
            exact = real = _processor_count(processor, parsed, add_generation_prompt, cache)
        counts.append(exact)
        claimed = read.claimed[number]
        if exact > max_tokens:
            return tuple(counts), read, _Failure(
                "", shown, chunk=number, chunks=len(read.parsed), chunk_json=read.shown[number],
                chunk_messages=parsed, claimed=claimed, calculated=exact, real=real,
                overflow=True, prompt=add_generation_prompt)
        if claimed is not None and claimed < exact:
            return tuple(counts), read, _Failure(
                f"chunk {number} of {len(read.parsed)} claims {claimed} tokens, fewer than the "
                f"{exact} it has (exact count): a count lower than the real one is how chunks "
                "overflow",
                shown, chunk=number, chunks=len(read.parsed), chunk_json=read.shown[number],
                chunk_messages=parsed, claimed=claimed, calculated=exact, real=real)
    return tuple(counts), read, None


def _exact(counter: Calculator, messages: Conversation, add_generation_prompt: bool) -> int:
    """The exact calculator's count of one chunk (SmolVLM2's or a Qwen-VL counter's)."""
    if isinstance(counter, QwenOracle):
        return counter.exact(messages, add_generation_prompt)
    return count_conversation(messages, counter,
                              add_generation_prompt=add_generation_prompt).total


def _has_processor(processor: Any) -> bool:
    """Whether the real processor can count (a Qwen oracle built from a counter alone
    cannot)."""
    return not (isinstance(processor, QwenOracle) and processor.processor is None)


def _processor_count(processor: Any, messages: Conversation, add_generation_prompt: bool,
                     cache: dict[str, int] | None = None) -> int:
    key = _dump(to_dicts(messages)) + ("+prompt" if add_generation_prompt else "")
    if cache is not None and key in cache:
        return cache[key]
    if isinstance(processor, QwenOracle):
        counted = processor.real(messages, add_generation_prompt)
        assert counted is not None, "a Qwen oracle without a processor"
        real = counted
    else:
        real = processor_count(processor, messages, add_generation_prompt=add_generation_prompt)
    if cache is not None and len(cache) < 4096:
        cache[key] = real
    return real


def _finish(failure: _Failure, processor: Any, add_generation_prompt: bool) -> _Failure:
    """Count the offending chunk with the real processor, once, for the report."""
    if failure.chunk_messages is not None and failure.real is None and _has_processor(processor):
        failure.real = _processor_count(processor, failure.chunk_messages, add_generation_prompt)
    return failure


def check_chunks(
    conversation: Sequence[MessageLike] | Conversation,
    chunks: Iterable[ChunkLike],
    processor: Oracle,
    max_tokens: int = 4096,
    *,
    leading: Sequence[MessageLike] | Conversation = (),
    sft: bool = False,
    add_generation_prompt: bool = False,
    processor_counts: bool | None = None,
    counter: TokenCounter | None = None,
    cache: dict[str, int] | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> tuple[int, ...]:
    """Each chunk's exact token count; raises :class:`SplitterCheckError` if a chunk is
    over ``max_tokens``, claims fewer tokens than it has, lacks the leading context, or if
    the chunks do not hold every message of ``conversation`` once, in order (a message
    cut between frames or images: its parts in consecutive chunks, each part the last
    message of its chunk but the last part). ``sft`` adds the SFT rules (see the module
    docstring).

    No hypothesis: usable on one split result, and inside your own ``@given`` test with
    a session-scoped counter (``tokenguard_counter``). ``processor`` is a
    ``TokenCounter`` (its processor is the oracle), a ``LoadedProcessor`` or a bare
    processor. Chunks are priced by the exact calculator when the processor is
    SmolVLM2's, and the real processor counts the chunk of a failure, so the message
    shows the processor's number; ``processor_counts=True`` (the default for a bare
    processor) counts every chunk with the processor instead (about half a second per
    4,096-token chunk at 384). ``cache`` memoizes the processor's counts by chunk.

    Qwen-VL: ``processor`` is a Qwen2-VL/2.5-VL/3-VL processor (every chunk counted by
    running it, unless ``processor_counts=False``: then by the exact ``QwenTokenCounter``
    built from it), a ``QwenTokenCounter`` or a
    :class:`~pytest_tokenguard.testing.qwen_oracle.QwenOracle`, at the call's
    ``min_pixels``/``max_pixels``.
    """
    __tracebackhide__ = True
    proc, calc, edge = _oracle(processor, min_pixels, max_pixels)
    if counter is not None:
        calc = counter
    if processor_counts is None:
        exact_given = isinstance(processor, TokenCounter | LoadedProcessor | QwenOracle) \
            or _is_qwen_counter(processor)
        processor_counts = calc is None or not exact_given
    lead = parse_conversation(leading, label="leading message",
                              image_loader=path_loader_of(proc))
    counts, _, failure = _inspect(conversation, chunks, calc, proc, max_tokens, lead, sft,
                                  add_generation_prompt, processor_counts, cache)
    if failure is not None:
        _finish(failure, proc, add_generation_prompt)
        raise SplitterCheckError(failure.message(max_tokens, edge)) from None
    return counts


def _is_qwen_counter(value: object) -> bool:
    from ..families.qwen_text import QwenTokenCounter

    return isinstance(value, QwenTokenCounter)


# ------------------------------------------------------------------ check_splitter


@dataclass(frozen=True)
class SplitterReport:
    """What one :func:`check_splitter` run saw at one resolution (when it passed)."""

    longest_edge: int | None
    max_tokens: int
    examples: int
    chunks: int
    refused: int
    refusals: tuple[tuple[str, int], ...]  # (exception type, how many)
    fullest: int  # the largest chunk seen, in tokens
    confirmed: int  # chunks recounted by the real processor
    seconds: float
    max_pixels: int | None = None  # Qwen-VL's setting checked (longest_edge is then None)

    @property
    def setting(self) -> str:
        """The setting checked: ``longest_edge N`` or, for Qwen-VL, ``max_pixels N``."""
        if self.max_pixels is not None:
            return f"max_pixels {self.max_pixels}"
        return f"longest_edge {self.longest_edge}"

    def __str__(self) -> str:
        refused = (f"{self.refused} refused ("
                   + ", ".join(f"{n} {name}" for name, n in self.refusals) + ")"
                   if self.refused else "none refused")
        return (f"splitter check at {self.setting}, max_tokens "
                f"{self.max_tokens}: {self.examples} examples, {self.chunks} chunks (fullest "
                f"{self.fullest} tokens), {refused}, {self.confirmed} chunks recounted by the "
                f"processor, {self.seconds:.1f} s")


@dataclass
class _Run:
    """The counters of one check (local to one call: nothing is kept between tests)."""

    examples: int = 0
    chunks: int = 0
    found_at: float | None = None  # when the first failure was found (shrinking starts)
    failed: set[str] = field(default_factory=set)  # the failing inputs seen, as JSON
    refusals: Counter[str] = field(default_factory=Counter)
    fullest: list[tuple[int, str, Conversation, Any]] = field(default_factory=list)


def _splittable(source: Conversation, counter: Calculator, max_tokens: int,
                lead: Conversation, sft: bool, add_generation_prompt: bool) -> str | None:
    """Why the conversation can be split (so refusing it is wrong), or None."""
    if isinstance(counter, QwenOracle):
        return _splittable_priced(source, counter, max_tokens, lead, sft, add_generation_prompt)
    facts = _facts(counter)
    everything, first = _lead_of(source, lead, sft)
    base = base_tokens(counter) + sum(message_cost(m, counter, facts).tokens for m in everything)
    if add_generation_prompt:
        base += facts.generation_tail - facts.newline
    costs = [message_cost(m, counter, facts).tokens for m in source]
    if not sft:
        if source and base + max(costs) <= max_tokens:
            return (f"every message fits a chunk alone (the largest with the leading context is "
                    f"{base + max(costs)} of {max_tokens} tokens)")
        return None
    turns, unanswered = _turn_spans([m.role for m in source], first)
    if unanswered < len(source) or not turns:
        return None
    largest = max(sum(costs[a:b]) for a, b in turns)
    if base + largest <= max_tokens:
        return (f"every turn fits a chunk alone (the largest with the leading context is "
                f"{base + largest} of {max_tokens} tokens)")
    return None


def _splittable_priced(source: Conversation, oracle: QwenOracle, max_tokens: int,
                       lead: Conversation, sft: bool, add_generation_prompt: bool) -> str | None:
    """:func:`_splittable` by pricing each message (each turn in SFT mode) as a chunk of
    its own, with the leading context: a template that is not a sum of message costs
    (Qwen2-VL's writes a default system message into a chunk that has none) is priced as
    it renders."""
    everything, first = _lead_of(source, lead, sft)
    if not sft:
        if not source:
            return None
        largest = max(oracle.exact((*everything, m), add_generation_prompt) for m in source)
        if largest <= max_tokens:
            return (f"every message fits a chunk alone (the largest with the leading context is "
                    f"{largest} of {max_tokens} tokens)")
        return None
    turns, unanswered = _turn_spans([m.role for m in source], first)
    if unanswered < len(source) or not turns:
        return None
    largest = max(oracle.exact((*everything, *source[a:b]), add_generation_prompt)
                  for a, b in turns)
    if largest <= max_tokens:
        return (f"every turn fits a chunk alone (the largest with the leading context is "
                f"{largest} of {max_tokens} tokens)")
    return None


def _wants_edge(split_fn: Callable[..., Any], name: str = "longest_edge") -> bool:
    try:
        return name in inspect.signature(split_fn).parameters
    except (TypeError, ValueError):
        return False


def _default_strategy(counter: Calculator, max_tokens: int, leading: Conversation,
                      sft: bool, add_generation_prompt: bool) -> tuple[Any, list[Any]]:
    """The boundary strategy, and its simplest conversations with one, two and three
    chunks at the limit, tried first: an under-count of one token in any of the first
    three chunks fails on the first examples of every run."""
    from ..conversation import to_chat_template
    from . import strategies

    kwargs: dict[str, Any] = {"leading": leading, "sft": sft,
                              "add_generation_prompt": add_generation_prompt}
    if isinstance(counter, QwenOracle):
        from . import qwen_strategies

        return (qwen_strategies.qwen_boundary_conversation_dicts(counter.counter, max_tokens,
                                                                 **kwargs),
                [to_chat_template(c) for c in qwen_strategies.qwen_boundary_examples(
                    counter.counter, max_tokens, **kwargs)])
    return (strategies.boundary_conversation_dicts(counter, max_tokens, **kwargs),
            [to_chat_template(c) for c in strategies.boundary_examples(counter, max_tokens,
                                                                       **kwargs)])


def default_conversations() -> Any:
    """Dialogues over images and video frames (as image items), up to 20 turns: random,
    not aimed at a limit (the checker's default is the boundary strategy)."""
    from . import strategies

    return strategies.conversation_dicts(
        max_turns=20, max_images_per_turn=3, max_frames_per_run=8,
        sizes=strategies.image_sizes(max_side=2048),
    )


def check_splitter(
    split_fn: SplitFunction,
    counter: TokenCounter | LoadedProcessor | Any,
    max_tokens: int = 4096,
    *,
    conversations: Any = None,
    max_examples: int | None = None,
    leading: Sequence[MessageLike] | Conversation = (),
    refuses: Refusals = (SplitError,),
    sft: bool = False,
    add_generation_prompt: bool = False,
    confirm: int = 3,
    processor_counts: bool = False,
    shrink_seconds: float = 10.0,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> SplitterReport:
    """Run the splitting property against ``split_fn`` with hypothesis at ``counter``'s
    resolution; raise :class:`SplitterCheckError` with the shrunk evidence on a failure,
    return a :class:`SplitterReport` on a pass (see the module docstring for the rules
    and what it costs).

    ``split_fn(messages)`` gets a list of chat-template message dicts (video frames as
    image items with their ``frame`` number) and returns its chunks; if it has a
    ``longest_edge`` parameter, it is passed the resolution being checked.
    ``counter`` supplies the real processor (loaded at the resolution the chunks are
    for). ``conversations`` replaces the default strategy
    (:func:`~pytest_tokenguard.testing.strategies.boundary_conversation_dicts`);
    ``max_examples`` defaults to the active hypothesis profile's. ``refuses`` are the
    exception types that mean "cannot split this" (``()``: any refusal fails).
    ``add_generation_prompt`` counts chunks as rendered for generation. ``confirm`` is
    how many of the fullest chunks the real processor recounts on a pass.
    ``shrink_seconds`` bounds the time spent shrinking a failure (the example reported
    is the smallest found by then; with a slow splitter and a long failing
    conversation, shrinking is most of a failing run).

    **Qwen-VL.** ``counter`` may be a Qwen2-VL, Qwen2.5-VL or Qwen3-VL processor (the
    real processor that confirms, its exact ``QwenTokenCounter`` built from it), a
    ``QwenTokenCounter`` (no processor to confirm: its counts are reported) or a
    :class:`~pytest_tokenguard.testing.qwen_oracle.QwenOracle`; ``min_pixels`` /
    ``max_pixels`` are the per-call settings the chunks are for (``None``: the
    processor's), and a ``split_fn`` with a ``max_pixels`` parameter is passed the one
    checked. Conversations come from
    :func:`~pytest_tokenguard.testing.qwen_strategies.qwen_boundary_conversation_dicts`
    (the default system message Qwen2-VL's template writes into every chunk that starts
    without one included), failures name ``max_pixels``.

    Safe to call inside any test, with session-scoped objects: it keeps no state
    between calls, and notes the running test as one whose figures come from generated
    examples (:mod:`pytest_tokenguard.testing.generated`), to keep it out of a baseline.
    """
    __tracebackhide__ = True
    from hypothesis import HealthCheck, Phase, event, example, given, settings

    started = time.perf_counter()
    processor, calculator, edge = _oracle(counter, min_pixels, max_pixels)
    if calculator is None:
        raise TemplateError("check_splitter needs a SmolVLM2 or Qwen-VL processor (its chat "
                            "template is what the exact calculator prices); use check_chunks "
                            "with processor_counts=True for other processors")
    loader = path_loader_of(processor)
    lead = parse_conversation(leading, label="leading message", image_loader=loader)
    accepted = refuses if isinstance(refuses, tuple) else (refuses,)
    strategy, explicit = (conversations, []) if conversations is not None else _default_strategy(
        calculator, max_tokens, lead, sft, add_generation_prompt)
    qwen = calculator if isinstance(calculator, QwenOracle) else None
    pass_edge = _wants_edge(split_fn, "max_pixels" if qwen else "longest_edge")
    generated.note("check_splitter", (edge if isinstance(edge, str) else f"longest_edge {edge}")
                   + f", max_tokens {max_tokens}")
    run = _Run()
    cache: dict[str, int] = {}
    current = settings.default or settings()
    overrides: dict[str, Any] = {
        "deadline": None,
        # "explain" re-runs the failing example many times; one report is enough
        "phases": [p for p in current.phases if p != Phase.explain],
        "report_multiple_bugs": False,
        "suppress_health_check": [*current.suppress_health_check, HealthCheck.too_slow,
                                  HealthCheck.data_too_large],
    }
    if max_examples is not None:
        overrides["max_examples"] = max_examples

    def splitter_property(conversation: Any) -> None:
        run.examples += 1
        if (run.found_at is not None and time.perf_counter() - run.found_at > shrink_seconds
                and _dump(conversation) not in run.failed):
            # out of shrinking time: only inputs already seen failing fail again, so the
            # shrinker stops at the smallest found so far and replays it
            return
        try:
            _property(conversation)
        except _Found:
            run.failed.add(_dump(conversation))
            if run.found_at is None:
                run.found_at = time.perf_counter()
            raise

    def _property(conversation: Any) -> None:
        source = parse_conversation(conversation, image_loader=loader)
        try:
            result = (split_fn(conversation) if not pass_edge
                      else split_fn(conversation, max_pixels=qwen.max_pixels) if qwen
                      else split_fn(conversation, longest_edge=edge))
            chunks = result if isinstance(result, str | bytes | Mapping) or not isinstance(
                result, Iterable) else list(result)
        except accepted as exc:
            why = _splittable(source, calculator, max_tokens, lead, sft, add_generation_prompt)
            if why is not None:
                raise _Found(_Failure(
                    f"the splitter refused a conversation that can be split: {why}",
                    conversation, detail=f"it raised {type(exc).__name__}: {_line(exc)}",
                )) from None
            run.refusals[type(exc).__name__] += 1
            event(f"refused ({type(exc).__name__})")
            return
        except Exception as exc:
            raise _Found(_Failure(
                f"the splitter raised {type(exc).__name__}: {_line(exc)}", conversation,
                detail=_where(exc) + (f"(a refusal must raise one of "
                                      f"{', '.join(t.__name__ for t in accepted)})"
                                      if accepted else ""),
            )) from None
        counts, read, failure = _inspect(conversation, chunks, calculator, processor, max_tokens,
                                         lead, sft, add_generation_prompt, processor_counts, cache)
        if failure is not None:
            raise _Found(failure)
        assert read is not None
        run.chunks += len(counts)
        for tokens, parsed in zip(counts, read.parsed, strict=True):
            _keep_fullest(run, confirm, tokens, parsed, conversation)

    wrap: Any = given(strategy)
    test: Any = wrap(splitter_property)
    for conversation in reversed(explicit):
        test = example(conversation)(test)
    test = settings(**overrides)(test)
    try:
        test()
    except _Found as found:
        failure = _finish(found.failure, processor, add_generation_prompt)
        raise SplitterCheckError(failure.message(max_tokens, edge)) from None
    confirmed = _confirm(run, processor, max_tokens, edge, add_generation_prompt)
    report = SplitterReport(
        longest_edge=None if qwen else edge,  # type: ignore[arg-type]
        max_tokens=max_tokens, examples=run.examples, chunks=run.chunks,
        refused=sum(run.refusals.values()), refusals=tuple(sorted(run.refusals.items())),
        fullest=max((t for t, *_ in run.fullest), default=0), confirmed=confirmed,
        seconds=time.perf_counter() - started, max_pixels=qwen.max_pixels if qwen else None,
    )
    generated.note("check_splitter", str(report))
    return report


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def _where(exc: BaseException) -> str:
    """The innermost frame of the splitter's own code, as ``file:line``."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "/hypothesis/" not in f.filename and "pytest_tokenguard/testing" not in f.filename]
    return (f"at {frames[-1].filename}:{frames[-1].lineno} ({frames[-1].name}) "
            if frames else "")


def _keep_fullest(run: _Run, confirm: int, tokens: int, chunk: Conversation,
                  conversation: Any) -> None:
    if confirm <= 0:
        return
    key = _dump(to_dicts(chunk))
    if any(k == key for _, k, *_ in run.fullest):
        return
    run.fullest.append((tokens, key, chunk, conversation))
    run.fullest.sort(key=lambda entry: -entry[0])
    del run.fullest[confirm:]


def _confirm(run: _Run, processor: Any, max_tokens: int, edge: int | str | None,
             add_generation_prompt: bool) -> int:
    """Recount the fullest chunks with the real processor: the calculator's numbers are
    what passed them, so they are checked where it matters most, at the limit (none
    without a processor: a Qwen counter alone)."""
    __tracebackhide__ = True
    if not _has_processor(processor):
        return 0
    for tokens, _, chunk, conversation in run.fullest:
        real = _processor_count(processor, chunk, add_generation_prompt)
        if real > max_tokens or real != tokens:
            failure = _Failure(
                f"the real processor counts {real} tokens where the exact calculator counted "
                f"{tokens}" + (" (over max_tokens)" if real > max_tokens else "")
                + ": please report this to pytest-tokenguard with the conversation below",
                conversation, chunk=0, chunks=1, chunk_json=to_dicts(chunk))
            raise SplitterCheckError(failure.message(max_tokens, edge))
    return len(run.fullest)


# ------------------------------------------------------------------ the fixture's object

Source: TypeAlias = TokenCounter | LoadedProcessor | Callable[[int], TokenCounter | LoadedProcessor]


class SplitterChecker:
    """:func:`check_splitter` bound to processors: what the ``tokenguard_check_splitter``
    fixture hands to tests, once per session.

    ``source`` is one counter or loaded processor, or a function giving the loaded
    processor for a ``longest_edge`` (the plugin's processor cache); ``resolutions``
    are the ones checked when a call names none (default: the source's one). Holds no
    per-test state: counters are built once per resolution and only cache
    deterministic counts, so one instance serves every test and every example.

    Qwen-VL: ``source`` may be a Qwen processor, a ``QwenTokenCounter`` or a
    :class:`~pytest_tokenguard.testing.qwen_oracle.QwenOracle`, and any call may pass
    ``processor=`` one instead of the configured model; ``max_pixels=[...]`` are then the
    settings checked, one run each, as ``resolutions`` are for SmolVLM2.
    """

    def __init__(self, source: Source | Any, resolutions: Sequence[int] | None = None,
                 *, max_pixels: Sequence[int] | None = None) -> None:
        from .qwen_oracle import qwen_oracle

        #: the ``max_pixels`` a Qwen-VL source is checked at when a call names none (None:
        #: the processor's own); the plugin passes ``--tokenguard-max-pixels``
        self.max_pixels = tuple(max_pixels) if max_pixels else None

        self._source = source
        self._counters: dict[int, TokenCounter] = {}
        self._qwen = (None if isinstance(source, TokenCounter | LoadedProcessor)
                      else qwen_oracle(source))
        if self._qwen is not None:
            default: tuple[int, ...] = ()
        elif isinstance(source, TokenCounter | LoadedProcessor):
            counter = source if isinstance(source, TokenCounter) else TokenCounter(
                source.processor, source.spec, source.longest_edge)
            self._counters[counter.longest_edge] = counter
            default = (counter.longest_edge,)
        else:
            default = ()
        self.resolutions = tuple(resolutions) if resolutions is not None else default

    def counter(self, longest_edge: int) -> TokenCounter:
        """The exact counter (and its real processor) at ``longest_edge``."""
        found = self._counters.get(longest_edge)
        if found is not None:
            return found
        if isinstance(self._source, TokenCounter | LoadedProcessor):
            raise ValueError(
                f"this checker holds the processor at longest_edge "
                f"{', '.join(map(str, self._counters))} only, not {longest_edge}; build it "
                "from a loader function to check other resolutions")
        loaded = self._source(longest_edge)
        counter = loaded if isinstance(loaded, TokenCounter) else TokenCounter(
            loaded.processor, loaded.spec, loaded.longest_edge)
        self._counters[longest_edge] = counter
        return counter

    def __call__(
        self,
        split_fn: SplitFunction,
        max_tokens: int = 4096,
        *,
        resolutions: Sequence[int] | None = None,
        conversations: Any = None,
        max_examples: int | None = None,
        leading: Sequence[MessageLike] | Conversation = (),
        refuses: Refusals = (SplitError,),
        sft: bool = False,
        add_generation_prompt: bool = False,
        confirm: int = 3,
        shrink_seconds: float = 10.0,
        processor: Any = None,
        max_pixels: int | Sequence[int | None] | None = None,
        min_pixels: int | None = None,
    ) -> tuple[SplitterReport, ...]:
        """:func:`check_splitter` at each of ``resolutions`` (default: the checker's),
        one after the other: each is one full hypothesis run, so its cost multiplies.

        ``processor=`` (a Qwen2-VL/2.5-VL/3-VL processor, ``QwenTokenCounter`` or
        ``QwenOracle``) checks a Qwen-VL splitter instead, at each of ``max_pixels``
        (one value or a list; default: the processor's own) and ``min_pixels``."""
        __tracebackhide__ = True
        if processor is None and self._qwen is not None and max_pixels is None:
            max_pixels = self.max_pixels
        if processor is not None or self._qwen is not None:
            return self._check_qwen(
                split_fn, max_tokens, processor, max_pixels, min_pixels, resolutions,
                conversations=conversations, max_examples=max_examples, leading=leading,
                refuses=refuses, sft=sft, add_generation_prompt=add_generation_prompt,
                confirm=confirm, shrink_seconds=shrink_seconds)
        if max_pixels is not None or min_pixels is not None:
            raise ValueError("max_pixels/min_pixels are Qwen-VL settings: pass the Qwen "
                             "processor as processor=... (SmolVLM2 is checked at "
                             "resolutions=[...])")
        edges = tuple(resolutions) if resolutions is not None else self.resolutions
        if not edges:
            raise ValueError("no resolution to check: pass resolutions=[384, ...]")
        reports: list[SplitterReport] = []
        for edge in edges:  # a loop, not a generator: its frame is hidden from tracebacks
            reports.append(check_splitter(
                split_fn, self.counter(edge), max_tokens, conversations=conversations,
                max_examples=max_examples, leading=leading, refuses=refuses, sft=sft,
                add_generation_prompt=add_generation_prompt, confirm=confirm,
                shrink_seconds=shrink_seconds))
        return tuple(reports)

    def _check_qwen(self, split_fn: SplitFunction, max_tokens: int, processor: Any,
                    max_pixels: int | Sequence[int | None] | None, min_pixels: int | None,
                    resolutions: Sequence[int] | None, **kwargs: Any,
                    ) -> tuple[SplitterReport, ...]:
        __tracebackhide__ = True
        from .qwen_oracle import qwen_oracle

        if resolutions is not None:
            raise ValueError("resolutions are SmolVLM2's longest_edge values; a Qwen-VL "
                             "splitter is checked at max_pixels=[...]")
        oracle = self._qwen if processor is None else qwen_oracle(processor)
        if oracle is None:
            raise ValueError(f"processor= must be a Qwen2-VL, Qwen2.5-VL or Qwen3-VL processor "
                             f"(or a QwenTokenCounter), got {type(processor).__name__}")
        values: tuple[int | None, ...] = (
            (None,) if max_pixels is None
            else (max_pixels,) if isinstance(max_pixels, int) else tuple(max_pixels))
        if not values:
            raise ValueError("no max_pixels to check: pass max_pixels=[200704, ...] or none "
                             "for the processor's own")
        reports: list[SplitterReport] = []
        for value in values:  # a loop, not a generator: its frame is hidden from tracebacks
            reports.append(check_splitter(split_fn, oracle, max_tokens, min_pixels=min_pixels,
                                          max_pixels=value, **kwargs))
        return tuple(reports)
