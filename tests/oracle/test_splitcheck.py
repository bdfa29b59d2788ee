"""check_splitter passes a correct splitter and catches broken ones with evidence."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from pytest_tokenguard.conversation import parse_conversation, to_chat_template
from pytest_tokenguard.sequence import processor_count
from pytest_tokenguard.splitting import split
from pytest_tokenguard.testing import strategies as tgst
from pytest_tokenguard.testing.splitcheck import (
    SplitterCheckError,
    check_chunks,
    check_splitter,
    splitter_checker,
)
from tests.helpers import counter, loaded

SMALL = tgst.conversation_dicts(
    max_turns=8, max_images_per_turn=2, max_frames_per_run=4, max_text=40, unicode=False,
    sizes=tgst.image_sizes(max_side=800),
)


def test_this_splitter_passes() -> None:
    c = counter("2.2B", 384)
    check_splitter(lambda messages: split(messages, 600, counter=c), c, 600,
                   conversations=SMALL, max_examples=5)


def test_bound_checker_with_leading_context() -> None:
    c = counter("2.2B", 384)
    system = {"role": "system", "content": [{"type": "text", "text": "Be terse."}]}
    check = splitter_checker(loaded("2.2B", 384))
    check(lambda m: split(m, 700, counter=c, leading=[system]), 700, conversations=SMALL,
          max_examples=5, leading=[system])


def naive(messages: list[dict[str, Any]], max_tokens: int) -> list[list[dict[str, Any]]]:
    """81 tokens per image and four characters per token: the usual estimate."""
    chunks: list[list[dict[str, Any]]] = [[]]
    used = 0
    for m in messages:
        cost = sum(81 if item["type"] == "image" else len(item.get("text", "")) // 4
                   for item in m["content"])
        if chunks[-1] and used + cost > max_tokens:
            chunks.append([])
            used = 0
        chunks[-1].append(m)
        used += cost
    return chunks


def test_overflow_is_reported_with_shrunk_example_and_real_count() -> None:
    lp = loaded("2.2B", 384)
    # few, small images: the processor runs on every chunk of every try while shrinking
    cheap = tgst.conversation_dicts(max_turns=10, max_images_per_turn=2, frames=False,
                                    max_text=80, unicode=False,
                                    sizes=tgst.image_sizes(max_side=64))
    with pytest.raises(SplitterCheckError) as info:
        check_splitter(lambda m: naive(m, 300), lp, 300, conversations=cheap, max_examples=100)
    message = str(info.value)
    found = re.search(r"chunk (\d+) of \d+ is (\d+) tokens as the real processor counts", message)
    assert found, message
    real = int(found.group(2))
    assert real > 300
    chunk = json.loads(message.split("chunk: ", 1)[1].split("\n", 1)[0])
    assert processor_count(lp.processor, chunk) == real  # the number shown is the real one
    assert "conversation (shrunk): [" in message


def test_lost_and_reordered_messages_are_caught() -> None:
    lp = loaded("2.2B", 384)
    conversation = [{"role": "user", "content": f"question {i}"} for i in range(4)]
    with pytest.raises(SplitterCheckError, match="message 3 is missing"):
        check_chunks(conversation, [conversation[:2], conversation[2:3]], lp.processor)
    with pytest.raises(SplitterCheckError, match="message 1 differs"):
        check_chunks(conversation, [[conversation[0], conversation[2]], conversation[1:2],
                                    conversation[3:]], lp.processor)
    with pytest.raises(SplitterCheckError, match="message 3 differs"):
        check_chunks(conversation, [conversation[:3], conversation[2:]], lp.processor)
    with pytest.raises(SplitterCheckError, match="chunk 1 is not a valid conversation"):
        check_chunks(conversation, [conversation, [{"role": "user", "content": []}]],
                     lp.processor)
    counts = check_chunks(conversation, [conversation[:2], conversation[2:]], lp.processor)
    assert counts == (processor_count(lp.processor, conversation[:2]),
                      processor_count(lp.processor, conversation[2:]))


def test_chunk_objects_are_accepted() -> None:
    c = counter("2.2B", 384)
    conversation = to_chat_template(parse_conversation(
        [{"role": "user", "content": [{"type": "frames", "start": 0, "end": 9, "width": 64,
                                       "height": 64}]}] * 3
    ))
    chunks = split(conversation, 1000, counter=c)
    assert len(chunks) == 3
    counts = check_chunks(conversation, chunks, c.processor, 1000)
    assert list(counts) == [chunk.tokens for chunk in chunks]
