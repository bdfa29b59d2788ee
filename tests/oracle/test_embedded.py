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

import pytest

from pytest_tokenguard.specs import KNOWN_SPECS, spec_from_processor
from tests.helpers import (
    MODEL_IDS,
    assert_same_processor,
    assert_same_tokenizer,
    embedded_processor,
    folder_processor,
)

#: the checkpoint's default resolution (None) and a few that users set
EDGES = (None, 384, 1024)


@pytest.mark.parametrize("checkpoint", MODEL_IDS)
def test_embedded_spec_matches_known(checkpoint: str) -> None:
    spec = spec_from_processor(embedded_processor(checkpoint), name=checkpoint)
    assert spec == KNOWN_SPECS[checkpoint]


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("checkpoint", MODEL_IDS)
def test_processor_objects_equal_the_loaded_ones(checkpoint: str, edge: int | None) -> None:
    assert_same_processor(embedded_processor(checkpoint, edge),
                          folder_processor(checkpoint, edge))


@pytest.mark.parametrize("checkpoint", MODEL_IDS)
def test_tokenizer_equals_the_loaded_one(checkpoint: str) -> None:
    assert_same_tokenizer(embedded_processor(checkpoint).tokenizer,
                          folder_processor(checkpoint).tokenizer)
