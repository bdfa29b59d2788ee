"""The facts of a checkpoint that decide what an image costs in tokens.

A :class:`ModelSpec` is everything the analytic counter needs, and nothing it does
not: the tile side, the ``<image>`` tokens per tile, the default ``longest_edge``
and how the tokenizer spells the text that the processor writes around the tiles
(newlines and ``<row_r_col_c>`` markers). Keeping it a small frozen value means a
spec can be read from a loaded processor, from a model folder's JSON files (no
transformers import), or from the table of known checkpoints below, and all three
give the same counts.

This module imports nothing heavy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import SpecError as SpecError

DEFAULT_MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"

#: transformers' ``MAX_IMAGE_SIZE`` for SmolVLM: no resized side exceeds it.
MAX_IMAGE_SIZE = 4096

IMAGE_TOKEN = "<image>"
FAKE_TOKEN = "<fake_token_around_image>"
GLOBAL_TOKEN = "<global-img>"


@dataclass(frozen=True)
class ModelSpec:
    """What decides the token cost of an image for one SmolVLM-family checkpoint.

    ``newline_tokens`` and ``double_newline_tokens`` are how many tokens ``"\\n"`` and
    ``"\\n\\n"`` become: the processor ends every row of tiles with a newline, and the
    last row's newline meets the one before the global image (SmolLM2's BPE merges
    that pair into one token). ``special_marker_grid`` is the largest row/column for
    which ``<row_r_col_c>`` is a single added token; past it the marker is plain text
    of ``marker_text_base_tokens`` tokens plus one per digit (digits are split
    individually by the SmolLM2 pre-tokenizer).
    """

    name: str
    tile_size: int
    image_seq_len: int
    default_longest_edge: int
    do_image_splitting: bool = True
    newline_tokens: int = 1
    double_newline_tokens: int = 1
    special_marker_grid: int = 6
    marker_text_base_tokens: int = 7
    marker_tokens_per_digit: int = 1
    source: str = field(default="known", compare=False)

    def __post_init__(self) -> None:
        for name in ("tile_size", "image_seq_len", "default_longest_edge"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SpecError(
                    f"{self.name}: {name} must be a positive integer, got {value!r}; "
                    "check the checkpoint's preprocessor_config.json / processor_config.json"
                )

    def marker_tokens(self, row: int, col: int) -> int:
        """Tokens of the ``<row_{row}_col_{col}>`` marker that precedes a tile."""
        if row <= self.special_marker_grid and col <= self.special_marker_grid:
            return 1
        digits = len(str(row)) + len(str(col))
        return self.marker_text_base_tokens + self.marker_tokens_per_digit * digits

    def with_longest_edge(self, longest_edge: int) -> ModelSpec:
        return replace(self, default_longest_edge=longest_edge)


_SMOLVLM2_22B = ModelSpec(
    name="HuggingFaceTB/SmolVLM2-2.2B-Instruct",
    tile_size=384,
    image_seq_len=81,
    default_longest_edge=1536,
)
_SMOLVLM2_500M = ModelSpec(
    name="HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
    tile_size=512,
    image_seq_len=64,
    default_longest_edge=2048,
)
_SMOLVLM2_256M = replace(_SMOLVLM2_500M, name="HuggingFaceTB/SmolVLM2-256M-Video-Instruct")

#: Published values of the checkpoints this package knows offline. They are checked
#: against the real processor files in the test suite (tests/unit/test_specs.py).
KNOWN_SPECS: dict[str, ModelSpec] = {
    spec.name: spec for spec in (_SMOLVLM2_22B, _SMOLVLM2_500M, _SMOLVLM2_256M)
}


def known_spec(model: str) -> ModelSpec | None:
    """The built-in spec for a hub id or a folder named like one (``.../Org/Name``)."""
    if model in KNOWN_SPECS:
        return KNOWN_SPECS[model]
    parts = Path(model).parts
    if len(parts) >= 2:
        return KNOWN_SPECS.get(f"{parts[-2]}/{parts[-1]}")
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "restore the file from the checkpoint"
        ) from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _longest_edge(config: dict[str, Any], key: str, path: Path) -> int:
    value = config.get(key)
    if not isinstance(value, dict) or "longest_edge" not in value:
        raise SpecError(
            f"{path}: {key!r} must be an object with 'longest_edge' (got {value!r}); "
            "is this a SmolVLM / Idefics3 checkpoint?"
        )
    edge = value["longest_edge"]
    if not isinstance(edge, int):
        raise SpecError(f"{path}: {key}.longest_edge must be an integer, got {edge!r}")
    return edge


def spec_from_folder(folder: str | Path, name: str | None = None) -> ModelSpec:
    """Read a spec from a checkpoint folder's JSON files, without importing transformers.

    The tokenizer facts are taken from ``tokenizer.json`` through the light
    ``tokenizers`` library when that file is there, so a checkpoint with another
    vocabulary is still counted exactly.
    """
    root = Path(folder)
    pre_path = root / "preprocessor_config.json"
    if not pre_path.is_file():
        raise SpecError(
            f"{root}: no preprocessor_config.json; point --tokenguard-model at a SmolVLM "
            "checkpoint folder or a hub id"
        )
    pre = _read_json(pre_path)
    seq_len: Any = None
    for candidate in ("processor_config.json", "preprocessor_config.json"):
        path = root / candidate
        if path.is_file():
            seq_len = _read_json(path).get("image_seq_len", seq_len)
    if seq_len is None:
        raise SpecError(f"{root}: image_seq_len not found in processor_config.json")
    spec = ModelSpec(
        name=name or str(root),
        tile_size=_longest_edge(pre, "max_image_size", pre_path),
        image_seq_len=seq_len,
        default_longest_edge=_longest_edge(pre, "size", pre_path),
        do_image_splitting=bool(pre.get("do_image_splitting", True)),
        source=f"folder {root}",
    )
    tokenizer_path = root / "tokenizer.json"
    if tokenizer_path.is_file():
        from tokenizers import Tokenizer  # light: Rust extension, no torch

        tokenizer = Tokenizer.from_file(str(tokenizer_path))

        def encode(text: str) -> int:
            return len(tokenizer.encode(text, add_special_tokens=False).ids)

        spec = with_tokenizer_facts(spec, encode)
    return spec


def with_tokenizer_facts(spec: ModelSpec, encode: Any) -> ModelSpec:
    """Fill the tokenizer-dependent fields of ``spec`` by tokenizing probe strings.

    ``encode`` maps a string to its number of tokens (no special tokens added).
    """
    grid = 0
    while grid < 64 and encode(f"<row_{grid + 1}_col_{grid + 1}>") == 1:
        grid += 1
    two_digits = encode(f"<row_{grid + 1}_col_1>")  # e.g. <row_7_col_1>
    three_digits = encode(f"<row_{grid + 10}_col_1>")  # e.g. <row_16_col_1>
    per_digit = three_digits - two_digits
    return replace(
        spec,
        newline_tokens=encode("\n"),
        double_newline_tokens=encode("\n\n"),
        special_marker_grid=grid,
        marker_tokens_per_digit=per_digit,
        marker_text_base_tokens=two_digits - 2 * per_digit,
    )


def spec_from_processor(processor: Any, name: str | None = None) -> ModelSpec:
    """Read a spec from a loaded transformers SmolVLM/Idefics3 processor."""
    image_processor = getattr(processor, "image_processor", None)
    tokenizer = getattr(processor, "tokenizer", None)
    if image_processor is None or tokenizer is None or not hasattr(processor, "image_seq_len"):
        raise SpecError(
            f"{type(processor).__name__} is not a SmolVLM-family processor "
            "(needs image_processor, tokenizer and image_seq_len)"
        )
    spec = ModelSpec(
        name=name or getattr(processor, "name_or_path", None) or type(processor).__name__,
        tile_size=int(image_processor.max_image_size["longest_edge"]),
        image_seq_len=int(processor.image_seq_len),
        default_longest_edge=int(image_processor.size["longest_edge"]),
        do_image_splitting=bool(image_processor.do_image_splitting),
        source="processor",
    )

    def encode(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return with_tokenizer_facts(spec, encode)
