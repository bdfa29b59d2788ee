"""What tokenguard prints at the end of a run: GPU peaks, the figures table, the gate.

Pure formatting of plain values (no pytest), so the output is unit-tested directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..figures import ResolutionFigures, resolution_order
from ..units import format_bytes
from .wire import GpuCheck

__all__ = ["Row", "format_gpu_rows", "format_table"]


@dataclass(frozen=True)
class Row:
    """One line of the figures table: a test at one resolution."""

    nodeid: str
    figures: ResolutionFigures


def format_table(rows: Iterable[Row], mark: Callable[[Row], str] | None = None) -> list[str]:
    """The summary table, sorted by test then resolution; ``mark`` flags rows (``! `` a
    figure changed against the baseline, ``+ `` not in it).

    When any test processed a video, three columns follow the images': ``videos``,
    ``frames`` (sampled, over all its videos) and ``video tokens`` (everything written
    in place of the videos' ``<video>``). Image columns count still images only.

    The second column is ``longest_edge``; where a row is at a pixel budget (Qwen-VL) it is
    ``resolution``, each row's named (``max_pixels=200704 (min_pixels=3136)``,
    ``longest_edge=384``)."""
    ordered = sorted(rows, key=lambda r: (r.nodeid.split("[")[0],
                                          resolution_order(r.figures.key), r.nodeid))
    videos = any(row.figures.per_video for row in ordered)
    # a pixel budget (Qwen-VL's max_pixels) is no longest_edge: a table with one names
    # each row's resolution in full
    pixels = any(row.figures.pixels is not None for row in ordered)
    headers: tuple[str, ...] = ("test", "resolution" if pixels else "longest_edge", "images",
                                "patches", "image tokens", "block tokens")
    if videos:
        headers += ("videos", "frames", "video tokens")
    headers += ("longest seq",)
    body = []
    for row in ordered:
        f = row.figures
        cells: tuple[str, ...] = (
            f"{mark(row) if mark else ''}{row.nodeid}",
            f.label(named=pixels),
            str(f.images),
            str(f.patches),
            str(f.image_tokens),
            str(f.block_tokens),
        )
        if videos:
            cells += (str(f.videos), str(f.video_frames), str(f.video_tokens))
        body.append((*cells, str(f.longest_sequence) if f.longest_sequence else "-"))
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                         for i, c in enumerate(cells))

    return [line(headers), *(line(r) for r in body)]


def format_gpu_rows(checks: Iterable[tuple[str, GpuCheck]]) -> list[str]:
    """One line per memory ceiling a test checked, over-limit ones flagged."""
    lines = []
    for nodeid, check in sorted(checks, key=lambda pair: pair[0]):
        flag = "OVER " if check.peak_bytes > check.limit_bytes else ""
        devices = ""
        if check.devices:
            per_gpu = ", ".join(f"GPU {i}: {format_bytes(b)}" for i, b in check.devices)
            devices = f" [{per_gpu}]"
        lines.append(f"  {flag}{nodeid}: {format_bytes(check.peak_bytes)} "
                     f"({check.measure.replace('_', ' ')}) of {format_bytes(check.limit_bytes)}"
                     f"{devices}")
    return lines
