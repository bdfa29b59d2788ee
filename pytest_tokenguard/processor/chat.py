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
from collections.abc import Sequence
from typing import Any

__all__ = ["render_chat"]


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
