"""Per-sample results folded into one summary, and what fits.

:class:`Summary` keeps what the report needs and nothing per sample: a count of
samples per length (exact percentiles in memory that does not grow with the number of
samples), the ids over the limit, cut inside media, refused and unreadable (each an
:class:`~pytest_tokenguard.audit.ids.IdList`: its first entries in memory, the rest in a
temporary file, so a set where every sample fails stays bounded too), the worst
samples, and per candidate ``longest_edge`` / ``num_frames`` the lengths and the most
tiled samples. Results are folded in row order whatever process measured them, so
``--workers N`` gives the report one process gives. Pure Python.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .ids import IdList
from .measure import SampleResult
from .trainer import Cut, TrainerRules, cut

__all__ = ["Fit", "Summary", "percentile"]

#: how many of the longest samples the report names
WORST = 10


def percentile(lengths: Counter[int], share: float) -> int:
    """The nearest-rank percentile of a length count: the smallest length that at least
    ``share`` of the samples do not pass (0 when there are none)."""
    total = sum(lengths.values())
    if total == 0:
        return 0
    rank = max(1, math.ceil(share * total - 1e-9))
    seen = 0
    for length in sorted(lengths):
        seen += lengths[length]
        if seen >= rank:
            return length
    return max(lengths)  # pragma: no cover - rank <= total


def _share_within(lengths: Counter[int], limit: int) -> float:
    total = sum(lengths.values())
    return 1.0 if total == 0 else sum(n for v, n in lengths.items() if v <= limit) / total


@dataclass
class Summary:
    """See the module docstring. ``edges`` and ``frames`` are the auditor's candidates;
    ``batch`` how many of the most tiled samples to keep per edge (the worst batch)."""

    rules: TrainerRules
    longest_edge: int
    edges: tuple[int, ...]
    frames: tuple[int, ...]
    batch: int = 1
    #: the auditor's candidate sampling fps (:attr:`~.measure.Auditor.fps_candidates`)
    rates: tuple[float, ...] = ()
    #: the processor setting ``longest_edge``/``edges`` hold (Qwen-VL: ``max_pixels``)
    knob: str = "longest_edge"
    #: the processor's lower bound written beside it (Qwen-VL's ``min_pixels``), or None
    size_floor: int | None = None
    #: the placeholder token the processor expands per image (Qwen-VL: ``<|image_pad|>``)
    image_token: str = "<image>"
    samples: int = 0
    lengths: Counter[int] = field(default_factory=Counter)
    image_tokens: int = 0
    images: int = 0
    videos: int = 0
    over_max_length: IdList = field(default_factory=IdList)
    cut_inside_media: IdList = field(default_factory=IdList)
    cut_media_wrapper: IdList = field(default_factory=IdList)
    refused: IdList = field(default_factory=lambda: IdList(pairs=True))  # (id, reason)
    errors: IdList = field(default_factory=lambda: IdList(pairs=True))  # (id, error)
    worst: list[tuple[int, int, Any]] = field(default_factory=list)  # (tokens, -order, id)
    edge_lengths: list[Counter[int]] = field(default_factory=list)
    edge_tiles: list[list[int]] = field(default_factory=list)  # min-heaps of the top tiles
    edge_image_tokens: list[int] = field(default_factory=list)
    frame_lengths: list[Counter[int]] = field(default_factory=list)
    rate_lengths: list[Counter[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.edge_lengths:
            self.edge_lengths = [Counter() for _ in self.edges]
            self.edge_tiles = [[] for _ in self.edges]
        if not self.frame_lengths:
            self.frame_lengths = [Counter() for _ in self.frames]
        if not self.rate_lengths:
            self.rate_lengths = [Counter() for _ in self.rates]

    @property
    def priced(self) -> int:
        return sum(self.lengths.values())

    def add(self, result: SampleResult) -> None:
        """Fold in one sample (in row order)."""
        order = self.samples
        self.samples += 1
        if result.error is not None:
            self.errors.append((result.id, result.error))
            return
        if result.refused is not None:
            self.refused.append((result.id, result.refused))
            return
        self.lengths[result.tokens] += 1
        self.image_tokens += result.image_tokens
        self.images += result.images
        self.videos += result.videos
        rules = self.rules
        verdict = cut(result.tokens, result.first_image, result.after_last_image,
                      rules.max_length, rules.truncation_side, rules.wrap_before)
        if verdict is not Cut.NONE:
            self.over_max_length.append(result.id)
        if verdict is Cut.MEDIA:
            self.cut_inside_media.append(result.id)
        elif verdict is Cut.WRAPPER:
            self.cut_media_wrapper.append(result.id)
        entry = (result.tokens, -order, result.id)
        if len(self.worst) < WORST:
            heapq.heappush(self.worst, entry)
        elif entry > self.worst[0]:
            heapq.heapreplace(self.worst, entry)
        for index, (tokens, tiles) in enumerate(zip(result.edge_tokens, result.edge_tiles,
                                                    strict=True)):
            self.edge_lengths[index][tokens] += 1
            heap = self.edge_tiles[index]
            if len(heap) < self.batch:
                heapq.heappush(heap, tiles)
            elif tiles > heap[0]:
                heapq.heapreplace(heap, tiles)
        for index, tokens in enumerate(result.frame_tokens):
            self.frame_lengths[index][tokens] += 1
        for index, tokens in enumerate(result.fps_tokens[:len(self.rate_lengths)]):
            self.rate_lengths[index][tokens] += 1

    def add_all(self, results: Iterable[SampleResult]) -> None:
        for result in results:
            self.add(result)

    def close(self) -> None:
        """Delete the id lists' temporary files (their first entries stay)."""
        for ids in (self.over_max_length, self.cut_inside_media, self.cut_media_wrapper,
                    self.refused, self.errors):
            ids.close()

    # ------------------------------------------------------------------ figures

    def tokens(self) -> dict[str, int]:
        """p50, p90, p99 and max of the samples' lengths (nearest rank)."""
        return {"p50": percentile(self.lengths, 0.5), "p90": percentile(self.lengths, 0.9),
                "p99": percentile(self.lengths, 0.99),
                "max": max(self.lengths, default=0)}

    def worst_samples(self) -> list[tuple[Any, int]]:
        """The longest samples, longest first (ties in row order): (id, tokens)."""
        return [(ident, tokens) for tokens, _, ident in sorted(self.worst, reverse=True)]

    def worst_batch_tiles(self, edge_index: int) -> int:
        """Tiles of the worst batch at a candidate edge: the ``batch`` most tiled samples."""
        return sum(self.edge_tiles[edge_index])

    def edge_index(self, edge: int) -> int:
        return self.edges.index(edge)

    def largest_edge_within(self, max_length: int, keep: float) -> int | None:
        """The largest candidate ``longest_edge`` at which ``keep`` of the samples fit
        ``max_length`` uncut, or None (not even the smallest)."""
        for edge, lengths in sorted(zip(self.edges, self.edge_lengths, strict=True),
                                    reverse=True):
            if _share_within(lengths, max_length) >= keep:
                return edge
        return None

    def length_needed(self, keep: float, edge: int | None = None) -> int:
        """The smallest ``max_length`` at which ``keep`` of the samples fit uncut."""
        lengths = self.lengths if edge is None else self.edge_lengths[self.edge_index(edge)]
        return percentile(lengths, keep)

    def largest_frames_within(self, max_length: int, keep: float) -> int | None:
        """The largest candidate ``num_frames`` at which ``keep`` of the samples with
        videos fit ``max_length`` uncut, or None."""
        best = None
        for frames, lengths in zip(self.frames, self.frame_lengths, strict=True):
            if lengths and _share_within(lengths, max_length) >= keep:
                best = frames
        return best

    def largest_fps_within(self, max_length: int, keep: float) -> float | None:
        """The largest candidate sampling ``fps`` at which ``keep`` of the samples with
        videos fit ``max_length`` uncut (at their ``num_frames`` cap), or None."""
        best = None
        for rate, lengths in zip(self.rates, self.rate_lengths, strict=True):
            if lengths and _share_within(lengths, max_length) >= keep:
                best = rate
        return best

    def share_within(self, max_length: int | None, edge: int | None = None) -> float:
        if max_length is None:
            return 1.0
        lengths = self.lengths if edge is None else self.edge_lengths[self.edge_index(edge)]
        return _share_within(lengths, max_length)


@dataclass(frozen=True)
class Fit:
    """One setting that fits, as the user would paste it."""

    longest_edge: int
    max_length: int
    batch: int
    accumulation: int
    share: float
    peak_bytes: int | None
    what: str
    #: the processor setting ``longest_edge`` holds (Qwen-VL: ``max_pixels``)
    knob: str = "longest_edge"
    #: the processor's ``size["shortest_edge"]`` to write beside it (Qwen-VL's
    #: ``min_pixels``: ``size=`` replaces both bounds), or None
    size_floor: int | None = None

    def processor_line(self, model: str) -> str:
        size = f'"longest_edge": {self.longest_edge}'
        if self.size_floor is not None:
            size = f'"shortest_edge": {self.size_floor}, ' + size
        line = f'processor = AutoProcessor.from_pretrained("{model}", size={{{size}}})'
        if self.knob != "longest_edge":
            line += f"  # {self.knob}={self.longest_edge}"
        return line

    def config_line(self, gradient_checkpointing: bool) -> str:
        fields = [f"max_length={self.max_length}", f"per_device_train_batch_size={self.batch}"]
        if self.accumulation > 1:
            fields.append(f"gradient_accumulation_steps={self.accumulation}")
        fields.append(f"gradient_checkpointing={gradient_checkpointing}")
        return "SFTConfig(" + ", ".join(fields) + ")"
