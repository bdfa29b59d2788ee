"""Load the real SmolVLM processor at a given resolution, and never hang on the network.

Users call ``AutoProcessor.from_pretrained(model, size={"longest_edge": N})``; so does
this module. Where the files come from (a folder, the cache, the hub or the embedded
default) is decided by :mod:`pytest_tokenguard.processor.source`, the one model resolver.

When none of that works and the model is one of the known SmolVLM2 checkpoints, the
*embedded default* is used (:mod:`pytest_tokenguard.processor.embedded`): the real
transformers SmolVLM classes with the checkpoints' own tokenizer, shipped in this
package, and their published settings. Its counts are exact, text included; the suite
checks its ``input_ids`` against the real files.

torch, transformers and PIL are imported inside the functions only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ProcessorLoadError as ProcessorLoadError
from ..specs import DEFAULT_MODEL, ModelSpec, SpecError, spec_from_processor
from .source import DEFAULT_NETWORK_TIMEOUT, ModelSource, resolve_source

__all__ = ["CHECKPOINT_JSON_FILES", "LoadedPixelProcessor", "LoadedProcessor",
           "check_checkpoint_files", "load_pixel_processor", "load_processor"]


@dataclass(frozen=True)
class LoadedProcessor:
    """A processor at one resolution, with the spec read from it and where it came from."""

    processor: Any
    spec: ModelSpec
    longest_edge: int
    source: ModelSource


def load_processor(
    model: str = DEFAULT_MODEL,
    longest_edge: int | None = None,
    *,
    network_timeout: float = DEFAULT_NETWORK_TIMEOUT,
    source: ModelSource | None = None,
) -> LoadedProcessor:
    """``AutoProcessor.from_pretrained(model, size={"longest_edge": longest_edge})``, safely.

    ``longest_edge=None`` keeps the checkpoint's default. Raises
    :class:`ProcessorLoadError` with a message that names the model and the fix.
    """
    if longest_edge is not None and (
        isinstance(longest_edge, bool) or not isinstance(longest_edge, int) or longest_edge < 1
    ):
        raise ProcessorLoadError.phrased(
            f"longest_edge must be a positive integer, got {longest_edge!r}: use e.g. "
            "{resolutions}"
        )
    source = source or resolve_source(model, network_timeout)
    kwargs: dict[str, Any] = {}
    if longest_edge is not None:
        kwargs["size"] = {"longest_edge": longest_edge}
    if source.kind == "embedded":
        from .embedded import build_embedded_processor

        processor = build_embedded_processor(model, **kwargs)
    else:
        processor = _from_pretrained(source, kwargs, network_timeout)
    try:
        spec = spec_from_processor(processor, name=model)
    except SpecError as exc:
        raise ProcessorLoadError(f"{model!r}: {exc}") from None
    return LoadedProcessor(processor, spec, spec.default_longest_edge, source)


@dataclass(frozen=True)
class LoadedPixelProcessor:
    """A processor of a pixel-budget family (Qwen-VL) at one ``max_pixels``, with the
    family's spec read from it (:class:`~pytest_tokenguard.families.qwen.QwenSpec`) and
    where it came from. ``longest_edge`` is None: such a processor has none."""

    processor: Any
    spec: Any
    max_pixels: int
    source: ModelSource
    longest_edge: None = None


def load_pixel_processor(
    model: str,
    max_pixels: int | None = None,
    *,
    network_timeout: float = DEFAULT_NETWORK_TIMEOUT,
    source: ModelSource | None = None,
) -> LoadedPixelProcessor:
    """``AutoProcessor.from_pretrained(model, max_pixels=max_pixels)`` for a Qwen-VL
    checkpoint (``None`` keeps its own), as Qwen's model cards load it: the image
    processor's ``size["longest_edge"]`` (and, before Qwen3-VL, the video processor's)
    becomes ``max_pixels``. Raises :class:`ProcessorLoadError` naming the model."""
    if max_pixels is not None and (
        isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1
    ):
        raise ProcessorLoadError(f"max_pixels must be a positive number of pixels, got "
                                 f"{max_pixels!r}: use e.g. --tokenguard-max-pixels=200704")
    source = source or resolve_source(model, network_timeout)
    kwargs: dict[str, Any] = {} if max_pixels is None else {"max_pixels": max_pixels}
    processor = _from_pretrained(source, kwargs, network_timeout)
    from .recording.qwen import spec_of

    spec = spec_of(processor)
    if spec is None:
        raise ProcessorLoadError(f"{model!r} loaded a {type(processor).__name__}, not a "
                                 "Qwen-VL processor; check the checkpoint's "
                                 "processor_config.json")
    return LoadedPixelProcessor(processor, spec, spec.image.max_pixels, source)


#: The JSON files of a checkpoint folder that ``AutoProcessor.from_pretrained`` parses and
#: fails on when they are broken (``special_tokens_map.json`` is not read by transformers 5).
CHECKPOINT_JSON_FILES = (
    "config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
    "tokenizer_config.json",
    "chat_template.json",
)


def check_checkpoint_files(folder: Path) -> None:
    """Raise :class:`ProcessorLoadError` naming the first broken JSON file of ``folder``
    (not UTF-8, not JSON, not an object, unreadable), before transformers trips on it
    with a traceback that does not name it."""
    from ..specs import read_json_object

    for name in CHECKPOINT_JSON_FILES:
        path = folder / name
        if path.is_file():
            try:
                read_json_object(path)
            except SpecError as exc:
                raise ProcessorLoadError(str(exc)) from None


def _diagnose(folder: Path | None) -> str | None:
    """After transformers failed: a one-line reason naming the broken file, if one is."""
    if folder is None:
        return None
    try:
        check_checkpoint_files(folder)
    except ProcessorLoadError as exc:
        return str(exc)
    tokenizer = folder / "tokenizer.json"
    if tokenizer.is_file():
        from ..specs import tokenizer_counter

        try:
            tokenizer_counter(tokenizer)
        except SpecError as exc:
            return str(exc)
    return None


def _from_pretrained(source: ModelSource, kwargs: dict[str, Any], timeout: float) -> Any:
    try:
        from transformers import AutoProcessor
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ProcessorLoadError(
            f"transformers cannot be imported ({exc}); pip install 'transformers>=5' torchvision"
        ) from None
    target = source.location if source.kind in ("folder", "hub-cache") else source.model
    local_only = source.kind != "hub"
    if source.folder is not None:
        check_checkpoint_files(source.folder)
    for var in ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
        os.environ.setdefault(var, str(int(max(timeout, 1))))
    try:
        return AutoProcessor.from_pretrained(target, local_files_only=local_only, **kwargs)
    except ImportError as exc:
        raise ProcessorLoadError(
            f"loading {source.model!r} needs a package that is missing: {exc}. SmolVLM2's "
            "processor needs torchvision (video processor) and num2words"
        ) from None
    except Exception as exc:  # transformers and tokenizers raise many types on bad files
        diagnosis = _diagnose(source.folder)
        if diagnosis is not None:
            raise ProcessorLoadError(diagnosis) from None
        text = str(exc).strip()
        first_line = text.splitlines()[0] if text else type(exc).__name__
        raise ProcessorLoadError.phrased(
            f"could not load the processor of {source.model!r} from {target}: {first_line}. "
            "Check {model} names a SmolVLM checkpoint (hub id or folder)"
        ) from None
