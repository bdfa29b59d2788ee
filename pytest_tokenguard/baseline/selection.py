"""Whole suite or subset: may an update remove the entries of tests that did not run?

``--tokenguard-update`` drops entries of tests that no longer exist only when nothing
narrowed the run, as syrupy does for unused snapshots: a ``-k`` update never loses
other entries. This module decides it from plain facts the session gathers, so the
rule is unit-tested without running pytest. No pytest import.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunFacts", "narrowing_argument", "subset_reason"]


@dataclass(frozen=True)
class RunFacts:
    """What the session saw that decides whether the run was the whole suite."""

    #: selection options given (``-k``, ``-m``, ``--lf``...), as the user wrote them
    options: tuple[str, ...] = ()
    #: the first command-line argument narrower than the suite (a node id, a sub-folder)
    narrowed_argument: str | None = None
    #: ``--tokenguard-resolutions`` narrower than the configured resolutions, described
    resolutions: str | None = None
    deselected: int = 0
    collect_errors: int = 0
    worker_errors: int = 0
    stopped_early: str | None = None
    collected: int = 0
    reported: int = 0


def subset_reason(facts: RunFacts) -> str | None:
    """Why this run was not the whole suite, or None when it was."""
    if facts.options:
        return f"{facts.options[0]} given"
    if facts.narrowed_argument:
        return f"run on {facts.narrowed_argument}"
    if facts.resolutions:
        return facts.resolutions
    if facts.deselected:
        return f"{facts.deselected} test{'s' * (facts.deselected != 1)} deselected"
    if facts.collect_errors:
        return "collection errors"
    if facts.worker_errors:
        return "an xdist worker crashed"
    if facts.stopped_early:
        return f"the run stopped early ({facts.stopped_early})"
    if facts.reported < facts.collected:
        return "not every collected test ran"
    return None


def narrowing_argument(
    args: Sequence[str],
    *,
    from_testpaths: bool,
    rootdir: Path,
    testpath_roots: Iterable[Path],
    invocation_dir: Path,
) -> str | None:
    """The first command-line argument that selects less than the whole suite.

    The whole suite is what ``pytest`` with no arguments collects from the rootdir: the
    ``testpaths`` (globbed, relative to the rootdir) or else the rootdir. Arguments that
    contain all of those (``pytest .``, ``pytest tests`` with ``testpaths = tests``) are
    the whole suite; a node id or a narrower path is not.
    """
    if from_testpaths:
        return None
    roots = list(testpath_roots) or [rootdir]
    given: list[Path] = []
    for arg in args:
        if "::" in arg:
            return arg
        given.append((invocation_dir / arg).resolve())
    for root in roots:
        if not any(path == root or path in root.parents for path in given):
            return " ".join(args)
    return None
