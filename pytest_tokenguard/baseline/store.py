"""The committed baseline file: format version 1, read strictly, written canonically.

A baseline is what a suite cost the last time someone accepted it: per test, the
figures recorded under ``--tokenguard``. This module reads and writes the file and
knows nothing of pytest; :mod:`pytest_tokenguard.baseline.gate` decides when.

The file is JSON meant to be read in code review::

    {
      "format": "pytest-tokenguard baseline",
      "source": {"digest": "sha256:4f0c...", "kind": "embedded",
                 "model": "HuggingFaceTB/SmolVLM2-2.2B-Instruct", "transformers": "5.24.0"},
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
  Each entry is :meth:`pytest_tokenguard.figures.TestFigures.to_json`: the figures have
  one JSON form, here and in the test reports that carry them between processes.
* ``resolutions`` holds one object per ``longest_edge`` the test's processor calls
  used, sorted by edge (``null``, sequences that had no image, last); ``per_image``
  lists each distinct image size once, sorted by (width, height). Totals (``images``,
  ``image_tokens``, ``block_tokens``) catch a test that sends more images of a size
  that already cost the same.
* ``videos`` (optional in a resolution entry, added in 0.2 without a version bump:
  written only for tests that processed a video, so older files load as they are) lists
  the videos recorded at that resolution, one object per distinct cost:
  ``{"frames", "image_tokens", "block_tokens", "tokens", "count"}``.
* ``min_pixels`` and ``max_pixels`` (optional in a resolution entry, both or neither,
  added without a version bump: written only for a pixel-budget family, Qwen-VL, whose
  entries have ``"longest_edge": null``) are the pixel budget a Qwen image was resized
  under, its resolution as ``longest_edge`` is SmolVLM2's: two runs at other budgets
  never share an entry, and a changed ``max_pixels`` is a changed key. SmolVLM2 entries
  and older files are read and written byte for byte as before; an older Qwen entry
  (its images under ``longest_edge`` null, no budget) compares as changed until it is
  re-recorded.
* ``gpu`` is optional: the peak GPU memory a test measured and how (``gpu_measure``:
  ``torch_reserved``, ``torch_allocated``, ``nvml``..., or ``predicted``).
* ``source`` (optional, added in 0.2 without a version bump: readers of version 1 ignore
  it) is the processor the figures were recorded with: model, where it came from, a
  digest of its files and the transformers version. A run whose processor differs says
  so before any diff, since its figures may differ for that reason alone.
* Keys are sorted, indentation is two spaces, the file ends with a newline, and
  nothing else (no timestamp, no machine name) is written: the same figures always
  give the same bytes, so a serial run and a ``-n 2`` run write identical files and
  an unchanged suite leaves no diff.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..errors import BaselineError as BaselineError
from ..figures import (
    AuditFigure,
    GpuFigure,
    ImageFigure,
    PixelBounds,
    ResolutionFigures,
    TestFigures,
    VideoFigure,
)

_R = TypeVar("_R")

__all__ = [
    "DEFAULT_BASELINE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Baseline",
    "BaselineError",
    "SourceRecord",
    "dumps",
    "load",
    "locked",
]

FORMAT_NAME = "pytest-tokenguard baseline"
FORMAT_VERSION = 1

#: Default location, relative to the rootdir. The rootdir is what node ids are relative
#: to, so the file and its keys move together and do not depend on the directory pytest
#: is started from; a dot-folder of its own keeps it out of test discovery and, unlike
#: ``.pytest_cache`` (gitignored, wiped by ``--cache-clear``), it is meant to be committed.
DEFAULT_BASELINE = ".tokenguard/baseline.json"


@dataclass(frozen=True)
class SourceRecord:
    """Which processor produced a baseline's figures."""

    model: str
    kind: str  # folder, hub-cache, hub, embedded
    digest: str  # "sha256:..." of the processor files (or of the embedded tokenizer)
    transformers: str

    def to_json(self) -> dict[str, str]:
        return {"model": self.model, "kind": self.kind, "digest": self.digest,
                "transformers": self.transformers}

    def describe(self) -> str:
        return (f"{self.model} ({self.kind}, files {self.digest[:19]}, "
                f"transformers {self.transformers})")

    def differences(self, other: SourceRecord) -> list[str]:
        """What differs from ``other``, as short phrases; empty when the counts of the two
        can only agree."""
        found = []
        if self.digest != other.digest:
            found.append(f"processor files {other.digest[:19]} -> {self.digest[:19]}")
        if self.transformers != other.transformers:
            found.append(f"transformers {other.transformers} -> {self.transformers}")
        return found


@dataclass(frozen=True)
class Baseline:
    """A baseline file's entries, by node id; ``exists`` is False when there was no file."""

    path: Path
    entries: Mapping[str, TestFigures] = field(default_factory=dict)
    exists: bool = False
    source: SourceRecord | None = None

    def dumps(self) -> str:
        return dumps(self.entries, self.source)


def dumps(entries: Mapping[str, TestFigures], source: SourceRecord | None = None) -> str:
    """The canonical text of a baseline: same entries, same bytes."""
    document: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "tests": {nodeid: entries[nodeid].to_json() for nodeid in sorted(entries)},
    }
    if source is not None:
        document["source"] = source.to_json()
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
        document = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        twice = _line_of_duplicate(text)
        location = f"{shown}:{twice}" if twice else shown
        raise BaselineError(
            f"tokenguard baseline {location}: the key {exc.key!r} appears twice in one object "
            "(a bad merge or hand edit; JSON readers keep only one of them). " + fix
        ) from None
    except json.JSONDecodeError as exc:
        raise BaselineError(
            f"tokenguard baseline {shown}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}. "
            + fix
        ) from exc
    except RecursionError:
        raise BaselineError(
            f"tokenguard baseline {shown}: nested too deeply to be a baseline. " + fix
        ) from None
    entries, source = _parse_document(document, text, shown, fix)
    return Baseline(path, entries, exists=True, source=source)


def _parse_document(document: object, text: str, shown: str, fix: str
                    ) -> tuple[dict[str, TestFigures], SourceRecord | None]:
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
    entries: dict[str, TestFigures] = {}
    for nodeid, data in tests.items():
        try:
            entries[nodeid] = _parse_entry(data)
        except _SchemaError as exc:
            raise fail(f"tests[{nodeid!r}]{exc.where}", exc.problem, nodeid) from None
    source = None
    if "source" in document:
        raw = document["source"]
        keys = ("model", "kind", "digest", "transformers")
        if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) for k in keys):
            raise fail("source", f"expected an object with the strings {', '.join(keys)}")
        source = SourceRecord(*(raw[k] for k in keys))
    return entries, source


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: an object, refusing a key given twice."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _line_of_duplicate(text: str) -> int | None:
    """The line of the first key that repeats one before it in the same object (the
    document is valid JSON: strings are the only thing to step over)."""
    string = re.compile(r'"(?:[^"\\]|\\.)*"')
    objects: list[set[str]] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char == "{":
            objects.append(set())
        elif char == "}":
            objects.pop()
        elif char == '"':
            match = string.match(text, position)
            if match is None:
                return None
            end = match.end()
            rest = text[end:].lstrip()
            if objects and rest.startswith(":"):
                key = json.loads(match.group())
                if key in objects[-1]:
                    return text.count("\n", 0, position) + 1
                objects[-1].add(key)
            position = end
            continue
        position += 1
    return None


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


def _rows(item: Mapping[str, Any], key: str, where: str, make: Callable[..., _R],
          fields: tuple[str, ...]) -> list[_R]:
    """The list ``item[key]`` (optional) of objects with the counts ``fields``, each made
    into ``make(*counts)``; a wrong shape is named by its place in the file."""
    rows = item.get(key, [])
    if not isinstance(rows, list):
        raise _SchemaError(f"{where}.{key}", "expected a list")
    made = []
    for number, raw in enumerate(rows):
        row_where = f"{where}.{key}[{number}]"
        row = _object(raw, row_where)
        made.append(make(*(_count(row, field, row_where) for field in fields)))
    return made


def _parse_entry(data: object) -> TestFigures:
    entry = _object(data, "")
    raw_resolutions = entry.get("resolutions", [])
    if not isinstance(raw_resolutions, list):
        raise _SchemaError(".resolutions", "expected a list")
    resolutions: list[ResolutionFigures] = []
    for index, raw in enumerate(raw_resolutions):
        where = f".resolutions[{index}]"
        item = _object(raw, where)
        edge = item.get("longest_edge")
        if edge is not None and (isinstance(edge, bool) or not isinstance(edge, int) or edge < 1):
            raise _SchemaError(f"{where}.longest_edge",
                               f"expected a positive integer or null, got {edge!r}")
        pixels = _pixels(item, where)
        if pixels is not None and edge is not None:
            raise _SchemaError(f"{where}.longest_edge",
                               f"expected null beside max_pixels, got {edge!r}")
        per_image = _rows(item, "per_image", where, ImageFigure,
                          ("width", "height", "image_tokens", "block_tokens"))
        per_video = _rows(item, "videos", where, VideoFigure,
                          ("frames", "image_tokens", "block_tokens", "tokens", "count"))
        figures = ResolutionFigures(
            longest_edge=edge,
            images=_count(item, "images", where),
            image_tokens=_count(item, "image_tokens", where),
            block_tokens=_count(item, "block_tokens", where),
            longest_sequence=_count(item, "longest_sequence", where),
            per_image=tuple(sorted(per_image)),
            per_video=tuple(sorted(per_video)),
            pixels=pixels,
        )
        _check_totals(figures, where)
        if any(entry.key == figures.key for entry in resolutions):
            raise _SchemaError(where, f"a second entry at {figures.label()} (one per "
                               "resolution: a bad merge or hand edit)")
        resolutions.append(figures)
    gpu = None
    if "gpu" in entry:
        raw_gpu = _object(entry["gpu"], ".gpu")
        measure = raw_gpu.get("gpu_measure")
        if not isinstance(measure, str) or not measure:
            raise _SchemaError(".gpu.gpu_measure", f"expected a counter name, got {measure!r}")
        gpu = GpuFigure(_count(raw_gpu, "gpu_peak_bytes", ".gpu"), measure)
    return TestFigures(tuple(resolutions), gpu, _parse_audit(entry))


def _pixels(item: Mapping[str, Any], where: str) -> PixelBounds | None:
    """A resolution entry's pixel budget (Qwen-VL): ``min_pixels`` and ``max_pixels``,
    both or neither (SmolVLM2 entries have neither)."""
    given = [key for key in ("min_pixels", "max_pixels") if key in item]
    if not given:
        return None
    if len(given) == 1:
        other = "max_pixels" if given[0] == "min_pixels" else "min_pixels"
        raise _SchemaError(f"{where}.{other}",
                           f"missing beside {given[0]} (a pixel budget has both)")
    for key in given:
        value = item[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _SchemaError(f"{where}.{key}", f"expected a positive integer, got {value!r}")
    return PixelBounds(item["min_pixels"], item["max_pixels"])


def _check_totals(figures: ResolutionFigures, where: str) -> None:
    """The totals of a resolution entry must be what its ``per_image`` sizes can add up
    to: each size was processed at least once, and ``images`` in all. A recorded entry
    always agrees; one that does not was edited by hand, and the gate (which compares
    a test with one image by its ``per_image`` row alone) would pass it unnoticed."""
    rows = figures.per_image
    for number, row in enumerate(figures.per_image):
        if row.block_tokens < row.image_tokens:
            raise _SchemaError(f"{where}.per_image[{number}].block_tokens",
                               f"{row.block_tokens} is less than its image_tokens "
                               f"{row.image_tokens}, which the block holds")
    if len(rows) > figures.images or (figures.images > 0 and not rows):
        raise _SchemaError(f"{where}.images", f"{figures.images} images cannot have "
                           f"{len(rows)} distinct sizes in per_image")
    extra = figures.images - len(rows)
    for key in ("image_tokens", "block_tokens"):
        costs = [getattr(row, key) for row in rows]
        least = sum(costs) + extra * min(costs, default=0)
        most = sum(costs) + extra * max(costs, default=0)
        total = getattr(figures, key)
        if not least <= total <= most:
            expected = str(least) if least == most else f"between {least} and {most}"
            raise _SchemaError(
                f"{where}.{key}", f"{total} is not what per_image adds up to for "
                f"{figures.images} image{'' if figures.images == 1 else 's'} ({expected})")


def _line_of(text: str, nodeid: str) -> int | None:
    index = text.find(json.dumps(nodeid, ensure_ascii=False) + ":")
    return text.count("\n", 0, index) + 1 if index >= 0 else None


@contextlib.contextmanager
def locked(path: Path, timeout: float, display: str | None = None) -> Iterator[None]:
    """Hold the baseline's write lock, waited for up to ``timeout`` seconds: an advisory
    ``flock`` on the folder that holds it, so no lock file is left in the user's tree
    (and none goes stale when a run is killed: the kernel releases the lock).

    Where ``flock`` does not exist (Windows) no lock is taken; the writer still re-reads
    the file just before writing, which narrows the race to milliseconds.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    shown = display or str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BaselineError(
                        f"another run has been writing {shown} for over {timeout:g} s (it holds "
                        "a lock on the baseline's folder); wait for it to finish and re-run"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _parse_audit(entry: Mapping[str, Any]) -> AuditFigure | None:
    """The optional ``audit`` object of an entry (``training_set_fits``; added in 0.2
    without a version bump: older files have none)."""
    if "audit" not in entry:
        return None
    raw = _object(entry["audit"], ".audit")
    data = raw.get("data")
    if not isinstance(data, str) or not data:
        raise _SchemaError(".audit.data", f"expected the data set's path, got {data!r}")
    limit = raw.get("max_length")
    if limit is not None:
        limit = _count(raw, "max_length", ".audit")
    knobs = [k for k in AuditFigure.KNOBS if k in raw]
    if len(knobs) != 1:
        raise _SchemaError(".audit", "expected one of longest_edge (SmolVLM2) or max_pixels "
                           f"(Qwen-VL), got {', '.join(knobs) or 'neither'}")
    counts = {name: _count(raw, knobs[0] if name == "longest_edge" else name, ".audit")
              for name in AuditFigure.FIELDS if name not in ("data", "max_length")}
    return AuditFigure(data=data, max_length=limit, **counts, knob=knobs[0])

