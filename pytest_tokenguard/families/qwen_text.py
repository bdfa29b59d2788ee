"""Whole Qwen-VL conversations, counted exactly: the chat template, the text, the images and
the videos, as ``len(input_ids)`` of ``processor(text=processor.apply_chat_template(messages,
tokenize=False), images=..., videos=...)``.

Exact by construction, the way the processor itself gets there (transformers 5.25,
``ProcessorMixin.__call__`` and ``Qwen3VLProcessor.get_text_with_replacements``):

1. the conversation is rendered with the checkpoint's own chat template, through the
   tokenizer's ``apply_chat_template`` (the processor's calls the same
   ``render_jinja_template`` with the same special tokens; Qwen2-VL's template writes a
   default system message when the first message is not one, ``<|vision_start|>
   <|image_pad|><|vision_end|>`` per image and ``<|video_pad|>`` per video);
2. on Qwen3-VL the template's ``<|vision_start|><|video_pad|><|vision_end|>`` collapses to
   the bare placeholder (transformers 5.25 on, :func:`~.qwen.qwen3_keeps_outer_wrapper`);
3. each ``<|image_pad|>`` and ``<|video_pad|>`` is replaced, in order, by what the processor
   writes for that image or video (:mod:`.qwen`'s arithmetic): pads, and on Qwen3-VL the
   ``<t seconds>`` text and wrappers of every temporal patch, tokenized in place with the
   text around them;
4. the text is tokenized by the checkpoint's tokenizer as the processor tokenizes it. A
   pad is one added token wherever it stands, so each block is tokenized with one pad and
   its other pads are added.

What cannot be priced exactly is refused with a one-line error naming it: an image the
processor refuses (aspect ratio over 200), a video whose frame size is unknown, videos of
one conversation with different sampling (one processor call samples them all alike),
``<|image_pad|>``/``<|video_pad|>`` inside text, a template that writes another number of
placeholders than there are images or videos. Text is never guessed: without the
checkpoint's tokenizer :meth:`QwenTokenCounter.from_model` raises
:class:`~pytest_tokenguard.errors.TokenizerUnavailable`.

A counter is immutable and owns its caches; :meth:`QwenTokenCounter.with_settings` gives a
new counter with empty ones (a copy at other settings never sees this one's prices).

Messages use the chat format of :mod:`pytest_tokenguard.conversation` (images by path, PIL
image or ``width``/``height``; ``frames`` items as that many images; ``video`` items with
metadata and, for Qwen, the frame size ``width``/``height`` or a file to read it from).
transformers is imported only when a counter is built from a folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..conversation import (
    Conversation,
    FramesItem,
    ImageItem,
    Message,
    MessageLike,
    TextItem,
    VideoItem,
    parse_message,
    to_chat_template,
)
from ..errors import (
    ConversationError,
    ProcessorLoadError,
    SpecError,
    TemplateError,
    TokenizerUnavailable,
)
from ..video import VideoInfo
from .qwen import (
    GENERATION_OF,
    IMAGE_PAD,
    VIDEO_PAD,
    VISION_END,
    VISION_START,
    QwenImageCost,
    QwenRefusal,
    QwenSettings,
    QwenSpec,
    QwenVideoCost,
    call_bounds,
    count_qwen_image,
    count_qwen_video,
    qwen3_keeps_outer_wrapper,
)

__all__ = ["MAX_IMAGES", "QwenConversationCount", "QwenTokenCounter"]

#: the most images (frames sent as images included) one conversation may hold: each is
#: rendered by the chat template, so a frames ``end`` that is a timestamp is refused first
MAX_IMAGES = 100_000

_VIDEO_WRAPPER = VISION_START + VIDEO_PAD + VISION_END
_PLACEHOLDER = re.compile(re.escape(IMAGE_PAD) + "|" + re.escape(VIDEO_PAD))
#: what the Qwen processor expands, so never allowed inside text
_PADS = (IMAGE_PAD, VIDEO_PAD)


@dataclass(frozen=True)
class QwenConversationCount:
    """A Qwen-VL conversation's exact length and where its tokens come from.

    ``total`` is ``len(input_ids)``. ``image_block_tokens`` are the images'
    ``<|image_pad|>`` tokens (``image_tokens``) and the ``<|vision_start|>``/
    ``<|vision_end|>`` around them; ``video_block_tokens`` the videos' ``<|video_pad|>``
    tokens (``video_tokens``) and their wrappers (one pair per video on Qwen2/2.5-VL, one
    per temporal patch on Qwen3-VL). ``text_tokens`` is everything else: the template's
    tokens, the messages' text and Qwen3-VL's ``<t seconds>`` text, which the tokenizer
    merges with its neighbours and so cannot be told apart exactly.

    ``first_media`` is the index in ``input_ids`` of the first ``<|image_pad|>`` or
    ``<|video_pad|>`` token and ``after_last_media`` how many tokens follow the last one
    (None and None without images or videos): where a truncation at ``max_length`` starts
    to drop placeholder tokens, which the processor refuses.
    """

    total: int
    text_tokens: int
    image_tokens: int
    image_block_tokens: int
    video_tokens: int
    video_block_tokens: int
    images: tuple[QwenImageCost, ...]
    videos: tuple[QwenVideoCost, ...]
    first_media: int | None = None
    after_last_media: int | None = None

    def __str__(self) -> str:
        return (f"{self.total} tokens = {self.text_tokens} template and text + "
                f"{self.image_block_tokens} in {len(self.images)} image blocks + "
                f"{self.video_block_tokens} in {len(self.videos)} video blocks")


def _template_of(processor: Any) -> str:
    """The chat template ``processor.apply_chat_template`` renders with by default."""
    template = getattr(processor, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    if not isinstance(template, str) or not template:
        raise TemplateError(f"{type(processor).__name__} has no chat template (none in the "
                            "checkpoint's chat_template.jinja or chat_template.json); a "
                            "conversation cannot be rendered, so it cannot be counted: load "
                            "the checkpoint's processor, or set processor.chat_template")
    return template


def _generation_of(processor: Any) -> bool:
    return any(c.__name__ in GENERATION_OF for c in type(processor).__mro__)


class QwenTokenCounter:
    """Exact token counts of Qwen2-VL, Qwen2.5-VL and Qwen3-VL conversations, for one
    checkpoint at one pair of per-call settings (``min_pixels``/``max_pixels``, as
    ``processor(..., min_pixels=..., max_pixels=...)`` takes them; ``None``: the
    processor's own). See the module docstring for how it counts."""

    __slots__ = ("__weakref__", "_images", "_settings", "_texts", "chat_template", "model",
                 "spec", "tokenizer")

    def __init__(self, tokenizer: Any, chat_template: str, spec: QwenSpec, *,
                 min_pixels: int | None = None, max_pixels: int | None = None,
                 model: str | None = None) -> None:
        """A counter from the checkpoint's tokenizer, chat template and
        :class:`~.qwen.QwenSpec`; :meth:`from_processor` and :meth:`from_model` build one
        from a loaded processor or a checkpoint."""
        if not isinstance(chat_template, str) or not chat_template:
            raise TemplateError("chat_template must be the checkpoint's chat template (a "
                                f"Jinja string), got {type(chat_template).__name__}")
        settings = QwenSettings(None, min_pixels, max_pixels)
        for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise SpecError(f"{name} must be a positive number of pixels, got {value!r}")
        call_bounds(spec.image, settings)  # what the processor refuses, refused here
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.spec = spec
        self.model = model or spec.name
        self._settings = settings
        self._images: dict[tuple[int, int], QwenImageCost] = {}
        self._texts: dict[str, int] = {}

    # ------------------------------------------------------------------ building

    @classmethod
    def from_processor(cls, processor: Any, *, min_pixels: int | None = None,
                       max_pixels: int | None = None) -> QwenTokenCounter:
        """A counter from a loaded ``Qwen2VLProcessor``, ``Qwen2_5_VLProcessor`` or
        ``Qwen3VLProcessor``: its tokenizer, chat template and image and video processor
        settings (as its ``__call__`` reads them)."""
        from ..processor.recording.qwen import spec_of

        spec = spec_of(processor) if _generation_of(processor) else None
        if spec is None:
            raise SpecError(f"{type(processor).__name__} is not a Qwen-VL processor "
                            "(Qwen2VLProcessor, Qwen2_5_VLProcessor or Qwen3VLProcessor); "
                            "count SmolVLM2 with TokenCounter")
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None:
            raise SpecError(f"{type(processor).__name__} has no tokenizer; load the processor "
                            "with the checkpoint's tokenizer")
        name = str(getattr(tokenizer, "name_or_path", "") or "") or spec.name
        return cls(tokenizer, _template_of(processor), spec, min_pixels=min_pixels,
                   max_pixels=max_pixels, model=name)

    @classmethod
    def from_model(cls, model_or_folder: str | Path, *, min_pixels: int | None = None,
                   max_pixels: int | None = None) -> QwenTokenCounter:
        """A counter for a Qwen-VL checkpoint folder or hub id, found through the family
        registry (:func:`~pytest_tokenguard.families.resolve_family`): its processor is
        loaded from the folder or the hub cache, never the network. A known hub id with no
        files on this machine is :class:`~pytest_tokenguard.errors.TokenizerUnavailable`:
        its text cannot be counted without its tokenizer, and is never guessed."""
        from . import resolve_family

        model = str(model_or_folder)
        found = resolve_family(model)
        if found is None:
            raise SpecError(f"{model}: not a Qwen-VL checkpoint folder, nor a Qwen-VL hub id "
                            "known or in the hub cache; give the checkpoint folder")
        if found.family.name != "qwen-vl":
            raise SpecError(f"{model} is a {found.family.name} model, not Qwen-VL; count it "
                            "with TokenCounter")
        folder = found.folder
        if folder is None or not any((folder / name).is_file() for name in (
                "tokenizer.json", "vocab.json", "tokenizer_config.json")):
            raise TokenizerUnavailable(model)
        processor = _load_processor(folder)
        counter = cls.from_processor(processor, min_pixels=min_pixels, max_pixels=max_pixels)
        return cls(counter.tokenizer, counter.chat_template, replace(counter.spec, name=model),
                   min_pixels=min_pixels, max_pixels=max_pixels, model=model)

    def with_settings(self, *, min_pixels: int | None = None,
                      max_pixels: int | None = None) -> QwenTokenCounter:
        """A new counter with other per-call settings (``None`` keeps this one's), its
        caches empty: nothing priced at these settings is reused at others."""
        current = self._settings
        return QwenTokenCounter(
            self.tokenizer, self.chat_template, self.spec,
            min_pixels=current.min_pixels if min_pixels is None else min_pixels,
            max_pixels=current.max_pixels if max_pixels is None else max_pixels,
            model=self.model)

    @property
    def min_pixels(self) -> int:
        """The images' ``min_pixels`` at this counter's settings."""
        return call_bounds(self.spec.image, self._settings)[0]

    @property
    def max_pixels(self) -> int:
        """The images' ``max_pixels`` at this counter's settings."""
        return call_bounds(self.spec.image, self._settings)[1]

    @property
    def settings(self) -> QwenSettings:
        """The per-call settings this counter counts with (``None``: the processor's)."""
        return self._settings

    def __repr__(self) -> str:
        return (f"QwenTokenCounter({self.model!r}, min_pixels={self.min_pixels}, "
                f"max_pixels={self.max_pixels})")

    # ------------------------------------------------------------------ pieces

    def text(self, text: str) -> int:
        """Tokens of plain text with the checkpoint's tokenizer, no special tokens added."""
        cached = self._texts.get(text)
        if cached is None:
            cached = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if len(self._texts) < 65536:
                self._texts[text] = cached
        return cached

    def image(self, width: int, height: int) -> QwenImageCost:
        """What a ``width``×``height`` image costs at this counter's settings (the family's
        cost row); what the processor refuses is a :class:`~.qwen.QwenRefusal`."""
        key = (width, height)
        cost = self._images.get(key)
        if cost is None:
            cost = count_qwen_image(width, height, self.spec, self._settings)
            if len(self._images) < 65536:
                self._images[key] = cost
        return cost

    def video(self, item: VideoItem | VideoInfo, *, num_frames: int | None = None,
              fps: float | None = None) -> QwenVideoCost:
        """What a video costs at this counter's settings: a
        :class:`~pytest_tokenguard.conversation.VideoItem` (its own sampling) or a
        :class:`~pytest_tokenguard.video.VideoInfo` sampled with ``num_frames``/``fps``
        (``None``: the processor's own sampling). A number of frames or a rate is a call
        that samples (``do_sample_frames=True``); on Qwen3-VL ``num_frames`` alone is the
        call ``num_frames=N, fps=None`` (its own ``fps=2`` would clash)."""
        if isinstance(item, VideoItem):
            num_frames, fps = item.num_frames, item.sample_fps
            info = _sized_info(item)
        else:
            info = item
        spec = self.spec
        if spec.generation == "qwen3_vl" and num_frames is not None and fps is None:
            spec = replace(spec, sampling=replace(spec.sampling, fps=None))
        sample = True if num_frames is not None or fps is not None else None
        return count_qwen_video(info, spec, num_frames=num_frames, fps=fps,
                                do_sample_frames=sample, settings=self._settings,
                                text=self.text)

    # ------------------------------------------------------------------ conversations

    def parse(self, messages: Sequence[MessageLike] | Conversation, *,
              label: str = "message",
              base_dir: str | os.PathLike[str] | None = None) -> Conversation:
        """The messages validated (:func:`~pytest_tokenguard.conversation.parse_message`)
        and checked for what the Qwen processor refuses in text; relative paths resolve
        against ``base_dir``."""
        if isinstance(messages, Mapping | str | bytes):
            raise ConversationError(
                f"a conversation is a list of messages, got {type(messages).__name__}; for a "
                "JSON object with 'messages', pass its 'messages' list")
        # message by message: SmolVLM2's refusal of string content beside a video
        # (check_video_strings) is about transformers' SmolVLM template, not Qwen's
        # text may hold SmolVLM2's "<image>": the Qwen processor writes it as text
        parsed = tuple(parse_message(m, i, label=label, base_dir=base_dir,
                                     placeholders=_PADS) for i, m in enumerate(messages))
        images = 0
        for index, message in enumerate(parsed):
            images += message.images
            for position, item in enumerate(message.content):
                if type(item) is TextItem:
                    for pad, kind in ((IMAGE_PAD, "image"), (VIDEO_PAD, "video")):
                        if pad in item.text:
                            where = (f"{label} {index}" if message.string_content
                                     else f"{label} {index}, item {position}")
                            raise ConversationError(
                                f"{where}: the text contains {pad!r}, which the Qwen processor "
                                f"takes for a {kind} placeholder (and raises: no {kind} goes "
                                f"with it); put {kind}s in their own {{'type': '{kind}'}} items")
        if images > MAX_IMAGES:
            raise ConversationError(
                f"the conversation holds {images} images (frames sent as images included), "
                f"more than {MAX_IMAGES}; check its frame ranges (frames 'end' is exclusive, "
                "not a timestamp)")
        return parsed

    def render(self, messages: Sequence[MessageLike] | Conversation,
               add_generation_prompt: bool = False) -> str:
        """The text the chat template writes for ``messages`` (``apply_chat_template(...,
        tokenize=False)``), placeholders not expanded."""
        return self._render(self.parse(messages), add_generation_prompt)

    def _render(self, messages: Conversation, add_generation_prompt: bool) -> str:
        try:
            rendered = self.tokenizer.apply_chat_template(
                to_chat_template(messages), chat_template=self.chat_template, tokenize=False,
                add_generation_prompt=add_generation_prompt)
        except Exception as exc:  # the template itself raised (jinja2, a bad index...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise TemplateError(
                f"{self.model}: the chat template cannot render this conversation "
                f"({type(exc).__name__}: {first}); fix the conversation or the template"
            ) from None
        return str(rendered)

    def conversation(self, messages: Sequence[MessageLike] | Conversation,
                     add_generation_prompt: bool = False, *,
                     add_special_tokens: bool = True) -> QwenConversationCount:
        """The exact ``len(input_ids)`` of ``processor(text=apply_chat_template(messages,
        tokenize=False, add_generation_prompt=...), images=..., videos=...)`` at this
        counter's settings, with its breakdown. An empty conversation is refused.
        ``add_special_tokens=False`` is the call TRL's collator makes (Qwen's tokenizers
        add none either way)."""
        parsed = self.parse(messages)
        if not parsed:
            raise ConversationError("the conversation has no messages, which the chat template "
                                    "cannot render; give at least one message")
        images, videos = self._costs(parsed)
        return self._count(self._render(parsed, add_generation_prompt), images, videos,
                           add_special_tokens)

    def chunk_tokens(self, messages: Sequence[Message]) -> int:
        """The exact length of ``messages`` rendered as one conversation (no generation
        prompt): how :func:`~pytest_tokenguard.splitting.split` prices a chunk."""
        return self.conversation(tuple(messages)).total

    def _costs(self, messages: Conversation
               ) -> tuple[list[QwenImageCost], list[QwenVideoCost]]:
        """Every image's and video's cost, in the order the template writes them; a refusal
        names the item."""
        images: list[QwenImageCost] = []
        videos: list[QwenVideoCost] = []
        sampling: tuple[int | None, float | None] | None = None
        for index, message in enumerate(messages):
            for position, item in enumerate(message.content):
                kind = type(item)
                if kind is TextItem:
                    continue
                where = f"message {index}, item {position}"
                try:
                    if kind is VideoItem:
                        assert isinstance(item, VideoItem)
                        mine = (item.num_frames, item.sample_fps)
                        if sampling is not None and mine != sampling:
                            raise ConversationError(
                                f"{where}: this video is sampled with num_frames={mine[0]}, "
                                f"sample_fps={mine[1]} but an earlier one with "
                                f"num_frames={sampling[0]}, sample_fps={sampling[1]}; one "
                                "processor call samples all its videos alike: give them the "
                                "same 'num_frames' and 'sample_fps'")
                        sampling = mine
                        videos.append(self.video(item))
                    else:
                        assert isinstance(item, ImageItem | FramesItem)
                        cost = self.image(item.width, item.height)
                        images.extend([cost] * (len(item) if isinstance(item, FramesItem)
                                                else 1))
                except QwenRefusal as exc:
                    what = "video" if kind is VideoItem else "image"
                    raise QwenRefusal(f"{where}: the Qwen processor refuses this {what}: "
                                      f"{exc}") from None
                except ConversationError as exc:
                    if str(exc).startswith(where):
                        raise
                    raise ConversationError(f"{where}: {exc}") from None
        return images, videos

    def _count(self, rendered: str, images: Sequence[QwenImageCost],
               videos: Sequence[QwenVideoCost],
               add_special_tokens: bool = True) -> QwenConversationCount:
        """``rendered`` with every placeholder expanded as the processor expands it,
        tokenized (each block with one pad, the others added); the pads' positions are
        those of the one-pad blocks, shifted by the pads added before them."""
        qwen3 = self.spec.generation == "qwen3_vl"
        if videos and qwen3 and not qwen3_keeps_outer_wrapper():
            rendered = rendered.replace(_VIDEO_WRAPPER, VIDEO_PAD)
        found = {pad: rendered.count(pad) for pad in (IMAGE_PAD, VIDEO_PAD)}
        for pad, wanted, kind in ((IMAGE_PAD, len(images), "image"),
                                  (VIDEO_PAD, len(videos), "video")):
            if found[pad] != wanted:
                raise TemplateError(
                    f"{self.model}: the chat template writes {found[pad]} {pad} for {wanted} "
                    f"{kind}s in the conversation, which the processor refuses; fix the "
                    "template or the conversation")
        pieces: list[str] = []
        blocks: list[int] = []  # the pads of each one-pad block, in order
        extra = image_tokens = image_blocks = video_tokens = video_blocks = 0
        at = 0
        next_image = next_video = 0
        for match in _PLACEHOLDER.finditer(rendered):
            pieces.append(rendered[at:match.start()])
            at = match.end()
            wrapped = 2 * (rendered.endswith(VISION_START, 0, match.start())
                           and rendered.startswith(VISION_END, match.end()))
            if match.group() == IMAGE_PAD:
                cost = images[next_image]
                next_image += 1
                pieces.append(IMAGE_PAD)
                blocks.append(cost.image_tokens)
                extra += cost.image_tokens - 1
                image_tokens += cost.image_tokens
                image_blocks += cost.image_tokens + wrapped
                continue
            video = videos[next_video]
            next_video += 1
            video_tokens += video.video_tokens
            if not qwen3:
                pieces.append(VIDEO_PAD)
                blocks.append(video.video_tokens)
                extra += video.video_tokens - 1
                video_blocks += video.video_tokens + wrapped
                continue
            per_patch = video.video_tokens // video.grid_t
            pieces.extend(stamp + VISION_START + VIDEO_PAD + VISION_END for stamp in video.text)
            blocks.extend([per_patch] * len(video.text))
            extra += (per_patch - 1) * video.grid_t
            video_blocks += video.video_tokens + 2 * video.grid_t + wrapped
        pieces.append(rendered[at:])
        ids = self.tokenizer("".join(pieces), add_special_tokens=add_special_tokens)["input_ids"]
        total = len(ids) + extra
        first, after = _media_span(ids, blocks, total, self._pad_ids())
        return QwenConversationCount(
            total=total, text_tokens=total - image_blocks - video_blocks,
            image_tokens=image_tokens, image_block_tokens=image_blocks,
            video_tokens=video_tokens, video_block_tokens=video_blocks,
            images=tuple(images), videos=tuple(videos), first_media=first,
            after_last_media=after)

    def _pad_ids(self) -> frozenset[int]:
        return frozenset(int(self.tokenizer.convert_tokens_to_ids(pad))
                         for pad in (IMAGE_PAD, VIDEO_PAD))


def _media_span(ids: Sequence[int], blocks: Sequence[int], total: int,
                pads: frozenset[int]) -> tuple[int | None, int | None]:
    """(index of the first pad, tokens after the last) in the expanded ``input_ids`` of
    ``ids``, whose one-pad blocks hold ``blocks`` pads each; a tokenization that does not
    keep one pad per block (the pad merged with its neighbours) is refused."""
    found = [index for index, token in enumerate(ids) if token in pads]
    if len(found) != len(blocks):
        raise TemplateError(f"the tokenizer writes {len(found)} placeholder tokens for "
                            f"{len(blocks)} image and video blocks; their positions cannot be "
                            "told: check that <|image_pad|> and <|video_pad|> are its added "
                            "tokens")
    if not found:
        return None, None
    shift = sum(blocks[:-1]) - (len(blocks) - 1)
    last = found[-1] + shift + blocks[-1] - 1
    return found[0], total - 1 - last


def _sized_info(item: VideoItem) -> VideoInfo:
    """The item's metadata with its frame size: declared, else read from its file (the
    header only, as the processor's loader reads it), else refused by name."""
    info = item.info()
    if info.width is not None and info.height is not None:
        return info
    if item.file is not None and Path(item.file).is_file():
        from ..video import read_video_info

        read = read_video_info(item.file)
        if read.width is not None and read.height is not None:
            return info._replace(width=read.width, height=read.height)
    raise ConversationError(
        f"video {item.file or item.path or ''}".rstrip() + ": a Qwen-VL video's cost depends "
        "on its frame size, which is not known; give 'width' and 'height' (the frame size in "
        "pixels) in the video item, or a file under 'path'")


def _load_processor(folder: Path) -> Any:
    """``AutoProcessor.from_pretrained(folder)`` from local files only, quietly; a failure
    names the folder and the reason."""
    import warnings

    try:
        from transformers import AutoProcessor

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return AutoProcessor.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ProcessorLoadError(f"{folder}: the Qwen-VL processor cannot be loaded from this "
                                 f"folder ({first}); check its files") from None
