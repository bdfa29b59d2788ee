"""Comparing a test's figures with its baseline entry: statuses, changes, diffs.

Token counts are deterministic, so any difference is a change; GPU peaks vary a little
between runs, so they only fail beyond a :class:`GpuTolerance`. Pure: no pytest, no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Literal

from ..figures import (
    AuditFigure,
    GpuFigure,
    PixelBounds,
    ResolutionFigures,
    ResolutionKey,
    TestFigures,
    resolution_label,
    resolution_order,
)
from ..units import format_bytes, parse_size

__all__ = [
    "ACCEPT_HINT",
    "DEFAULT_GPU_TOLERANCE",
    "Change",
    "Comparison",
    "GpuTolerance",
    "Status",
    "compare",
    "diff_table",
    "failure_message",
    "headline_change",
    "merge",
    "parse_tolerance",
    "summary_lines",
]

#: Exit messages and docs point here to accept a deliberate change.
ACCEPT_HINT = "Re-run pytest with --tokenguard --tokenguard-update to accept"

DEFAULT_GPU_TOLERANCE = "10%"


@dataclass(frozen=True)
class GpuTolerance:
    """How much a GPU peak may rise before the test fails: a percentage of the baseline
    or an absolute number of bytes."""

    percent: float | None = None
    bytes: int | None = None

    def allowed(self, baseline_bytes: int) -> float:
        if self.percent is not None:
            return baseline_bytes * self.percent / 100
        return float(self.bytes or 0)

    def __str__(self) -> str:
        if self.percent is not None:
            return f"{self.percent:g}%"
        return format_bytes(self.bytes or 0)


def parse_tolerance(raw: str) -> GpuTolerance:
    """``"10%"``, or memory as the GPU markers read it (``"512MiB"``, ``"1.5 GB"``, see
    :mod:`pytest_tokenguard.units`), or ``"0"``; ValueError says what is accepted."""
    text = raw.strip()
    percent = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", text)
    if percent:
        return GpuTolerance(percent=float(percent.group(1)))
    if re.fullmatch(r"0+(\.0*)?\s*[A-Za-z]*", text):
        return GpuTolerance(bytes=0)  # any rise fails (units.parse_size wants a positive size)
    try:
        return GpuTolerance(bytes=parse_size(text))
    except ValueError as exc:
        raise ValueError(
            f"{raw!r} is not a tolerance; give a percentage of the baseline peak (10%) or an "
            f"amount of memory (512MiB, 1 GiB, 300MB): {exc}"
        ) from None


# --------------------------------------------------------------------------- comparison

class Status(Enum):
    """Where a test stands against the baseline; the value is what the JSON report says."""

    UNCHANGED = "unchanged"
    CHANGED = "changed"
    NEW = "new"  # measured figures the baseline has no entry (or no counterpart) for
    MISSING = "missing"  # in the baseline, not measured by this run
    REMOVED = "removed"  # in the baseline, removed by this run's update
    EXCLUDED = "excluded"  # kept out of the baseline (generated inputs, a marker)


@dataclass(frozen=True)
class Change:
    """One figure that is not what the baseline says.

    Its resolution is ``longest_edge`` (SmolVLM2), or ``pixels`` for a pixel-budget
    family (Qwen-VL: ``longest_edge`` is then None); ``now_edge`` / ``now_pixels`` say where
    the figure is now when the test's only resolution moved (384 -> 512, or another
    ``max_pixels``)."""

    longest_edge: int | None
    figure: str  # "image tokens", "block tokens", "longest sequence", "images", "gpu peak"...
    baseline: str
    now: str
    fails: bool = True  # a GPU peak that dropped is reported but passes
    #: where the figure is now, when the test's only resolution moved (384 -> 512)
    now_edge: int | None = None
    kind: Literal["tokens", "gpu", "audit"] = "tokens"
    pixels: PixelBounds | None = None
    now_pixels: PixelBounds | None = None

    @property
    def key(self) -> ResolutionKey:
        return self.longest_edge, self.pixels

    @property
    def moved(self) -> bool:
        return self.now_edge is not None or self.now_pixels is not None

    def where(self) -> str:
        if self.kind != "tokens":
            return ""
        if self.pixels is not None:
            return f" at {self.pixels.label()}"
        if self.longest_edge is None:
            return " in sequences without an image"
        return f" at longest_edge={self.longest_edge}"

    def headline(self) -> str:
        if self.moved and self.figure in ("max_pixels", "pixel budget", "resolution"):
            kept = (f" (min_pixels={self.pixels.min_pixels})"
                    if self.figure == "max_pixels" and self.pixels is not None else "")
            return f"{self.figure} changed: {self.baseline} -> {self.now}{kept}"
        moved = (f", now at {resolution_label(self.now_edge, self.now_pixels)}" if self.moved
                 else "")
        return f"{self.figure} changed{self.where()}: {self.baseline} -> {self.now}{moved}"

    def edge_column(self) -> str:
        if self.kind != "tokens" or (self.longest_edge is None and self.pixels is None):
            return "-"
        here = resolution_label(self.longest_edge, self.pixels, named=False)
        if self.moved:
            return f"{here} -> {resolution_label(self.now_edge, self.now_pixels, named=False)}"
        return here


@dataclass(frozen=True)
class Comparison:
    """The verdict on one test's figures against its baseline entry."""

    status: Status  # unchanged, changed or new
    changes: tuple[Change, ...] = ()
    new_figures: tuple[str, ...] = ()  # figures measured now with no counterpart in the file
    notes: tuple[str, ...] = ()

    @property
    def fails(self) -> bool:
        return any(change.fails for change in self.changes)

    def changed_edges(self) -> set[int | None]:
        """Resolutions with a changed figure, before and after a move (384 -> 512)."""
        edges = {c.longest_edge for c in self.changes if c.kind == "tokens"}
        return edges | {c.now_edge for c in self.changes if c.now_edge is not None}

    def changed_keys(self) -> set[ResolutionKey]:
        """Resolutions (``longest_edge`` or pixel budget) with a changed figure, before and
        after a move."""
        keys = {c.key for c in self.changes if c.kind == "tokens"}
        return keys | {(c.now_edge, c.now_pixels) for c in self.changes if c.moved}


def compare(baseline: TestFigures | None, now: TestFigures, tolerance: GpuTolerance) -> Comparison:
    """Compare what a test measured now with its baseline entry (``None``: no entry)."""
    if baseline is None:
        new = ((["tokens"] if now.resolutions else []) + (["gpu"] if now.gpu else [])
               + (["audit"] if now.audit else []))
        return Comparison(Status.NEW, new_figures=tuple(new))
    changes: list[Change] = []
    new_figures: list[str] = []
    notes: list[str] = []
    if baseline.resolutions or not now.resolutions:
        changes.extend(_token_changes(baseline.resolutions, now.resolutions))
    else:
        new_figures.append("tokens")
    if now.gpu is None:
        if baseline.gpu is not None:
            notes.append("no GPU peak was measured in this run; the baseline's is kept")
    elif baseline.gpu is None:
        new_figures.append("gpu")
    else:
        changes.extend(_gpu_changes(baseline.gpu, now.gpu, tolerance))
    if now.audit is not None:
        if baseline.audit is None:
            new_figures.append("audit")
        else:
            changes.extend(_audit_changes(baseline.audit, now.audit))
    elif baseline.audit is not None:
        notes.append("no training set was audited in this run; the baseline's figures are kept")
    status = Status.CHANGED if changes else Status.NEW if new_figures else Status.UNCHANGED
    return Comparison(status, tuple(changes), tuple(new_figures), tuple(notes))


#: the resolution of sequences and videos of calls that had none
_NO_RESOLUTION: ResolutionKey = (None, None)


def _move(before: ResolutionKey, after: ResolutionKey) -> tuple[str, str, str]:
    """How a moved resolution reads in the diff, as (figure, baseline, now):
    ``longest_edge`` 384 -> 512; ``max_pixels`` 200704 -> 1003520 (the same
    ``min_pixels``); else the two resolutions named in full."""
    if before[1] is None and after[1] is None:
        return "longest_edge", str(before[0]), str(after[0])
    if (before[1] is not None and after[1] is not None
            and before[1].min_pixels == after[1].min_pixels):
        return "max_pixels", str(before[1].max_pixels), str(after[1].max_pixels)
    figure = "pixel budget" if before[1] is not None and after[1] is not None else "resolution"
    return figure, resolution_label(*before), resolution_label(*after)


def _change_at(key: ResolutionKey, moved_to: ResolutionKey | None, figure: str, was: str,
               now: str) -> Change:
    """A failing token change at ``key`` (moved to ``moved_to``, if it moved)."""
    to_edge, to_pixels = moved_to if moved_to is not None else (None, None)
    return Change(key[0], figure, was, now, True, to_edge, pixels=key[1], now_pixels=to_pixels)


def _token_changes(old: Sequence[ResolutionFigures], new: Sequence[ResolutionFigures]
                   ) -> list[Change]:
    old_by_key = {entry.key: entry for entry in old}
    new_by_key = {entry.key: entry for entry in new}
    gone = [key for key in old_by_key if key not in new_by_key]
    added = [key for key in new_by_key if key not in old_by_key]
    Pair = tuple[ResolutionKey, ResolutionFigures | None, ResolutionFigures | None,
                 ResolutionKey | None]
    pairs: list[Pair] = [(key, old_by_key[key], new_by_key[key], None) for key in old_by_key
                         if key in new_by_key]
    if (len(gone) == 1 and len(added) == 1 and gone[0] != _NO_RESOLUTION
            and added[0] != _NO_RESOLUTION):
        # the test's processor moved from one resolution to another (a longest_edge, a
        # max_pixels): compare the figures across the move, which is the diff a reader
        # wants ("81 -> 405, now at 512")
        pairs.append((gone[0], old_by_key[gone[0]], new_by_key[added[0]], added[0]))
    else:
        pairs.extend((key, old_by_key[key], None, None) for key in gone)
        pairs.extend((key, None, new_by_key[key], None) for key in added)
    pairs.sort(key=lambda pair: resolution_order(pair[0]))
    changes: list[Change] = []
    for key, before, after, moved_to in pairs:
        change = functools.partial(_change_at, key, moved_to)
        if before is None or after is None:
            changes.append(change("resolution", _describe(before), _describe(after)))
            continue
        if moved_to is not None:
            changes.append(change(*_move(key, moved_to)))
        old_images = {(i.width, i.height): i for i in before.per_image}
        new_images = {(i.width, i.height): i for i in after.per_image}
        for size in sorted(set(old_images) | set(new_images)):
            was, now = old_images.get(size), new_images.get(size)
            label = f"{size[0]}×{size[1]}"
            if was is None or now is None:
                changes.append(change(f"{label} image", "absent" if was is None else "processed",
                                      "absent" if now is None else "processed"))
                continue
            if was.image_tokens != now.image_tokens:
                changes.append(change("image tokens", str(was.image_tokens),
                                      str(now.image_tokens)))
            if was.block_tokens != now.block_tokens:
                changes.append(change("image block tokens", str(was.block_tokens),
                                      str(now.block_tokens)))
        if before.per_video != after.per_video:
            changes.extend(_video_changes(before, after, change))
        totals = [("images", "images"), ("longest sequence", "longest_sequence")]
        if before.images != 1 or after.images != 1:  # with one image, totals repeat it
            totals[1:1] = [("total image tokens", "image_tokens"),
                           ("total block tokens", "block_tokens")]
        for figure, attribute in totals:
            was_value, now_value = getattr(before, attribute), getattr(after, attribute)
            if was_value != now_value:
                changes.append(change(figure, str(was_value), str(now_value)))
    return changes


def _video_changes(before: ResolutionFigures, after: ResolutionFigures,
                   change: Callable[[str, str, str], Change]) -> list[Change]:
    """The videos' figures that moved: their count, sampled frames and tokens."""
    changes = []
    for figure, attribute in (("videos", "videos"), ("video frames", "video_frames"),
                              ("video tokens", "video_tokens")):
        was, now = getattr(before, attribute), getattr(after, attribute)
        if was != now:
            changes.append(change(figure, str(was), str(now)))
    if not changes:  # same totals, different videos
        changes.append(change("videos", _videos(before), _videos(after)))
    return changes


def _videos(entry: ResolutionFigures) -> str:
    return ", ".join(f"{v.count}×{v.frames} frames/{v.tokens} tokens" for v in entry.per_video)


def _describe(entry: ResolutionFigures | None) -> str:
    if entry is None:
        return "not recorded"
    plural = "" if entry.images == 1 else "s"
    return f"{entry.images} image{plural}, {entry.image_tokens} image tokens"


def _gpu_changes(old: GpuFigure, new: GpuFigure, tolerance: GpuTolerance) -> list[Change]:
    if old.measure != new.measure:
        return [Change(None, "gpu measure", old.measure, new.measure, kind="gpu")]
    delta = new.peak_bytes - old.peak_bytes
    if abs(delta) <= tolerance.allowed(old.peak_bytes):
        return []
    relative = f"{delta / old.peak_bytes:+.1%}" if old.peak_bytes else "new"
    return [Change(None, "gpu peak", format_bytes(old.peak_bytes),
                   f"{format_bytes(new.peak_bytes)} ({relative}, tolerance {tolerance})",
                   fails=delta > 0, kind="gpu")]


def _audit_changes(old: AuditFigure, new: AuditFigure) -> list[Change]:
    """Every audit figure that moved (token counts: deterministic, any change is one)."""
    if old.knob != new.knob:
        return [Change(None, "training set audited at", f"{old.knob} {old.longest_edge}",
                       f"{new.knob} {new.longest_edge}", kind="audit")]
    return [Change(None, f"training set {new.field_name(name).replace('_', ' ')}",
                   str(getattr(old, name)), str(getattr(new, name)), kind="audit")
            for name in AuditFigure.FIELDS if getattr(old, name) != getattr(new, name)]


def merge(old: TestFigures | None, now: TestFigures, only_new: bool = False) -> TestFigures | None:
    """The entry an update writes; ``None`` removes it.

    Token figures are replaced by what was measured. A GPU peak is replaced when one was
    measured and otherwise kept, so that an update on a machine without a GPU never
    erases peaks measured on one. ``only_new`` (``--tokenguard-allow-new``) adds figures
    that had no counterpart and leaves existing ones alone.
    """
    if only_new:
        base = old or TestFigures()
        return replace(
            base,
            resolutions=base.resolutions or now.resolutions,
            gpu=base.gpu or now.gpu,
            audit=base.audit or now.audit,
        )
    merged = TestFigures(now.resolutions, now.gpu or (old.gpu if old else None), now.audit)
    return None if merged.empty else merged


# --------------------------------------------------------------------------- failure text


def failure_message(nodeid: str, comparison: Comparison, entry_now: TestFigures,
                    entry_old: TestFigures | None, shown_path: str) -> str:
    """The text of a failed gate: one headline, the diff, the way to accept it."""
    name = nodeid.split("::", 1)[1] if "::" in nodeid else nodeid
    failing = [c for c in comparison.changes if c.fails]
    if failing:
        headline = headline_change(comparison).headline()
        lines = [f"tokenguard baseline: {name} {headline} (baseline {shown_path})", ""]
        lines.extend(diff_table(comparison.changes))
        lines += ["", f"{ACCEPT_HINT} (rewrites {shown_path}; commit it with the change)."]
        return "\n".join(lines)
    figures = " and ".join(comparison.new_figures) or "figures"
    return "\n".join([
        f"tokenguard baseline: {name} has no baseline entry for its {figures} "
        f"(baseline {shown_path}); CI is set, so unrecorded figures fail",
        "",
        *summary_lines(entry_now),
        "",
        f"Run pytest --tokenguard --tokenguard-update locally and commit {shown_path}, or pass "
        "--tokenguard-allow-new (ini tokenguard_allow_new = true) to add new entries in CI.",
    ])


def headline_change(comparison: Comparison) -> Change:
    """The change the one-line message names: the first failing one, a moved
    ``longest_edge`` (or ``max_pixels``) giving way to the token counts that moved with it."""
    failing = [c for c in comparison.changes if c.fails] or list(comparison.changes)
    moves = ("longest_edge", "max_pixels", "pixel budget", "resolution")
    return next((c for c in failing if not (c.moved and c.figure in moves)), failing[0])


def diff_table(changes: Sequence[Change]) -> list[str]:
    """The diff under a failed gate's headline; its first column is ``longest_edge``, or
    ``resolution`` where a pixel budget (Qwen-VL's ``max_pixels``) is among them."""
    pixels = any(c.pixels is not None or c.now_pixels is not None for c in changes)
    rows = [("resolution" if pixels else "longest_edge", "figure", "baseline", "now")]
    for change in changes:
        rows.append((change.edge_column(), change.figure, change.baseline, change.now))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return ["  " + "  ".join(
        (cell.rjust(widths[i]) if i == 0 else cell.ljust(widths[i])) for i, cell in
        enumerate(row)).rstrip() for row in rows]


def summary_lines(entry: TestFigures) -> list[str]:
    lines = []
    for resolution in entry.resolutions:
        edge = "-" if resolution.longest_edge is None else str(resolution.longest_edge)
        where = (resolution.pixels.label() if resolution.pixels is not None
                 else f"longest_edge {edge}")
        plural = "" if resolution.images == 1 else "s"
        lines.append(f"  {where}: {resolution.images} image{plural}, "
                     f"{resolution.image_tokens} image tokens, {resolution.block_tokens} block "
                     f"tokens, longest sequence {resolution.longest_sequence}")
    if entry.gpu is not None:
        lines.append(f"  gpu peak {format_bytes(entry.gpu.peak_bytes)} ({entry.gpu.measure})")
    if entry.audit is not None:
        lines.append(f"  training set {entry.audit.line()}")
    return lines
