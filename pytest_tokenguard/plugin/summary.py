"""Per-test figures: aggregated from recordings, carried between processes, printed.

A test's figures travel from an xdist worker to the controller inside the test
report's ``user_properties`` as plain JSON, so this module turns a recording into
that JSON, and lists of it into the terminal table. No pytest import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..processor.recording import Recording

USER_PROPERTY = "tokenguard"


@dataclass(frozen=True)
class ResolutionFigures:
    """What one test cost at one ``longest_edge`` (``None``: sequences with no image)."""

    nodeid: str
    longest_edge: int | None
    images: int
    patches: int
    image_tokens: int
    block_tokens: int
    longest_sequence: int
    per_image: tuple[tuple[int, int, int, int], ...]  # (width, height, image_tokens, block)

    def to_json(self) -> dict[str, Any]:
        return {
            "longest_edge": self.longest_edge,
            "images": self.images,
            "patches": self.patches,
            "image_tokens": self.image_tokens,
            "block_tokens": self.block_tokens,
            "longest_sequence": self.longest_sequence,
            "per_image": [list(entry) for entry in self.per_image],
        }

    @classmethod
    def from_json(cls, nodeid: str, data: Mapping[str, Any]) -> ResolutionFigures:
        return cls(
            nodeid=nodeid,
            longest_edge=data["longest_edge"],
            images=data["images"],
            patches=data["patches"],
            image_tokens=data["image_tokens"],
            block_tokens=data["block_tokens"],
            longest_sequence=data["longest_sequence"],
            per_image=tuple(
                (int(w), int(h), int(tokens), int(block)) for w, h, tokens, block in
                data["per_image"]
            ),
        )


def figures_from_recording(nodeid: str, recording: Recording) -> list[ResolutionFigures]:
    """Aggregate a test's recording per ``longest_edge``, sorted for stable output."""
    edges: set[int | None] = {image.longest_edge for image in recording.images}
    edges.update(sequence.longest_edge for sequence in recording.sequences)
    figures = []
    for edge in sorted(edges, key=lambda e: (e is None, e or 0)):
        images = [image for image in recording.images if image.longest_edge == edge]
        sequences = [s.length for s in recording.sequences if s.longest_edge == edge]
        figures.append(
            ResolutionFigures(
                nodeid=nodeid,
                longest_edge=edge,
                images=len(images),
                patches=sum(image.patches for image in images),
                image_tokens=sum(image.image_tokens for image in images),
                block_tokens=sum(image.block_tokens for image in images),
                longest_sequence=max(sequences, default=0),
                per_image=tuple(
                    sorted(
                        {
                            (image.width, image.height, image.image_tokens, image.block_tokens)
                            for image in images
                        }
                    )
                ),
            )
        )
    return figures


def format_table(rows: Iterable[ResolutionFigures], marks: Mapping[tuple[str, int | None], str]
                 | None = None) -> list[str]:
    """The terminal summary table; ``marks`` flags rows (e.g. changed against a baseline)."""
    marks = marks or {}
    headers = ("test", "longest_edge", "images", "patches", "image tokens", "block tokens",
               "longest seq")
    body = []
    for row in rows:
        mark = marks.get((row.nodeid, row.longest_edge), "")
        body.append(
            (
                f"{mark}{row.nodeid}",
                "-" if row.longest_edge is None else str(row.longest_edge),
                str(row.images),
                str(row.patches),
                str(row.image_tokens),
                str(row.block_tokens),
                str(row.longest_sequence) if row.longest_sequence else "-",
            )
        )
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    lines = [
        "  ".join(h.ljust(widths[0]) if i == 0 else h.rjust(widths[i]) for i, h in
                  enumerate(headers))
    ]
    for r in body:
        lines.append("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in
                               enumerate(r)))
    return lines
