"""``tokenguard count``: exact image-token counts of image files, from their headers.

It reads image headers only (``--verify`` decodes) and never imports torch or
transformers, so it answers in well under a second for a folder of 1,000 frames.

Output contract: one row per image and resolution on stdout (a table and a totals line,
or JSON Lines with ``--json``); on stderr one line per file or folder that cannot be read
and one per thing skipped (an empty folder, a symbolic link to a folder inside a folder).
Exit status: 0 when every image was counted, 1 when a file or folder could not be read
(or nothing at all was counted), 2 for a usage error (bad option, unknown or broken model).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from ..errors import CountingError, ImageReadError, ProcessorLoadError, SpecError
from ..processor.source import ENV_MODEL, model_or_default, resolve_source
from ..specs import ModelSpec
from .common import integer, reader_left

__all__ = ["add_count_parser", "json_row", "plural", "positive_int", "run_count",
           "spec_for_model"]

#: The columns of the text table, in order.
TABLE_COLUMNS = ("path", "width", "height", "longest_edge", "grid", "patches",
                 "image_tokens", "block_tokens")


positive_int = integer(1)


def plural(count: int, word: str) -> str:
    """``1 patch``, ``2 patches``, ``1 image``, ``0 images``."""
    if count == 1:
        return f"{count} {word}"
    return f"{count} {word}es" if word.endswith(("ch", "sh", "s", "x")) else f"{count} {word}s"


def spec_for_model(model: str) -> ModelSpec:
    """The counting spec of ``model`` through the one resolver, never touching the network.

    A local checkpoint's JSON files are checked too, so a folder transformers cannot load
    is an error here rather than later in training.
    """
    from ..processor.loading import check_checkpoint_files

    source = resolve_source(model, network_timeout=None)
    if source.folder is not None:
        check_checkpoint_files(source.folder)
    return source.spec()


def json_row(path: Path, info: Any, cost: Any) -> dict[str, Any]:
    """The JSON object of one image at one resolution.

    ``path`` is the name as given; a name that is not valid UTF-8 is written with
    U+FFFD for each undecodable byte, and ``path_escaped`` (only then present) keeps
    every byte as ``\\xNN`` so the file can still be found. ``rows`` and ``cols`` are the
    processor's (0 and 0 for an image that is not split: one tile, the global image),
    and ``grid`` is the same two numbers as ``rows×cols``.
    """
    raw = os.fsencode(path)
    row: dict[str, Any] = {"path": raw.decode("utf-8", "replace")}
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        row["path_escaped"] = raw.decode("utf-8", "backslashreplace")
    row.update(cost._asdict())
    row["grid"] = f"{cost.rows}×{cost.cols}"
    row["orientation"] = info.orientation
    return row


def run_count(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run ``tokenguard count``; returns the exit status (see the module docstring)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        return _run(args, out, err)
    except BrokenPipeError:
        return reader_left(out)


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from PIL import Image

    from ..counting import ImageCounter
    from ..images import display_path, read_image_info, verify_image, walk_image_paths

    # a header of 100+ megapixels is counted like any other; PIL's warning is about decoding
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    try:
        spec = spec_for_model(model_or_default(args.model))
        counters = [
            ImageCounter(spec, edge,
                         do_image_splitting=getattr(args, "do_image_splitting", None),
                         tile_size=getattr(args, "tile_size", None))
            for edge in (args.longest_edge or [spec.default_longest_edge])
        ]
    except (SpecError, ProcessorLoadError, CountingError) as exc:
        print(f"tokenguard count: {exc}", file=err)
        return 2
    read = verify_image if getattr(args, "verify", False) else read_image_info
    failures = counted = 0
    rows: list[dict[str, Any]] = []
    for event in walk_image_paths(args.paths):
        shown = display_path(event.path)
        if event.kind == "skipped":
            print(f"tokenguard count: skipped {shown}: {event.reason}", file=err)
            continue
        if event.kind == "unreadable":
            failures += 1
            print(f"tokenguard count: {shown}: {event.reason}", file=err)
            continue
        try:
            info = read(event.path)
            costs = [counter(info.width, info.height) for counter in counters]
        except (ImageReadError, CountingError) as exc:
            failures += 1
            reason = exc.reason if isinstance(exc, ImageReadError) else str(exc)
            print(f"tokenguard count: {shown}: {reason}", file=err)
            continue
        counted += 1
        for cost in costs:
            row = json_row(event.path, info, cost)
            if args.json:
                print(json.dumps(row), file=out)
            else:
                row["path"] = shown
                rows.append(row)
    if not args.json and rows:
        for line in _table(rows):
            print(line, file=out)
    out.flush()
    if counted == 0 and failures == 0:
        print("tokenguard count: no image was counted; pass image files or folders that "
              "hold some", file=err)
        return 1
    return 1 if failures else 0


def _table(rows: list[dict[str, Any]]) -> Iterator[str]:
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in TABLE_COLUMNS]
    yield "  ".join(h.ljust(w) for h, w in zip(TABLE_COLUMNS, widths, strict=True)).rstrip()
    for row in rows:
        yield "  ".join(str(row[h]).ljust(w)
                        for h, w in zip(TABLE_COLUMNS, widths, strict=True)).rstrip()
    edges = sorted({row["longest_edge"] for row in rows})
    for edge in edges:
        at = [row for row in rows if row["longest_edge"] == edge]
        yield (f"total at longest_edge {edge}: {plural(len(at), 'image')}, "
               f"{plural(sum(r['patches'] for r in at), 'patch')}, "
               f"{sum(r['image_tokens'] for r in at)} image tokens, "
               f"{sum(r['block_tokens'] for r in at)} block tokens")


def add_count_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``count`` subcommand to ``tokenguard``'s subparsers."""
    count: argparse.ArgumentParser = subparsers.add_parser(
        "count", help="image and block tokens per image and longest_edge (headers only)",
        description="Exact SmolVLM image-token counts of image files and folders, from "
        "their headers (EXIF orientation applied, as transformers loads a path). Exit "
        "status: 0 all counted, 1 a file or folder could not be read, 2 a usage error.",
    )
    count.add_argument(
        "--model",
        default=None,
        help=f"hub id or checkpoint folder (default: ${ENV_MODEL}, else {model_or_default()})",
    )
    count.add_argument(
        "--longest-edge", type=positive_int, action="append",
        help="resolution to count at, the processor's size={'longest_edge': N}; repeat for "
        "several (default: the model's own)",
    )
    count.add_argument(
        "--image-splitting", dest="do_image_splitting", default=None,
        action=argparse.BooleanOptionalAction,
        help="count as processor(..., do_image_splitting=True/False) (default: the model's "
        "own setting)",
    )
    count.add_argument(
        "--tile-size", type=positive_int, default=None, metavar="N",
        help="count as processor(..., max_image_size={'longest_edge': N}) (default: the "
        "model's own tile)",
    )
    count.add_argument(
        "--verify", action="store_true",
        help="decode every image, so truncated or corrupt files whose header is intact are "
        "reported as unreadable (slower; the default reads headers only)",
    )
    count.add_argument("--json", action="store_true", help="JSON Lines, one object per image "
                       "and resolution")
    count.add_argument("paths", nargs="+", help="image files or folders of images")
    count.set_defaults(func=run_count)
    return count
