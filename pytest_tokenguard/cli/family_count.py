"""``tokenguard count`` for the model families other than SmolVLM2, through the seam.

:func:`route` resolves ``--model`` to its family (:func:`~pytest_tokenguard.families.
resolve_family`); for SmolVLM2 it returns None and ``count`` goes on as before. For another
family every image and video is priced by the family alone (headers and container
metadata, no torch or transformers import), with the same walk of paths, the same messages
and exit codes as SmolVLM2's, and rows of its own fields: for Qwen-VL an image's
``image_tokens`` are the ``<|image_pad|>`` tokens the processor writes and
``block_tokens`` add its ``<|vision_start|>`` and ``<|vision_end|>``. An image the processor
refuses (aspect ratio over 200) is named on stderr with the processor's reason, never
priced. SmolVLM2's options (``--longest-edge``, ``--tile-size``, ``--image-splitting``) are a
usage error; ``--min-pixels``/``--max-pixels`` are the processor's per-call ``min_pixels``
and ``max_pixels``.

A video's ``tokens`` need the checkpoint's tokenizer where the processor writes text
(Qwen3-VL's timestamps): without one the row has ``"tokens": null`` and one line on stderr
names the model and what to pass (exit 1); the vision tokens are exact either way.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, TextIO

from ..errors import (
    CountingError,
    ImageReadError,
    ProcessorLoadError,
    SpecError,
    TokenizerUnavailable,
    VideoReadError,
)
from .common import EXIT_USAGE, FileWalk, integer, message

__all__ = ["add_family_options", "route", "run_family_count"]

#: SmolVLM2's count options, and how each is spelled on the command line
_SMOLVLM_ONLY = {"longest_edge": "--longest-edge", "tile_size": "--tile-size",
                 "do_image_splitting": "--[no-]image-splitting"}


def add_family_options(parser: argparse.ArgumentParser) -> None:
    """The per-call settings of pixel-budget families (Qwen-VL) on ``tokenguard count``."""
    parser.add_argument(
        "--min-pixels", type=integer(1), default=None, metavar="N",
        help="Qwen-VL: count images as processor(..., min_pixels=N) (default: the model's "
        "size['shortest_edge'])")
    parser.add_argument(
        "--max-pixels", type=integer(1), default=None, metavar="N",
        help="Qwen-VL: count images as processor(..., max_pixels=N) (default: the model's "
        "size['longest_edge'])")


def route(model: str, args: argparse.Namespace, out: TextIO, err: TextIO) -> int | None:
    """Count with ``model``'s family when it is not SmolVLM2; None to let ``count`` go on."""
    from ..families import resolve_family

    try:
        found = resolve_family(model)
    except SpecError as exc:
        print(f"tokenguard count: {message(exc)}", file=err)
        return EXIT_USAGE
    if found is None or found.family.name == "smolvlm":
        if getattr(args, "min_pixels", None) or getattr(args, "max_pixels", None):
            print("tokenguard count: --min-pixels and --max-pixels are Qwen-VL settings; "
                  f"{model} counts images by --longest-edge", file=err)
            return EXIT_USAGE
        return None
    return run_family_count(found, args, out, err)


def run_family_count(found: Any, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from PIL import Image

    from ..images import read_image_info, verify_image
    from ..video import is_video_path, read_video_info
    from .count import _path_fields

    family = found.family
    for name, flag in _SMOLVLM_ONLY.items():
        if getattr(args, name, None) is not None:
            print(f"tokenguard count: {flag} is a SmolVLM2 setting; {found.model} is a "
                  f"{family.name} model (use --min-pixels / --max-pixels)", file=err)
            return EXIT_USAGE
    try:
        spec = found.spec()
        call = {k: getattr(args, k, None) for k in ("min_pixels", "max_pixels")}
        settings = family.call_settings({k: v for k, v in call.items() if v is not None})
        family.image_cost(spec, 28, 28, settings)  # settings checked before any file
    except (SpecError, ProcessorLoadError, CountingError) as exc:
        print(f"tokenguard count: {message(exc)}", file=err)
        return EXIT_USAGE
    import warnings

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    read = verify_image if getattr(args, "verify", False) else read_image_info
    text: Callable[[str], int] | None = None
    text_error: TokenizerUnavailable | None = None
    try:
        text = family.text_counter(found.model, found.folder)
    except TokenizerUnavailable as exc:
        text_error = exc
    rows: list[dict[str, Any]] = []
    walk = FileWalk("count", args.paths, err)
    for path, shown in walk:
        row = _path_fields(path)
        try:
            if is_video_path(path):
                info = read_video_info(path)
                cost = family.video_cost(spec, info, num_frames=getattr(args, "num_frames", None),
                                         fps=getattr(args, "fps", None), text=text)
                row["kind"] = "video"
                row.update(duration=info.duration, width=info.width, height=info.height)
                row.update(cost._asdict())
                row["text"] = list(cost.text)
                if cost.tokens is None and text_error is not None:
                    walk.failed(shown, message(text_error))
            else:
                image = read(path)
                cost = family.image_cost(spec, image.width, image.height, settings)
                row["kind"] = "image"
                row.update(cost._asdict())
                row["grid"] = cost.grid
                row["patches"] = cost.grid_h * cost.grid_w
                row["orientation"] = image.orientation
        except (VideoReadError, ImageReadError, CountingError) as exc:
            walk.refused(shown, exc)
            continue
        walk.counted()
        row["model"] = found.model
        if args.json:
            print(json.dumps(row), file=out)
        else:
            rows.append(dict(row, path=shown))
    if not args.json:
        for line in _table(rows):
            print(line, file=out)
    out.flush()
    return walk.exit_status()


_IMAGE_COLUMNS = ("path", "width", "height", "resized_width", "resized_height", "grid",
                  "image_tokens", "block_tokens")
_VIDEO_COLUMNS = ("path", "total_frames", "frames", "grid_t", "resized_width",
                  "resized_height", "video_tokens", "block_tokens", "tokens")


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for kind, columns in (("image", _IMAGE_COLUMNS), ("video", _VIDEO_COLUMNS)):
        chosen = [r for r in rows if r["kind"] == kind]
        if not chosen:
            continue
        cells = [["-" if r[c] is None else str(r[c]) for c in columns] for r in chosen]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
        lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                  for row in cells]
        total = sum(r["image_tokens"] if kind == "image" else r["video_tokens"] for r in chosen)
        blocks = sum(r["block_tokens"] for r in chosen)
        lines.append(f"total {kind}s: {len(chosen)}, {total} "
                     f"{'image' if kind == 'image' else 'video'} tokens, {blocks} block tokens")
    return lines
