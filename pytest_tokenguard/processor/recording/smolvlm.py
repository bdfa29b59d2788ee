"""What a SmolVLM2 / Idefics3 processor call wrote for its images and videos, read off its
own output at the settings the call used (per-call ``size``, ``max_image_size``,
``do_image_splitting``, in any form transformers' kwargs merging accepts): each image's
rows×cols grid, its ``<image>`` tokens and the size of its text block; each video's sampled
frames, tokens and the exact cost at every ``num_frames`` (what a marker reads its fix
from).

transformers is imported only inside functions, on a call the recorder reads.
"""

from __future__ import annotations

import os
from typing import Any

from ...counting import block_tokens
from ...specs import GLOBAL_TOKEN, IMAGE_TOKEN, ModelSpec
from .reading import facts_of, flat, float_or_none, image_size, int_or_none, setting, text_counter
from .records import ImageRecord, VideoRecord

__all__ = ["block_of", "read_images", "read_videos", "text_call_edge"]


def longest_edge_of(size: Any) -> int | None:
    """The longest edge a ``size`` setting resizes to (a dict, a SizeDict or an int)."""
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    def get(key: str) -> Any:
        return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

    edge = get("longest_edge")
    if edge:
        return int(edge)
    height, width = get("height"), get("width")
    if height and width:
        return max(int(height), int(width))
    return None


_MARKER_CHARS: dict[tuple[int, int], int] = {}


def _expected_block_chars(rows: int, cols: int, seq: int, fake: str, image: str,
                          global_token: str) -> int:
    """Characters of the block ``replace_image_token`` writes for a rows×cols image."""
    single = 2 * len(fake) + len(global_token) + seq * len(image)
    if rows == 0 and cols == 0:
        return single
    markers = _MARKER_CHARS.get((rows, cols))
    if markers is None:
        markers = _MARKER_CHARS[rows, cols] = sum(
            len(f"<row_{r}_col_{c}>") for r in range(1, rows + 1) for c in range(1, cols + 1))
    tiles = rows * cols * (len(fake) + seq * len(image)) + markers
    return tiles + rows + 1 + single  # a newline per row, one before the global image


def block_of(processor: Any, text: str, rows: int, cols: int) -> tuple[int, int]:
    """(``<image>`` tokens, block tokens) of one image's replacement ``text``.

    The block is computed from rows, cols and the tokenizer's facts
    (:func:`counting.block_tokens`) once the text is checked to be exactly the block the
    SmolVLM processors write; any other text (a customised processor) is tokenized.
    """
    image = getattr(processor, "image_token", IMAGE_TOKEN)
    image_tokens = text.count(image)
    patches = rows * cols + 1 if rows or cols else 1
    seq, rest = divmod(image_tokens, patches)
    fake = getattr(processor, "fake_image_token", "<fake_token_around_image>")
    global_token = getattr(processor, "global_image_token",
                           getattr(processor, "global_image_tag", GLOBAL_TOKEN))
    tokenizer = processor.tokenizer
    if seq > 0 and not rest and text.startswith(fake) and \
            len(text) == _expected_block_chars(rows, cols, seq, fake, image, global_token):
        return image_tokens, block_tokens(rows, cols, facts_of(tokenizer).spec(seq))
    return image_tokens, len(tokenizer(text, add_special_tokens=False)["input_ids"])


def read_images(processor: Any, images: Any, kwargs: dict[str, Any], processed: Any,
                replacements: list[str]) -> tuple[int | None, list[ImageRecord]]:
    """The images of one call, at the settings the image processor received."""
    from transformers.image_utils import make_flat_list_of_images

    image_processor = processor.image_processor
    resize = setting(kwargs, "do_resize", getattr(image_processor, "do_resize", True))
    edge = longest_edge_of(setting(kwargs, "size", image_processor.size))
    tile = longest_edge_of(setting(kwargs, "max_image_size",
                                     image_processor.max_image_size)) or 0
    splitting = bool(setting(kwargs, "do_image_splitting",
                              getattr(image_processor, "do_image_splitting", True)))
    rows_of = flat(processed.get("rows")) if hasattr(processed, "get") else []
    cols_of = flat(processed.get("cols")) if hasattr(processed, "get") else []
    name = type(processor).__name__
    records = []
    for index, (image, text) in enumerate(
            zip(make_flat_list_of_images(images), replacements, strict=False)):
        width, height = image_size(image)
        rows = rows_of[index] if index < len(rows_of) else 0
        cols = cols_of[index] if index < len(cols_of) else 0
        image_tokens, block = block_of(processor, text, rows, cols)
        records.append(ImageRecord(
            width=width, height=height,
            longest_edge=(edge or 0) if resize else max(width, height),
            tile_size=tile, rows=rows, cols=cols, image_tokens=image_tokens,
            block_tokens=block, processor=name, do_image_splitting=splitting,
        ))
    if not resize:  # each image kept its own size
        edge = max((record.longest_edge or 0 for record in records), default=None)
    return edge, records


def read_videos(processor: Any, videos: Any, kwargs: dict[str, Any], processed: Any,
                replacements: list[str]) -> list[VideoRecord]:
    """The videos of one call, read off the processor's own replacement text."""
    from transformers.video_utils import make_batched_videos

    from ...video import VideoCounter, video_info, video_sampling_from_processor

    video_processor = processor.video_processor
    sampled = bool(setting(kwargs, "do_sample_frames",
                            getattr(video_processor, "do_sample_frames", False)))
    num_frames = kwargs.get("num_frames")
    sample_fps = kwargs.get("fps")
    sampling = video_sampling_from_processor(processor)
    inputs = make_batched_videos(videos)
    metadata = list(processed.get("video_metadata") or []) if hasattr(processed, "get") \
        else []
    fake = getattr(processor, "fake_image_token", "<fake_token_around_image>")
    image = getattr(processor, "image_token", IMAGE_TOKEN)
    global_token = getattr(processor, "global_image_token", GLOBAL_TOKEN)
    tokenizer = processor.tokenizer
    counter: VideoCounter | None = None
    records = []
    for index, text in enumerate(replacements):
        frames = text.count(global_token)
        image_tokens = text.count(image)
        seq = image_tokens // frames if frames else 0
        block = (block_of(processor, f"{fake}{global_token}{image * seq}{fake}", 0, 0)[1]
                 * frames) if seq else 0
        tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        meta = metadata[index] if index < len(metadata) else None
        total = int_or_none(getattr(meta, "total_num_frames", None))
        fps = float_or_none(getattr(meta, "fps", None))
        duration = float_or_none(getattr(meta, "duration", None))
        by_num: tuple[int, ...] = ()
        by_fps: tuple[tuple[float, int], ...] = ()
        if total and fps and duration is not None and seq:
            if counter is None:
                spec = ModelSpec(name=type(processor).__name__, tile_size=1,
                                 image_seq_len=seq, default_longest_edge=1)
                counter = VideoCounter(spec, text_counter(tokenizer), sampling)
            info = video_info(total, fps, duration)
            by_num = counter.tokens_by_num_frames(info, fps=sample_fps)
            by_fps = counter.tokens_by_fps(info, num_frames=num_frames)
        source = inputs[index] if index < len(inputs) else None
        records.append(VideoRecord(
            name=os.fspath(source) if isinstance(source, str | os.PathLike) else "",
            frames=frames, image_tokens=image_tokens, block_tokens=block, tokens=tokens,
            total_frames=total, fps=fps, duration=duration, sampled=sampled,
            num_frames=int_or_none(num_frames), sample_fps=float_or_none(sample_fps),
            max_frames=sampling.max_frames, processor=type(processor).__name__,
            by_num_frames=by_num, by_fps=by_fps,
        ))
    return records


def text_call_edge(processor: Any, kwargs: dict[str, Any]) -> int | None:
    """The ``longest_edge`` of a call that processed no image: its ``size`` setting (at the
    top level, in ``images_kwargs`` or ``common_kwargs``), else the image processor's."""
    image_processor = processor.image_processor
    size = kwargs.get("size")
    for place in ("images_kwargs", "common_kwargs"):
        if size is None and isinstance(kwargs.get(place), dict):
            size = kwargs[place].get("size")
    return longest_edge_of(size if size is not None else
                           getattr(image_processor, "size", None))
