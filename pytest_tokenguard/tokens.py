"""Count whole prompts: text through the real tokenizer, images analytically.

The processor replaces each ``<image>`` placeholder of a prompt with an image block
that starts and ends with special tokens, so the text between placeholders tokenizes
the same alone as inside the full prompt. A prompt therefore costs exactly the sum of
its text pieces plus its image blocks; no pixels are needed to know it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .counting import ImageCost, ImageCounter
from .specs import IMAGE_TOKEN, ModelSpec


@dataclass(frozen=True)
class PromptCount:
    """The tokens of one prompt as the processor writes it, split by origin."""

    total: int
    text_tokens: int
    image_tokens: int
    block_tokens: int
    images: tuple[ImageCost, ...]

    @property
    def patches(self) -> int:
        return sum(image.patches for image in self.images)


class TokenCounter:
    """Exact token counts for one processor at one ``longest_edge``.

    Built from a loaded processor (``tokenguard_counter`` fixture) so text is
    tokenized by the same tokenizer the training code uses.
    """

    def __init__(self, processor: Any, spec: ModelSpec, longest_edge: int | None = None) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.spec = spec
        self.longest_edge = longest_edge or spec.default_longest_edge
        self._images = ImageCounter(spec, self.longest_edge)
        self._specials = len(self.tokenizer("", add_special_tokens=True)["input_ids"])
        self._text_cache: dict[str, int] = {}

    def image(self, width: int, height: int) -> ImageCost:
        """What a ``width``×``height`` image costs at this counter's resolution."""
        return self._images(width, height)

    def text(self, text: str) -> int:
        """Tokens of plain text, no special tokens added."""
        cached = self._text_cache.get(text)
        if cached is None:
            cached = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if len(self._text_cache) < 65536:
                self._text_cache[text] = cached
        return cached

    def prompt(self, text: str, image_sizes: Sequence[tuple[int, int]] = ()) -> PromptCount:
        """Tokens of ``text`` once each ``<image>`` is expanded for the matching size.

        ``image_sizes`` are ``(width, height)`` pairs, one per ``<image>`` in order.
        """
        pieces = text.split(IMAGE_TOKEN)
        if len(pieces) - 1 != len(image_sizes):
            raise ValueError(
                f"the prompt has {len(pieces) - 1} {IMAGE_TOKEN} placeholders but "
                f"{len(image_sizes)} image sizes were given: pass one (width, height) per image"
            )
        images = tuple(self.image(w, h) for w, h in image_sizes)
        text_tokens = sum(self.text(piece) for piece in pieces if piece) + self._specials
        block = sum(image.block_tokens for image in images)
        return PromptCount(
            total=text_tokens + block,
            text_tokens=text_tokens,
            image_tokens=sum(image.image_tokens for image in images),
            block_tokens=block,
            images=images,
        )

    def conversation(
        self, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool = False
    ) -> PromptCount:
        """Tokens of a chat-format conversation rendered by the processor's chat template.

        Image items need a size: ``{"type": "image", "width": W, "height": H}``, a PIL
        image under ``"image"``, or a path under ``"path"``/``"url"`` (header read only).
        """
        sizes = [image_item_size(item) for m in messages for item in _content(m)
                 if item.get("type") == "image"]
        rendered = self.processor.apply_chat_template(
            list(messages), add_generation_prompt=add_generation_prompt, tokenize=False
        )
        return self.prompt(rendered, sizes)


def _content(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content") or []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


def image_item_size(item: dict[str, Any]) -> tuple[int, int]:
    """(width, height) of a chat-format image item, reading only the file header."""
    if "width" in item and "height" in item:
        return int(item["width"]), int(item["height"])
    image = item.get("image")
    if image is not None and hasattr(image, "size"):
        width, height = image.size
        return int(width), int(height)
    path = item.get("path") or item.get("url") or (image if isinstance(image, str) else None)
    if path:
        from .images import read_image_size

        return read_image_size(path)
    raise ValueError(
        f"image item {item!r} has no size: give 'width' and 'height', a PIL image under "
        "'image', or a file under 'path'"
    )
