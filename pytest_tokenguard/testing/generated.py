"""Which running test drew generated examples, for the baseline gate to leave it out.

A test whose figures come from hypothesis-generated examples cannot be baselined: the
examples (and so the processor calls the plugin records) differ between runs and
profiles. ``@given`` tests are recognisable from their function; a test that calls
:func:`~pytest_tokenguard.testing.splitcheck.check_splitter` (directly, or through the
``tokenguard_check_splitter`` fixture) is not, as the hypothesis run is inside the call.
So the checker notes itself here while it runs, and the plugin reads the notes around
each test::

    generated.take()            # before the test: drop stale notes
    ...run the test...
    notes = generated.take()    # after: non-empty -> keep the test out of the baseline

This module imports nothing (no hypothesis, no torch): the plugin imports it on every
run. Notes are per process (pytest-xdist workers each have their own), and a test's
calls run in its own thread, so a plain list is enough.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["FIXTURES", "Note", "exclusion_reason", "note", "take"]

#: Fixtures whose use alone means the test's figures come from generated examples.
FIXTURES = frozenset({"tokenguard_check_splitter"})


@dataclass(frozen=True)
class Note:
    """One generated-example run inside a test: what ran it and with which settings."""

    source: str  # e.g. "check_splitter"
    detail: str  # e.g. "longest_edge 384, max_tokens 4096"

    def __str__(self) -> str:
        return f"{self.source} ({self.detail})"


_NOTES: list[Note] = []
_KEEP = 100


def note(source: str, detail: str = "") -> None:
    """Record that the running test draws generated examples (called by the checker).
    Without a plugin to take them, only the latest notes are kept."""
    _NOTES.append(Note(source, detail))
    del _NOTES[:-_KEEP]


def take() -> tuple[Note, ...]:
    """The notes made since the last call, and forget them."""
    notes = tuple(_NOTES)
    _NOTES.clear()
    return notes


def exclusion_reason(
    fixturenames: Iterable[str], is_hypothesis_test: bool, notes: Iterable[Note] = ()
) -> str | None:
    """Why a test must stay out of the baseline (its figures come from generated
    examples), or None. The gate's rule, in one place: a ``@given`` test, a test using a
    checker fixture, or a test during which the checker ran (``notes`` from :func:`take`).
    """
    if is_hypothesis_test:
        return "hypothesis test: generated inputs differ between runs"
    used = sorted(FIXTURES.intersection(fixturenames))
    if used:
        return f"uses {used[0]}: its examples are generated and differ between runs"
    noted = list(notes)
    if noted:
        return f"ran {noted[0]}: its examples are generated and differ between runs"
    return None
