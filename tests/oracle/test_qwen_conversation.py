"""QwenTokenCounter equals the real Qwen processors on whole conversations.

The oracle (tests/qwen_helpers.py, :func:`qwen_input_ids`) is ``len(input_ids)`` of the real
transformers ``Qwen2VLProcessor`` / ``Qwen2_5_VLProcessor`` / ``Qwen3VLProcessor`` (image and
video processors built from the published settings) on ``apply_chat_template(messages,
tokenize=False)`` with the images, the videos (decoded blank frames and their metadata)
and the call's ``min_pixels``/``max_pixels``. The chat template is the Qwen2-VL ChatML one
(``CHATML_TEMPLATE``, where it was copied from is written there; Qwen3-VL gets the same
one). Two stand-in tokenizers: one token a character, and a real byte-level BPE (SmolVLM2's
with Qwen's special tokens) whose merges cross the pieces the processor joins. What the
processor refuses, the counter refuses.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pytest_tokenguard.errors import (
    ConversationError,
    InputError,
    SpecError,
    TemplateError,
    TokenizerUnavailable,
)
from pytest_tokenguard.families.qwen import IMAGE_PAD, VIDEO_PAD, QwenRefusal
from pytest_tokenguard.families.qwen_text import QwenTokenCounter
from pytest_tokenguard.testing.profiles import processor_examples
from tests.qwen_helpers import (
    GENERATIONS,
    PIXELS,
    chat_processor,
    conversations,
    qwen_input_ids,
    qwen_videos,
    text_item,
)

MODELS = list(GENERATIONS.values())
VIDEO_MODELS = ["Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen3-VL-8B-Instruct"]

def _both(counter: QwenTokenCounter, proc: Any, messages: list[dict[str, Any]],
          add_generation_prompt: bool, low: int | None, high: int | None) -> None:
    """The counter's total equals the processor's ``len(input_ids)``, or both refuse."""
    try:
        ours: int | None = counter.conversation(
            messages, add_generation_prompt=add_generation_prompt).total
        refusal = None
    except QwenRefusal as exc:
        ours, refusal = None, str(exc)
    try:
        theirs: int | None = len(qwen_input_ids(
            proc, messages, add_generation_prompt=add_generation_prompt, min_pixels=low,
            max_pixels=high))
        error = None
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        theirs, error = None, f"{type(exc).__name__}: {exc}"
    if error is not None:
        assert refusal is not None, f"the processor refused ({error}); the counter said {ours}"
        return
    assert refusal is None, f"refused what the processor takes: {refusal}"
    assert ours == theirs


@pytest.mark.slow
@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
@pytest.mark.parametrize("model", MODELS)
@settings(max_examples=processor_examples(25), deadline=None)
@given(messages=conversations(videos=False), generation=st.booleans(), pixels=PIXELS)
@example(messages=[{"role": "user", "content": [{"type": "image", "width": 4032,
                                                   "height": 3024}, text_item("What is this?")]}],
         generation=True, pixels=(None, None))  # a phone photo at the processor's defaults
@example(messages=[{"role": "user", "content": "Hi"}], generation=False, pixels=(None, None))
@example(messages=[{"role": "system", "content": [text_item("S")]},
                   {"role": "user", "content": [{"type": "image", "width": 201, "height": 1}]}],
         generation=False, pixels=(None, None))  # aspect ratio over 200: both refuse
def test_conversations_equal_the_processor(model: str, tokenizer: str,
                                           messages: list[dict[str, Any]], generation: bool,
                                           pixels: tuple[int | None, int | None]) -> None:
    proc = chat_processor(model, tokenizer)
    low, high = pixels
    counter = QwenTokenCounter.from_processor(proc, min_pixels=low, max_pixels=high)
    _both(counter, proc, messages, generation, low, high)


@pytest.mark.slow
@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
@pytest.mark.parametrize("model", VIDEO_MODELS)
@settings(max_examples=processor_examples(25), deadline=None)
@given(messages=conversations(videos=True), generation=st.booleans(), pixels=PIXELS,
       video=qwen_videos())
@example(messages=[{"role": "user", "content": [text_item("Look:\n")]}], generation=True,
         pixels=(None, None), video={"type": "video", "total_frames": 30, "fps": 10.0,
                                     "width": 64, "height": 48})
@example(messages=[{"role": "user", "content": [text_item("x")]}], generation=False,
         pixels=(None, None), video={"type": "video", "total_frames": 1, "fps": 10.0,
                                     "width": 64, "height": 48})  # one frame: Qwen3-VL refuses
def test_conversations_with_a_video_equal_the_processor(
    model: str, tokenizer: str, messages: list[dict[str, Any]], generation: bool,
    pixels: tuple[int | None, int | None], video: dict[str, Any],
) -> None:
    """A video in the first user message (or the one the strategy put elsewhere): on
    Qwen3-VL its ``<t seconds>`` text is tokenized in place with the text around it."""
    proc = chat_processor(model, tokenizer)
    if not any(isinstance(m["content"], list) and any(i["type"] == "video" for i in m["content"])
               for m in messages):
        first = next((m for m in messages if m["role"] == "user"
                      and isinstance(m["content"], list)), None)
        if first is None:
            messages = [*messages, {"role": "user", "content": [video]}]
        else:
            first["content"].insert(0, video)
    low, high = pixels
    counter = QwenTokenCounter.from_processor(proc, min_pixels=low, max_pixels=high)
    _both(counter, proc, messages, generation, low, high)


# ------------------------------------------------------------------ settings and caches


def test_with_settings_is_a_new_counter_with_its_own_prices() -> None:
    """A counter at other settings prices images at those settings, not from the first
    counter's cache (the SmolVLM counter's past bug), and the first one is unchanged."""
    proc = chat_processor("Qwen/Qwen2.5-VL-7B-Instruct", "bpe")
    messages = [{"role": "user", "content": [{"type": "image", "width": 1024, "height": 768}]}]
    counter = QwenTokenCounter.from_processor(proc)
    before = counter.conversation(messages).total
    smaller = counter.with_settings(max_pixels=50176)
    assert smaller.conversation(messages).total == len(
        qwen_input_ids(proc, messages, max_pixels=50176))
    assert smaller.conversation(messages).total < before
    assert counter.conversation(messages).total == before == len(qwen_input_ids(proc, messages))
    assert (smaller.min_pixels, smaller.max_pixels) == (3136, 50176)
    assert smaller.with_settings(min_pixels=4096).max_pixels == 50176  # None keeps


def test_breakdown_adds_up_and_names_the_blocks() -> None:
    proc = chat_processor("Qwen/Qwen3-VL-8B-Instruct", "bpe")
    counter = QwenTokenCounter.from_processor(proc)
    messages = [{"role": "user", "content": [
        {"type": "image", "width": 640, "height": 480},
        {"type": "video", "total_frames": 20, "fps": 10.0, "width": 64, "height": 64},
        text_item("Both?")]}]
    count = counter.conversation(messages)
    assert count.total == len(qwen_input_ids(proc, messages))
    image = counter.image(640, 480)
    video = count.videos[0]
    assert count.image_tokens == image.image_tokens
    assert count.image_block_tokens == image.block_tokens
    assert count.video_tokens == video.video_tokens
    # a vision pair per temporal patch; transformers 5.24 and older also keep the
    # template's own pair around them (outer_wrapper)
    assert count.video_block_tokens == (video.video_tokens + 2 * video.grid_t
                                        + (2 if video.outer_wrapper else 0))
    assert count.text_tokens == (count.total - count.image_block_tokens
                                 - count.video_block_tokens)
    assert str(count).startswith(f"{count.total} tokens = ")


def test_text_is_the_tokenizers_count() -> None:
    proc = chat_processor("Qwen/Qwen2-VL-2B-Instruct", "bpe")
    counter = QwenTokenCounter.from_processor(proc)
    for text in ["", "hello world", "你好", "<|im_end|>a"]:
        assert counter.text(text) == len(proc.tokenizer(text, add_special_tokens=False)
                                         ["input_ids"])


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize("pad", [IMAGE_PAD, VIDEO_PAD])
def test_placeholder_in_text_is_refused_as_the_processor_refuses_it(pad: str) -> None:
    proc = chat_processor("Qwen/Qwen2.5-VL-7B-Instruct")
    counter = QwenTokenCounter.from_processor(proc)
    messages = [{"role": "user", "content": [text_item(f"see {pad} here")]}]
    with pytest.raises((ValueError, IndexError, TypeError)):
        qwen_input_ids(proc, messages)  # the processor raises: no image or video goes with it
    with pytest.raises(ConversationError, match=r"^message 0, item 0: the text contains "):
        counter.conversation(messages)


def test_video_without_a_frame_size_is_refused_by_name() -> None:
    counter = QwenTokenCounter.from_processor(chat_processor("Qwen/Qwen2.5-VL-7B-Instruct"))
    messages = [{"role": "user", "content": [
        text_item("x"), {"type": "video", "total_frames": 10, "fps": 5.0}]}]
    with pytest.raises(ConversationError, match=r"^message 0, item 1: video.*frame size.*"
                                                r"give 'width' and 'height'"):
        counter.conversation(messages)


def test_videos_sampled_differently_are_refused() -> None:
    """One processor call samples every video alike: two items that say otherwise cannot be
    one call, so they are refused, naming the second."""
    counter = QwenTokenCounter.from_processor(chat_processor("Qwen/Qwen3-VL-8B-Instruct"))
    video = {"type": "video", "total_frames": 10, "fps": 5.0, "width": 32, "height": 32}
    messages = [{"role": "user", "content": [video, {**video, "num_frames": 4}]}]
    with pytest.raises(ConversationError, match=r"^message 0, item 1: this video is sampled "
                                                r"with num_frames=4"):
        counter.conversation(messages)


def test_refused_image_names_the_item() -> None:
    counter = QwenTokenCounter.from_processor(chat_processor("Qwen/Qwen2-VL-2B-Instruct"))
    messages = [{"role": "user", "content": [text_item("x"), {"type": "image", "width": 500,
                                                          "height": 2}]}]
    with pytest.raises(QwenRefusal, match=r"^message 0, item 1: the Qwen processor refuses this "
                                          r"image: absolute aspect ratio must be smaller than "
                                          r"200, got 250"):
        counter.conversation(messages)


def test_empty_conversation_and_bad_settings_are_refused() -> None:
    proc = chat_processor("Qwen/Qwen2-VL-2B-Instruct")
    counter = QwenTokenCounter.from_processor(proc)
    with pytest.raises(ConversationError, match="no messages"):
        counter.conversation([])
    with pytest.raises(ConversationError, match="list of messages"):
        counter.conversation({"messages": []})  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"max_pixels must be a positive number of pixels, got 0"):
        QwenTokenCounter.from_processor(proc, max_pixels=0)


def test_template_that_drops_a_placeholder_is_refused() -> None:
    proc = chat_processor("Qwen/Qwen2-VL-2B-Instruct")
    counter = QwenTokenCounter(proc.tokenizer, "{% for m in messages %}x{% endfor %}",
                               QwenTokenCounter.from_processor(proc).spec)
    messages = [{"role": "user", "content": [{"type": "image", "width": 64, "height": 64}]}]
    with pytest.raises(TemplateError, match=r"writes 0 <\|image_pad\|> for 1 images"):
        counter.conversation(messages)


def test_a_smolvlm_processor_is_not_a_qwen_one() -> None:
    from pytest_tokenguard.processor.embedded import build_embedded_processor

    processor = build_embedded_processor("HuggingFaceTB/SmolVLM2-2.2B-Instruct")
    with pytest.raises(SpecError, match="is not a Qwen-VL processor"):
        QwenTokenCounter.from_processor(processor)


# ------------------------------------------------------------------ from_model


def test_from_model_reads_a_checkpoint_folder(tmp_path: Any) -> None:
    """A saved Qwen2.5-VL processor folder (tokenizer, chat template, preprocessor config)
    plus its config.json is found through the family registry and counts as the
    processor loaded from it does."""
    import json

    from transformers import AutoProcessor

    proc = chat_processor("Qwen/Qwen2.5-VL-7B-Instruct", "bpe")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proc.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    counter = QwenTokenCounter.from_model(tmp_path, max_pixels=230400)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = AutoProcessor.from_pretrained(tmp_path)
    messages = [{"role": "user", "content": [
        {"type": "image", "width": 4032, "height": 3024}, text_item("Describe it.")]}]
    assert counter.conversation(messages, add_generation_prompt=True).total == len(
        qwen_input_ids(loaded, messages, add_generation_prompt=True, max_pixels=230400))
    assert counter.model == str(tmp_path)


def test_from_model_without_a_tokenizer_is_refused_by_name(tmp_path: Any,
                                                           monkeypatch: Any) -> None:
    """A known hub id with nothing on this machine: TokenizerUnavailable naming the model
    and the download; text is never guessed."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TokenizerUnavailable, match=r"^Qwen/Qwen2.5-VL-7B-Instruct: text cannot "
                                                   r"be counted exactly.*hf download"):
        QwenTokenCounter.from_model("Qwen/Qwen2.5-VL-7B-Instruct")
    with pytest.raises(SpecError, match="not a Qwen-VL"):
        QwenTokenCounter.from_model(str(tmp_path))  # an empty folder
    with pytest.raises(SpecError, match="is a smolvlm model"):
        QwenTokenCounter.from_model("HuggingFaceTB/SmolVLM2-2.2B-Instruct")
    assert issubclass(QwenRefusal, InputError)


def test_from_model_reads_the_hub_cache(tmp_path: Any, monkeypatch: Any) -> None:
    """A hub id whose snapshot is in the hub cache counts with that snapshot's tokenizer
    and template (offline), named by the hub id."""
    import json

    model = "Qwen/Qwen3-VL-8B-Instruct"
    snapshot = (tmp_path / "hub" / "models--Qwen--Qwen3-VL-8B-Instruct" / "snapshots"
                / "0123abc")
    proc = chat_processor(model, "bpe")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proc.save_pretrained(snapshot)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    counter = QwenTokenCounter.from_model(model)
    messages = [{"role": "user", "content": [
        {"type": "video", "total_frames": 24, "fps": 8.0, "width": 96, "height": 64},
        text_item("What happens?")]}]
    assert counter.conversation(messages).total == len(qwen_input_ids(proc, messages))
    assert counter.model == model
    assert counter.spec.generation == "qwen3_vl"


def test_smolvlm_placeholders_are_plain_text_to_qwen() -> None:
    """``<image>`` and ``<video>`` in text (LLaVA-style data) are text to the Qwen
    processor, so they are counted, not refused as SmolVLM2's placeholders are."""
    proc = chat_processor("Qwen/Qwen2.5-VL-7B-Instruct", "bpe")
    counter = QwenTokenCounter.from_processor(proc)
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [text_item("<image>\nWhat is it?"),
                                     {"type": "image", "width": 64, "height": 64}]},
        {"role": "assistant", "content": "A <video> still."}]
    assert counter.conversation(messages).total == len(qwen_input_ids(proc, messages))
