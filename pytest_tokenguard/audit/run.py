"""One audit run: the input read in parts, measured in worker processes, folded in order.

``workers=1`` reads and measures in this process. With more, a process pool (``fork``
where the platform has it, so the tokenizer loaded here is shared and a worker starts in
milliseconds, else ``spawn``, where each worker loads its own) takes the
:class:`~pytest_tokenguard.audit.readers.Part` s in order; each worker reads its own
part from the file (this process never parses the input) and sends back the part's
compact results, which this process folds into the
:class:`~pytest_tokenguard.audit.summary.Summary` and hands to ``on_result`` in row
order. The folding costs this process about a tenth of the measuring, so it keeps up
with several workers.

Memory stays bounded: a part is about 1 MB of input, at most :data:`AHEAD` parts per
worker are handed out before their results are folded (so results never pile up
behind a slow ``on_result``), and the id lists the summary keeps spill to disk.

On Linux, the scheduler shares the CPU between *sessions* (``autogroup``), not
processes: on a machine busy with other sessions' work, ``N`` workers of one command
together get about the share one process would. The speed-up is there on idle cores;
measure it there.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO

from .measure import Auditor, SampleResult
from .readers import Part, plan, read_part
from .summary import Summary
from .trainer import TrainerRules

__all__ = ["AHEAD", "Progress", "audit_rows", "run_audit"]

#: parts handed to the pool per worker before the oldest one's results are folded
AHEAD = 2

_AUDITOR: Auditor | None = None


def _init(auditor: Auditor) -> None:
    """A worker's auditor: with ``fork`` the parent's own, tokenizer loaded; with
    ``spawn`` a copy of its settings, which loads its tokenizer on first use.

    A forked worker also inherits the parent's signal handlers, among them those of an
    open :class:`~pytest_tokenguard.files.AtomicFile` (``--per-sample``), which turn
    ``SIGTERM`` into an exception: the pool's shutdown then waited forever on a worker
    that had survived its ``SIGTERM``. A worker dies by ``SIGTERM`` and ``SIGHUP`` as
    the default action says, and leaves Ctrl-C (sent to the whole process group) to the
    parent, which stops the pool and removes its own temporary file."""
    global _AUDITOR
    _AUDITOR = auditor
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _measure_part(part: Part) -> list[tuple[SampleResult, bool]]:
    """One part's results, each with whether the row had its own ``id``."""
    assert _AUDITOR is not None
    return [(_AUDITOR.measure(row, local), isinstance(row, Mapping) and "id" in row)
            for local, row in enumerate(read_part(part))]


class Progress:
    """A one-line progress count on a terminal; silent when ``stream`` is not one or
    ``$CI`` is set (CI logs keep no carriage returns)."""

    def __init__(self, stream: TextIO, enabled: bool | None = None) -> None:
        self.stream = stream
        isatty = getattr(stream, "isatty", None)
        self.enabled = (bool(isatty and isatty()) and not os.environ.get("CI")
                        if enabled is None else enabled)
        self.start = time.monotonic()
        self._shown = 0.0
        self.count = 0

    def update(self, count: int) -> None:
        self.count = count
        now = time.monotonic()
        if self.enabled and now - self._shown >= 0.2:
            self._shown = now
            rate = count / max(now - self.start, 1e-9)
            self.stream.write(f"\rtokenguard audit: {count:,} samples ({rate:,.0f}/s)")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()


def _pool(workers: int, auditor: Auditor) -> Any:
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    # a forked child must not inherit the tokenizer's thread pool
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return context.Pool(workers, initializer=_init, initargs=(auditor,))


def audit_rows(data: str | os.PathLike[str], auditor: Auditor, *, workers: int = 1
               ) -> Iterator[SampleResult]:
    """Every sample of ``data`` measured, in row order (ids from ``id`` or row numbers)."""
    parts = plan(data, workers)
    offset = 0
    if workers <= 1:
        for part in parts:
            count = 0
            for count, row in enumerate(read_part(part), 1):
                result = auditor.measure(row, offset + count - 1)
                yield result
            offset += count
        return
    with _pool(workers, auditor) as pool:
        pending: collections.deque[Any] = collections.deque()
        waiting = iter(parts)
        for part in itertools.islice(waiting, AHEAD * workers):
            pending.append(pool.apply_async(_measure_part, (part,)))
        while pending:
            results = pending.popleft().get()
            for part in itertools.islice(waiting, 1):
                pending.append(pool.apply_async(_measure_part, (part,)))
            for local, (result, has_id) in enumerate(results):
                yield result if has_id else result._replace(id=offset + local)
            offset += len(results)


def run_audit(
    data: str | os.PathLike[str], auditor: Auditor, rules: TrainerRules, *, batch: int = 1,
    workers: int = 1, on_result: Callable[[SampleResult], None] | None = None,
    progress: Progress | None = None,
) -> Summary:
    """Audit ``data``: the :class:`Summary` under ``rules`` for a worst batch of
    ``batch``; ``on_result`` sees each sample in row order."""
    summary = Summary(rules, auditor.longest_edge, auditor.edges, auditor.frame_candidates,
                      batch, auditor.fps_candidates, auditor.knob,
                      auditor.pricer.size_floor,
                      getattr(auditor.pricer, "image_token", "<image>"))
    progress = progress or Progress(sys.stderr, enabled=False)
    try:
        for result in audit_rows(data, auditor, workers=workers):
            summary.add(result)
            if on_result is not None:
                on_result(result)
            if summary.samples % 256 == 0:
                progress.update(summary.samples)
    finally:
        progress.close()
    return summary
