"""The embedded default: exact image and special tokens, never-lower text counts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_tokenguard.processor.embedded import (
    added_tokens,
    build_byte_tokenizer,
    build_embedded_processor,
)
from pytest_tokenguard.specs import KNOWN_SPECS, spec_from_processor
from tests.helpers import MODEL_IDS, real_image_tokens, real_processor

MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"


@pytest.fixture(scope="module")
def embedded() -> Any:
    return build_embedded_processor(MODEL)


@pytest.mark.parametrize("checkpoint", MODEL_IDS)
def test_embedded_spec_matches_known(checkpoint: str) -> None:
    spec = spec_from_processor(build_embedded_processor(checkpoint), name=checkpoint)
    known = KNOWN_SPECS[checkpoint]
    for field in ("tile_size", "image_seq_len", "default_longest_edge", "newline_tokens",
                  "double_newline_tokens", "special_marker_grid"):
        assert getattr(spec, field) == getattr(known, field), field


def test_special_token_ids_are_the_real_ones(embedded: Any) -> None:
    real = real_processor(MODEL).tokenizer
    for token in [*added_tokens(), "<|im_start|>", "<|im_end|>", "<|endoftext|>"]:
        assert embedded.tokenizer.convert_tokens_to_ids(token) == real.convert_tokens_to_ids(
            token), token


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(width=st.integers(1, 3000), height=st.integers(1, 3000),
       longest_edge=st.sampled_from([384, 512, 768, 1024, 1536, 2048, 4096]))
def test_embedded_image_block_is_exact(embedded: Any, width: int, height: int,
                                       longest_edge: int) -> None:
    """<image> tokens are always exact; the whole block too while every <row_r_col_c>
    marker is an added token (grids up to 6×6). Past that the markers are plain text,
    which the embedded rule counts as an upper bound."""
    kwargs = {"size": {"longest_edge": longest_edge}}
    image, block = real_image_tokens(embedded, width, height, **kwargs)
    real_image, real_block = real_image_tokens(real_processor(MODEL), width, height, **kwargs)
    assert image == real_image
    if longest_edge <= 6 * 384:
        assert block == real_block
    else:
        assert block >= real_block


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(st.characters(codec="utf-8"), max_size=200)
       | st.text(alphabet=" \n\t\r\u00a0ab1é", max_size=60))
def test_embedded_text_count_is_never_lower(text: str) -> None:
    real = real_processor(MODEL).tokenizer
    mine = build_byte_tokenizer()
    real_count = len(real(text, add_special_tokens=False)["input_ids"])
    embedded_count = len(mine(text, add_special_tokens=False)["input_ids"])
    assert embedded_count >= real_count
    assert embedded_count <= len(text.encode("utf-8"))


def test_chat_template_renders_like_the_real_one(embedded: Any) -> None:
    messages = [{"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": "What is this?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "A frame."}]}]
    for generation in (False, True):
        assert embedded.apply_chat_template(
            messages, add_generation_prompt=generation, tokenize=False
        ) == real_processor(MODEL).apply_chat_template(
            messages, add_generation_prompt=generation, tokenize=False)
