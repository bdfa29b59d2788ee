"""The sequence-length calculator is exact: it equals the real processor's count.

Two oracles: the real processor (``processor(text=rendered, images=...)``, pixels and
all) at every checkpoint and resolution, and, for many more examples at low cost,
``TokenCounter.conversation`` (the processor's own chat template, then the tokenizer).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from pytest_tokenguard.conversation import (
    Conversation,
    ConversationError,
    Message,
    TextItem,
    to_chat_template,
)
from pytest_tokenguard.counting import count_image
from pytest_tokenguard.processor.chat import render_chat
from pytest_tokenguard.processor.embedded import CHAT_TEMPLATE
from pytest_tokenguard.sequence import (
    TemplateError,
    count_conversation,
    is_known_template,
    processor_input_ids,
    render,
)
from pytest_tokenguard.specs import IMAGE_TOKEN
from pytest_tokenguard.splitting import split
from pytest_tokenguard.testing import strategies as tgst
from pytest_tokenguard.testing.profiles import processor_examples
from pytest_tokenguard.tokens import PretokenCounter, TokenCounter, fast_text_counter
from tests.helpers import (
    CHECKPOINTS,
    GRID,
    checkpoint_folder,
    counter,
    folder_processor,
    light_counter,
    loaded,
)


def with_string_content(
    conversations: SearchStrategy[Conversation],
) -> SearchStrategy[Conversation]:
    """Some one-text messages given as ``"content": "text"``, which the template drops."""

    def plain(conversation: Conversation) -> SearchStrategy[Conversation]:
        def apply(flags: tuple[bool, ...]) -> Conversation:
            return tuple(
                Message(m.role, m.content, string_content=True)
                if flag and len(m.content) == 1 and type(m.content[0]) is TextItem
                and m.content[0].text else m
                for m, flag in zip(conversation, flags, strict=True)
            )

        return st.tuples(*[st.booleans() for _ in conversation]).map(apply)

    return conversations.flatmap(plain)


#: small conversations: the processor decodes every image of every example
SMALL = with_string_content(tgst.conversations(
    max_turns=4, max_images_per_turn=2, max_frames_per_run=3, max_text=60,
    sizes=tgst.image_sizes(max_side=1600),
))
#: no processor call: as large as a real sample gets
LARGE = with_string_content(tgst.conversations(
    max_turns=12, max_images_per_turn=3, max_frames_per_run=8,
    sizes=tgst.image_sizes(max_side=4096),
))


@pytest.mark.slow
@pytest.mark.parametrize(("checkpoint", "edge"), GRID)
@settings(max_examples=processor_examples())
@given(conversation=SMALL, generation=st.booleans())
def test_calculator_equals_real_processor(
    checkpoint: str, edge: int, conversation: Conversation, generation: bool
) -> None:
    lp = loaded(checkpoint, edge)
    count = count_conversation(conversation, counter(checkpoint, edge),
                               add_generation_prompt=generation)
    ids = processor_input_ids(lp.processor, conversation, add_generation_prompt=generation)
    assert count.total == len(ids)
    image_id = lp.processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert count.image_tokens == ids.count(image_id)


@pytest.mark.parametrize(("checkpoint", "edge"), GRID)
@given(conversation=LARGE, generation=st.booleans())
def test_calculator_equals_template_and_tokenizer(
    checkpoint: str, edge: int, conversation: Conversation, generation: bool
) -> None:
    c = counter(checkpoint, edge)
    reference = c.conversation(to_chat_template(conversation), add_generation_prompt=generation)
    count = count_conversation(conversation, c, add_generation_prompt=generation)
    assert count.total == reference.total
    assert count.image_block_tokens == reference.block_tokens
    assert count.template_tokens + count.text_tokens + count.image_block_tokens == count.total
    assert count.images == len(reference.images)


@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
@given(conversation=LARGE, generation=st.booleans())
def test_render_is_the_chat_template(
    checkpoint: str, conversation: Conversation, generation: bool
) -> None:
    processor = loaded(checkpoint, 384).processor
    expected = render_chat(processor, to_chat_template(conversation),
                           add_generation_prompt=generation)
    assert render(conversation, generation) == expected


@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
@given(text=tgst.texts(max_size=300) | tgst.texts(max_size=300, unicode=False))
@example(text="\n\n12 345\u00a0x\u2028y  \t z's they'll <row_1_col_1>")
@example(text="  \n\n\n1\n\n")
def test_fast_text_count_is_the_tokenizer(checkpoint: str, text: str) -> None:
    c = counter(checkpoint, 384)
    fast = fast_text_counter(c)
    assert isinstance(fast, PretokenCounter), "fast path not taken for the SmolVLM2 tokenizer"
    assert fast(text) == c.text(text)


def test_breakdown_of_a_known_conversation() -> None:
    c = counter("2.2B", 384)
    conversation: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "image", "width": 640, "height": 480},
                                     {"type": "text", "text": "What is this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
    ]
    count = count_conversation(conversation, c)
    block = count_image(640, 480, 384, c.spec).block_tokens
    assert count.image_block_tokens == block
    assert count.images == 1
    # template: <|im_start|>, and per message "\n", "Role:", <end_of_utterance>
    header = c.text("User:") + c.text("Assistant:")
    assert count.template_tokens == c.text("<|im_start|>") + 2 * c.text("\n") + header + 2
    assert count.text_tokens == count.total - count.template_tokens - block
    assert count.messages[0] + count.messages[1] + 1 == count.total
    assert "template" in str(count)
    assert count.total == len(processor_input_ids(loaded("2.2B", 384).processor, conversation))


# ------------------------------------------------------------------ plain-string content


def test_string_content_counts_as_the_template_renders_it() -> None:
    """The template drops a plain string: 17 tokens, where the calculator and split said 38
    and TokenCounter.conversation said 17 (issue 12, item 3)."""
    c = counter("2.2B", 384)
    processor = loaded("2.2B", 384).processor
    conversation: list[dict[str, Any]] = [{"role": "user", "content": "Hello there"},
                    {"role": "assistant", "content": [{"type": "text", "text": "General!"}]}]
    rendered = processor.apply_chat_template(conversation, tokenize=False)
    assert "Hello there" not in rendered
    real = len(processor(text=[rendered])["input_ids"][0])
    assert count_conversation(conversation, c).total == real
    assert c.conversation(conversation).total == real
    assert count_conversation(conversation, light_counter("2.2B", 384)).total == real
    assert len(processor_input_ids(processor, conversation)) == real
    assert split(conversation, 4096, counter=c)[0].tokens == real


def test_empty_conversation_is_refused_by_both_apis() -> None:
    c = counter("2.2B", 384)
    with pytest.raises(IndexError):  # what the processor does
        loaded("2.2B", 384).processor.apply_chat_template([], tokenize=False)
    with pytest.raises(ConversationError, match="no messages"):
        count_conversation([], c)
    with pytest.raises(ConversationError, match="no messages"):
        c.conversation([])


# ------------------------------------------------------------------ special tokens in text


def added_tokens() -> list[str]:
    tokenizer = loaded("2.2B", 384).processor.tokenizer
    return sorted({*tokenizer.get_added_vocab(), "<video>", "<image", "<row_7_col_7>"})


def test_text_is_refused_exactly_where_the_processor_raises() -> None:
    """Issue 12, item 4: ``<image>``/``<video>`` inside text made the processor raise and
    the count go on. Every added token is tried against the real processor."""
    processor = loaded("2.2B", 384).processor
    c = counter("2.2B", 384)
    refused = []
    for token in added_tokens():
        conversation = [{"role": "user", "content": [{"type": "text", "text": f"a {token}b"}]}]
        rendered = processor.apply_chat_template(conversation, tokenize=False)
        try:
            real = len(processor(text=[rendered])["input_ids"][0])
        except ValueError:
            real = None
        ours: int | None = None
        if real is None:
            with pytest.raises(ConversationError, match="message 0, item 0: the text contains"):
                count_conversation(conversation, c)
            with pytest.raises(ConversationError, match="message 0, item 0: the text contains"):
                c.conversation(conversation)
        else:
            ours = count_conversation(conversation, c).total
            assert c.conversation(conversation).total == ours
        assert ours == real, token
        if real is None:
            refused.append(token)
    assert refused == ["<image>", "<video>"]


# ------------------------------------------------------------------ the tokenizer-only counter


SOURCES = pytest.mark.parametrize("folder", [False, True], ids=["as-named", "folder"])


@SOURCES
@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
@given(conversation=LARGE, generation=st.booleans())
def test_tokenizer_only_counter_equals_the_processor_counter(
    checkpoint: str, folder: bool, conversation: Conversation, generation: bool
) -> None:
    """``tokenguard split`` counts without torch (from a checkpoint folder, or from the
    embedded default's shipped tokenizer); the counts are the loaded processor's."""
    light = light_counter(checkpoint, 512, folder=folder)
    real = counter(checkpoint, 512)
    assert replace(light.spec, name=real.spec.name) == real.spec  # named by its folder
    assert (count_conversation(conversation, light, add_generation_prompt=generation)
            == count_conversation(conversation, real, add_generation_prompt=generation))


@SOURCES
@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
@given(text=tgst.texts(max_size=300) | st.sampled_from(["", "<row_1_col_1> x", "\n\n 12"]))
def test_tokenizer_only_text_is_the_tokenizer(checkpoint: str, folder: bool, text: str) -> None:
    light = light_counter(checkpoint, 384, folder=folder)
    tokenizer = loaded(checkpoint, 384).processor.tokenizer
    for special in (True, False):
        assert (light.tokenizer(text, add_special_tokens=special)["input_ids"]
                == tokenizer(text, add_special_tokens=special)["input_ids"])


@pytest.mark.slow
@SOURCES
@settings(max_examples=processor_examples())
@given(conversation=SMALL)
def test_tokenizer_only_counter_equals_the_real_processor(
    folder: bool, conversation: Conversation
) -> None:
    processor = folder_processor("500M", 1024) if folder else loaded("500M", 1024).processor
    assert (count_conversation(conversation, light_counter("500M", 1024, folder=folder)).total
            == len(processor_input_ids(processor, conversation)))


# ------------------------------------------------------------------ chat templates (issue 9)


_TAG = re.compile(r"(\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\})", re.S)


@st.composite
def template_edits(draw: st.DrawFn) -> str:
    """SmolVLM2's template with comments inserted, spacing inside tags changed, and now
    and then a character of its text changed (which must not be taken for the same)."""
    parts = _TAG.split(CHAT_TEMPLATE)
    out = []
    for part in parts:
        if draw(st.integers(0, 4)) == 0:
            out.append("{# " + draw(st.text("abc xyz-\n", max_size=8)) + " #}")
        if part.startswith(("{{", "{%")) and draw(st.booleans()):
            inner = part[2:-2].strip()
            pad = draw(st.sampled_from(["", " ", "  ", "\t"]))
            part = part[:2] + pad + inner + pad + part[-2:]
        elif part and not part.startswith("{") and draw(st.integers(0, 9)) == 0:
            at = draw(st.integers(0, len(part) - 1))
            part = part[:at] + draw(st.sampled_from(["x", " ", "\n", ""])) + part[at + 1:]
        out.append(part)
    return "".join(out)


@pytest.mark.parametrize("variant", [
    "{# tuned by us #}" + CHAT_TEMPLATE,
    CHAT_TEMPLATE + "{# end #}",
    CHAT_TEMPLATE.replace("{{ '<image>' }}", "{{'<image>'}}").replace("{{':'}}", "{{ ':' }}"),
    CHAT_TEMPLATE.replace("{% for message in messages %}", "{%   for message in messages %}"),
])
def test_known_template_despite_comments_and_spacing(variant: str) -> None:
    assert variant != CHAT_TEMPLATE
    assert is_known_template(variant)
    assert is_known_template({"default": variant})


@pytest.mark.parametrize("variant", [
    CHAT_TEMPLATE.replace("<end_of_utterance>\n", "<end_of_utterance>\n\n"),
    CHAT_TEMPLATE.replace("capitalize", "upper"),
    CHAT_TEMPLATE.replace("<end_of_utterance>\n{% endfor %}", "<end_of_utterance>\n{%- endfor %}"),
    "{% generation %}" + CHAT_TEMPLATE, None, 3, {"default": CHAT_TEMPLATE, "tool_use": "x"},
])
def test_other_templates_are_not_the_known_one(variant: Any) -> None:
    assert not is_known_template(variant)


@given(variant=template_edits(), conversation=SMALL, generation=st.booleans())
def test_a_template_taken_for_the_known_one_renders_the_same(
    variant: str, conversation: Conversation, generation: bool
) -> None:
    """Soundness of the semantic comparison, checked by transformers' own rendering."""
    processor = loaded("2.2B", 384).processor
    if is_known_template(variant):
        hf = to_chat_template(conversation)
        assert (processor.apply_chat_template(hf, chat_template=variant, tokenize=False,
                                              add_generation_prompt=generation)
                == processor.apply_chat_template(hf, tokenize=False,
                                                 add_generation_prompt=generation))


#: a checkpoint's own template: roles upper-cased, plain-string content rendered
CUSTOM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | upper}}: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, TokenCounter]:
    """A copied 500M checkpoint whose chat_template.json is its own, loaded for real."""
    from transformers import AutoProcessor

    from pytest_tokenguard.processor.loading import load_processor

    folder = tmp_path_factory.mktemp("custom") / "ckpt"
    shutil.copytree(checkpoint_folder("500M"), folder)
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": CUSTOM_TEMPLATE}))
    processor = AutoProcessor.from_pretrained(str(folder), size={"longest_edge": 512})
    assert processor.chat_template == CUSTOM_TEMPLATE
    lp = load_processor(str(folder), 512)
    return folder, processor, TokenCounter(lp.processor, lp.spec, lp.longest_edge)


@settings(max_examples=processor_examples())
@given(conversation=SMALL, generation=st.booleans())
def test_own_template_is_counted_by_rendering_it(
    custom: tuple[Path, Any, TokenCounter], conversation: Conversation, generation: bool
) -> None:
    """Issue 9: a template other than SmolVLM2's ended in a TemplateError traceback."""
    _, processor, c = custom
    count = count_conversation(conversation, c, add_generation_prompt=generation)
    ids = processor_input_ids(processor, conversation, add_generation_prompt=generation)
    assert count.total == len(ids)
    assert count.image_tokens == ids.count(processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    assert count.template_tokens + count.text_tokens + count.image_block_tokens == count.total


def test_own_template_cannot_be_split_and_names_its_file(
    custom: tuple[Path, Any, TokenCounter],
) -> None:
    folder, _, c = custom
    with pytest.raises(TemplateError, match=re.escape(f"{folder / 'chat_template.json'}: this "
                                                      "chat template is not SmolVLM2's")):
        split([{"role": "user", "content": "hi"}], 4096, counter=c)
