"""The project's own processor calls make transformers log nothing.

On transformers 5.17 every ``apply_chat_template`` call of a SmolVLM processor logged
"Kwargs passed to `processor.__call__` have to be in `processor_kwargs` dict" (the
processor adds its video defaults to ``**kwargs``), once per sample of every test;
:func:`~pytest_tokenguard.processor.chat.render_chat` makes the call those versions ask
for. This fails on 5.17 without it; 5.24 never logged it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_tokenguard.processor.chat import render_chat
from pytest_tokenguard.sequence import processor_input_ids
from tests.helpers import counter, loaded, real_image_tokens

CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": [{"type": "image", "width": 640, "height": 480},
                                 {"type": "text", "text": "What is this?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def transformers_log() -> Iterator[list[logging.LogRecord]]:
    """Warnings transformers logs during the test (its logger does not propagate)."""
    loaded("2.2B", 512)  # loading is not what is checked here
    handler = _Records()
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


def test_project_processor_calls_log_no_warning(
    transformers_log: list[logging.LogRecord],
) -> None:
    processor = loaded("2.2B", 512).processor
    for generation in (False, True):
        render_chat(processor, CONVERSATION, add_generation_prompt=generation)
        processor_input_ids(processor, CONVERSATION, add_generation_prompt=generation)
        counter("2.2B", 512).conversation(CONVERSATION, add_generation_prompt=generation)
    real_image_tokens(processor, 640, 480, size={"longest_edge": 384}, resample=0)
    assert [record.getMessage() for record in transformers_log] == []
