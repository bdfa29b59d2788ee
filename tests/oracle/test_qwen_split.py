"""``split`` with a QwenTokenCounter: every chunk's ``tokens`` is the real Qwen processor's
``len(input_ids)`` of the rendered chunk and at most ``max_tokens``; the chunks hold every
message once, in order; greedy packing is the fewest chunks (checked by brute force over
the splits into runs of whole messages); SFT chunks end on an assistant turn.

The processors, the chat template (Qwen2-VL's ChatML one, which writes a default system
message in every chunk that does not start with one) and the stand-in tokenizers are those
of tests/qwen_helpers.py; ``tokenguard split --model`` runs on a saved Qwen checkpoint folder.
"""

from __future__ import annotations

import json
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from pytest_tokenguard import count_conversation, split
from pytest_tokenguard.conversation import FrameRange, FramesItem, Message, to_dicts
from pytest_tokenguard.errors import ConversationError, SplitError
from pytest_tokenguard.families.qwen import QwenRefusal
from pytest_tokenguard.families.qwen_text import QwenTokenCounter
from pytest_tokenguard.splitting import Chunk, validate_chunks
from pytest_tokenguard.testing.profiles import processor_examples
from tests.qwen_helpers import (
    GENERATIONS,
    chat_processor,
    conversations,
    qwen_input_ids,
    text_item,
)

MODELS = list(GENERATIONS.values())
#: small images, so that a few thousand tokens hold several of them
MAX_PIXELS = 50176


def _counter(model: str, tokenizer: str = "bpe") -> QwenTokenCounter:
    return QwenTokenCounter.from_processor(chat_processor(model, tokenizer),
                                           max_pixels=MAX_PIXELS)


def _oracle(model: str, chunk: Chunk, tokenizer: str = "bpe") -> int:
    return len(qwen_input_ids(chat_processor(model, tokenizer), to_dicts(chunk.messages),
                              max_pixels=MAX_PIXELS))


def _fewest(counter: QwenTokenCounter, lead: tuple[Message, ...],
            messages: tuple[Message, ...], max_tokens: int) -> int | None:
    """The fewest chunks of any split into runs of whole messages (brute force over the
    run ends, every run rendered whole), None when some message cannot fit."""
    @cache
    def best(start: int) -> int | None:
        if start == len(messages):
            return 0
        found: int | None = None
        for end in range(start + 1, len(messages) + 1):
            if counter.chunk_tokens((*lead, *messages[start:end])) > max_tokens:
                break  # a longer run is longer still
            rest = best(end)
            if rest is not None and (found is None or rest + 1 < found):
                found = rest + 1
        return found

    return best(0)


LEADING = st.sampled_from([(), ({"role": "system", "content": "Describe every image."},),
                           ({"role": "system", "content": [text_item("Sé breve.")]},)])


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
@settings(max_examples=processor_examples(30), deadline=None)
@given(messages=st.tuples(conversations(videos=True), conversations(videos=False)).map(
           lambda pair: [*pair[0], *(m for m in pair[1] if m["role"] != "system")]),
       share=st.floats(0.25, 1.1), leading=LEADING,
       allow_frame_split=st.sampled_from([True, True, False]), sft=st.booleans())
@example(messages=[{"role": "user", "content": [text_item("a"), *[
    {"type": "image", "width": 640, "height": 480}] * 6]},
    {"role": "assistant", "content": "b"}], share=0.4, leading=(),
    allow_frame_split=True, sft=False)  # cut between images, a default system per chunk
@example(messages=[{"role": "user", "content": [
    {"type": "frames", "start": 0, "end": 12, "width": 320, "height": 240}, text_item("?")]},
    {"role": "assistant", "content": [text_item("ok")]}], share=0.4, leading=(),
    allow_frame_split=True, sft=True)  # an SFT turn cut inside a frames item
def test_chunks_are_exact_and_fit(model: str, messages: list[dict[str, Any]], share: float,
                                  leading: tuple[dict[str, Any], ...], allow_frame_split: bool,
                                  sft: bool) -> None:
    """``max_tokens`` is a ``share`` of the whole conversation's length, so that it splits
    into one to several chunks."""
    counter = _counter(model)
    if sft and messages[-1]["role"] != "assistant":  # mostly answered: SFT splits them
        messages = [*messages, {"role": "assistant", "content": "Done."}]
    parsed = counter.parse(messages)
    lead = counter.parse(leading)
    refusal: SplitError | None = None
    try:
        max_tokens = max(30, int(counter.chunk_tokens((*lead, *parsed)) * share))
    except QwenRefusal:
        event("an image or video the processor refuses")
        return
    try:
        chunks = split(messages, max_tokens, counter=counter, leading=leading,
                       allow_frame_split=allow_frame_split, sft=sft)
    except SplitError as exc:
        refusal = exc
    except QwenRefusal:  # an image or video the processor refuses (proven in the counter's tests)
        event("an image or video the processor refuses")
        return
    if refusal is not None:
        event("refused: " + ("sft" if sft else "plain"))
        if refusal.index is not None and refusal.tokens is not None and not sft:
            # plain mode refuses a message only when it cannot fit a chunk alone
            alone = counter.chunk_tokens((*lead, parsed[refusal.index]))
            assert refusal.tokens == alone > max_tokens
        return
    for chunk in chunks:
        assert chunk.tokens <= max_tokens
        assert chunk.tokens == _oracle(model, chunk), chunk.index
    event(f"{len(chunks)} chunks" if len(chunks) < 3 else "3+ chunks")
    if sft:
        event("sft split")
        assert all(chunk.messages[-1].role == "assistant" for chunk in chunks)
        return
    validate_chunks(chunks, parsed, lead)
    if all(len(set(c.sources)) == len(c.sources) for c in chunks) and len(
            {s for c in chunks for s in c.sources}) == sum(len(c.sources) for c in chunks):
        # no message was cut: greedy is the fewest chunks of any split into whole messages
        event("fewest checked by brute force")
        assert len(chunks) == _fewest(counter, lead, parsed, max_tokens)


def test_a_chunk_is_filled_to_the_token() -> None:
    """A frames item cut to fill each chunk: each chunk's count is the processor's, and the
    next frame would not have fitted (the cut is the longest that fits)."""
    model = "Qwen/Qwen2.5-VL-7B-Instruct"
    counter = _counter(model, "char")
    messages = [{"role": "user", "content": [
        text_item("Frames:"), {"type": "frames", "start": 0, "end": 40, "width": 200,
                               "height": 150}]}]
    chunks = split(messages, 600, counter=counter, allow_frame_split=True)
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.tokens == _oracle(model, chunk, "char") <= 600
    head = chunks[0].messages[-1]
    frames = head.content[-1]
    assert isinstance(frames, FramesItem)
    longer = FramesItem(FrameRange(frames.frames.start, frames.frames.end + 1), frames.width,
                        frames.height)
    assert counter.chunk_tokens((Message("user", (*head.content[:-1], longer)),)) > 600


def test_every_chunk_gets_its_default_system_message() -> None:
    """The ChatML template writes "You are a helpful assistant." in every chunk whose first
    message is not a system one: each chunk pays it, and its count says so."""
    model = "Qwen/Qwen2-VL-2B-Instruct"
    counter = _counter(model)
    messages = [{"role": "user", "content": [text_item(f"question {i}")]} for i in range(6)]
    two = counter.chunk_tokens(counter.parse(messages[:2]))
    chunks = split(messages, two, counter=counter)
    assert [len(c.sources) for c in chunks] == [2, 2, 2]
    for chunk in chunks:
        assert chunk.tokens == _oracle(model, chunk) == two
        assert "You are a helpful assistant." in counter.render(chunk.messages)


def test_count_conversation_takes_a_qwen_counter() -> None:
    model = "Qwen/Qwen3-VL-8B-Instruct"
    counter = _counter(model)
    messages = [{"role": "user", "content": [
        {"type": "image", "width": 800, "height": 600},
        {"type": "video", "total_frames": 20, "fps": 10.0, "width": 64, "height": 64},
        text_item("What happens?")]}]
    length = count_conversation(messages, counter, add_generation_prompt=True)
    assert length.total == len(qwen_input_ids(chat_processor(model, "bpe"), messages,
                                              add_generation_prompt=True,
                                              max_pixels=MAX_PIXELS))
    own = counter.conversation(messages, add_generation_prompt=True)
    assert (length.images, length.videos, length.image_block_tokens) == (
        1, 1, own.image_block_tokens + own.video_block_tokens)


# ------------------------------------------------------------------ refusals


def test_a_video_is_never_cut() -> None:
    counter = _counter("Qwen/Qwen2.5-VL-7B-Instruct")
    video = {"type": "video", "total_frames": 40, "fps": 10.0, "width": 112, "height": 112}
    messages = [{"role": "user", "content": [text_item("a"), video]}]
    with pytest.raises(SplitError, match=r"^message 0 \(user, 2 items, 0 images, 1 video\) is "
                                         r"\d+ tokens as a chunk of its own.*a video is never "
                                         r"cut: lower its num_frames"):
        split(messages, 200, counter=counter, allow_frame_split=True)


def test_refusals_name_the_fix() -> None:
    counter = _counter("Qwen/Qwen2-VL-2B-Instruct")
    images = [{"type": "image", "width": 640, "height": 480}] * 4
    messages = [{"role": "user", "content": images}]
    with pytest.raises(SplitError, match=r"allow_frame_split=True lets it be cut between "
                                         r"frames or images"):
        split(messages, 200, counter=counter)
    with pytest.raises(SplitError, match=r"longest_edge is SmolVLM2's resolution"):
        split(messages, 200, counter=counter, longest_edge=384)
    with pytest.raises(SplitError, match=r"^the leading context alone is \d+ tokens"):
        split(messages, 30, counter=counter,
              leading=[{"role": "system", "content": "x " * 40}])
    with pytest.raises(SplitError, match=r"message 0 \(user\) has no assistant answer"):
        split(messages, 2000, counter=counter, sft=True)


def test_a_frame_range_that_is_a_timestamp_is_refused_at_once() -> None:
    counter = _counter("Qwen/Qwen2-VL-2B-Instruct")
    messages = [{"role": "user", "content": [
        {"type": "frames", "start": 0, "end": 10**7, "width": 64, "height": 64}]}]
    with pytest.raises(ConversationError, match=r"holds 10000000 images.*frames 'end' is "
                                                r"exclusive"):
        split(messages, 4096, counter=counter, allow_frame_split=True)  # before any render


# ------------------------------------------------------------------ the command


def _folder(tmp_path: Path, model: str) -> Path:
    folder = tmp_path / "checkpoint"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chat_processor(model, "bpe").save_pretrained(folder)
    generation = {"Qwen/Qwen2.5-VL-7B-Instruct": "qwen2_5_vl",
                  "Qwen/Qwen3-VL-8B-Instruct": "qwen3_vl"}[model]
    (folder / "config.json").write_text(json.dumps({"model_type": generation}))
    return folder


def _main(*argv: str) -> int:
    from pytest_tokenguard.cli import main

    return main(list(argv))


@pytest.mark.parametrize("model", ["Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen3-VL-8B-Instruct"])
def test_split_command_on_a_qwen_folder(tmp_path: Path, model: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path, model)
    conversation = [{"role": "user", "content": [text_item("Look"), *[
        {"type": "image", "width": 640, "height": 480}] * 6]},
        {"role": "assistant", "content": "Cats."}]
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "a", "messages": conversation}) + "\n"
                      + json.dumps({"id": "b", "messages": [{"role": "user", "content": [
                          {"type": "image", "width": 500, "height": 2}]}]}) + "\n")
    out = tmp_path / "out.jsonl"
    status = _main("split", str(source), "--max-tokens", "200", "--model", str(folder),
                   "--allow-frame-split", "--max-pixels", str(MAX_PIXELS), "-o", str(out))
    err = capsys.readouterr().err
    assert status == 1, err  # line b's image is refused by the processor
    assert "line 2 (id 'b'): message 0, item 0: the Qwen processor refuses this image" in err
    assert f"max_pixels {MAX_PIXELS}; {folder}" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) > 1
    for row in rows:
        real = len(qwen_input_ids(chat_processor(model, "bpe"), row["messages"],
                                  max_pixels=MAX_PIXELS))
        assert row["tokens"] == real <= 200


def test_split_command_refuses_a_hub_id_without_its_tokenizer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    assert _main("split", str(source), "--max-tokens", "100", "--model",
                 "Qwen/Qwen2.5-VL-7B-Instruct") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokenguard split: error: Qwen/Qwen2.5-VL-7B-Instruct: text cannot be "
                          "counted exactly")
    assert "hf download Qwen/Qwen2.5-VL-7B-Instruct tokenizer.json" in err
    assert len(err.splitlines()) == 1


def test_split_command_option_mistakes_are_usage_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path, "Qwen/Qwen2.5-VL-7B-Instruct")
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    assert _main("split", str(source), "--max-tokens", "100", "--model", str(folder),
                 "--longest-edge", "384") == 2
    assert "--longest-edge is SmolVLM2's resolution" in capsys.readouterr().err
    assert _main("split", str(source), "--max-tokens", "100", "--max-pixels", "50176") == 2
    assert "--max-pixels is a Qwen-VL setting" in capsys.readouterr().err
