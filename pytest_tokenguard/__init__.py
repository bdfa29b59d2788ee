"""pytest-tokenguard: guard the token budget and GPU memory of SmolVLM2 training.

The public API, importable from here:

* images: :func:`count_image`, :class:`ImageCounter`, :class:`ImageCost`, the specs
  (:class:`ModelSpec`, :data:`KNOWN_SPECS`, :data:`DEFAULT_MODEL`);
* prompts and conversations: :class:`TokenCounter`, :func:`count_conversation`;
  Qwen2-VL, Qwen2.5-VL and Qwen3-VL conversations: :class:`QwenTokenCounter`;
* splitting: :func:`split`, :class:`Chunk`;
* the processor: :func:`load_processor`;
* errors: :class:`TokenguardError` (the root of all) and its subclasses.

Submodules with an API of their own: :mod:`pytest_tokenguard.testing.strategies`
(hypothesis strategies), :mod:`pytest_tokenguard.testing.splitcheck` (check your own
splitter), :mod:`pytest_tokenguard.conversation` (the chat format),
:mod:`pytest_tokenguard.gpu.model` (the memory model). Importing this package is cheap:
torch, transformers and PIL load only when a feature that needs them is used, and the
names below load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _moved
from .counting import ImageCost, ImageCounter, count_image
from .errors import (
    ConversationError,
    CountingError,
    InputError,
    SplitError,
    TokenguardError,
)
from .specs import DEFAULT_MODEL, KNOWN_SPECS, ModelSpec

if TYPE_CHECKING:
    from .families.qwen_text import QwenTokenCounter
    from .processor.loading import load_processor
    from .sequence import count_conversation
    from .splitting import Chunk, split
    from .tokens import TokenCounter

__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_SPECS",
    "Chunk",
    "ConversationError",
    "CountingError",
    "ImageCost",
    "ImageCounter",
    "InputError",
    "ModelSpec",
    "QwenTokenCounter",
    "SplitError",
    "TokenCounter",
    "TokenguardError",
    "__version__",
    "count_conversation",
    "count_image",
    "load_processor",
    "split",
]
__version__ = "0.2.0"

_LAZY = {
    "Chunk": "splitting",
    "split": "splitting",
    "TokenCounter": "tokens",
    "QwenTokenCounter": "families.qwen_text",
    "count_conversation": "sequence",
    "load_processor": "processor.loading",
}

_moved.install()


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_tokenguard' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
