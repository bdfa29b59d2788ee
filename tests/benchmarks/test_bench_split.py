"""Benchmarks: the calculator against the real processor, and splitter throughput.

    pytest tests/benchmarks -p no:xdist --benchmark-group-by=param:config \\
        --benchmark-columns=mean,ops,rounds

Under xdist pytest-benchmark only runs each function once (a smoke test). The data is
built from a fixed seed, not hypothesis, so runs compare.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from pytest_tokenguard.conversation import (
    Conversation,
    FrameRange,
    FramesItem,
    ImageItem,
    Message,
    TextItem,
)
from pytest_tokenguard.sequence import count_conversation, processor_count
from pytest_tokenguard.splitting import split
from pytest_tokenguard.tokens import TokenCounter, fast_text_counter
from tests.helpers import counter, loaded

RNG_SEED = 20261126


def _words(rng: random.Random, n: int) -> list[str]:
    letters = "etaoinshrdlucmfwypvbgkqjxz"
    return ["".join(rng.choice(letters[: rng.randint(8, 26)]) for _ in range(rng.randint(2, 9)))
            for _ in range(n)]


def _sentence(rng: random.Random, vocabulary: list[str], low: int, high: int) -> str:
    # Zipf-like: early words far more frequent, as in real text
    words = [vocabulary[min(int(rng.paretovariate(1.1)) - 1, len(vocabulary) - 1)]
             for _ in range(rng.randint(low, high))]
    return " ".join(words).capitalize() + rng.choice([".", "?", "!", f" {rng.randint(0, 999)}."])


def dialogues(count: int, turns: int, seed: int = RNG_SEED) -> list[Conversation]:
    """``count`` conversations of ``turns`` messages, each with 1-8 video frames."""
    rng = random.Random(seed)
    vocabulary = _words(rng, 3000)
    out: list[Conversation] = []
    for _ in range(count):
        width, height = rng.choice([(640, 360), (1280, 720), (1920, 1080), (480, 640)])
        frame = 0
        messages: list[Message] = []
        for turn in range(turns):
            n = rng.randint(1, 8)
            messages.append(Message(("user", "assistant")[turn % 2], (
                TextItem(_sentence(rng, vocabulary, 4, 30)),
                FramesItem(FrameRange(frame, frame + n), width, height, "clip.mp4"),
            )))
            frame += n
        out.append(tuple(messages))
    return out


def photo_chats(count: int, seed: int = RNG_SEED) -> list[Conversation]:
    """Short chats with photos of varied sizes, for calculator vs processor."""
    rng = random.Random(seed)
    vocabulary = _words(rng, 3000)
    out: list[Conversation] = []
    for _ in range(count):
        messages = []
        for turn in range(4):
            items: list[Any] = [TextItem(_sentence(rng, vocabulary, 5, 40))]
            if turn % 2 == 0:
                items.insert(0, ImageItem(rng.randint(200, 2500), rng.randint(200, 2500)))
            messages.append(Message(("user", "assistant")[turn % 2], tuple(items)))
        out.append(tuple(messages))
    return out


def _clear_caches(c: TokenCounter) -> None:
    c._text_cache.clear()
    fast = fast_text_counter(c)
    getattr(fast, "_cache", {}).clear()


CONFIGS = [("2.2B", 384), ("2.2B", 1536)]
CHATS = photo_chats(10)


@pytest.mark.parametrize(("checkpoint", "edge"), CONFIGS, ids=["le384", "le1536"])
def test_bench_calculator(benchmark: Any, checkpoint: str, edge: int) -> None:
    c = counter(checkpoint, edge)
    totals = benchmark.pedantic(
        lambda: [count_conversation(chat, c).total for chat in CHATS],
        setup=lambda: _clear_caches(c), rounds=50,
    )
    benchmark.extra_info["conversations"] = len(CHATS)
    benchmark.extra_info["tokens"] = sum(totals)


@pytest.mark.parametrize(("checkpoint", "edge"), CONFIGS, ids=["le384", "le1536"])
def test_bench_real_processor(benchmark: Any, checkpoint: str, edge: int) -> None:
    processor = loaded(checkpoint, edge).processor
    c = counter(checkpoint, edge)
    totals = benchmark.pedantic(
        lambda: [processor_count(processor, chat) for chat in CHATS], rounds=3, warmup_rounds=1,
    )
    assert totals == [count_conversation(chat, c).total for chat in CHATS]


DIALOGUES = dialogues(200, 50)


@pytest.mark.parametrize("caches", ["cold", "warm"])
def test_bench_split_throughput(benchmark: Any, caches: str) -> None:
    """200 conversations of 50 turns with 1-8 frames each, split at 4,096 tokens."""
    c = counter("2.2B", 384)

    def run() -> int:
        return sum(len(split(d, 4096, counter=c)) for d in DIALOGUES)

    setup = (lambda: _clear_caches(c)) if caches == "cold" else None
    chunks = benchmark.pedantic(run, setup=setup, rounds=10, warmup_rounds=0 if setup else 1)
    benchmark.extra_info["conversations"] = len(DIALOGUES)
    benchmark.extra_info["chunks"] = chunks
    if benchmark.stats is not None:  # None when benchmarks are disabled (xdist)
        per_second = len(DIALOGUES) / benchmark.stats.stats.mean
        benchmark.extra_info["conversations_per_second"] = round(per_second)
        print(f"\nsplit throughput ({caches} caches): {per_second:.0f} conversations/s, "
              f"{chunks} chunks")
