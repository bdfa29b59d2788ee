"""``tokenguard memory``: the predicted GPU peak of a SmolVLM2 training step, on any machine.

Runs the memory model (:mod:`pytest_tokenguard.memory_model`) from the checkpoint's
shapes, so a CPU-only CI job can answer "does this resolution still fit in 80 GB?"
before a GPU job is ever queued. ``--limit`` turns the answer into an exit status.
No torch or transformers import: it answers in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any, TextIO

from ..counting import CountingError
from ..gpu.model import (
    MemoryModelError,
    ShapeField,
    check_predicted_limit,
    estimate_for_model,
    shape_fields,
    validate,
)
from ..specs import DEFAULT_MODEL, NO_PROCESSOR_CONFIG, SpecError, has_processor_config
from ..units import accepted_units, format_bytes
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    OutputError,
    integer,
    message,
    output_failed,
    reader_left,
    size,
    streams,
)

__all__ = ["add_memory_parser", "run_memory"]


_count = integer(0)
_positive = integer(1)


def _image_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 384x384") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: both sides must be positive")
    return width, height


_size = size


def _video(text: str) -> tuple[int, int, int]:
    try:
        width, height, frames = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not WIDTHxHEIGHTxFRAMES, e.g. 640x480x16") from None
    if min(width, height, frames) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every part must be positive")
    return width, height, frames



def _model_folder_problem(model: str) -> str | None:
    """Why ``--model`` cannot be a checkpoint folder, worded for this command, or None.

    The model resolver says the same for every entry point (``--tokenguard-model``, the
    ini value, the environment); here the user typed ``--model``. A value that looks
    like a path (starts with ``.``, ``/`` or ``~``, or has more than one ``/``) and does
    not exist is refused: it is never taken for a hub id and priced with built-in
    numbers."""
    expanded = Path(os.path.expanduser(model))
    if expanded.is_dir():
        if not has_processor_config(expanded):
            return (f"--model {model!r}: the folder has {NO_PROCESSOR_CONFIG}; give a "
                    "SmolVLM checkpoint folder (config.json, preprocessor_config.json...)")
        return None
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or expanded.exists():
        what = "is not a folder" if expanded.exists() else "no such folder"
        return (f"--model {model!r}: {what}; give a SmolVLM checkpoint folder (with its "
                f"config.json) or a hub id such as {DEFAULT_MODEL}")
    return None


def _for_the_command_line(message: str) -> str:
    """The memory model's messages name its keywords (``images=0``, as the marker takes
    them); here they name this command's options (``--images 0``)."""
    names = sorted((field.name for field in shape_fields()), key=len, reverse=True)
    pattern = re.compile(r"(?<![\w-])(" + "|".join(names) + r")(=| takes|:)")

    def option(match: re.Match[str]) -> str:
        flag = "--" + match.group(1).replace("_", "-")
        return flag + (" " if match.group(2) == "=" else match.group(2))

    return pattern.sub(option, message)


def _add_option(parser: argparse.ArgumentParser, spec: ShapeField) -> None:
    """One option from a :class:`~pytest_tokenguard.gpu.model.StepShape` field: its name,
    help and accepted values come from the field, its spelling from the field's kind."""
    text = spec.help.replace("%", "%%")
    if spec.kind == "sizes":
        shown: Any = ", ".join("x".join(map(str, item)) for item in spec.default)
    elif isinstance(spec.default, tuple):
        shown = ("x" if spec.kind == "size" else ",").join(map(str, spec.default))
    else:
        shown = spec.default
    default_help = f"{text} (default {shown})"
    kinds: dict[str, dict[str, Any]] = {
        "flag": {"action": "store_true", "help": text},
        "count": {"type": _count, "default": spec.default, "help": default_help},
        "positive": {"type": _positive, "default": spec.default, "help": default_help},
        "positive?": {"type": _positive, "default": None, "help": text},
        "count?": {"type": _count, "default": None, "help": text},
        "sizes": {"type": _image_size, "action": "append", "default": None,
                  "help": f"{text}; repeatable, one per image (default {shown})"},
        "video": {"type": _video, "default": None, "help": text},
        "size": {"type": _image_size, "default": spec.default, "help": default_help},
        "fraction": {"type": float, "default": spec.default, "help": default_help},
        "choice": {"choices": spec.choices, "default": spec.default, "help": default_help},
        "choice?": {"choices": spec.choices, "default": None, "help": text},
        "choices": {"choices": spec.choices, "action": "append", "default": [],
                    "help": text + " (repeatable)"},
        "names": {"default": None, "help": f"{text}; comma-separated (default {shown})"},
    }
    parser.add_argument(spec.option, **kinds[spec.kind])


def _shape_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options as :class:`StepShape` keywords (a ``names`` option not given is
    left to its default)."""
    keywords: dict[str, Any] = {}
    for spec in shape_fields():
        value = getattr(args, spec.name)
        if spec.kind in ("names", "sizes") and value is None:
            continue
        keywords[spec.name] = tuple(value) if spec.kind == "choices" else value
    return keywords


def add_memory_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``memory`` subcommand to ``tokenguard``'s subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "memory",
        help="predicted GPU peak of one training step (no GPU needed)",
        description="Predict the torch peak allocated memory of one SmolVLM2 or Qwen2.5-VL "
        "training step "
        "(forward, backward, optimizer step) in the loop you run (--loop: the Hugging Face "
        "Trainer by default, TRL's SFTTrainer, or a manual loop) from the model's shapes. "
        "Measured on H100 and H200 (README, docs/gpu-memory.md): never more "
        "than 2% below a measured peak; within -0.9% to +4.9% for every recipe but DDP, "
        "whose second step it predicts up to 12.1% high (the bucket NCCL may hold; within "
        "5% from the third step). The allocator's cache and the CUDA context come on top.",
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("TOKENGUARD_MODEL", DEFAULT_MODEL),
        help="checkpoint folder with config.json, or a known hub id such as "
        "Qwen/Qwen2.5-VL-7B-Instruct (default %(default)s)",
    )
    for spec in shape_fields():  # the one definition of a step: StepShape
        _add_option(parser, spec)
    parser.add_argument("--limit", type=_size, default=None,
                        help=f"exit 1 when the prediction passes this size ({accepted_units()})")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.set_defaults(func=run_memory)
    return parser


def run_memory(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Print the estimate; 0, or 1 over ``--limit``, or 2 on bad input."""
    out, err = streams(out, err)
    problem = _model_folder_problem(args.model)
    if problem is not None:
        print(f"tokenguard memory: {problem}", file=err)
        return EXIT_USAGE
    try:
        shape = validate(**_shape_keywords(args))
        estimate = estimate_for_model(args.model, shape)
    except (MemoryModelError, SpecError, CountingError) as exc:
        line = " ".join(message(exc).split())  # one line, whatever a hostile file held
        print(f"tokenguard memory: {_for_the_command_line(line)}", file=err)
        return EXIT_USAGE
    result = (None if args.limit is None
              else check_predicted_limit(estimate, args.limit, subject="The step"))
    try:
        _print_estimate(args, estimate, result, out)
    except BrokenPipeError:
        return reader_left(out)
    except OutputError as exc:
        return output_failed("memory", out, exc, err)
    return EXIT_OK if result is None or result.passed else EXIT_FAILED


def _print_estimate(args: argparse.Namespace, estimate: Any, result: Any, out: TextIO) -> None:
    if args.json:
        data = estimate.to_dict()
        if result is not None:
            data.update(limit_bytes=result.limit_bytes, passed=result.passed,
                        message=result.message)
        print(json.dumps(data), file=out)
    else:
        print(estimate.describe(), file=out)
        print(f"  (torch peak allocated; reserved cache and CUDA context come on top: "
              f"{format_bytes(estimate.peak_bytes)} is a floor for nvidia-smi)", file=out)
        if result is not None:
            print(("PASS " if result.passed else "FAIL ") + result.message, file=out)
    out.flush()
