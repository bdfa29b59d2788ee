"""The ids an audit names (over the limit, cut inside media, refused, unreadable), kept in
bounded memory however many samples fail.

An :class:`IdList` holds its first :data:`IN_MEMORY` entries in memory and writes the
rest, one JSON value a line, to an anonymous temporary file (deleted when the list is
closed or the process ends, never left behind). Its length, its first entries (what the
terminal, Markdown and the pytest marker show) and its truthiness come from memory;
iterating it reads the spilled entries back in order, which is how ``--json`` writes
the full lists without holding them (:meth:`AuditReport.write_json
<pytest_tokenguard.audit.report.AuditReport.write_json>`). Entries are ids (``str`` or
``int``) or ``(id, reason)`` pairs; they come back as they went in.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["IN_MEMORY", "IdList"]

#: entries of a list kept in memory before the rest spill to a temporary file (50,000 ids
#: are a few MB; the five lists of a set where every sample fails stay under 30 MB)
IN_MEMORY = 50_000


class IdList:
    """See the module docstring. ``pairs``: entries are ``(id, reason)`` tuples."""

    def __init__(self, pairs: bool = False, in_memory: int | None = None) -> None:
        self.pairs = pairs
        self.limit = IN_MEMORY if in_memory is None else in_memory
        self.head: list[Any] = []
        self.count = 0
        self._spill: IO[bytes] | None = None

    def append(self, entry: Any) -> None:
        self.count += 1
        if len(self.head) < self.limit:
            self.head.append(entry)
            return
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(prefix="tokenguard-audit-ids-")  # noqa: SIM115
        self._spill.write(json.dumps(entry).encode() + b"\n")

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    @property
    def spilled(self) -> int:
        """Entries written to the temporary file."""
        return self.count - len(self.head)

    def __iter__(self) -> Iterator[Any]:
        yield from self.head
        if self._spill is None:
            return
        spill = self._spill
        spill.flush()
        end = spill.tell()
        spill.seek(0)
        try:
            while spill.tell() < end:
                value = json.loads(spill.readline())
                yield tuple(value) if self.pairs else value
        finally:
            spill.seek(end)

    def __getitem__(self, index: slice) -> list[Any]:
        """The entries in a slice with no step (``ids[:10]``): read from memory while they
        are there, else back from the file."""
        if (not isinstance(index, slice) or index.step is not None
                or (index.start or 0) < 0 or (index.stop is not None and index.stop < 0)):
            raise IndexError("an IdList gives slices such as ids[:10]; iterate it for all")
        if index.stop is not None and index.stop <= len(self.head):
            return self.head[index]
        return list(itertools.islice(self, index.start, index.stop))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, IdList):
            return list(self) == list(other)
        if isinstance(other, list):
            return len(other) == self.count and list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"IdList({self.head[:5]!r}{'...' if self.count > 5 else ''}, count={self.count})"

    def close(self) -> None:
        """Delete the temporary file (the first entries stay)."""
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickles whole (the spilled entries read back into the copy's memory)."""
        return {"pairs": self.pairs, "limit": self.limit, "entries": list(self)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["pairs"], state["limit"])  # type: ignore[misc]
        for entry in state["entries"]:
            self.append(entry)
