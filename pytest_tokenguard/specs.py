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

__all__ = [
    "DEFAULT_MODEL",
    "FAKE_TOKEN",
    "GLOBAL_TOKEN",
    "IMAGE_TOKEN",
    "KNOWN_SPECS",
    "MAX_IMAGE_SIZE",
    "NO_PROCESSOR_CONFIG",
    "ModelSpec",
    "SpecError",
    "has_processor_config",
    "image_processor_config",
    "known_spec",
    "load_tokenizer",
    "read_json_object",
    "spec_from_folder",
    "spec_from_processor",
    "tokenizer_counter",
    "with_tokenizer_facts",
]

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


    def with_settings(
        self,
        *,
        longest_edge: int | None = None,
        do_image_splitting: bool | None = None,
        tile_size: int | None = None,
    ) -> ModelSpec:
        """This spec with a processor's per-call settings applied (``None`` keeps one):
        ``size={"longest_edge": ...}``, ``do_image_splitting=...`` and
        ``max_image_size={"longest_edge": ...}`` (the tile size)."""
        given = {"default_longest_edge": longest_edge, "do_image_splitting": do_image_splitting,
                 "tile_size": tile_size}
        changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        return replace(self, **changes) if changes else self


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


#: transformers' class defaults (``SmolVLMProcessor``, ``SmolVLMImageProcessor`` and their
#: Idefics3 parents), used when a checkpoint's files do not set the value.
CLASS_DEFAULT_IMAGE_SEQ_LEN = 169
CLASS_DEFAULT_LONGEST_EDGE = 4 * 364
CLASS_DEFAULT_TILE_SIZE = 364


def read_json_object(path: Path) -> dict[str, Any]:
    """A checkpoint JSON file that must hold an object; every failure is a one-line
    :class:`SpecError` naming the file."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start}); restore the file from "
                        "the checkpoint") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot be read ({exc.strerror or exc}); check its "
                        "permissions or restore it") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "restore the file from the checkpoint"
        ) from None
    except RecursionError:
        raise SpecError(f"{path}: JSON nested too deeply; restore the file from the "
                        "checkpoint") from None
    if not isinstance(data, dict):
        kind = "null" if data is None else type(data).__name__
        raise SpecError(f"{path}: expected a JSON object, got {kind}; restore the file from "
                        "the checkpoint")
    return data


def _longest_edge(config: dict[str, Any], key: str, path: Path, default: int) -> int:
    if key not in config:
        return default
    value = config[key]
    if not isinstance(value, dict) or "longest_edge" not in value:
        raise SpecError(
            f"{path}: {key!r} must be an object with 'longest_edge' (got {value!r}); "
            "is this a SmolVLM / Idefics3 checkpoint?"
        )
    edge = value["longest_edge"]
    if isinstance(edge, bool) or not isinstance(edge, int):
        raise SpecError(f"{path}: {key}.longest_edge must be an integer, got {edge!r}")
    return edge


#: What a folder without a processor config is told (every entry point says the same).
NO_PROCESSOR_CONFIG = ("no preprocessor_config.json, nor a processor_config.json with an "
                       "image_processor section")


def has_processor_config(folder: str | Path) -> bool:
    """Whether ``folder`` holds a processor's image settings, in either layout
    ``AutoProcessor`` loads: ``preprocessor_config.json``, or (what
    ``processor.save_pretrained`` writes from transformers 5.x on) a
    ``processor_config.json`` with an ``image_processor`` section. A processor_config.json
    that cannot be read counts as one, so the loader names what is wrong with it."""
    root = Path(folder)
    if (root / "preprocessor_config.json").is_file():
        return True
    path = root / "processor_config.json"
    if not path.is_file():
        return False
    try:
        return isinstance(read_json_object(path).get("image_processor"), dict)
    except SpecError:
        return True


def image_processor_config(folder: str | Path) -> tuple[dict[str, Any], Path]:
    """The image processor's settings of a checkpoint folder and the file they were read
    from: the ``image_processor`` section of ``processor_config.json`` where there is one
    (transformers reads that first), else ``preprocessor_config.json``. A
    :class:`SpecError` names the folder when neither is there."""
    root = Path(folder)
    proc_path = root / "processor_config.json"
    processor = read_json_object(proc_path) if proc_path.is_file() else {}
    nested = processor.get("image_processor")
    if isinstance(nested, dict):
        return nested, proc_path
    pre_path = root / "preprocessor_config.json"
    if pre_path.is_file():
        return read_json_object(pre_path), pre_path
    # the model setting as the front end spells it (--tokenguard-model, --model)
    raise SpecError.phrased(f"{root}: {NO_PROCESSOR_CONFIG}; point {{model}} at a SmolVLM "
                            "checkpoint folder or a hub id")


def spec_from_folder(folder: str | Path, name: str | None = None) -> ModelSpec:
    """Read a spec from a checkpoint folder's JSON files, without importing transformers.

    The files are read as transformers reads them: ``image_seq_len`` comes from
    ``processor_config.json`` only (the processor's argument; 169, the class default,
    when the file or the key is absent), and the image processor's settings from an
    ``image_processor`` object inside ``processor_config.json`` when there is one, else
    from ``preprocessor_config.json`` (class defaults for absent keys). The tokenizer
    facts are taken from ``tokenizer.json`` through the light ``tokenizers`` library when
    that file is there, so a checkpoint with another vocabulary is still counted exactly.
    Every problem is a :class:`SpecError` naming the file.
    """
    root = Path(folder)
    proc_path = root / "processor_config.json"
    processor = read_json_object(proc_path) if proc_path.is_file() else {}
    image_config, image_path = image_processor_config(root)
    if image_config.get("do_resize", True) is False:
        raise SpecError(f"{image_path}: do_resize is false, which tokenguard cannot count "
                        "(images are tiled at their own size); set it to true")
    spec = ModelSpec(
        name=name or str(root),
        tile_size=_longest_edge(image_config, "max_image_size", image_path,
                                CLASS_DEFAULT_TILE_SIZE),
        image_seq_len=processor.get("image_seq_len", CLASS_DEFAULT_IMAGE_SEQ_LEN),
        default_longest_edge=_longest_edge(image_config, "size", image_path,
                                           CLASS_DEFAULT_LONGEST_EDGE),
        do_image_splitting=bool(image_config.get("do_image_splitting", True)),
        source=f"folder {root}",
    )
    tokenizer_path = root / "tokenizer.json"
    if tokenizer_path.is_file():
        spec = with_tokenizer_facts(spec, tokenizer_counter(tokenizer_path))
    return spec


def load_tokenizer(path: Path) -> Any:
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json`` (the light Rust library, no
    torch); a file it cannot load is a :class:`SpecError` naming it."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on a bad file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SpecError(f"{path}: not a tokenizer file the tokenizers library can load "
                        f"({first[:200]}); restore it from the checkpoint") from None


def tokenizer_counter(path: Path) -> Any:
    """``text -> number of tokens`` of a ``tokenizer.json`` (see :func:`load_tokenizer`)."""
    tokenizer = load_tokenizer(path)

    def encode(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return encode


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
