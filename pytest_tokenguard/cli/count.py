"""``tokenguard count``: exact image-token counts of image files, from their headers.

It reads image headers only and never imports torch or
transformers, so it answers in well under a second for a folder of 1,000 frames.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from ..errors import ProcessorLoadError, SpecError
from ..processor.source import ENV_MODEL, model_or_default, resolve_source
from ..specs import ModelSpec


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{value} is not a valid longest_edge; use a positive integer such as 384"
        )
    return value


def spec_for_model(model: str) -> ModelSpec:
    """The counting spec of ``model`` through the one resolver, never touching the network."""
    return resolve_source(model, network_timeout=None).spec()


def run_count(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    from ..counting import count_image
    from ..images import ImageReadError, iter_image_paths, read_image_size

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        spec = spec_for_model(model_or_default(args.model))
    except (SpecError, ProcessorLoadError) as exc:
        print(f"tokenguard count: {exc}", file=err)
        return 2
    edges = args.longest_edge or [spec.default_longest_edge]
    failures = 0
    rows: list[dict[str, Any]] = []
    for path in iter_image_paths(args.paths):
        try:
            width, height = read_image_size(path)
        except ImageReadError as exc:
            failures += 1
            print(f"tokenguard count: {exc}", file=err)
            continue
        for edge in edges:
            cost = count_image(width, height, edge, spec)
            row = {"path": str(path), **cost._asdict()}
            row["grid"] = cost.grid
            if args.json:
                print(json.dumps(row), file=out)
            else:
                rows.append(row)
    if not args.json and rows:
        header = ("path", "width", "height", "longest_edge", "grid", "patches", "image_tokens",
                  "block_tokens")
        widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in header]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), file=out)
        for row in rows:
            print("  ".join(str(row[h]).ljust(w) for h, w in zip(header, widths, strict=True)),
                  file=out)
    return 1 if failures else 0


def add_count_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``count`` subcommand to ``tokenguard``'s subparsers."""
    count: argparse.ArgumentParser = subparsers.add_parser(
        "count", help="image and block tokens per image and longest_edge (headers only)"
    )
    count.add_argument(
        "--model",
        default=None,
        help=f"hub id or checkpoint folder (default: ${ENV_MODEL}, else {model_or_default()})",
    )
    count.add_argument(
        "--longest-edge", type=positive_int, action="append",
        help="resolution to count at; repeat for several (default: the model's own)",
    )
    count.add_argument("--json", action="store_true", help="JSON Lines, one object per image "
                       "and resolution")
    count.add_argument("paths", nargs="+", help="image files or folders of images")
    count.set_defaults(func=run_count)
    return count
