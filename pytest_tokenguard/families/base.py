"""The model-family seam: what tokenguard asks of a family of checkpoints.

A *family* is one kind of processor (SmolVLM2/Idefics3's tiles, Qwen-VL's pixel budget):
everything that differs between them answers here, behind one protocol, and the rest of
tokenguard asks the family instead of naming a model (as vLLM's multimodal registry asks
a model's ``ProcessingInfo``). A family is found by a checkpoint's ``model_type``, its
processor class or a hub id it knows (:mod:`pytest_tokenguard.families`, lazily, like
transformers' auto mappings); a third party registers one through the entry point group
``pytest_tokenguard.families``.

What a family answers:

* ``spec(model, folder)``: its counting settings, read from a checkpoint folder or, for a
  hub id it knows, from the published settings it carries (offline);
* ``image_cost`` / ``video_cost``: an image's or a video's exact cost from its size or
  metadata and a processor call's own keyword arguments (``call_settings`` reads them as
  the processor does); what the processor refuses is a
  :class:`~pytest_tokenguard.errors.CountingError` with its reason;
* ``placeholders`` / ``wrappers``: the tokens the chat template writes for an item and the
  ones the processor expands;
* ``processor_classes``: the transformers classes the recorder watches, and
  ``processor_modules`` the modules that define them (the recorder patches a class when
  its module loads, importing nothing itself); ``call_reader`` names the module that reads
  what one of their calls wrote (``read_images``, ``read_videos``, ``text_call_edge``, as
  :mod:`pytest_tokenguard.processor.recording.smolvlm` does), imported on the first call;
* ``describe_image`` / ``image_fix`` / ``video_fix``: how a failing token marker describes a
  recorded image's cost, and the setting that gives the declared count or the limit;
* ``text_counter``: the checkpoint's tokenizer as ``str -> int``, or
  :class:`~pytest_tokenguard.errors.TokenizerUnavailable` naming the model: text is never
  guessed.

Optional, for the memory model (``tokenguard memory``; a family without them is refused
by name there): ``memory_architecture(model, folder)`` returns the
:class:`~pytest_tokenguard.gpu.model.Architecture` of the checkpoint's towers (a subclass
answering the per-layer hooks: Qwen-VL's is ``families/qwen_memory.py``), and
``memory_sample(spec, shape)`` the vision tokens and tokens of one sample of a
:class:`~pytest_tokenguard.gpu.model.StepShape`. SmolVLM2's architecture stays in
``gpu/model.py`` (the base class), reached by the SmolVLM2 resolver.

Optional, for ``tokenguard audit`` (a family without it is refused by name there):
``audit_pricer``, ``"module:Class"`` of its
:class:`~pytest_tokenguard.audit.measure.Pricer`, built from the audit's
:class:`~pytest_tokenguard.audit.measure.AuditSettings` (Qwen-VL's is
:class:`pytest_tokenguard.audit.qwen.QwenPricer`; SmolVLM2's is the audit's own).

Whole conversations and splitting: SmolVLM2's go through :mod:`pytest_tokenguard.sequence`
(priced message by message); another family gives a counter that prices a whole chunk by
rendering its checkpoint's chat template (Qwen-VL's
:class:`~pytest_tokenguard.families.qwen_text.QwenTokenCounter`), which
:func:`~pytest_tokenguard.splitting.split` takes as a
:class:`~pytest_tokenguard.splitting.ChunkPricer`.

Only the standard library is imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..video import VideoInfo

__all__ = ["CostRow", "Family"]


@runtime_checkable
class CostRow(Protocol):
    """An image's or a video's cost: its fields as JSON (``tokenguard count --json``), and
    the two figures every family gives."""

    @property
    def image_tokens(self) -> int: ...

    @property
    def block_tokens(self) -> int: ...

    def _asdict(self) -> dict[str, Any]: ...


@runtime_checkable
class Family(Protocol):
    """One family of checkpoints (see the module docstring)."""

    #: a short name: ``smolvlm``, ``qwen-vl``
    name: str
    #: ``config.json``'s ``model_type`` values it covers
    model_types: frozenset[str]
    #: the transformers processor classes (names) whose calls the recorder reads
    processor_classes: frozenset[str]
    #: what the chat template writes for an item, by kind (``image``, ``video``)
    placeholders: Mapping[str, str]
    #: the tokens the processor writes around an item's placeholder tokens
    wrappers: tuple[str, ...]
    #: module -> class name of each processor class the recorder watches
    processor_modules: Mapping[str, str]
    #: the module that reads a watched call's images, videos and resolution
    call_reader: str
    #: the token the processor writes once per image token (``<image>``, ``<|image_pad|>``)
    image_token: str

    def known_models(self) -> Iterable[str]:
        """The hub ids whose published settings the family carries (work offline)."""
        ...

    def spec(self, model: str, folder: Path | None) -> Any:
        """The counting settings of ``model``: from ``folder`` when given, else published."""
        ...

    def call_settings(self, kwargs: Mapping[str, object]) -> Any:
        """A processor call's own image settings, read as the processor reads them."""
        ...

    def image_cost(self, spec: Any, width: int, height: int, settings: Any = None) -> CostRow:
        """The exact cost of a ``width``×``height`` image (upright, as the processor sees it)."""
        ...

    def video_cost(self, spec: Any, info: VideoInfo, *, num_frames: int | None = None,
                   fps: float | None = None,
                   text: Callable[[str], int] | None = None) -> Any:
        """The exact cost of a video from its metadata, sampled as the processor samples."""
        ...

    def describe_image(self, record: Any) -> str:
        """``cost N <placeholder> tokens (grid, settings)`` of a recorded image."""
        ...

    def image_fix(self, record: Any, expected: int) -> str:
        """The setting that makes a recorded image cost ``expected`` tokens (or why none)."""
        ...

    def video_fix(self, record: Any, limit: int) -> str:
        """What makes a recorded video cost at most ``limit`` tokens."""
        ...

    def text_counter(self, model: str, folder: Path | None) -> Callable[[str], int]:
        """``str -> tokens`` with the checkpoint's own tokenizer, or TokenizerUnavailable."""
        ...
