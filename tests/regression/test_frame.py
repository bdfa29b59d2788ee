"""The regression suite: what one 384×384 video frame costs at each resolution.

Run it with ``pytest --tokenguard tests/regression/test_frame.py`` to see the table.
Every expected number here is also re-derived from the real processor in the same
test (the processor's own output), so a change in transformers or in the checkpoint
shows up as a failure, not as a stale constant.
"""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image

from pytest_tokenguard.processor.chat import render_chat
from pytest_tokenguard.tokens import TokenCounter
from tests.helpers import FIXTURES

#: <image> tokens of a 384×384 frame per longest_edge (patches × 81) for SmolVLM2-2.2B.
FRAME_IMAGE_TOKENS = {384: 81, 512: 405, 768: 405, 1024: 810, 1536: 1377}
FRAME_PATCHES = {384: 1, 512: 5, 768: 5, 1024: 10, 1536: 17}


@pytest.fixture(scope="module")
def frame() -> Image.Image:
    with Image.open(FIXTURES / "frame_384x384.png") as image:
        return image.convert("RGB")


def _two_frames_prompt(frame: Image.Image) -> tuple[str, list[list[Image.Image]]]:
    return "Frame 1:<image>\nFrame 2:<image>\nWhat changed?", [[frame, frame]]


@pytest.fixture
def is_22b(tokenguard_loaded: Any) -> bool:
    return bool(tokenguard_loaded.spec.tile_size == 384 and tokenguard_loaded.spec.image_seq_len
                == 81)


def test_frame_image_tokens(tokenguard_processor: Any, tokenguard_longest_edge: int,
                            tokenguard_counter: TokenCounter, frame: Image.Image,
                            is_22b: bool) -> None:
    ids = tokenguard_processor(text=["<image>"], images=[[frame]])["input_ids"][0]
    measured = ids.count(tokenguard_processor.image_token_id)
    cost = tokenguard_counter.image(*frame.size)
    assert measured == cost.image_tokens
    assert len(ids) == cost.block_tokens
    if is_22b and tokenguard_longest_edge in FRAME_IMAGE_TOKENS:
        assert measured == FRAME_IMAGE_TOKENS[tokenguard_longest_edge]
        assert cost.patches == FRAME_PATCHES[tokenguard_longest_edge]


def test_prompt_total_matches_processor(tokenguard_processor: Any,
                                        tokenguard_counter: TokenCounter,
                                        frame: Image.Image) -> None:
    text, images = _two_frames_prompt(frame)
    ids = tokenguard_processor(text=[text], images=images)["input_ids"][0]
    counted = tokenguard_counter.prompt(text, [frame.size, frame.size])
    assert counted.total == len(ids)
    assert counted.image_tokens == ids.count(tokenguard_processor.image_token_id)
    assert counted.block_tokens + counted.text_tokens == len(ids)


def test_chat_template_total_matches_processor(tokenguard_processor: Any,
                                               tokenguard_counter: TokenCounter,
                                               frame: Image.Image) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                     {"type": "text", "text": "Describe both frames."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Two gradients."}]},
    ]
    rendered = render_chat(tokenguard_processor, messages)
    ids = tokenguard_processor(text=[rendered], images=[[frame, frame]])["input_ids"][0]
    sized = [
        {**m, "content": [{**c, "width": 384, "height": 384} if c["type"] == "image" else c
                          for c in m["content"]]}
        for m in messages
    ]
    assert tokenguard_counter.conversation(sized).total == len(ids)


def test_four_default_frames_overflow_a_4096_sample(tokenguard_counter: TokenCounter,
                                                   tokenguard_longest_edge: int) -> None:
    """Why the plugin exists: at the default 1536, four frames no longer fit 4,096 tokens,
    even though 4 × 81 "per image" would suggest a few hundred."""
    text = "<image>" * 4 + "Summarise the clip."
    total = tokenguard_counter.prompt(text, [(384, 384)] * 4).total
    naive = 4 * tokenguard_counter.spec.image_seq_len
    assert total > naive
    if tokenguard_longest_edge >= 1536 and tokenguard_counter.spec.tile_size == 384:
        assert total > 4096
