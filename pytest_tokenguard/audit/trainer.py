"""The trainer's rules: the sequence length it cuts at, which end it cuts, when it refuses.

What TRL 1.16's ``DataCollatorForVisionLanguageModeling`` does with a conversational
vision sample (read from its source, and proven against it by the suite's oracle tier):

* it renders ``messages`` with the processor's chat template and tokenizes with
  ``add_special_tokens=False``, ``truncation=True, max_length=SFTConfig.max_length``:
  the text's length is :func:`~pytest_tokenguard.audit.measure` 's exact count;
* the cut is the **tokenizer's** ``truncation_side``, not ``SFTConfig.truncation_mode``
  (the trainer checks that option, the collator never passes it). SmolVLM2's
  ``tokenizer_config.json`` says ``"truncation_side": "left"``: an over-long sample
  loses its *start*, the user turn with the image, and keeps its end;
* the processor then compares the ``<image>`` tokens left in ``input_ids`` with those
  the expanded text holds and raises ``ValueError: Mismatch in `image` token count
  between text and `input_ids``` when the cut dropped any: a refusal of the whole batch,
  mid-epoch. A cut that drops only wrapper tokens of a block
  (``<fake_token_around_image>``, ``<global-img>``, a row marker) is not refused: the
  model trains on a broken block (:attr:`Cut.WRAPPER`);
* ``packing=True`` and ``padding_free=True`` are refused by ``SFTTrainer`` for vision
  data sets (:func:`refuse_packing` says so by name), so they never change a length.

Pure Python: TRL is imported only by :func:`trl_defaults`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import Any

from ..errors import InputError

__all__ = ["Cut", "TrainerRules", "cut", "refuse_packing", "trl_defaults"]


class Cut(enum.Enum):
    """What the trainer's cut does to one sample."""

    #: within ``max_length``: nothing is cut
    NONE = "fits"
    #: over ``max_length``, cut in text only: trained silently on the part that is left
    TEXT = "cut in text"
    #: the cut drops ``<image>`` tokens: TRL's collator (the processor's check) raises
    MEDIA = "cut inside media"
    #: the cut drops only wrapper tokens of an image block: trained on a broken block
    WRAPPER = "cut in a media block's wrapper"


@dataclass(frozen=True)
class TrainerRules:
    """The length rules one audit applies. ``origin`` names where each value came from,
    for the report (``--max-length``, TRL's SFTConfig default, the tokenizer's
    ``truncation_side``)."""

    max_length: int | None
    truncation_side: str = "left"
    origin: tuple[tuple[str, str], ...] = ()
    #: wrapper tokens before a block's first media token (SmolVLM2's 2, Qwen-VL's 1)
    wrap_before: int = 2

    def describe(self) -> str:
        limit = "no max_length (nothing is cut)" if self.max_length is None else (
            f"max_length={self.max_length}")
        text = f"{limit}, truncation_side={self.truncation_side!r}"
        if self.origin:
            text += " (" + "; ".join(f"{name}: {where}" for name, where in self.origin) + ")"
        return text


def cut(tokens: int, first_image: int | None, after_last_image: int | None,
        max_length: int | None, side: str, wrap_before: int = 2) -> Cut:
    """What truncation at ``max_length`` from ``side`` does to a sample of ``tokens``
    whose first ``<image>`` token is at index ``first_image`` and whose last one has
    ``after_last_image`` tokens after it (None and None for a sample without media).

    Every block ends with one wrapper token after its last media token
    (``<fake_token_around_image>``; Qwen-VL's ``<|vision_end|>``) and starts with
    ``wrap_before`` of them: SmolVLM2's two (``<fake_token_around_image>`` then
    ``<row_1_col_1>`` or ``<global-img>``), Qwen-VL's one (``<|vision_start|>``).
    """
    if max_length is None or tokens <= max_length:
        return Cut.NONE
    if first_image is None or after_last_image is None:
        return Cut.TEXT
    if side == "left":
        dropped = tokens - max_length
        if dropped > first_image:
            return Cut.MEDIA
        return Cut.WRAPPER if dropped > first_image - wrap_before else Cut.TEXT
    last = tokens - 1 - after_last_image
    if last >= max_length:
        return Cut.MEDIA
    return Cut.WRAPPER if max_length == last + 1 else Cut.TEXT


#: SFTConfig fields the audit takes from TRL, and what each decides
TRL_FIELDS = ("max_length", "truncation_mode", "packing", "padding_free",
              "per_device_train_batch_size", "gradient_checkpointing")


def trl_defaults() -> dict[str, Any]:
    """The installed TRL's ``SFTConfig`` defaults the audit uses, plus ``version``; an
    :class:`InputError` when TRL is not installed."""
    try:
        import trl
        from trl import SFTConfig
    except ImportError:
        raise InputError("--trainer trl: TRL is not installed here; pip install trl, or give "
                         "--max-length N") from None
    defaults = {spec.name: spec.default for spec in fields(SFTConfig) if spec.name in TRL_FIELDS}
    defaults["version"] = str(trl.__version__)
    return defaults


def refuse_packing(packing: bool, padding_free: bool) -> None:
    """TRL's own refusals, by name: a vision data set cannot be packed or padding-free."""
    if packing:
        raise InputError("--packing: TRL's SFTTrainer refuses packing for vision data sets "
                         "('Packing is not supported for vision datasets'); set "
                         "SFTConfig(packing=False) and drop --packing")
    if padding_free:
        raise InputError("--padding-free: TRL's SFTTrainer refuses padding-free training for "
                         "vision data sets; set SFTConfig(padding_free=False) and drop "
                         "--padding-free")
