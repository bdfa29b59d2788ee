"""What the splitter checker prices Qwen-VL chunks with: the exact counter and the real
processor, at one per-call setting.

:func:`~pytest_tokenguard.testing.splitcheck.check_splitter` takes a Qwen2-VL, Qwen2.5-VL or
Qwen3-VL processor (or a :class:`~pytest_tokenguard.families.qwen_text.QwenTokenCounter`, or
a :class:`QwenOracle`) where it takes SmolVLM2's. Every chunk is priced by the exact counter
(:mod:`pytest_tokenguard.families.qwen_text`, proven equal to the processors by
``tests/oracle/test_qwen_conversation.py``); the real processor counts the chunk of a
failure and the fullest chunks of a pass, called as a user's code calls it: the chat
template rendered, one image per placeholder, and the setting checked
(``processor(text=..., images=..., max_pixels=...)``). A counter alone has no processor to
confirm with: its numbers are then reported as the exact counter's.

transformers and PIL are imported only when the processor runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..conversation import Conversation, MessageLike, to_chat_template
from ..families.qwen import GENERATION_OF, QwenSettings
from ..families.qwen_text import QwenTokenCounter

__all__ = ["QwenOracle", "is_qwen_processor", "qwen_oracle", "qwen_processor_count"]


def is_qwen_processor(processor: object) -> bool:
    """Whether ``processor`` is a transformers Qwen2-VL, Qwen2.5-VL or Qwen3-VL processor
    (by its class or a base class's name: nothing is imported)."""
    return any(cls.__name__ in GENERATION_OF for cls in type(processor).__mro__)


@dataclass(frozen=True)
class QwenOracle:
    """A Qwen-VL checkpoint at one per-call setting, as the checker prices chunks: the exact
    ``counter`` (its ``min_pixels``/``max_pixels`` are the setting checked) and the real
    ``processor`` that confirms (None: the counter's numbers are reported)."""

    counter: QwenTokenCounter
    processor: Any = None

    @property
    def max_pixels(self) -> int:
        return self.counter.max_pixels

    @property
    def min_pixels(self) -> int:
        return self.counter.min_pixels

    @property
    def setting(self) -> str:
        """The setting a report names: ``max_pixels N`` (Qwen's counterpart of SmolVLM2's
        ``longest_edge``)."""
        return f"max_pixels {self.counter.max_pixels}"

    def with_settings(self, *, min_pixels: int | None = None,
                      max_pixels: int | None = None) -> QwenOracle:
        """The same checkpoint at other per-call settings (a new counter, empty caches)."""
        if min_pixels is None and max_pixels is None:
            return self
        return QwenOracle(self.counter.with_settings(min_pixels=min_pixels,
                                                     max_pixels=max_pixels), self.processor)

    def exact(self, chunk: Sequence[MessageLike] | Conversation,
              add_generation_prompt: bool = False) -> int:
        """The chunk's exact length (the counter)."""
        return self.counter.conversation(chunk, add_generation_prompt=add_generation_prompt).total

    def real(self, chunk: Sequence[MessageLike] | Conversation,
             add_generation_prompt: bool = False) -> int | None:
        """``len(input_ids)`` the real processor writes for the chunk at this setting, or
        None without a processor."""
        if self.processor is None:
            return None
        return qwen_processor_count(self.processor, self.counter.parse(chunk),
                                    settings=self.counter.settings,
                                    add_generation_prompt=add_generation_prompt)


def qwen_oracle(against: object, *, min_pixels: int | None = None,
                max_pixels: int | None = None) -> QwenOracle | None:
    """The :class:`QwenOracle` of what a user passed the checker (a Qwen processor, a
    ``QwenTokenCounter`` or an oracle) at the given settings (``None``: its own), or None
    when it is not Qwen-VL."""
    if isinstance(against, QwenOracle):
        return against.with_settings(min_pixels=min_pixels, max_pixels=max_pixels)
    if isinstance(against, QwenTokenCounter):
        if min_pixels is not None or max_pixels is not None:
            against = against.with_settings(min_pixels=min_pixels, max_pixels=max_pixels)
        return QwenOracle(against)
    if is_qwen_processor(against):
        return QwenOracle(QwenTokenCounter.from_processor(against, min_pixels=min_pixels,
                                                          max_pixels=max_pixels), against)
    return None


def qwen_processor_count(processor: Any, conversation: Conversation, *,
                         settings: QwenSettings, add_generation_prompt: bool = False) -> int:
    """``len(input_ids)`` of ``processor(text=[apply_chat_template(conversation)],
    images=..., videos=..., **settings)``: blank images of each item's size (or its own
    file or image), videos as blank frames of their frame size with their metadata,
    sampled as the items say."""
    import warnings

    from ..conversation import videos_of
    from ..processor.chat import render_chat
    from ..sequence import _pixels

    hf = to_chat_template(conversation)
    rendered = render_chat(processor, hf, add_generation_prompt=add_generation_prompt)
    kwargs: dict[str, Any] = {}
    images = [_pixels(item) for m in hf if not isinstance(m["content"], str)
              for item in m["content"] if item["type"] == "image"]
    if images:
        kwargs["images"] = images
    videos = videos_of(conversation)
    if videos:
        import numpy as np

        frames, metadata = [], []
        for video in videos:
            info = video.info()
            if info.width is None or info.height is None:
                from ..errors import ConversationError

                raise ConversationError("a video item has no frame size; give 'width' and "
                                        "'height' for the processor to run on it")
            frames.append(np.zeros((info.total_frames, info.height, info.width, 3), np.uint8))
            metadata.append(video.processor_metadata())
        kwargs.update(videos=frames, video_metadata=metadata, return_tensors="pt")
        num_frames, fps = videos[0].num_frames, videos[0].sample_fps
        if num_frames is not None or fps is not None:
            kwargs.update(do_sample_frames=True, fps=fps)
            if num_frames is not None:
                kwargs["num_frames"] = num_frames
    if settings.size is not None:
        kwargs["size"] = dict(settings.size)
    if settings.min_pixels is not None:
        kwargs["min_pixels"] = settings.min_pixels
    if settings.max_pixels is not None:
        kwargs["max_pixels"] = settings.max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = processor(text=[rendered], **kwargs)
    ids = out["input_ids"][0]
    return len(ids.tolist() if hasattr(ids, "tolist") else ids)
