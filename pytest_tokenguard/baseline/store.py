"""Committed token baselines: the file format, the comparison and the atomic write.

A baseline is what a suite cost the last time someone accepted it: per test, the
figures recorded under ``--tokenguard``. CI compares every run against it, so an
image that suddenly costs 405 tokens instead of 81 fails the build, with a diff.
This module knows nothing of pytest; :mod:`pytest_tokenguard.gating` decides when
to load, compare and write.

The file (format version 1) is JSON meant to be read in code review::

    {
      "format": "pytest-tokenguard baseline",
      "tests": {
        "tests/test_frames.py::test_frame[le384]": {
          "gpu": {"gpu_measure": "torch_reserved", "gpu_peak_bytes": 3221225472},
          "resolutions": [
            {
              "block_tokens": 84,
              "image_tokens": 81,
              "images": 1,
              "longest_edge": 384,
              "longest_sequence": 84,
              "per_image": [
                {"block_tokens": 84, "height": 384, "image_tokens": 81, "width": 384}
              ]
            }
          ]
        }
      },
      "version": 1
    }

* ``tests`` is keyed by pytest node id (relative to the rootdir, parametrization
  included), so a test and its entry share one name in failures and in ``git diff``.
* ``resolutions`` holds one object per ``longest_edge`` the test's processor calls
  used, sorted by edge (``null``, sequences that had no image, last); ``per_image``
  lists each distinct image size once, sorted by (width, height). Totals (``images``,
  ``image_tokens``, ``block_tokens``) catch a test that sends more images of a size
  that already cost the same.
* ``gpu`` is optional: the peak GPU memory a test measured and how it was measured.
  A plugin reports it through the same channel as the token figures, an entry of the
  test report's ``user_properties``::

      report.user_properties.append(
          ("tokenguard", {"gpu_peak_bytes": 3221225472, "gpu_measure": "torch_reserved"}))

  ``gpu_measure`` names the counter (``torch_reserved``, ``torch_allocated``, ``nvml``
  ..., or ``predicted`` for the memory model): peaks taken with different counters are
  never compared with each other. When a test reports several, a measured peak is kept
  over a predicted one, and otherwise the last reported.
* Keys are sorted, indentation is two spaces, the file ends with a newline, and
  nothing else (no timestamp, no machine name) is written: the same figures always
  give the same bytes, so a serial run and a ``-n 2`` run write identical files and
  an unchanged suite leaves no diff.

Token counts are deterministic, so any difference is a change; GPU peaks vary a
little between runs, so they only fail beyond a :class:`GpuTolerance`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import BaselineError as BaselineError
from ..files import write_atomic as write_atomic
from ..plugin.summary import ResolutionFigures
from ..units import format_bytes, parse_size

FORMAT_NAME = "pytest-tokenguard baseline"
FORMAT_VERSION = 1

#: Default location, relative to the rootdir. The rootdir is what node ids are relative
#: to, so the file and its keys move together and do not depend on the directory pytest
#: is started from; a dot-folder of its own keeps it out of test discovery and, unlike
#: ``.pytest_cache`` (gitignored, wiped by ``--cache-clear``), it is meant to be committed.
DEFAULT_BASELINE = ".tokenguard/baseline.json"

#: Exit messages and docs point here to accept a deliberate change.
ACCEPT_HINT = "Re-run pytest with --tokenguard --tokenguard-update to accept"


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True, order=True)
class ImageEntry:
    """What one distinct image size cost at one resolution."""

    width: int
    height: int
    image_tokens: int
    block_tokens: int

    @property
    def size(self) -> str:
        return f"{self.width}×{self.height}"

    def to_json(self) -> dict[str, int]:
        return {"width": self.width, "height": self.height, "image_tokens": self.image_tokens,
                "block_tokens": self.block_tokens}


@dataclass(frozen=True)
class ResolutionEntry:
    """The token figures of one test at one ``longest_edge`` (``None``: no image)."""

    longest_edge: int | None
    images: int
    image_tokens: int
    block_tokens: int
    longest_sequence: int
    per_image: tuple[ImageEntry, ...]

    @classmethod
    def from_figures(cls, figures: ResolutionFigures) -> ResolutionEntry:
        return cls(
            longest_edge=figures.longest_edge,
            images=figures.images,
            image_tokens=figures.image_tokens,
            block_tokens=figures.block_tokens,
            longest_sequence=figures.longest_sequence,
            per_image=tuple(sorted(ImageEntry(w, h, it, bt) for w, h, it, bt in figures.per_image)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "longest_edge": self.longest_edge,
            "images": self.images,
            "image_tokens": self.image_tokens,
            "block_tokens": self.block_tokens,
            "longest_sequence": self.longest_sequence,
            "per_image": [image.to_json() for image in self.per_image],
        }


@dataclass(frozen=True)
class GpuFigure:
    """Peak GPU memory of one test, in bytes, and the counter that measured it."""

    peak_bytes: int
    measure: str

    def to_json(self) -> dict[str, Any]:
        return {"gpu_peak_bytes": self.peak_bytes, "gpu_measure": self.measure}


def _edge_key(entry: ResolutionEntry) -> tuple[bool, int]:
    return entry.longest_edge is None, entry.longest_edge or 0


@dataclass(frozen=True)
class Entry:
    """Everything the baseline holds for one test."""

    resolutions: tuple[ResolutionEntry, ...] = ()
    gpu: GpuFigure | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "resolutions", tuple(sorted(self.resolutions, key=_edge_key)))

    @property
    def empty(self) -> bool:
        return not self.resolutions and self.gpu is None

    def resolution(self, longest_edge: int | None) -> ResolutionEntry | None:
        for entry in self.resolutions:
            if entry.longest_edge == longest_edge:
                return entry
        return None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"resolutions": [r.to_json() for r in self.resolutions]}
        if self.gpu is not None:
            data["gpu"] = self.gpu.to_json()
        return data


def entry_from_properties(properties: Iterable[tuple[str, object]], name: str) -> Entry:
    """The figures a test report carries in ``user_properties`` under ``name``.

    Token figures come as ``{"figures": [...]}`` (see :mod:`pytest_tokenguard.summary`),
    a GPU peak as ``{"gpu_peak_bytes": N, "gpu_measure": "..."}``; other keys are ignored
    so that later figures can travel in the same channel.
    """
    resolutions: list[ResolutionEntry] = []
    gpu: GpuFigure | None = None
    for key, value in properties:
        if key != name or not isinstance(value, Mapping):
            continue
        for data in value.get("figures", ()):
            resolutions.append(ResolutionEntry.from_figures(ResolutionFigures.from_json("", data)))
        if "gpu_peak_bytes" in value:
            figure = GpuFigure(int(value["gpu_peak_bytes"]), str(value.get("gpu_measure", "")))
            # one peak per test: a measured one wins over a memory-model prediction
            if gpu is None or _predicted(gpu) or not _predicted(figure):
                gpu = figure
    return Entry(tuple(resolutions), gpu)


def _predicted(figure: GpuFigure) -> bool:
    return figure.measure.startswith("predicted")


# --------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class Baseline:
    """A baseline file's entries, by node id; ``exists`` is False when there was no file."""

    path: Path
    entries: Mapping[str, Entry] = field(default_factory=dict)
    exists: bool = False

    def dumps(self) -> str:
        return dumps(self.entries)


def dumps(entries: Mapping[str, Entry]) -> str:
    """The canonical text of a baseline: same entries, same bytes."""
    document = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "tests": {nodeid: entries[nodeid].to_json() for nodeid in sorted(entries)},
    }
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def load(path: Path, display: str | None = None) -> Baseline:
    """Read and validate a baseline; a missing file is an empty baseline.

    Every problem is a :class:`BaselineError` naming the file, the line where it can be
    told, and what to do, because a hand-edited or merge-conflicted baseline is the
    usual way this fails and a traceback would point at this module instead.
    """
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Baseline(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"tokenguard baseline {shown}: cannot be read: {exc}") from exc
    fix = (f"Fix it by hand, restore it (git checkout -- {shown}), or delete it and run "
           "pytest --tokenguard --tokenguard-update to write it again.")
    conflict = re.search(r"^(<{7}|={7}|>{7})( |$)", text, re.MULTILINE)
    if conflict:
        line = text.count("\n", 0, conflict.start()) + 1
        raise BaselineError(
            f"tokenguard baseline {shown}:{line}: contains a git merge conflict marker. "
            "Resolve it by regenerating the file: pytest --tokenguard --tokenguard-update "
            "(on the merged code), then commit."
        )
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(
            f"tokenguard baseline {shown}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}. "
            + fix
        ) from exc
    return Baseline(path, _parse_document(document, text, shown, fix), exists=True)


def _parse_document(document: object, text: str, shown: str, fix: str) -> dict[str, Entry]:
    def fail(where: str, problem: str, nodeid: str | None = None) -> BaselineError:
        line = _line_of(text, nodeid) if nodeid is not None else None
        location = f"{shown}:{line}" if line else shown
        return BaselineError(f"tokenguard baseline {location}: {where}: {problem}. {fix}")

    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise fail("top level", f'not a tokenguard baseline (expected "format": "{FORMAT_NAME}")')
    version = document.get("version")
    if version != FORMAT_VERSION:
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise BaselineError(
                f"tokenguard baseline {shown}: format version {version} was written by a newer "
                f"pytest-tokenguard (this one reads version {FORMAT_VERSION}); upgrade "
                "pytest-tokenguard"
            )
        raise fail("version", f"expected {FORMAT_VERSION}, got {version!r}")
    tests = document.get("tests")
    if not isinstance(tests, dict):
        raise fail("tests", "expected an object of node id → figures")
    entries: dict[str, Entry] = {}
    for nodeid, data in tests.items():
        try:
            entries[nodeid] = _parse_entry(data)
        except _SchemaError as exc:
            raise fail(f"tests[{nodeid!r}]{exc.where}", exc.problem, nodeid) from None
    return entries


class _SchemaError(Exception):
    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


def _count(data: Mapping[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _SchemaError(f"{where}.{key}", f"expected a non-negative integer, got {value!r}")
    return value


def _object(data: object, where: str) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise _SchemaError(where, f"expected an object, got {data!r}")
    return data


def _parse_entry(data: object) -> Entry:
    entry = _object(data, "")
    raw_resolutions = entry.get("resolutions", [])
    if not isinstance(raw_resolutions, list):
        raise _SchemaError(".resolutions", "expected a list")
    resolutions = []
    for index, raw in enumerate(raw_resolutions):
        where = f".resolutions[{index}]"
        item = _object(raw, where)
        edge = item.get("longest_edge")
        if edge is not None and (isinstance(edge, bool) or not isinstance(edge, int) or edge < 1):
            raise _SchemaError(f"{where}.longest_edge",
                               f"expected a positive integer or null, got {edge!r}")
        per_image_raw = item.get("per_image", [])
        if not isinstance(per_image_raw, list):
            raise _SchemaError(f"{where}.per_image", "expected a list")
        per_image = []
        for number, image_raw in enumerate(per_image_raw):
            image_where = f"{where}.per_image[{number}]"
            image = _object(image_raw, image_where)
            per_image.append(ImageEntry(*(_count(image, key, image_where) for key in
                                          ("width", "height", "image_tokens", "block_tokens"))))
        resolutions.append(ResolutionEntry(
            longest_edge=edge,
            images=_count(item, "images", where),
            image_tokens=_count(item, "image_tokens", where),
            block_tokens=_count(item, "block_tokens", where),
            longest_sequence=_count(item, "longest_sequence", where),
            per_image=tuple(sorted(per_image)),
        ))
    gpu = None
    if "gpu" in entry:
        raw_gpu = _object(entry["gpu"], ".gpu")
        measure = raw_gpu.get("gpu_measure")
        if not isinstance(measure, str) or not measure:
            raise _SchemaError(".gpu.gpu_measure", f"expected a counter name, got {measure!r}")
        gpu = GpuFigure(_count(raw_gpu, "gpu_peak_bytes", ".gpu"), measure)
    return Entry(tuple(resolutions), gpu)


def _line_of(text: str, nodeid: str) -> int | None:
    index = text.find(json.dumps(nodeid, ensure_ascii=False) + ":")
    return text.count("\n", 0, index) + 1 if index >= 0 else None


# --------------------------------------------------------------------------- tolerance

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

UNCHANGED, CHANGED, NEW, MISSING, REMOVED, EXCLUDED = (
    "unchanged", "changed", "new", "missing", "removed", "excluded")


@dataclass(frozen=True)
class Change:
    """One figure that is not what the baseline says."""

    longest_edge: int | None
    figure: str  # "image tokens", "block tokens", "longest sequence", "images", "gpu peak"...
    baseline: str
    now: str
    fails: bool = True  # a GPU peak that dropped is reported but passes
    #: where the figure is now, when the test's only resolution moved (384 -> 512)
    now_edge: int | None = None

    def where(self) -> str:
        if self.figure.startswith("gpu"):
            return ""
        if self.longest_edge is None:
            return " in sequences without an image"
        return f" at longest_edge={self.longest_edge}"

    def headline(self) -> str:
        moved = f", now at longest_edge={self.now_edge}" if self.now_edge is not None else ""
        return f"{self.figure} changed{self.where()}: {self.baseline} -> {self.now}{moved}"

    def edge_column(self) -> str:
        if self.figure.startswith("gpu") or self.longest_edge is None:
            return "-"
        if self.now_edge is not None:
            return f"{self.longest_edge} -> {self.now_edge}"
        return str(self.longest_edge)


@dataclass(frozen=True)
class Comparison:
    """The verdict on one test's figures against its baseline entry."""

    status: str  # unchanged, changed or new
    changes: tuple[Change, ...] = ()
    new_figures: tuple[str, ...] = ()  # figures measured now with no counterpart in the file
    notes: tuple[str, ...] = ()

    @property
    def fails(self) -> bool:
        return any(change.fails for change in self.changes)

    def changed_edges(self) -> set[int | None]:
        """Resolutions with a changed figure, before and after a move (384 -> 512)."""
        edges = {c.longest_edge for c in self.changes if not c.figure.startswith("gpu")}
        return edges | {c.now_edge for c in self.changes if c.now_edge is not None}


def compare(baseline: Entry | None, now: Entry, tolerance: GpuTolerance) -> Comparison:
    """Compare what a test measured now with its baseline entry (``None``: no entry)."""
    if baseline is None:
        new = (["tokens"] if now.resolutions else []) + (["gpu"] if now.gpu else [])
        return Comparison(NEW, new_figures=tuple(new))
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
    status = CHANGED if changes else NEW if new_figures else UNCHANGED
    return Comparison(status, tuple(changes), tuple(new_figures), tuple(notes))


def _token_changes(old: Sequence[ResolutionEntry], new: Sequence[ResolutionEntry]
                   ) -> list[Change]:
    old_by_edge = {entry.longest_edge: entry for entry in old}
    new_by_edge = {entry.longest_edge: entry for entry in new}
    gone = [edge for edge in old_by_edge if edge not in new_by_edge]
    added = [edge for edge in new_by_edge if edge not in old_by_edge]
    pairs: list[tuple[int | None, ResolutionEntry | None, ResolutionEntry | None, int | None]]
    pairs = [(edge, old_by_edge[edge], new_by_edge[edge], None) for edge in old_by_edge
             if edge in new_by_edge]
    if len(gone) == 1 and len(added) == 1 and gone[0] is not None and added[0] is not None:
        # the test's processor moved from one longest_edge to another: compare the figures
        # across the move, which is the diff a reader wants ("81 -> 405, now at 512")
        pairs.append((gone[0], old_by_edge[gone[0]], new_by_edge[added[0]], added[0]))
    else:
        pairs.extend((edge, old_by_edge[edge], None, None) for edge in gone)
        pairs.extend((edge, None, new_by_edge[edge], None) for edge in added)
    pairs.sort(key=lambda pair: (pair[0] is None, pair[0] or 0))
    changes: list[Change] = []
    for edge, before, after, moved_to in pairs:
        if before is None or after is None:
            changes.append(Change(edge, "resolution", _describe(before), _describe(after)))
            continue
        if moved_to is not None:
            changes.append(Change(edge, "longest_edge", str(edge), str(moved_to), True, moved_to))
        old_images = {(i.width, i.height): i for i in before.per_image}
        new_images = {(i.width, i.height): i for i in after.per_image}
        for size in sorted(set(old_images) | set(new_images)):
            was, now = old_images.get(size), new_images.get(size)
            label = f"{size[0]}×{size[1]}"
            if was is None or now is None:
                changes.append(Change(edge, f"{label} image",
                                      "absent" if was is None else "processed",
                                      "absent" if now is None else "processed", True, moved_to))
                continue
            if was.image_tokens != now.image_tokens:
                changes.append(Change(edge, "image tokens", str(was.image_tokens),
                                      str(now.image_tokens), True, moved_to))
            if was.block_tokens != now.block_tokens:
                changes.append(Change(edge, "image block tokens", str(was.block_tokens),
                                      str(now.block_tokens), True, moved_to))
        totals = [("images", "images"), ("longest sequence", "longest_sequence")]
        if before.images != 1 or after.images != 1:  # with one image, totals repeat it
            totals[1:1] = [("total image tokens", "image_tokens"),
                           ("total block tokens", "block_tokens")]
        for figure, attribute in totals:
            was_value, now_value = getattr(before, attribute), getattr(after, attribute)
            if was_value != now_value:
                changes.append(Change(edge, figure, str(was_value), str(now_value), True,
                                      moved_to))
    return changes


def _describe(entry: ResolutionEntry | None) -> str:
    if entry is None:
        return "not recorded"
    plural = "" if entry.images == 1 else "s"
    return f"{entry.images} image{plural}, {entry.image_tokens} image tokens"


def _gpu_changes(old: GpuFigure, new: GpuFigure, tolerance: GpuTolerance) -> list[Change]:
    if old.measure != new.measure:
        return [Change(None, "gpu measure", old.measure, new.measure)]
    delta = new.peak_bytes - old.peak_bytes
    if abs(delta) <= tolerance.allowed(old.peak_bytes):
        return []
    relative = f"{delta / old.peak_bytes:+.1%}" if old.peak_bytes else "new"
    return [Change(None, "gpu peak", format_bytes(old.peak_bytes),
                   f"{format_bytes(new.peak_bytes)} ({relative}, tolerance {tolerance})",
                   fails=delta > 0)]


def merge(old: Entry | None, now: Entry, only_new: bool = False) -> Entry | None:
    """The entry an update writes; ``None`` removes it.

    Token figures are replaced by what was measured. A GPU peak is replaced when one was
    measured and otherwise kept, so that an update on a machine without a GPU never
    erases peaks measured on one. ``only_new`` (``--tokenguard-allow-new``) adds figures
    that had no counterpart and leaves existing ones alone.
    """
    if only_new:
        base = old or Entry()
        return replace(
            base,
            resolutions=base.resolutions or now.resolutions,
            gpu=base.gpu or now.gpu,
        )
    merged = Entry(now.resolutions, now.gpu or (old.gpu if old else None))
    return None if merged.empty else merged


# --------------------------------------------------------------------------- failure text


def failure_message(nodeid: str, comparison: Comparison, entry_now: Entry,
                    entry_old: Entry | None, shown_path: str) -> str:
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
    ``longest_edge`` giving way to the token counts that moved with it."""
    failing = [c for c in comparison.changes if c.fails] or list(comparison.changes)
    return next((c for c in failing if c.figure != "longest_edge"), failing[0])


def diff_table(changes: Sequence[Change]) -> list[str]:
    rows = [("longest_edge", "figure", "baseline", "now")]
    for change in changes:
        rows.append((change.edge_column(), change.figure, change.baseline, change.now))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return ["  " + "  ".join(
        (cell.rjust(widths[i]) if i == 0 else cell.ljust(widths[i])) for i, cell in
        enumerate(row)).rstrip() for row in rows]


def summary_lines(entry: Entry) -> list[str]:
    lines = []
    for resolution in entry.resolutions:
        edge = "-" if resolution.longest_edge is None else str(resolution.longest_edge)
        plural = "" if resolution.images == 1 else "s"
        lines.append(f"  longest_edge {edge}: {resolution.images} image{plural}, "
                     f"{resolution.image_tokens} image tokens, {resolution.block_tokens} block "
                     f"tokens, longest sequence {resolution.longest_sequence}")
    if entry.gpu is not None:
        lines.append(f"  gpu peak {format_bytes(entry.gpu.peak_bytes)} ({entry.gpu.measure})")
    return lines
