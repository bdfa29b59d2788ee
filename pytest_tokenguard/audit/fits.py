"""What fits: the settings at which the samples fit the trainer, and the worst batch the GPU.

Two ways out of samples that do not fit, each checked against the memory model when a
GPU size is given:

* keep ``longest_edge`` and raise ``max_length`` to the length ``--keep`` of the samples
  need;
* keep ``max_length`` and lower ``longest_edge`` to the largest candidate (a multiple of
  the tile) at which ``--keep`` of the samples fit.

The worst batch any shuffle can draw is bounded by the ``batch`` samples with the most
tiles, each padded to the longest sample (TRL's collator pads to the longest of the
batch, and cuts at ``max_length``); its predicted peak is the memory model's
(:func:`pytest_tokenguard.gpu.model.estimate_step`) for the recipe given as
``tokenguard memory`` takes it. Where that peak passes the GPU, the largest
``per_device_train_batch_size`` that fits is named, with the
``gradient_accumulation_steps`` that keep the effective batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from .summary import Fit, Summary

__all__ = ["MemoryPlan", "WorstBatch", "what_fits", "worst_batch"]


@dataclass(frozen=True)
class MemoryPlan:
    """The memory model's recipe (a :class:`~pytest_tokenguard.gpu.model.StepShape`; its
    sample fields are not used) for ``model``, and the GPU's size (None: no check)."""

    model: str
    shape: Any
    limit_bytes: int | None = None

    def peak(self, tiles: int, seq_len: int, batch: int) -> int:
        """Predicted per-GPU peak of a batch of ``batch`` samples holding ``tiles`` tiles
        in all, each padded to ``seq_len`` tokens."""
        from ..gpu.model import _family_model, estimate_step, resolve_model

        other = _family_model(self.model)
        if other is not None:
            # the family's refusals of the recipe (Qwen-VL: the Trainer's loop, one GPU,
            # bf16), on a sample of nothing but text
            arch, spec, family = other
            family.memory_sample(spec, replace(self.shape, images=0, video=None,
                                               longest_edge=None, max_pixels=None,
                                               text_tokens=1))
        else:
            arch, _ = resolve_model(self.model)
        estimate = estimate_step(arch, tiles_per_sample=math.ceil(tiles / batch),
                                 seq_len=seq_len, shape=replace(self.shape, batch=batch))
        return int(estimate.peak_bytes)


@dataclass(frozen=True)
class WorstBatch:
    """The worst batch at one setting and its predicted peak."""

    longest_edge: int
    batch: int
    tiles: int
    seq_len: int
    peak_bytes: int
    limit_bytes: int | None

    @property
    def fits(self) -> bool:
        return self.limit_bytes is None or self.peak_bytes <= self.limit_bytes


def _top_tiles(summary: Summary, edge: int, batch: int) -> int:
    heap = summary.edge_tiles[summary.edge_index(edge)]
    return sum(sorted(heap, reverse=True)[:batch])


def worst_batch(summary: Summary, plan: MemoryPlan, edge: int, max_length: int | None,
                batch: int) -> WorstBatch:
    """The worst batch of ``batch`` samples at ``edge`` cut at ``max_length``."""
    lengths = summary.edge_lengths[summary.edge_index(edge)]
    longest = max(lengths, default=1)
    seq = longest if max_length is None else min(longest, max_length)
    tiles = _top_tiles(summary, edge, batch)
    return WorstBatch(edge, batch, tiles, seq, plan.peak(tiles, seq, batch), plan.limit_bytes)


def _batch_that_fits(summary: Summary, plan: MemoryPlan | None, edge: int, max_length: int,
                     batch: int) -> tuple[int, int | None] | None:
    """(largest batch up to ``batch`` whose worst batch fits, its peak), None if none."""
    if plan is None:
        return batch, None
    for size in range(batch, 0, -1):
        worst = worst_batch(summary, plan, edge, max_length, size)
        if worst.fits:
            return size, worst.peak_bytes
    return None


def what_fits(summary: Summary, keep: float, plan: MemoryPlan | None) -> list[Fit]:
    """The settings that fit (see the module docstring), the audited resolution first;
    empty when none does."""
    fits: list[Fit] = []
    edge = summary.longest_edge
    batch = summary.batch
    needed = summary.length_needed(keep, edge)
    knob = summary.knob
    candidates: list[tuple[int, int, str]] = []
    if needed > 0:
        candidates.append((edge, needed, f"keep {knob} {edge}, raise max_length"))
    limit = summary.rules.max_length
    if limit is not None:
        smaller = summary.largest_edge_within(limit, keep)
        if smaller is not None and smaller != edge:
            candidates.append((smaller, limit, f"keep max_length {limit}, lower {knob}"))
    for cand_edge, cand_length, what in candidates:
        found = _batch_that_fits(summary, plan, cand_edge, cand_length, batch)
        if found is None:
            continue
        size, peak = found
        fits.append(Fit(cand_edge, cand_length, size, math.ceil(batch / size),
                        summary.share_within(cand_length, cand_edge), peak, what, knob,
                        summary.size_floor))
    return fits
