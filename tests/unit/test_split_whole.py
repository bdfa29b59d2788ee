"""``split`` with a counter that prices whole chunks (:class:`~pytest_tokenguard.splitting.
ChunkPricer`, as a Qwen-VL counter is), on a fake pricer: greedy packing is the fewest
chunks, cuts put back together are the message, refusals say why. The real processor's
counts are checked in tests/oracle/test_qwen_split.py; here only the packing."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_tokenguard.conversation import (
    Conversation,
    FramesItem,
    ImageItem,
    Message,
    MessageLike,
    TextItem,
    VideoItem,
    parse_conversation,
    to_dicts,
)
from pytest_tokenguard.errors import SplitError
from pytest_tokenguard.splitting import ChunkPricer, split, validate_chunks


class FakePricer:
    """ChatML-like prices: 7 for a default system message when the chunk does not start
    with one, 4 per message plus its text's characters, 10 per image or frame, 50 per
    video."""

    def __init__(self) -> None:
        self.priced = 0

    def parse(self, messages: Sequence[MessageLike] | Conversation, *,
              label: str = "message") -> Conversation:
        return parse_conversation(messages, label=label)

    def chunk_tokens(self, messages: Sequence[Message]) -> int:
        self.priced += 1
        total = 0 if messages and messages[0].role == "system" else 7
        for message in messages:
            total += 4
            for item in message.content:
                if isinstance(item, TextItem):
                    total += len(item.text)
                elif isinstance(item, ImageItem):
                    total += 10
                elif isinstance(item, FramesItem):
                    total += 10 * len(item)
                elif isinstance(item, VideoItem):
                    total += 50
        return total


def test_fake_pricer_is_a_chunk_pricer() -> None:
    assert isinstance(FakePricer(), ChunkPricer)


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


MESSAGES = st.lists(st.fixed_dictionaries({
    "role": st.sampled_from(["user", "assistant"]),
    "content": st.lists(st.one_of(
        st.text("ab ", max_size=12).map(_text),
        st.just({"type": "image", "width": 10, "height": 10}),
        st.integers(1, 6).map(lambda n: {"type": "frames", "start": 0, "end": n, "width": 8,
                                         "height": 8})), min_size=1, max_size=4),
}), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(messages=MESSAGES, max_tokens=st.integers(15, 120), cut=st.booleans())
def test_greedy_is_the_fewest_and_the_chunks_are_the_conversation(
        messages: list[dict[str, Any]], max_tokens: int, cut: bool) -> None:
    pricer = FakePricer()
    parsed = pricer.parse(messages)
    refusal: SplitError | None = None
    try:
        chunks = split(messages, max_tokens, counter=pricer, allow_frame_split=cut)
    except SplitError as exc:
        refusal = exc
    if refusal is not None:  # only a message that cannot fit alone is refused
        assert refusal.index is not None
        assert refusal.tokens == pricer.chunk_tokens((parsed[refusal.index],)) > max_tokens
        return
    for chunk in chunks:
        assert chunk.tokens == pricer.chunk_tokens(chunk.messages) <= max_tokens
    validate_chunks(chunks, parsed)
    if any(len(c.sources) != len(set(c.sources)) for c in chunks) or len(
            {s for c in chunks for s in c.sources}) != sum(len(c.sources) for c in chunks):
        return  # a message was cut: the brute force below is over whole messages

    @cache
    def fewest(start: int) -> int:
        if start == len(parsed):
            return 0
        return min(1 + fewest(end) for end in range(start + 1, len(parsed) + 1)
                   if pricer.chunk_tokens(parsed[start:end]) <= max_tokens)

    assert len(chunks) == fewest(0)


def test_a_message_is_cut_between_images_and_frames() -> None:
    pricer = FakePricer()
    messages = [{"role": "user", "content": [
        _text("abc"), {"type": "image", "width": 10, "height": 10},
        {"type": "frames", "start": 0, "end": 9, "width": 8, "height": 8}]}]
    chunks = split(messages, 45, counter=pricer, allow_frame_split=True)
    # 7 (default system) + 4 + "abc" + the image + 2 frames; then 3 frames, 3, and the last
    assert [chunk.tokens for chunk in chunks] == [44, 41, 41, 21]
    validate_chunks(chunks, pricer.parse(messages))
    assert to_dicts(chunks[1].messages)[0]["content"] == [
        {"type": "frames", "start": 2, "end": 5, "width": 8, "height": 8}]


def test_sft_cuts_a_turn_keeping_its_text_and_answer() -> None:
    pricer = FakePricer()
    messages: list[dict[str, Any]] = [{"role": "system", "content": "S"},
                {"role": "user", "content": [_text("Q"), *[
                    {"type": "image", "width": 10, "height": 10}] * 5, _text("?")]},
                {"role": "assistant", "content": [_text("A")]}]
    chunks = split(messages, 40, counter=pricer, allow_frame_split=True, sft=True)
    assert len(chunks) == 3
    for chunk in chunks:
        assert chunk.messages[0].role == "system"
        assert chunk.sources == (1, 2)
        texts = [i.text for i in chunk.messages[1].content if isinstance(i, TextItem)]
        assert texts == ["Q", "?"]
        assert chunk.messages[-1].content == (TextItem("A"),)
        assert chunk.tokens <= 40


def test_refusals_say_why() -> None:
    pricer = FakePricer()
    big = [{"role": "user", "content": [{"type": "image", "width": 10, "height": 10}] * 5}]
    with pytest.raises(SplitError, match=r"^message 0 \(user, 5 items, 5 images\) is 61 "
                                         r"tokens as a chunk of its own \(the template and any "
                                         r"leading context included\), more than max_tokens 40 "
                                         r"as a chunk of its own; allow_frame_split=True lets "
                                         r"it be cut between frames or images$"):
        split(big, 40, counter=pricer)
    video = [{"role": "user", "content": [
        _text("x"), {"type": "video", "total_frames": 10, "fps": 5, "width": 8, "height": 8}]}]
    with pytest.raises(SplitError, match=r"shorten it or split it into several messages \(a "
                                         r"video is never cut"):
        split(video, 40, counter=pricer, allow_frame_split=True)
    with pytest.raises(SplitError, match=r"^the leading context alone is 24 tokens"):
        split(big, 20, counter=pricer, leading=[{"role": "system", "content": "x" * 20}])
    with pytest.raises(SplitError, match=r"no assistant answer"):
        split(big, 100, counter=pricer, sft=True)
    with pytest.raises(SplitError, match=r"^messages 0-1 \(a turn: the user messages and the "
                                         r"assistant answer, 5 images\) are 67 tokens"):
        split([*big, {"role": "assistant", "content": "ok"}], 40, counter=pricer, sft=True)
    with pytest.raises(SplitError, match=r"longest_edge is SmolVLM2's resolution"):
        split(big, 40, counter=pricer, longest_edge=384)
    with pytest.raises(SplitError, match=r"more than max_chunks=2 chunks"):
        split([{"role": "user", "content": [_text("abcdefgh")]}] * 3, 20, counter=pricer,
              max_chunks=2)


def test_chunk_prices_are_asked_once() -> None:
    """A chunk is rendered once however often the packing asks for its price."""
    pricer = FakePricer()
    messages = [{"role": "user", "content": [_text("a" * 5)]}] * 20
    chunks = split(messages, 60, counter=pricer)
    assert sum(len(c.sources) for c in chunks) == 20
    assert pricer.priced <= 2 * 20 + len(chunks)


def test_video_items_take_their_frame_size() -> None:
    """A video item's ``width``/``height`` (a Qwen video's cost depends on them) are read,
    kept, written back, and must come together."""
    from pytest_tokenguard.conversation import ConversationError

    item = {"type": "video", "total_frames": 10, "fps": 5, "width": 64, "height": 48}
    parsed = parse_conversation([{"role": "user", "content": [item]}])
    video = parsed[0].content[0]
    assert isinstance(video, VideoItem)
    assert (video.width, video.height) == (64, 48)
    assert (video.info().width, video.info().height) == (64, 48)
    assert to_dicts(parsed)[0]["content"][0]["width"] == 64
    clip = video.split_at(4)[1]
    assert (clip.width, clip.height, clip.info().total_frames) == (64, 48, 6)
    with pytest.raises(ConversationError, match=r"video has no 'height'; give both width and "
                                                r"height"):
        parse_conversation([{"role": "user", "content": [
            {k: v for k, v in item.items() if k != "height"}]}])
    with pytest.raises(ConversationError, match=r"width must be a positive integer"):
        parse_conversation([{"role": "user", "content": [{**item, "width": 0}]}])
