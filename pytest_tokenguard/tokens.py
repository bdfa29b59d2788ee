"""Count whole prompts: text through the real tokenizer, images analytically.

The processor replaces each ``<image>`` placeholder of a prompt with an image block
that starts and ends with special tokens, so the text between placeholders tokenizes
the same alone as inside the full prompt. A prompt therefore costs exactly the sum of
its text pieces plus its image blocks; no pixels are needed to know it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .counting import ImageCost, ImageCounter
from .processor.chat import render_chat, template_file
from .specs import IMAGE_TOKEN, ModelSpec

__all__ = [
    "PretokenCounter",
    "PromptCount",
    "TokenCounter",
    "fast_text_counter",
    "image_item_size",
]


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


class _TextCounts:
    """What a counter knows of its tokenizer alone: the tokenizer's own special tokens
    and text counts, cached. Nothing here depends on image settings, so the counters
    of one processor at several settings (:meth:`TokenCounter.with_settings`) share it;
    prices live in each counter's :class:`~pytest_tokenguard.counting.ImageCounter`."""

    __slots__ = ("_cache", "_fast", "specials", "tokenizer")

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.specials = len(tokenizer("", add_special_tokens=True)["input_ids"])
        self._cache: dict[str, int] = {}
        self._fast: Any = None

    def __call__(self, text: str) -> int:
        cached = self._cache.get(text)
        if cached is None:
            cached = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if len(self._cache) < 65536:
                self._cache[text] = cached
        return cached

    def fast(self) -> Any:
        """``text -> tokens``, equal to ``self``, fast where the tokenizer allows
        (:class:`PretokenCounter`); built once (it reads the tokenizer's JSON)."""
        if self._fast is None:
            pre = PretokenCounter.for_tokenizer(self.tokenizer, self)
            self._fast = pre if pre is not None else self
        return self._fast


class TokenCounter:
    """Exact token counts for one processor at one ``longest_edge``.

    Built from a loaded processor (``tokenguard_counter`` fixture) so text is
    tokenized by the same tokenizer the training code uses. Its image prices are one
    immutable :class:`~pytest_tokenguard.counting.ImageCounter` (:attr:`pricing`) that
    every path (``image``, ``prompt``, ``conversation``, the sequence counts, the
    splitter) asks; :meth:`with_settings` gives a new counter with a new pricing, never
    a copy of this one's prices.
    """

    __slots__ = ("__weakref__", "_pricing", "_text", "_video_counter", "processor")

    def __init__(
        self,
        processor: Any,
        spec: ModelSpec,
        longest_edge: int | None = None,
        *,
        do_image_splitting: bool | None = None,
        tile_size: int | None = None,
    ) -> None:
        """``do_image_splitting`` and ``tile_size`` count images as the processor's per-call
        ``do_image_splitting=...`` and ``max_image_size={"longest_edge": N}`` do
        (``None``: the spec's own); ``longest_edge`` is ``size={"longest_edge": N}``."""
        self.processor = processor
        self._text = _TextCounts(processor.tokenizer)
        self._pricing = ImageCounter(spec, longest_edge or spec.default_longest_edge,
                                     do_image_splitting=do_image_splitting,
                                     tile_size=tile_size)
        self._video_counter: Any = None

    @property
    def pricing(self) -> ImageCounter:
        """The image prices of this counter's settings (immutable, owned by it)."""
        return self._pricing

    @property
    def spec(self) -> ModelSpec:
        """The spec with the per-call settings folded in."""
        return self._pricing.spec

    @property
    def longest_edge(self) -> int:
        return self._pricing.longest_edge

    @property
    def tokenizer(self) -> Any:
        return self._text.tokenizer

    @property
    def specials(self) -> int:
        """Tokens the tokenizer adds to every text (its special tokens)."""
        return self._text.specials

    def with_settings(self, *, longest_edge: int | None = None,
                      do_image_splitting: bool | None = None,
                      tile_size: int | None = None) -> TokenCounter:
        """A new counter for this processor with other per-call image settings (``None``
        keeps this one's): the counts of ``processor(..., size=...,
        do_image_splitting=..., max_image_size=...)``. It shares this counter's text
        counts (the tokenizer is the same) and prices images with a new
        :class:`~pytest_tokenguard.counting.ImageCounter`, its cache empty."""
        other = TokenCounter.__new__(TokenCounter)
        other.processor = self.processor
        other._text = self._text
        other._pricing = self._pricing.with_settings(
            longest_edge=longest_edge, do_image_splitting=do_image_splitting,
            tile_size=tile_size)
        other._video_counter = None
        return other

    def image(self, width: int, height: int) -> ImageCost:
        """What a ``width``×``height`` image costs at this counter's resolution."""
        return self._pricing(width, height)

    def text(self, text: str) -> int:
        """Tokens of plain text, no special tokens added."""
        return self._text(text)

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
        text_tokens = sum(self.text(piece) for piece in pieces if piece) + self.specials
        block = sum(image.block_tokens for image in images)
        return PromptCount(
            total=text_tokens + block,
            text_tokens=text_tokens,
            image_tokens=sum(image.image_tokens for image in images),
            block_tokens=block,
            images=images,
        )

    def conversation(
        self, messages: Sequence[Any], *, add_generation_prompt: bool = False
    ) -> PromptCount:
        """Tokens of a chat-format conversation rendered by the processor's chat template.

        The messages are validated as :func:`~pytest_tokenguard.conversation.parse_conversation`
        does (errors name the message and the fix; plain-string content, frames items and
        ``<image>``/``<video>`` inside text are handled as the processor handles them),
        then rendered with the processor's own ``apply_chat_template``, whatever its
        template, and the rendered text counted exactly. Image items need a size:
        ``{"type": "image", "width": W, "height": H}``, a PIL image under ``"image"``, or a
        path under ``"path"``/``"url"`` (header read only). Video items are expanded as
        the processor expands them (one intro frame count for the whole call, see
        :mod:`pytest_tokenguard.video`); the ``image_tokens`` and ``block_tokens`` then
        include the videos' frames.
        """
        from .conversation import (
            PLACEHOLDERS,
            ConversationError,
            image_sizes,
            parse_conversation,
            to_chat_template,
            videos_of,
        )
        from .errors import TemplateError
        from .images import path_loader_of

        parsed = parse_conversation(messages, image_loader=path_loader_of(self.processor))
        if not parsed:
            raise ConversationError(
                "the conversation has no messages, which the chat template cannot render; "
                "give at least one message"
            )
        sizes = image_sizes(parsed)
        videos = videos_of(parsed)
        rendered = render_chat(self.processor, to_chat_template(parsed),
                               add_generation_prompt=add_generation_prompt)
        for placeholder in PLACEHOLDERS:
            expected = len(sizes) if placeholder == IMAGE_TOKEN else len(videos)
            if rendered.count(placeholder) != expected:
                raise TemplateError(
                    f"{template_file(self.processor)}: the chat template writes "
                    f"{rendered.count(placeholder)} {placeholder} for {expected} "
                    f"{placeholder.strip('<>')}s in the conversation, which the processor "
                    "refuses; fix the template"
                )
        if not videos:
            return self.prompt(rendered, sizes)
        plans = [self.video_counter.plan(v.info(), num_frames=v.num_frames, fps=v.sample_fps)
                 for v in videos]
        return self._with_videos(rendered, sizes, self.video_counter.costs(plans))

    def _with_videos(self, rendered: str, sizes: Sequence[tuple[int, int]],
                     costs: Sequence[Any]) -> PromptCount:
        """A rendered prompt with ``<video>`` placeholders: each is expanded as the
        processor expands it and its intro/outro tokenized with the text around it."""
        from .video import splice_videos

        spliced = splice_videos(rendered, costs)
        images = iter(self.image(w, h) for w, h in sizes)
        counted: list[ImageCost] = []
        text_tokens = self.specials
        for piece in spliced.pieces:
            parts = piece.split(IMAGE_TOKEN)
            text_tokens += sum(self.text(part) for part in parts if part)
            counted.extend(next(images) for _ in parts[1:])
        block = spliced.block_tokens + sum(image.block_tokens for image in counted)
        return PromptCount(
            total=text_tokens + block, text_tokens=text_tokens,
            image_tokens=spliced.image_tokens + sum(i.image_tokens for i in counted),
            block_tokens=block, images=tuple(counted),
        )

    def video(
        self, video: Any, *, num_frames: int | None = None, fps: float | None = None,
        video_size: int | None = None, do_sample_frames: bool = True,
        intro_frames: int | None = None,
    ) -> Any:
        """The exact :class:`~pytest_tokenguard.video.VideoCost` of one video: a path (its
        metadata read as the processor's loader reads it, no frame decoded), a
        :class:`~pytest_tokenguard.video.VideoInfo` or a
        :class:`~pytest_tokenguard.video.VideoPlan`.

        Sampling defaults are this processor's own (``video_processor.num_frames`` and
        ``fps``); ``do_sample_frames=True`` is what ``apply_chat_template`` does. The
        :class:`~pytest_tokenguard.video.VideoCounter` behind it is built once and kept
        on the counter (``counter.video_counter``) for ``many``/``max_frames_within``.
        """
        return self.video_counter(video, num_frames=num_frames, fps=fps,
                                  video_size=video_size, do_sample_frames=do_sample_frames,
                                  intro_frames=intro_frames)

    @property
    def video_counter(self) -> Any:
        """The :class:`~pytest_tokenguard.video.VideoCounter` of this processor (lazy)."""
        if self._video_counter is None:
            from .video import VideoCounter, video_sampling_from_processor

            self._video_counter = VideoCounter(self.spec, self.text,
                                               video_sampling_from_processor(self.processor))
        return self._video_counter


def image_item_size(item: dict[str, Any], *, loader: Any = None) -> tuple[int, int]:
    """(width, height) of a chat-format image item, reading only the file header of a
    path, which is refused when ``loader`` (see
    :func:`~pytest_tokenguard.images.read_image_info`) cannot load it."""
    if "width" in item and "height" in item:
        return int(item["width"]), int(item["height"])
    image = item.get("image")
    if image is not None and hasattr(image, "size"):
        width, height = image.size
        return int(width), int(height)
    path = item.get("path") or item.get("url") or (image if isinstance(image, str) else None)
    if path:
        from .images import read_image_size

        return read_image_size(path, loader=loader)
    raise ValueError(
        f"image item {item!r} has no size: give 'width' and 'height', a PIL image under "
        "'image', or a file under 'path'"
    )


# ------------------------------------------------------------------ fast exact text counts

#: GPT-2's pre-tokenizer pattern, as the ``ByteLevel(use_regex=True)`` pre-tokenizer of
#: the ``tokenizers`` library applies it.
_BYTELEVEL_PATTERN = (
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
)
#: The same split for ASCII text, as one stdlib pattern: the individual-digits step is
#: folded in (a digit is a token of its own, and whitespace before a digit ends a
#: segment, which the ``\s+(?!\S)`` rule sees as the end of the string). Letters come
#: first because they are most of the text; no two alternatives start alike, so the
#: order does not change the split.
_ASCII_PATTERN = (
    r" ?[A-Za-z]+|[0-9]|'(?:s|t|re|ve|m|ll|d)| ?[^\sA-Za-z0-9]+|\s+(?=[0-9])|\s+(?!\S)|\s+"
)
_ASCII_SLOW_PATTERN = r"[<\x00-\x08\x0e-\x1f\x7f]"
#: Text with these goes to the real tokenizer: added tokens start with "<" in SmolVLM,
#: and control or non-ASCII whitespace is where regex engines may disagree on ``\s``.
_SLOW_PATH_PATTERN = r"[<\x00-\x08\x0e-\x1f\x7f-\x9f]|(?![\t\n\x0b\x0c\r ])\s"


class PretokenCounter:
    """Exact token counts of plain text, fast, for SmolLM2-style tokenizers.

    A byte-level BPE tokenizer never merges across pre-tokens, so a text's token count
    is the sum of its pre-tokens' counts. Words repeat, so counting each pre-token
    once and caching it makes a 50-message conversation cost microseconds instead of
    the ~50 µs per call of the tokenizer. Built only for the exact pipeline it mirrors
    (no normalizer; individual digits, then GPT-2 byte-level regex; plain BPE): for any
    other tokenizer :meth:`for_tokenizer` returns ``None`` and callers use the tokenizer.
    Text that could hold added tokens or exotic whitespace goes to the tokenizer too.
    """

    def __init__(self, backend: Any, fallback: Any) -> None:
        import importlib

        regex = importlib.import_module("regex")  # transformers' dependency; no type stubs
        self._encode = backend.encode
        self._fallback = fallback
        self._cache: dict[str, int] = {}
        self._digits = regex.compile(r"(\p{N})").split
        self._words = regex.compile(_BYTELEVEL_PATTERN).findall
        self._slow = regex.compile(_SLOW_PATH_PATTERN).search
        self._ascii_words = re.compile(_ASCII_PATTERN).findall
        self._ascii_slow = re.compile(_ASCII_SLOW_PATTERN).search

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, fallback: Any) -> PretokenCounter | None:
        import json

        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            return None
        try:
            config = json.loads(backend.to_str())
        except Exception:  # pragma: no cover - not a tokenizers.Tokenizer
            return None
        expected_pre = {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                 "use_regex": True},
            ],
        }
        model = config.get("model") or {}
        if (
            config.get("normalizer") is not None
            or config.get("pre_tokenizer") != expected_pre
            or model.get("type") != "BPE"
            or model.get("dropout") not in (None, 0, 0.0)
            or any(not t.get("content", "").startswith("<")
                   for t in config.get("added_tokens", []))
        ):
            return None
        return cls(backend, fallback)

    def __call__(self, text: str) -> int:
        cache = self._cache
        if text.isascii():
            if self._ascii_slow(text) is not None:
                return int(self._fallback(text))
            words = self._ascii_words(text)
            try:
                return sum(map(cache.__getitem__, words))
            except KeyError:
                return sum(self._word(word) for word in words)
        if self._slow(text) is not None:
            return int(self._fallback(text))
        total = 0
        for segment in self._digits(text):
            if not segment:
                continue
            for word in self._words(segment):
                count = cache.get(word)
                if count is None:
                    count = len(self._encode(word, add_special_tokens=False).ids)
                    if len(cache) < 1 << 20:
                        cache[word] = count
                total += count
        return total

    def _word(self, word: str) -> int:
        count = self._cache.get(word)
        if count is None:
            count = len(self._encode(word, add_special_tokens=False).ids)
            if len(self._cache) < 1 << 20:
                self._cache[word] = count
        return count


def fast_text_counter(counter: TokenCounter) -> Any:
    """A callable text -> tokens equal to ``counter.text``, fast where the tokenizer allows.

    Built once per tokenizer (it reads the tokenizer's JSON) and kept with the counter's
    text counts, so it lives and dies with them.
    """
    return counter._text.fast()
