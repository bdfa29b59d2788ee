"""The splitter checker on Qwen-VL: a right greedy splitter passes (its fullest chunks
recounted by the real processor), each planted mistake is caught on the first examples with
a failure whose count is the real processor's and whose conversation reproduces it, and the
boundary strategy really aims at the limit (runs of exactly ``max_tokens + 1, 2, 3`` tokens
as the real processor counts them).

The processors are transformers' Qwen2.5-VL and Qwen3-VL classes built offline from the
published settings, with the ChatML template and a real byte-level BPE stand-in
(tests/qwen_helpers.py); the exact counter is :class:`QwenTokenCounter` built from them.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, find, settings

from pytest_tokenguard.conversation import Conversation, to_chat_template
from pytest_tokenguard.families.qwen_text import QwenTokenCounter
from pytest_tokenguard.testing import generated
from pytest_tokenguard.testing import qwen_strategies as qst
from pytest_tokenguard.testing.qwen_oracle import QwenOracle, qwen_oracle
from pytest_tokenguard.testing.splitcheck import (
    SplitterChecker,
    SplitterCheckError,
    check_chunks,
    check_splitter,
)
from tests.qwen_helpers import chat_processor, qwen_input_ids
from tests.qwen_planted import (
    CHECKED_AT,
    DEFAULT_SYSTEM,
    QWEN_MISTAKES,
    QwenPlantedSplitter,
    qwen_sft_split,
)

MODELS = ["Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen3-VL-8B-Instruct"]
MAX_TOKENS = 4096


def counter_of(model: str, max_pixels: int | None = CHECKED_AT) -> QwenTokenCounter:
    return QwenTokenCounter.from_processor(chat_processor(model, "bpe"), max_pixels=max_pixels)


def real(model: str, messages: Any, max_pixels: int = CHECKED_AT,
         add_generation_prompt: bool = False) -> int:
    return len(qwen_input_ids(chat_processor(model, "bpe"), messages, max_pixels=max_pixels,
                              add_generation_prompt=add_generation_prompt))


@pytest.mark.parametrize("model", MODELS)
def test_a_right_splitter_passes_at_each_max_pixels(model: str) -> None:
    proc = chat_processor(model, "bpe")
    right = QwenPlantedSplitter(counter_of(model), MAX_TOKENS)
    check = SplitterChecker(proc)
    reports = check(right, MAX_TOKENS, max_pixels=[200704, CHECKED_AT], max_examples=8)
    assert [r.max_pixels for r in reports] == [200704, CHECKED_AT]
    for report in reports:
        assert report.longest_edge is None
        assert report.examples >= 8
        assert report.confirmed >= 1  # the real processor recounted the fullest chunks
        assert report.fullest <= MAX_TOKENS
        assert str(report).startswith(f"splitter check at max_pixels {report.max_pixels}, "
                                      f"max_tokens {MAX_TOKENS}: ")


@pytest.mark.parametrize("mistake", QWEN_MISTAKES)
@pytest.mark.parametrize("model", MODELS)
def test_each_planted_mistake_is_caught_with_the_real_count(model: str, mistake: str) -> None:
    proc = chat_processor(model, "bpe")
    splitter = QwenPlantedSplitter(counter_of(model), MAX_TOKENS, mistake)
    calls: list[str] = []

    def counted(messages: list[dict[str, Any]], max_pixels: int | None = None) -> Any:
        calls.append(json.dumps(messages))
        return splitter(messages, max_pixels)

    with pytest.raises(SplitterCheckError) as info:
        check_splitter(counted, proc, MAX_TOKENS, max_examples=30, **splitter.check_kwargs)
    first = calls.index(calls[-1]) + 1  # where the reported conversation was first tried
    assert first <= 30, (mistake, first)
    message = str(info.value)
    assert len(message.splitlines()) <= 6
    assert "longest_edge" not in message
    agp = bool(splitter.check_kwargs.get("add_generation_prompt"))
    conversation = json.loads(message.split("conversation (shrunk): ", 1)[1].split("\n", 1)[0])
    found = re.search(r"chunk (\d+) of \d+ is (\d+) tokens as the real processor counts the "
                      r"rendered chunk(?: with the generation prompt)?, over max_tokens 4096 by "
                      rf"(\d+) \(the splitter claimed no count; max_pixels {CHECKED_AT}\)",
                      message)
    if found is None:  # an over-estimate refuses what can be split: also a failure
        assert mistake == "area / 784", message
        assert message.startswith("the splitter refused a conversation that can be split")
        return
    count = int(found.group(2))
    assert count - MAX_TOKENS == int(found.group(3)) > 0
    chunk = counted(conversation)[int(found.group(1))]
    # the number shown is what the real processor writes for that chunk
    assert real(model, chunk, add_generation_prompt=agp) == count
    assert message.rstrip().endswith(
        f"check_chunks(conversation, my_split(conversation), processor, {MAX_TOKENS}, "
        f"max_pixels={CHECKED_AT})")
    # pasted back, it reproduces with the same count
    with pytest.raises(SplitterCheckError, match=f"is {count} tokens as the real processor"):
        check_chunks(conversation, counted(conversation), proc, MAX_TOKENS,
                     max_pixels=CHECKED_AT, add_generation_prompt=agp)


def greedy_overflows(counter: QwenTokenCounter, conversation: Conversation) -> set[int]:
    """By how many tokens each boundary of the right greedy split is passed: the next
    message added to a full chunk (positive only)."""
    split = QwenPlantedSplitter(counter, MAX_TOKENS)(to_chat_template(conversation))
    flat = [m for chunk in split for m in chunk]
    over: set[int] = set()
    position = 0
    for chunk in split[:-1]:
        position += len(chunk)
        over.add(counter.conversation([*chunk, flat[position]]).total - MAX_TOKENS)
    return over


@pytest.mark.tokenguard_no_baseline("its examples are found by hypothesis, which may "
                                      "draw others in another session")
@pytest.mark.parametrize("model", MODELS)
def test_the_boundary_strategy_lands_one_two_and_three_tokens_over(model: str) -> None:
    """Found in the strategy, checked with the real processor: a chunk of a right split
    plus the next message is exactly 4097, 4098 and 4099 tokens; the explicit examples'
    first runs are 4097 and the second chunk (the default system message written into it)
    too."""
    c = counter_of(model)
    strategy = qst.qwen_boundary_conversations(c, MAX_TOKENS, oversized=False)
    search = settings(database=None, max_examples=200, derandomize=True,
                      suppress_health_check=list(HealthCheck), deadline=None)
    for delta in (1, 2, 3):
        def lands(conversation: Conversation, delta: int = delta) -> bool:
            return delta in greedy_overflows(c, conversation)

        conversation = find(strategy, lands, settings=search)
        split = QwenPlantedSplitter(c, MAX_TOKENS)(to_chat_template(conversation))
        flat = to_chat_template(conversation)
        for number, chunk in enumerate(split[:-1]):
            after = flat[sum(len(k) for k in split[:number + 1])]
            if c.conversation([*chunk, after]).total == MAX_TOKENS + delta:
                assert real(model, [*chunk, after]) == MAX_TOKENS + delta
                assert real(model, chunk) <= MAX_TOKENS
                break
        else:  # pragma: no cover - find() guaranteed one
            pytest.fail("no boundary")
    two = qst.qwen_boundary_examples(c, MAX_TOKENS)[1]
    split = QwenPlantedSplitter(c, MAX_TOKENS)(to_chat_template(two))
    assert len(split) >= 3
    second, following = split[1], split[2][0]
    assert second[0]["role"] != "system"  # the template writes its default system message
    assert real(model, [*second, following]) == MAX_TOKENS + 1
    assert real(model, [*DEFAULT_SYSTEM, *second]) == real(model, second)


def test_a_counter_alone_checks_without_a_processor() -> None:
    """A QwenTokenCounter alone: the counts are the exact counter's (said so), none is
    recounted."""
    c = counter_of(MODELS[0])
    oracle = qwen_oracle(c)
    assert isinstance(oracle, QwenOracle)
    assert oracle.processor is None
    report = check_splitter(QwenPlantedSplitter(c, MAX_TOKENS), c, MAX_TOKENS, max_examples=5)
    assert report.confirmed == 0
    assert report.max_pixels == CHECKED_AT
    with pytest.raises(SplitterCheckError, match="as the exact calculator counts"):
        check_splitter(QwenPlantedSplitter(c, MAX_TOKENS, "image pads only"), c, MAX_TOKENS,
                       max_examples=5)


def test_the_run_is_kept_out_of_the_baseline() -> None:
    generated.take()
    c = counter_of(MODELS[0])
    check_splitter(QwenPlantedSplitter(c, MAX_TOKENS), c, MAX_TOKENS, max_examples=3)
    notes = generated.take()
    assert notes
    assert f"max_pixels {CHECKED_AT}, max_tokens {MAX_TOKENS}" in str(notes[0])


def test_sft_conversations_and_a_right_sft_splitter() -> None:
    """In SFT mode the strategy ends runs and conversations on answers, and a right turn
    packer passes (its refusals only where a turn cannot fit); one that drops the opening
    system message from later chunks fails."""
    model = MODELS[0]
    c = counter_of(model)
    search = settings(database=None, max_examples=30, derandomize=True,
                      suppress_health_check=list(HealthCheck), deadline=None)
    system_first = find(qst.qwen_boundary_conversations(c, MAX_TOKENS, sft=True),
                        lambda conv: conv[0].role == "system" and len(conv) > 4,
                        settings=search)
    assert system_first[-1].role == "assistant"
    proc = chat_processor(model, "bpe")
    right = qwen_sft_split(c, MAX_TOKENS)
    report = check_splitter(right, proc, MAX_TOKENS, sft=True, max_examples=10,
                            max_pixels=CHECKED_AT)
    assert report.confirmed >= 1

    def forgets_the_system(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        chunks = right(messages)
        return [chunks[0], *[[m for m in chunk if m["role"] != "system"]
                             for chunk in chunks[1:]]]

    with pytest.raises(SplitterCheckError, match="does not start with the leading context"):
        check_splitter(forgets_the_system, proc, MAX_TOKENS, sft=True, max_examples=30,
                       max_pixels=CHECKED_AT)


@pytest.mark.parametrize(("model", "sft"), [(MODELS[0], False), (MODELS[1], True)],
                         ids=["qwen2.5-vl-plain", "qwen3-vl-sft"])
def test_tokenguards_own_split_passes(model: str, sft: bool) -> None:
    """``split`` with a ``QwenTokenCounter`` at the setting checked passes, its refusals
    counted (each a message or turn too large for any chunk)."""
    from pytest_tokenguard.splitting import split

    c = counter_of(model, None)

    def my_split(messages: list[dict[str, Any]], max_pixels: int) -> Any:
        return split(messages, MAX_TOKENS, counter=c.with_settings(max_pixels=max_pixels),
                     sft=sft)

    report = check_splitter(my_split, chat_processor(model, "bpe"), MAX_TOKENS, sft=sft,
                            max_pixels=CHECKED_AT, max_examples=12)
    assert report.max_pixels == CHECKED_AT
    assert report.confirmed >= 1
