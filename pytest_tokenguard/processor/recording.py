"""Record what real SmolVLM processor calls produce while a test runs.

The code under test builds its own processor, often with settings the test author
never sees (the default ``longest_edge`` of 1536, say). So recording happens at the
class level: while a :class:`Recorder` is active, every ``SmolVLMProcessor`` (and
``Idefics3Processor``) instance reports each image it expanded, with the rows×cols
grid and the exact text block it wrote, and every sequence it returned. Nothing is
recomputed: the figures are read off the processor's own output.

transformers is imported only when a recorder starts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..specs import IMAGE_TOKEN


@dataclass(frozen=True)
class ImageRecord:
    """One image as a real processor call expanded it."""

    width: int
    height: int
    longest_edge: int
    tile_size: int
    rows: int
    cols: int
    image_tokens: int
    block_tokens: int
    processor: str

    @property
    def patches(self) -> int:
        return self.rows * self.cols + 1 if self.rows or self.cols else 1

    @property
    def grid(self) -> str:
        return f"{max(self.rows, 1)}×{max(self.cols, 1)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "longest_edge": self.longest_edge,
            "tile_size": self.tile_size,
            "rows": self.rows,
            "cols": self.cols,
            "patches": self.patches,
            "image_tokens": self.image_tokens,
            "block_tokens": self.block_tokens,
            "processor": self.processor,
        }


@dataclass(frozen=True)
class SequenceRecord:
    """One sequence (one sample of one processor call) and its length in tokens."""

    name: str
    length: int
    preview: str
    longest_edge: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "length": self.length,
            "preview": self.preview,
            "longest_edge": self.longest_edge,
        }


@dataclass
class Recording:
    """Everything recorded during one test."""

    images: list[ImageRecord] = field(default_factory=list)
    sequences: list[SequenceRecord] = field(default_factory=list)
    calls: int = 0


def _longest_edge_of(size: Any) -> int | None:
    if size is None:
        return None
    if isinstance(size, dict):
        value = size.get("longest_edge")
    else:
        value = getattr(size, "longest_edge", None)
    return int(value) if value else None


def _image_size(image: Any) -> tuple[int, int]:
    """(width, height) of a PIL image, array or tensor as the processor reads it."""
    if hasattr(image, "size") and isinstance(image.size, tuple) and len(image.size) == 2:
        return int(image.size[0]), int(image.size[1])
    from transformers.image_utils import get_image_size, infer_channel_dimension_format

    height, width = get_image_size(image, channel_dim=infer_channel_dimension_format(image))
    return int(width), int(height)


_PATCH_LOCK = threading.RLock()  # install() may re-enter through an import hook

#: the modules that define the processor classes the recorder patches
PROCESSOR_MODULES = (
    "transformers.models.smolvlm.processing_smolvlm",
    "transformers.models.idefics3.processing_idefics3",
)


class Recorder:
    """Patches SmolVLM-family processor classes while active; re-entrant across threads.

    Calls made by any thread are recorded into the active recording: data loaders with
    worker threads are still seen.
    """

    def __init__(self) -> None:
        self._recording: Recording | None = None
        self._undo: list[Callable[[], None]] = []
        self._installed = False
        self._name = "sequence"

    @contextmanager
    def record(self, name: str) -> Iterator[Recording]:
        recording = Recording()
        self._recording = recording
        self._name = name
        try:
            yield recording
        finally:
            self._recording = None

    def install(self) -> None:
        """Patch the processor classes (idempotent, re-entrant). Imports transformers."""
        with _PATCH_LOCK:
            if self._installed:
                return
            self._installed = True
            for cls in _processor_classes():
                self._patch(cls)

    def uninstall(self) -> None:
        with _PATCH_LOCK:
            while self._undo:
                self._undo.pop()()
            self._installed = False

    def _patch(self, cls: type) -> None:
        recorder = self
        original_process = cls.__dict__.get("_process_images")
        inherited_process = getattr(cls, "_process_images", None)
        original_call = cls.__dict__.get("__call__")
        inherited_call = cls.__call__

        def _process_images(self: Any, images: Any, **kwargs: Any) -> Any:
            assert inherited_process is not None
            processed, replacements = inherited_process(self, images, **kwargs)
            if recorder._recording is not None:
                recorder._record_images(self, images, kwargs, processed, replacements)
            return processed, replacements

        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            output = inherited_call(self, *args, **kwargs)
            if recorder._recording is not None:
                recorder._record_sequences(self, args, kwargs, output)
            return output

        patched = {"__call__": (__call__, original_call)}
        if inherited_process is not None:
            patched["_process_images"] = (_process_images, original_process)
        for name, (replacement, _) in patched.items():
            setattr(cls, name, replacement)

        def undo() -> None:
            for name, (_, original) in patched.items():
                if original is None:
                    delattr(cls, name)  # the inherited method shows through again
                else:
                    setattr(cls, name, original)

        self._undo.append(undo)

    def _record_images(
        self,
        processor: Any,
        images: Any,
        kwargs: dict[str, Any],
        processed: Any,
        replacements: list[str],
    ) -> None:
        from transformers.image_utils import make_flat_list_of_images

        recording = self._recording
        if recording is None:
            return
        flat = make_flat_list_of_images(images)
        image_processor = processor.image_processor
        longest_edge = _longest_edge_of(kwargs.get("size")) or _longest_edge_of(
            image_processor.size
        )
        tile = _longest_edge_of(kwargs.get("max_image_size")) or _longest_edge_of(
            image_processor.max_image_size
        )
        tokenizer = processor.tokenizer
        image_token = getattr(processor, "image_token", IMAGE_TOKEN)
        rows_of = _flatten(processed.get("rows")) if hasattr(processed, "get") else []
        cols_of = _flatten(processed.get("cols")) if hasattr(processed, "get") else []
        for index, (image, text) in enumerate(zip(flat, replacements, strict=False)):
            width, height = _image_size(image)
            rows = rows_of[index] if index < len(rows_of) else 0
            cols = cols_of[index] if index < len(cols_of) else 0
            recording.images.append(
                ImageRecord(
                    width=width,
                    height=height,
                    longest_edge=longest_edge or 0,
                    tile_size=tile or 0,
                    rows=rows,
                    cols=cols,
                    image_tokens=text.count(image_token),
                    block_tokens=len(tokenizer(text, add_special_tokens=False)["input_ids"]),
                    processor=type(processor).__name__,
                )
            )

    def _record_sequences(
        self, processor: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        recording = self._recording
        if recording is None or not hasattr(output, "get"):
            return
        recording.calls += 1
        input_ids = output.get("input_ids")
        if input_ids is None:
            return
        mask = output.get("attention_mask")
        text = kwargs.get("text", args[1] if len(args) > 1 else None)
        texts = [text] if isinstance(text, str) else list(text or [])
        lengths = _lengths(input_ids, mask)
        longest_edge = _longest_edge_of(getattr(processor.image_processor, "size", None))
        size_kwarg = _longest_edge_of(kwargs.get("size"))
        for index, length in enumerate(lengths):
            preview = texts[index] if index < len(texts) and isinstance(texts[index], str) else ""
            preview = " ".join(preview.split())[:60]
            recording.sequences.append(
                SequenceRecord(
                    name=f"{self._name} call {recording.calls} sample {index}",
                    length=length,
                    preview=preview,
                    longest_edge=size_kwarg or longest_edge,
                )
            )


def _flatten(nested: Any) -> list[int]:
    if nested is None:
        return []
    if hasattr(nested, "tolist"):
        nested = nested.tolist()
    flat: list[int] = []
    for item in nested:
        if isinstance(item, (list, tuple)):
            flat.extend(int(v) for v in item)
        else:
            flat.append(int(item))
    return flat


def _lengths(input_ids: Any, mask: Any) -> list[int]:
    """Unpadded length of each sample: the attention mask's sum where there is one."""
    rows = mask if mask is not None else input_ids
    if hasattr(rows, "tolist"):
        rows = rows.tolist()
    if rows and isinstance(rows[0], int):
        rows = [rows]
    if mask is None:
        return [len(row) for row in rows]
    return [int(sum(row)) for row in rows]


def _processor_classes() -> list[type]:
    classes: list[type] = []
    try:
        from transformers.models.smolvlm.processing_smolvlm import SmolVLMProcessor

        classes.append(SmolVLMProcessor)
    except ImportError:  # pragma: no cover - transformers without SmolVLM
        pass
    try:
        from transformers.models.idefics3.processing_idefics3 import Idefics3Processor

        classes.append(Idefics3Processor)
    except ImportError:  # pragma: no cover
        pass
    return classes
