"""check_splitter passes a correct splitter, catches broken ones with evidence, lets a
splitter refuse what cannot be split, and checks frame-split and SFT output."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_tokenguard.conversation import parse_conversation, to_chat_template, to_dicts
from pytest_tokenguard.sequence import count_conversation, processor_count
from pytest_tokenguard.splitting import SplitError, split
from pytest_tokenguard.testing import generated
from pytest_tokenguard.testing import strategies as tgst
from pytest_tokenguard.testing.splitcheck import (
    SplitterChecker,
    SplitterCheckError,
    check_chunks,
    check_splitter,
)
from tests.helpers import MISTAKES, RESOLUTIONS, counter, loaded, planted

SMALL = tgst.conversation_dicts(
    max_turns=8, max_images_per_turn=2, max_frames_per_run=4, max_text=40, unicode=False,
    sizes=tgst.image_sizes(max_side=800),
)


def test_this_splitter_passes() -> None:
    c = counter("2.2B", 384)
    report = check_splitter(lambda messages: split(messages, 600, counter=c), c, 600,
                            conversations=SMALL, max_examples=5)
    assert report.examples >= 5
    assert report.confirmed >= 1  # the real processor recounted the fullest chunks


def test_bound_checker_with_leading_context() -> None:
    c = counter("2.2B", 384)
    system = {"role": "system", "content": [{"type": "text", "text": "Be terse."}]}
    check = SplitterChecker(loaded("2.2B", 384))
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
    with pytest.raises(SplitterCheckError) as info:
        check_splitter(lambda m: naive(m, 4096), lp, 4096)
    message = str(info.value)
    found = re.search(r"chunk (\d+) of \d+ is (\d+) tokens as the real processor counts", message)
    assert found, message
    real = int(found.group(2))
    assert real > 4096
    conversation = json.loads(message.split("conversation (shrunk): ", 1)[1].split("\n", 1)[0])
    chunk_line = message.split(f"chunk {found.group(1)}: ", 1)[1].split("\n", 1)[0]
    chunk = conversation if chunk_line == "the whole conversation below" else json.loads(
        chunk_line)
    assert processor_count(lp.processor, chunk) == real  # the number shown is the real one
    # the conversation is the splitter's input: pasted back, it gives the same chunk
    assert naive(conversation, 4096)[int(found.group(1))] == chunk
    assert "the splitter claimed no count" in message
    assert len(message.splitlines()) <= 6


def test_lost_and_reordered_messages_are_caught() -> None:
    lp = loaded("2.2B", 384)
    conversation = [{"role": "user", "content": f"question {i}"} for i in range(4)]
    with pytest.raises(SplitterCheckError, match="message 3 is missing"):
        check_chunks(conversation, [conversation[:2], conversation[2:3]], lp.processor)
    with pytest.raises(SplitterCheckError, match="message 1 differs"):
        check_chunks(conversation, [[conversation[0], conversation[2]], conversation[1:2],
                                    conversation[3:]], lp.processor)
    with pytest.raises(SplitterCheckError, match=r"message 3 differs|followed by extra"):
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


FRAMES_70: list[dict[str, Any]] = [
    {"role": "user", "content": [
        {"type": "text", "text": "Every frame:"},
        {"type": "frames", "start": 100, "end": 170, "width": 640, "height": 360},
        {"type": "text", "text": "What is done?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A suture."}]},
]


@pytest.mark.parametrize("form", ["ranges", "images"])
def test_frame_split_output_is_checked_correctly(form: str) -> None:
    """Issue 14: the valid output of allow_frame_split on a 70-frame item was rejected
    ("message 0 differs"). Parts in consecutive chunks are the message, put back."""
    lp, c = loaded("2.2B", 384), counter("2.2B", 384)
    conversation = (FRAMES_70 if form == "ranges"
                    else to_chat_template(parse_conversation(FRAMES_70)))
    chunks = split(conversation, 4096, counter=c, allow_frame_split=True)
    assert len(chunks) == 2
    assert chunks[0].sources == (0,)
    assert chunks[1].sources == (0, 1)
    counts = check_chunks(conversation, chunks, lp.processor, 4096)
    assert list(counts) == [chunk.tokens for chunk in chunks]
    # the same chunks as dicts (what a user's splitter returns) pass too
    as_dicts = [to_dicts(chunk.messages) if form == "ranges"
                else to_chat_template(chunk.messages) for chunk in chunks]
    if form == "images":  # frame numbers are kept in the dicts: give the parts theirs
        numbered = iter(range(100, 170))
        for chunk in as_dicts:
            for item in chunk[0]["content"]:
                if item["type"] == "image":
                    item["frame"] = next(numbered)
    assert check_chunks(conversation, as_dicts, c, 4096) == counts
    # a part that loses a frame is caught, and the frame named
    part = as_dicts[0][0]["content"]
    if form == "ranges":
        shorter = {**part[-1], "end": part[-1]["end"] - 1}
        lossy_part = [*part[:-1], shorter]
    else:
        lossy_part = part[:-2] + part[-1:]
    lossy = [[{"role": "user", "content": lossy_part}], *as_dicts[1:]]
    with pytest.raises(SplitterCheckError, match=r"message 0 .*at item \d+ the input has "
                                                 r"frame \d+ \(640x360\), the chunks have"):
        check_chunks(conversation, lossy, c, 4096)
    two_parts_in_one_chunk = [[as_dicts[0][0], *as_dicts[1]]]
    with pytest.raises(SplitterCheckError, match="message 0"):
        check_chunks(conversation, two_parts_in_one_chunk, c, 100_000)


def test_refusals_are_counted_not_failures() -> None:
    """Issue 14: at 1536 the strategy builds messages that cannot fit alone; split refuses
    them with SplitError, which used to fail the check."""
    c = counter("2.2B", 1536)
    report = check_splitter(lambda m: split(m, 4096, counter=c), c, 4096)
    assert report.refused > 0
    assert report.refusals == (("SplitError", report.refused),)
    assert report.examples > report.refused
    assert f"{report.refused} refused ({report.refused} SplitError)" in str(report)


def test_refusing_a_splittable_conversation_fails() -> None:
    c = counter("2.2B", 384)

    def lazy(messages: list[dict[str, Any]]) -> list[Any]:
        raise SplitError("too hard")

    with pytest.raises(SplitterCheckError, match="refused a conversation that can be split: "
                                                 "every message fits a chunk alone") as info:
        check_splitter(lazy, c, 4096)
    assert "it raised SplitError: too hard" in str(info.value)
    with pytest.raises(SplitterCheckError, match="the splitter raised SplitError: too hard"):
        check_splitter(lazy, c, 4096, refuses=())


def test_undeclared_exceptions_fail_with_the_input() -> None:
    c = counter("2.2B", 384)

    def broken(messages: list[dict[str, Any]]) -> list[Any]:
        return [m["missing"] for m in messages]

    with pytest.raises(SplitterCheckError) as info:
        check_splitter(broken, c, 4096)
    message = str(info.value)
    assert message.startswith("the splitter raised KeyError: 'missing'")
    assert "test_splitcheck.py:" in message  # where in the user's code
    assert "conversation (shrunk): [" in message


def test_a_claimed_count_lower_than_the_real_one_fails() -> None:
    c = counter("2.2B", 384)
    conversation = FRAMES_70[1:]
    real = count_conversation(conversation, c).total
    with pytest.raises(SplitterCheckError, match=f"claims {real - 1} tokens, fewer than the "
                                                 f"{real} it has"):
        check_chunks(conversation, [{"messages": conversation, "tokens": real - 1}], c)
    assert check_chunks(conversation, [{"messages": conversation, "tokens": real}], c) == (real,)


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_planted_wrong_splitter_is_caught(mistake: str) -> None:
    """Under the CI profile (derandomized, 60 examples) at a realistic limit; how fast is
    recorded by tests/benchmarks/test_bench_split.py."""
    c = counter("2.2B", 384)
    splitter = planted(mistake, c, 4096)
    with pytest.raises(SplitterCheckError):
        check_splitter(splitter, c, 4096, **splitter.check_kwargs)


def test_tokenguard_split_passes_at_every_resolution_with_refusals_reported() -> None:
    """Issue 14, done-when: the exact splitter passes from 384 to 1536, refusing (and
    reporting) the messages that cannot fit alone; the resolution is passed to a splitter
    that takes ``longest_edge``."""
    c = counter("2.2B", 384)
    checker = SplitterChecker(lambda edge: loaded("2.2B", edge))
    seen: set[int] = set()

    def exact(messages: list[dict[str, Any]], longest_edge: int) -> Any:
        seen.add(longest_edge)
        return split(messages, 4096, counter=c, longest_edge=longest_edge)

    reports = checker(exact, 4096, resolutions=RESOLUTIONS)
    assert [r.longest_edge for r in reports] == list(RESOLUTIONS) == sorted(seen)
    assert all(r.fullest <= 4096 and r.confirmed >= 1 for r in reports)
    assert any(r.refused for r in reports)
    with pytest.raises(ValueError, match="holds the processor at longest_edge 384 only"):
        SplitterChecker(c)(exact, resolutions=[512])


@pytest.mark.tokenguard_no_baseline("the conversations are generated, and the test takes the "
                                     "checker's note that would keep them out itself")
def test_the_checker_notes_the_running_test() -> None:
    c = counter("2.2B", 384)
    generated.take()
    check_splitter(lambda m: split(m, 600, counter=c), c, 600, conversations=SMALL,
                   max_examples=3)
    notes = generated.take()
    assert [n.source for n in notes] == ["check_splitter", "check_splitter"]
    assert "longest_edge 384" in str(notes[-1])
    assert "3 examples" in str(notes[-1])
    assert generated.exclusion_reason([], False, notes) is not None


# ------------------------------------------------------------------ SFT


SFT_DIALOGUE: list[dict[str, Any]] = [
    {"role": "system", "content": [{"type": "text", "text": "You narrate surgery."}]},
    {"role": "user", "content": [{"type": "frames", "start": 0, "end": 30, "width": 640,
                                  "height": 360}, {"type": "text", "text": "What happens?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "An incision."}]},
    {"role": "user", "content": [{"type": "text", "text": "And then?"}]},
    {"role": "user", "content": [{"type": "frames", "start": 30, "end": 50, "width": 640,
                                  "height": 360}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A suture."}]},
]


def test_sft_rules_are_checked() -> None:
    c = counter("2.2B", 384)
    chunks = split(SFT_DIALOGUE, 4096, counter=c, sft=True)
    assert [chunk.sources for chunk in chunks] == [(1, 2), (3, 4, 5)]
    assert check_chunks(SFT_DIALOGUE, chunks, c, 4096, sft=True) == tuple(
        chunk.tokens for chunk in chunks)
    system, turns = SFT_DIALOGUE[:1], SFT_DIALOGUE[1:]
    with pytest.raises(SplitterCheckError, match="chunk 0 ends on a user turn"):
        check_chunks(SFT_DIALOGUE, [system + turns[:3], system + turns[3:]], c, sft=True)
    with pytest.raises(SplitterCheckError, match="chunk 1 does not start with the leading "
                                                 "context"):
        check_chunks(SFT_DIALOGUE, [system + turns[:2], turns[2:]], c, sft=True)
    # the plain rules accept what SFT rejects
    check_chunks(SFT_DIALOGUE, [SFT_DIALOGUE[:4], SFT_DIALOGUE[4:]], c)


def test_sft_parts_keep_the_text_and_the_answer() -> None:
    lp, c = loaded("2.2B", 384), counter("2.2B", 384)
    chunks = split(FRAMES_70, 4096, counter=c, sft=True, allow_frame_split=True)
    assert len(chunks) == 2
    for chunk in chunks:
        user, answer = chunk.body
        assert user.content[0] == parse_conversation(FRAMES_70)[0].content[0]  # "Every frame:"
        assert user.content[-1] == parse_conversation(FRAMES_70)[0].content[-1]
        assert answer == parse_conversation(FRAMES_70)[1]
        assert processor_count(lp.processor, chunk.messages) == chunk.tokens <= 4096
    check_chunks(FRAMES_70, chunks, c, 4096, sft=True)
    # a part without the question is not an SFT example
    bare = [to_dicts(chunk.messages) for chunk in chunks]
    del bare[1][0]["content"][-1]
    with pytest.raises(SplitterCheckError, match="does not keep the message's text"):
        check_chunks(FRAMES_70, bare, c, 4096, sft=True)


def test_sft_checker_passes_split_and_catches_a_plain_splitter() -> None:
    c = counter("2.2B", 384)
    report = check_splitter(lambda m: split(m, 4096, counter=c, sft=True,
                                            allow_frame_split=True), c, 4096, sft=True)
    assert report.chunks > report.examples
    with pytest.raises(SplitterCheckError, match="not an SFT split"):
        check_splitter(lambda m: split(m, 4096, counter=c, allow_frame_split=True), c, 4096,
                       sft=True)


# ------------------------------------------------------------------ the boundary strategy


@pytest.mark.parametrize(("checkpoint", "edge"), [("2.2B", 384), ("2.2B", 1536),
                                                  ("256M", 512)])
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=30)
@given(data=st.data())
def test_boundary_conversations_land_on_the_limit(checkpoint: str, edge: int,
                                                  data: st.DataObject) -> None:
    """A run of messages (from the start, or from where the exact greedy splitter starts a
    chunk) is exactly ``max_tokens + delta`` long, for a drawn delta."""
    c = counter(checkpoint, edge)
    max_tokens = data.draw(st.sampled_from([4096, 2048, 8192]))
    deltas = data.draw(st.sampled_from([(1,), (2,), (0,), (-1,), (3,)]))
    conversation = data.draw(tgst.boundary_conversations(c, max_tokens, deltas=deltas,
                                                         oversized=False))
    lengths = [count_conversation(conversation[:k], c).total
               for k in range(1, len(conversation) + 1)]
    assert max_tokens + deltas[0] in lengths


def test_boundary_strategy_is_usable_inside_given_with_a_shared_counter() -> None:
    """The form for a user's own @given test: the counter is a module/session object, the
    conversation is drawn with st.data(), and check_chunks prices it without the processor."""
    c = counter("2.2B", 384)

    @settings(max_examples=20, database=None)
    @given(data=st.data())
    def user_test(data: st.DataObject) -> None:
        conversation = data.draw(tgst.boundary_conversation_dicts(c, 4096))
        try:
            chunks = split(conversation, 4096, counter=c)
        except SplitError:
            return
        check_chunks(conversation, chunks, c, 4096)

    user_test()


def test_boundary_examples_put_each_of_the_first_chunks_one_token_over() -> None:
    """The explicit examples the checker tries first: with 1, 2 and 3 chunks, each chunk of
    the exact greedy split plus the next message is exactly max_tokens + 1; the fourth has
    a message too large for any chunk."""
    c = counter("2.2B", 384)
    examples = tgst.boundary_examples(c, 4096)
    assert len(examples) == 4
    for runs, conversation in enumerate(examples[:3], start=1):
        chunks = split(conversation, 4096, counter=c)
        assert len(chunks) >= runs
        for chunk in chunks[:runs]:
            after = conversation[chunk.sources[-1] + 1]
            assert count_conversation((*chunk.messages, after), c).total == 4097
    with pytest.raises(SplitError, match="allow_frame_split"):
        split(examples[3], 4096, counter=c)
