"""Render a conversation with the processor's own chat template, quietly on every transformers 5.

``SmolVLMProcessor.apply_chat_template`` adds its video sampling defaults (``num_frames``,
``fps``) to the call. Up to transformers 5.17 at least it adds them to ``**kwargs`` unless
``processor_kwargs`` is given, and the base class then logs "Kwargs passed to
`processor.__call__` have to be in `processor_kwargs` dict" on *every* call, even one that
passes no keyword at all. Handing it the same two values in ``processor_kwargs`` is the
call those versions ask for: the rendered text is the same (the template uses neither),
and 5.24, which no longer warns, takes it too. transformers 5.0 has no ``processor_kwargs``
and never warned, so it gets the plain call.

Only the standard library is imported here; the processor is passed in.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["render_chat", "template_file"]


def _takes_processor_kwargs(processor: Any) -> bool:
    try:
        parameters = inspect.signature(processor.apply_chat_template).parameters
    except (AttributeError, TypeError, ValueError):  # pragma: no cover - not a processor
        return False
    return "processor_kwargs" in parameters


def render_chat(
    processor: Any, messages: Sequence[Any], *, add_generation_prompt: bool = False
) -> str:
    """``processor.apply_chat_template(messages, tokenize=False, ...)``, without the warning."""
    kwargs: dict[str, Any] = {}
    video = getattr(processor, "video_processor", None)
    defaults = {name: getattr(video, name) for name in ("num_frames", "fps")
                if getattr(video, name, None) is not None}
    if defaults and _takes_processor_kwargs(processor):
        kwargs["processor_kwargs"] = defaults
    rendered = processor.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
    )
    return str(rendered)


def template_file(processor: Any) -> str:
    """The file the processor's chat template was read from, as transformers looks for it
    (``chat_template`` in processor_config.json, else chat_template.json, else
    chat_template.jinja), or a description when it was not read from a folder."""
    tokenizer = getattr(processor, "tokenizer", None)
    folder = Path(str(getattr(tokenizer, "name_or_path", "") or ""))
    if str(folder) not in ("", ".") and folder.is_dir():
        config = folder / "processor_config.json"
        try:
            if "chat_template" in json.loads(config.read_text(encoding="utf-8")):
                return str(config)
        except (OSError, ValueError, TypeError):
            pass
        for name in ("chat_template.json", "chat_template.jinja"):
            if (folder / name).is_file():
                return str(folder / name)
    return "the processor's chat template"
