"""The sequence-length calculator is exact: it equals the real processor's count.

Two oracles: the real processor (``processor(text=rendered, images=...)``, pixels and
all) at every checkpoint and resolution, and, for many more examples at low cost,
``TokenCounter.conversation`` (the processor's own chat template, then the tokenizer).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pytest_tokenguard.conversation import Conversation, to_chat_template
from pytest_tokenguard.counting import count_image
from pytest_tokenguard.processor.chat import render_chat
from pytest_tokenguard.sequence import (
    count_conversation,
    processor_input_ids,
    render,
)
from pytest_tokenguard.specs import IMAGE_TOKEN
from pytest_tokenguard.testing import strategies as tgst
from pytest_tokenguard.testing.profiles import processor_examples
from pytest_tokenguard.tokens import PretokenCounter, fast_text_counter
from tests.helpers import CHECKPOINTS, GRID, counter, loaded

#: small conversations: the processor decodes every image of every example
SMALL = tgst.conversations(
    max_turns=4, max_images_per_turn=2, max_frames_per_run=3, max_text=60,
    sizes=tgst.image_sizes(max_side=1600),
)
#: no processor call: as large as a real sample gets
LARGE = tgst.conversations(
    max_turns=12, max_images_per_turn=3, max_frames_per_run=8,
    sizes=tgst.image_sizes(max_side=4096),
)


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
