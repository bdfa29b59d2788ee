"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL samples, priced as TRL's collator tokenizes them.

TRL 1.16's ``DataCollatorForVisionLanguageModeling`` calls the Qwen processor's
``apply_chat_template(..., tokenize=True)`` with ``add_special_tokens=False``,
``truncation=True, max_length=SFTConfig.max_length``: the conversation rendered by the
checkpoint's chat template, every ``<|image_pad|>`` expanded to the image's tokens, the
text tokenized and cut on the tokenizer's ``truncation_side`` (Qwen's: ``right``). The
processor then compares the ``<|image_pad|>`` tokens left in ``input_ids`` with those of
the expanded text and raises ``Mismatch in `image` token count`` when the cut dropped
any (the "Image features and image tokens do not match" failure of Qwen fine-tunes), so
a right cut is refused whenever it falls at or before the last pad.

:class:`QwenPricer` gives each sample's exact length and where its first and last pad
sit from :class:`~pytest_tokenguard.families.qwen_text.QwenTokenCounter`, and the length
and vision patches at each candidate ``max_pixels`` (the processor's
``size["longest_edge"]``): :func:`max_pixels_candidates`, multiples of the checkpoint's
``factor²`` (one image token each) from 64 tokens up, below the audited value. Videos are
refused by name: TRL's vision collator hands the processor images only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError
from .measure import AuditSettings, SampleResult

__all__ = ["TOKEN_STEPS", "QwenPricer", "max_pixels_candidates"]

#: image tokens per image (``max_pixels / factor²``) the "what fits" answer tries
TOKEN_STEPS = (64, 128, 192, 256, 320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 2048,
               2560, 3072, 4096, 6144, 8192, 12288, 16384)


def max_pixels_candidates(max_pixels: int, min_pixels: int, factor: int) -> tuple[int, ...]:
    """The ``max_pixels`` values "what fits" tries: ``k·factor²`` for each ``k`` of
    :data:`TOKEN_STEPS` from ``min_pixels`` up to ``max_pixels``, and ``max_pixels``."""
    area = factor * factor
    return tuple(sorted({k * area for k in TOKEN_STEPS if min_pixels <= k * area < max_pixels}
                        | {max_pixels}))


class QwenPricer:
    """The audit's pricer for a Qwen-VL checkpoint folder or cached hub id (see the
    module docstring). A hub id whose tokenizer is not on this machine is
    :class:`~pytest_tokenguard.errors.TokenizerUnavailable`: text is never guessed."""

    knob = "max_pixels"
    image_token = "<|image_pad|>"
    wrap_before = 1  # <|vision_start|>
    frame_candidates: tuple[int, ...] = ()
    fps_candidates: tuple[float, ...] = ()

    def __init__(self, settings: AuditSettings) -> None:
        from ..families.qwen_text import QwenTokenCounter

        model = settings.model
        for name, value, fix in (
                ("longest_edge", settings.longest_edge,
                 "Qwen-VL resizes by max_pixels: give --max-pixels instead"),
                ("num_frames", settings.num_frames, "drop --num-frames"),
                ("fps", settings.fps, "drop --fps")):
            if value is not None:
                detail = ("is SmolVLM2's resolution" if name == "longest_edge" else
                          "samples videos, which the Qwen-VL audit does not price (TRL's "
                          "vision collator hands the processor images only)")
                raise InputError(f"{name}={value} {detail}; {model} is a Qwen-VL model: {fix}")
        counter = QwenTokenCounter.from_model(model, max_pixels=settings.max_pixels)
        self.counter = counter
        self.setting = counter.max_pixels
        self.size_floor = counter.min_pixels
        self.edges = max_pixels_candidates(counter.max_pixels, counter.min_pixels,
                                           counter.spec.image.factor)
        self._counters = [counter.with_settings(max_pixels=value) for value in self.edges]
        self._merge = counter.spec.image.merge_size ** 2
        self.truncation_side = str(getattr(counter.tokenizer, "truncation_side", None)
                                   or "right")

    def price(self, ident: Any, messages: Any, base_dir: Path | None) -> SampleResult:
        from ..conversation import image_sizes, videos_of

        counter = self.counter
        parsed = counter.parse(messages, base_dir=base_dir)
        if not parsed:
            raise ValueError("'messages' is empty")
        if videos_of(parsed):
            raise ValueError("the sample holds a video, which the Qwen-VL audit does not "
                             "price (TRL's vision collator hands the processor images only); "
                             "give its frames as images")
        count = counter.conversation(parsed, add_special_tokens=False)
        sizes = image_sizes(parsed)
        edge_tokens, edge_tiles = [], []
        for other in self._counters:
            pads = sum(other.image(width, height).image_tokens for width, height in sizes)
            edge_tokens.append(count.total - count.image_tokens + pads)
            edge_tiles.append(pads * self._merge)
        return SampleResult(
            ident, count.total, count.image_tokens, len(sizes), 0,
            count.image_tokens * self._merge, count.first_media, count.after_last_media,
            tuple(edge_tokens), tuple(edge_tiles))
