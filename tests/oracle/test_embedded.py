"""The embedded default is built as transformers builds a processor from a folder.

The embedded default ships SmolVLM2's ``tokenizer.json`` and keeps the other published
settings in code, and builds transformers' own classes from them. These tests run on
every machine: its spec is the built-in one, and the objects it builds equal the ones
``from_pretrained`` loads from a checkpoint folder holding the same settings
(``tests.helpers.checkpoint_folder``). That those settings, the shipped file and the
``input_ids`` are the real checkpoints' is ``tests/oracle/test_real_files.py``, which
compares them with the real files where they are present.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from pytest_tokenguard.processor.embedded import build_embedded_processor
from pytest_tokenguard.specs import KNOWN_SPECS, spec_from_processor
from tests.helpers import MODEL_IDS, folder_processor

#: the checkpoint's default resolution (None) and a few that users set
EDGES = (None, 384, 1024)


@cache
def embedded(checkpoint: str, edge: int | None = None) -> Any:
    """The embedded default, built directly (whatever the resolver would pick here)."""
    kwargs = {"size": {"longest_edge": edge}} if edge else {}
    return build_embedded_processor(checkpoint, **kwargs)


@pytest.mark.parametrize("checkpoint", MODEL_IDS)
def test_embedded_spec_matches_known(checkpoint: str) -> None:
    spec = spec_from_processor(embedded(checkpoint), name=checkpoint)
    assert spec == KNOWN_SPECS[checkpoint]


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("checkpoint", MODEL_IDS)
def test_processor_objects_equal_the_loaded_ones(checkpoint: str, edge: int | None) -> None:
    loaded, mine = folder_processor(checkpoint, edge), embedded(checkpoint, edge)
    assert mine.to_dict() == loaded.to_dict()
    assert mine.image_processor.to_dict() == loaded.image_processor.to_dict()
    assert mine.video_processor.to_dict() == loaded.video_processor.to_dict()
    assert mine.chat_template == loaded.chat_template
    for name in ("image_token", "image_token_id", "fake_image_token", "global_image_token",
                 "end_of_utterance_token", "video_token", "image_seq_len"):
        assert getattr(mine, name) == getattr(loaded, name), name


@pytest.mark.parametrize("checkpoint", MODEL_IDS)
def test_tokenizer_equals_the_loaded_one(checkpoint: str) -> None:
    loaded, mine = folder_processor(checkpoint).tokenizer, embedded(checkpoint).tokenizer
    assert type(mine) is type(loaded)
    assert mine.backend_tokenizer.to_str() == loaded.backend_tokenizer.to_str()
    assert mine.added_tokens_decoder == loaded.added_tokens_decoder
    assert mine.special_tokens_map == loaded.special_tokens_map
    assert mine.all_special_ids == loaded.all_special_ids
    assert mine.extra_special_tokens == loaded.extra_special_tokens
    for name in ("model_max_length", "truncation_side", "padding_side",
                 "clean_up_tokenization_spaces", "add_prefix_space"):
        assert getattr(mine, name) == getattr(loaded, name), name
