"""``tokenguard count``: exact token counts of image and video files, from their headers.

It reads image headers only (``--verify`` decodes) and video container metadata only
(every packet's timing, as the processor's loader reads it: no frame is decoded, through
PyAV), and never imports torch or transformers, so it answers in well under a second for
a folder of 1,000 frames.

An image is priced as the processor loads it from its path: with transformers' default
(torchvision) image backend, a file whose format it cannot decode (TIFF, BMP, PPM...: the
format PIL reads in the header, whatever the suffix) or an animated GIF, WebP or AVIF is
refused by name, as an unreadable file is; ``--image-backend pil`` prices every format
PIL opens, as the PIL backend loads it.

Output contract: one row per image and resolution, and one per video, on stdout (tables
and totals lines, or JSON Lines with ``--json``; every object has ``kind``, ``"image"`` or
``"video"``); on stderr one line per file or folder that cannot be read or counted (a
format the processor cannot load from a path, say) and one per thing skipped (an empty
folder, a symbolic link to a folder inside a folder). Exit status: 0 when every file was
counted, 1 when a file or folder could not be read or counted (or nothing at all was
counted), 2 for a usage error (bad option, unknown or broken model).

A video is priced as ``apply_chat_template`` has the processor sample it (the
checkpoint's ``video_sampling``, or ``--num-frames``/``--fps`` as per-call
``num_frames``/``fps`` with ``do_sample_frames=True``); ``tokens`` is everything the
processor writes in place of its ``<video>``, text included (tokenized alone: in a
prompt the intro and outro merge with the text around them). ``--longest-edge``,
``--tile-size`` and ``--image-splitting`` do not apply to videos: every frame is
resized to the checkpoint's tile square and never split, so a video has one row
whatever they say. The text needs the checkpoint's tokenizer: its folder's
``tokenizer.json``, or SmolVLM2's own shipped with this package for a known checkpoint
that is not on this machine (read by the ``tokenizers`` library, not transformers).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from ..errors import CountingError, ImageReadError, ProcessorLoadError, SpecError
from ..processor.source import ENV_MODEL, model_or_default, resolve_source
from ..specs import ModelSpec
from .common import (
    FileWalk,
    OutputError,
    integer,
    message,
    output_failed,
    plural,
    reader_left,
    streams,
)
from .family_count import add_family_options, route

__all__ = ["add_count_parser", "json_row", "plural", "positive_float", "positive_int",
           "run_count", "spec_for_model", "video_counter_for_model", "video_json_row"]

#: The columns of the text table, in order.
TABLE_COLUMNS = ("path", "width", "height", "longest_edge", "grid", "patches",
                 "image_tokens", "block_tokens")
#: The columns of the videos' table, in order.
VIDEO_COLUMNS = ("path", "duration", "fps", "total_frames", "frames", "image_tokens",
                 "block_tokens", "tokens")


positive_int = integer(1)


def positive_float(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"{text} is not a valid rate; use a positive number of frames a second such as 1"
        )
    return value


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


def video_counter_for_model(model: str) -> Any:
    """The :class:`~pytest_tokenguard.video.VideoCounter` of ``model`` without transformers:
    spec, ``video_sampling`` and ``tokenizer.json`` from its folder, or for a known
    checkpoint that is not on this machine its published sampling and SmolVLM2's
    tokenizer shipped with this package (the same file in all three checkpoints)."""
    from ..video import (
        VideoCounter,
        text_counter_from_folder,
        tokenizer_text_counter,
        video_sampling_for,
        video_sampling_from_folder,
    )

    source = resolve_source(model, network_timeout=None)
    spec = spec_for_model(model)
    folder = source.folder
    if folder is not None:
        return VideoCounter(spec, text_counter_from_folder(folder),
                            video_sampling_from_folder(folder))
    sampling = video_sampling_for(source.known or model)
    if sampling is None:
        raise SpecError(f"{model}: no video_sampling known for it and no checkpoint folder to "
                        "read one from; point --model at a SmolVLM2 checkpoint folder")
    from tokenizers import Tokenizer

    from ..processor.embedded import tokenizer_json

    return VideoCounter(spec, tokenizer_text_counter(Tokenizer.from_str(tokenizer_json())),
                        sampling)


def video_json_row(path: Path, cost: Any) -> dict[str, Any]:
    """The JSON object of one video: ``path`` (as :func:`json_row` writes it), ``kind``,
    ``duration``, ``fps`` (the video's own, as the processor's loader reads them),
    ``total_frames``, ``frames`` (how many the processor samples), ``image_tokens``,
    ``block_tokens`` and ``tokens`` (all it writes in place of the ``<video>``)."""
    row = _path_fields(path)
    fields = cost.json_fields()
    del fields["path"]
    row.update(fields)
    return row


def _path_fields(path: Path) -> dict[str, Any]:
    raw = os.fsencode(path)
    row: dict[str, Any] = {"path": raw.decode("utf-8", "replace")}
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        row["path_escaped"] = raw.decode("utf-8", "backslashreplace")
    return row


def json_row(path: Path, info: Any, cost: Any) -> dict[str, Any]:
    """The JSON object of one image at one resolution.

    ``path`` is the name as given; a name that is not valid UTF-8 is written with
    U+FFFD for each undecodable byte, and ``path_escaped`` (only then present) keeps
    every byte as ``\\xNN`` so the file can still be found. ``rows`` and ``cols`` are the
    processor's (0 and 0 for an image that is not split: one tile, the global image),
    and ``grid`` is the same two numbers as ``rows×cols``. ``kind`` is ``"image"``.
    """
    row = _path_fields(path)
    row["kind"] = "image"
    row.update(cost._asdict())
    row["grid"] = f"{cost.rows}×{cost.cols}"
    row["orientation"] = info.orientation
    return row


def run_count(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run ``tokenguard count``; returns the exit status (see the module docstring)."""
    out, err = streams(out, err)
    try:
        return _run(args, out, err)
    except BrokenPipeError:
        return reader_left(out)
    except OutputError as exc:
        return output_failed("count", out, exc, err)


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from PIL import Image

    from ..counting import ImageCounter
    from ..errors import VideoReadError
    from ..images import default_path_loader, read_image_info, verify_image
    from ..video import is_video_path

    # a header of 100+ megapixels is counted like any other; PIL's warning is about decoding
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    routed = route(model_or_default(args.model), args, out, err)  # another model family
    if routed is not None:
        return routed
    try:
        spec = spec_for_model(model_or_default(args.model))
        counters = [
            ImageCounter(spec, edge,
                         do_image_splitting=getattr(args, "do_image_splitting", None),
                         tile_size=getattr(args, "tile_size", None))
            for edge in (args.longest_edge or [spec.default_longest_edge])
        ]
    except (SpecError, ProcessorLoadError, CountingError) as exc:
        print(f"tokenguard count: {message(exc)}", file=err)
        return 2
    walk = FileWalk("count", args.paths, err)
    videos: Any = None
    if walk.has_video:
        try:  # only when there is a video: images need no tokenizer
            videos = video_counter_for_model(model_or_default(args.model))
        except (SpecError, ProcessorLoadError, CountingError, OSError) as exc:
            print(f"tokenguard count: videos cannot be counted with this model: {message(exc)}",
                  file=err)
            return 2
    sampling = {"num_frames": getattr(args, "num_frames", None),
                "fps": getattr(args, "fps", None)}
    read = verify_image if getattr(args, "verify", False) else read_image_info
    loader = "pil" if getattr(args, "image_backend", None) == "pil" else default_path_loader()
    rows: list[dict[str, Any]] = []
    video_rows: list[dict[str, Any]] = []
    for path, shown in walk:
        is_video = videos is not None and is_video_path(path)
        try:
            if is_video:
                video = videos(path, **sampling)
            else:
                info = read(path, loader=loader)
                costs = [counter(info.width, info.height) for counter in counters]
        except (VideoReadError, ImageReadError, CountingError) as exc:
            walk.refused(shown, exc)
            continue
        walk.counted()
        if is_video:
            row = video_json_row(path, video)
            if args.json:
                print(json.dumps(row), file=out)
            else:
                row["path"] = shown
                video_rows.append(row)
            continue
        for cost in costs:
            row = json_row(path, info, cost)
            if args.json:
                print(json.dumps(row), file=out)
            else:
                row["path"] = shown
                rows.append(row)
    if not args.json and rows:
        for line in _table(rows):
            print(line, file=out)
    if not args.json and video_rows:
        for line in _video_table(video_rows):
            print(line, file=out)
    out.flush()
    return walk.exit_status()


def _number(value: float) -> str:
    """A duration or rate for the table: up to 3 decimals, trailing zeros dropped (the
    JSON keeps every digit)."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _video_table(rows: list[dict[str, Any]]) -> Iterator[str]:
    cells = [[str(r["path"]), _number(r["duration"]), _number(r["fps"]),
              *(str(r[h]) for h in VIDEO_COLUMNS[3:])] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(VIDEO_COLUMNS)]
    yield "  ".join(h.ljust(w) for h, w in zip(VIDEO_COLUMNS, widths, strict=True)).rstrip()
    for row in cells:
        yield "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
    yield (f"total videos: {plural(len(rows), 'video')}, "
           f"{plural(sum(r['frames'] for r in rows), 'frame')} sampled, "
           f"{plural(sum(r['image_tokens'] for r in rows), 'image token')}, "
           f"{plural(sum(r['block_tokens'] for r in rows), 'block token')}, "
           f"{plural(sum(r['tokens'] for r in rows), 'token')}")


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
               f"{plural(sum(r['image_tokens'] for r in at), 'image token')}, "
               f"{plural(sum(r['block_tokens'] for r in at), 'block token')}")


def add_count_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``count`` subcommand to ``tokenguard``'s subparsers."""
    count: argparse.ArgumentParser = subparsers.add_parser(
        "count", help="tokens per image and longest_edge, and per video (headers only)",
        description="Exact SmolVLM token counts of image and video files and folders, from "
        "their headers (EXIF orientation applied, as transformers loads a path) and video "
        "container metadata (no frame decoded; videos need PyAV: pip install "
        "'pytest-tokenguard[video]'). A video's row is everything the processor writes in "
        "place of its <video>, sampled as apply_chat_template samples it. Exit "
        "status: 0 all counted, 1 a file or folder could not be read or counted, 2 a usage "
        "error.",
    )
    count.add_argument(
        "--model",
        default=None,
        help=f"hub id or checkpoint folder (default: ${ENV_MODEL}, else {model_or_default()})",
    )
    count.add_argument(
        "--longest-edge", type=positive_int, action="append",
        help="resolution to count images at, the processor's size={'longest_edge': N}; "
        "repeat for several (default: the model's own); videos ignore it: their frames are "
        "resized to the tile square and never split",
    )
    count.add_argument(
        "--image-splitting", dest="do_image_splitting", default=None,
        action=argparse.BooleanOptionalAction,
        help="count images as processor(..., do_image_splitting=True/False) (default: the "
        "model's own setting); video frames are never split",
    )
    count.add_argument(
        "--tile-size", type=positive_int, default=None, metavar="N",
        help="count images as processor(..., max_image_size={'longest_edge': N}) (default: "
        "the model's own tile); a video frame is one block of the model's image_seq_len "
        "tokens at any tile size",
    )
    count.add_argument(
        "--num-frames", type=positive_int, default=None, metavar="N",
        help="count videos as processor(..., num_frames=N, do_sample_frames=True): at most N "
        "frames sampled (default: the model's video_sampling max_frames, 64)",
    )
    count.add_argument(
        "--fps", type=positive_float, default=None, metavar="F",
        help="count videos as processor(..., fps=F, do_sample_frames=True): F frames sampled "
        "a second (default: the model's video_sampling fps, 1)",
    )
    count.add_argument(
        "--image-backend", choices=("torchvision", "pil"), default="torchvision",
        help="the image processor backend that loads the images in training (default: "
        "torchvision, transformers' own, which decodes JPEG, PNG, WebP and GIF, and AVIF "
        "with torchcodec installed; other formats and animations are refused by name); pil "
        "(AutoImageProcessor.from_pretrained(..., backend='pil')) loads every format PIL "
        "opens",
    )
    count.add_argument(
        "--verify", action="store_true",
        help="decode every image, so truncated or corrupt files whose header is intact are "
        "reported as unreadable (slower; the default reads headers only); videos are always "
        "read packet by packet, never decoded",
    )
    count.add_argument("--json", action="store_true", help="JSON Lines, one object per image "
                       "and resolution and one per video, each with its kind")
    add_family_options(count)
    count.add_argument("paths", nargs="+", help="image or video files, or folders of them")
    count.set_defaults(func=run_count)
    return count
