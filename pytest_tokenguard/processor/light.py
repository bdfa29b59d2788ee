"""A tokenizer-only stand-in for a SmolVLM2 processor: exact counts without torch.

``tokenguard split`` needs three things from a processor: its tokenizer (text is
counted exactly), its chat template (to know the token layout) and the image spec
(images are priced analytically, never decoded). A checkpoint folder holds all three
as files, and the Rust ``tokenizers`` library reads ``tokenizer.json`` exactly as
transformers does, so nothing else is needed. Loading transformers' processor imports
torch, about 1 GB of resident memory and ten seconds on a small machine before the
first line is read; this stand-in costs about 60 MB and a fifth of a second.

It is used only where it is provably the same tokenizer: a local folder (or cached
snapshot) with a ``tokenizer.json`` whose ``tokenizer_config.json`` asks transformers
for no post-processing of its own (``add_bos_token``/``add_eos_token``), and the
embedded default (SmolVLM2's own ``tokenizer.json``, shipped, with its published
template and spec). Anything else (the hub) goes through
:func:`~pytest_tokenguard.processor.loading.load_processor`. The test suite checks its
counts against the real processor.

Only ``tokenizers`` (transformers' own dependency) is imported, inside the functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import SpecError, TemplateError
from ..specs import load_tokenizer
from .source import ModelSource

__all__ = ["LightProcessor", "LightTokenizer", "light_processor", "read_chat_template"]


class LightTokenizer:
    """The part of a transformers tokenizer the counters call, over ``tokenizers.Tokenizer``."""

    def __init__(self, backend: Any, name_or_path: str) -> None:
        self.backend_tokenizer = backend
        self.name_or_path = name_or_path

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": self.backend_tokenizer.encode(
            text, add_special_tokens=add_special_tokens).ids}

    def convert_tokens_to_ids(self, token: str) -> int | None:
        value = self.backend_tokenizer.token_to_id(token)
        return None if value is None else int(value)


class LightProcessor:
    """A tokenizer and a chat template: enough for the SmolVLM2 calculator."""

    def __init__(self, tokenizer: LightTokenizer, chat_template: str | None,
                 name_or_path: str) -> None:
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.name_or_path = name_or_path

    def apply_chat_template(
        self, conversation: Any, *, add_generation_prompt: bool = False, tokenize: bool = False,
        **kwargs: Any,
    ) -> str:
        """SmolVLM2's template rendered by :func:`~pytest_tokenguard.sequence.render`
        (kept equal to the real one by the test suite); another template is refused."""
        from ..conversation import parse_conversation
        from ..sequence import is_known_template, render, template_file

        if tokenize or kwargs:
            raise TypeError("LightProcessor.apply_chat_template renders text only")
        if not is_known_template(self.chat_template):
            raise TemplateError(
                f"{template_file(self)}: not SmolVLM2's chat template; load the processor "
                "with transformers to render it"
            )
        return render(parse_conversation(conversation), add_generation_prompt)


def read_chat_template(folder: Path) -> str | None:
    """The chat template transformers would load from ``folder``: ``chat_template`` in
    processor_config.json, else chat_template.json, else chat_template.jinja."""
    config = folder / "processor_config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}
    except (OSError, ValueError) as exc:
        raise SpecError(f"{config}: cannot be read as JSON ({exc}); restore the file from "
                        "the checkpoint") from None
    if isinstance(data, dict) and data.get("chat_template") is not None:
        return _template_text(data["chat_template"], config)
    legacy = folder / "chat_template.json"
    if legacy.is_file():
        try:
            data = json.loads(legacy.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SpecError(f"{legacy}: cannot be read as JSON ({exc}); restore the file from "
                            "the checkpoint") from None
        if not isinstance(data, dict) or "chat_template" not in data:
            raise SpecError(f"{legacy}: expected an object with 'chat_template'")
        return _template_text(data["chat_template"], legacy)
    raw = folder / "chat_template.jinja"
    if raw.is_file():
        try:
            return raw.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"{raw}: cannot be read ({exc})") from None
    return None


def _template_text(value: object, path: Path) -> str:
    if isinstance(value, str):
        return value
    raise SpecError(f"{path}: 'chat_template' must be a string, got {type(value).__name__}")


def light_processor(source: ModelSource) -> LightProcessor | None:
    """The tokenizer-only processor of ``source``, or None where only transformers can
    load it exactly (the hub, a folder without tokenizer.json, a tokenizer that
    transformers post-processes)."""
    if source.kind == "embedded":
        from tokenizers import Tokenizer

        from .embedded import CHAT_TEMPLATE, tokenizer_json

        backend = Tokenizer.from_str(tokenizer_json())
        return LightProcessor(LightTokenizer(backend, source.model), CHAT_TEMPLATE, source.model)
    folder = source.folder
    if folder is None or not (folder / "tokenizer.json").is_file():
        return None
    config_path = folder / "tokenizer_config.json"
    try:
        config = (json.loads(config_path.read_text(encoding="utf-8"))
                  if config_path.is_file() else {})
    except (OSError, ValueError):
        return None  # let transformers report it
    if not isinstance(config, dict) or config.get("add_bos_token") or config.get(
        "add_eos_token"
    ):
        return None
    backend = load_tokenizer(folder / "tokenizer.json")
    name = str(folder)
    return LightProcessor(LightTokenizer(backend, name), read_chat_template(folder), name)
