"""What an audit shows: the terminal summary, ``--json``, Markdown and the histogram.

All of it is built from one :class:`~pytest_tokenguard.audit.summary.Summary` and the
settings that fit (:mod:`pytest_tokenguard.audit.fits`), so the four never disagree.
matplotlib is imported only by :func:`histogram_png`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from ..units import format_bytes
from .fits import WorstBatch
from .ids import IdList
from .summary import Fit, Summary

__all__ = ["AuditReport", "histogram_png"]

#: ids listed in the terminal and Markdown before "and N more"
SHOWN = 10


def _ids(ids: IdList, shown: int = SHOWN) -> str:
    text = ", ".join(str(i) for i in ids[:shown])
    return text + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


class _Lazy:
    """An id list of the JSON report, read when written (pairs as ``{"id", key}``)."""

    def __init__(self, ids: IdList, key: str = "") -> None:
        self.ids, self.key = ids, key

    def __iter__(self) -> Iterator[Any]:
        if self.key:
            return ({"id": i, self.key: r} for i, r in self.ids)
        return iter(self.ids)


@dataclass(frozen=True)
class AuditReport:
    """One audit's results: the summary, the model, the keep share, the worst batch at
    the audited settings (None without the memory model) and the settings that fit."""

    summary: Summary
    model: str
    keep: float
    worst: WorstBatch | None
    fits: tuple[Fit, ...]
    gradient_checkpointing: bool = False
    trainer: str = ""
    #: why the memory model cannot predict this model's worst batch ("" when it can, or
    #: when no GPU size was given)
    memory_refused: str = ""

    @property
    def failed(self) -> bool:
        """Exit 1: a sample cut inside media, refused, unreadable, or a worst batch over
        the GPU."""
        s = self.summary
        return bool(s.cut_inside_media or s.refused or s.errors
                    or (self.worst is not None and not self.worst.fits))

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object, id lists read whole into memory (the command itself
        streams them: :meth:`write_json`)."""
        return {key: list(value) if isinstance(value, _Lazy) else value
                for key, value in self._fields().items()}

    def write_json(self, stream: TextIO) -> None:
        """``json.dumps(self.to_json())`` written to ``stream`` with the id lists streamed
        from their temporary files: memory holds no list whole."""
        stream.write("{")
        for index, (key, value) in enumerate(self._fields().items()):
            stream.write((", " if index else "") + json.dumps(key) + ": ")
            if isinstance(value, _Lazy):
                stream.write("[")
                for number, entry in enumerate(value):
                    stream.write((", " if number else "") + json.dumps(entry))
                stream.write("]")
            else:
                stream.write(json.dumps(value))
        stream.write("}\n")

    def _fields(self) -> dict[str, Any]:
        s = self.summary
        data: dict[str, Any] = {
            "samples": s.samples,
            "priced": s.priced,
            "model": self.model,
            s.knob: s.longest_edge,
            "max_length": s.rules.max_length,
            "truncation_side": s.rules.truncation_side,
            "rules": s.rules.describe(),
            "tokens": s.tokens(),
            "image_tokens": s.image_tokens,
            "images": s.images,
            "videos": s.videos,
            "over_max_length": _Lazy(s.over_max_length),
            "cut_inside_media": _Lazy(s.cut_inside_media),
            "cut_media_wrapper": _Lazy(s.cut_media_wrapper),
            "refused": _Lazy(s.refused, "reason"),
            "errors": _Lazy(s.errors, "error"),
            "worst_samples": [{"id": i, "tokens": t} for i, t in s.worst_samples()],
            "keep": self.keep,
            "fits": [self._fit_json(f) for f in self.fits],
        }
        if self.trainer:
            data["trainer"] = self.trainer
        if s.frames and any(s.frame_lengths):
            limit = s.rules.max_length
            data["largest_num_frames"] = (None if limit is None
                                          else s.largest_frames_within(limit, self.keep))
            data["largest_fps"] = (None if limit is None or not s.rates
                                   else s.largest_fps_within(limit, self.keep))
        if self.memory_refused:
            data["memory_refused"] = self.memory_refused
        if self.worst is not None:
            data["worst_batch"] = {
                "batch": self.worst.batch, "tiles": self.worst.tiles,
                "seq_len": self.worst.seq_len, "peak_bytes": self.worst.peak_bytes,
                "peak_gib": round(self.worst.peak_bytes / 1024**3, 2),
                "limit_bytes": self.worst.limit_bytes, "fits": self.worst.fits}
        data["passed"] = not self.failed
        return data

    def _fit_json(self, fit: Fit) -> dict[str, Any]:
        return {fit.knob: fit.longest_edge, "max_length": fit.max_length,
                "per_device_train_batch_size": fit.batch,
                "gradient_accumulation_steps": fit.accumulation,
                "share": round(fit.share, 6), "peak_bytes": fit.peak_bytes, "what": fit.what,
                "processor": fit.processor_line(self.model),
                "sft_config": fit.config_line(self.gradient_checkpointing)}

    # ------------------------------------------------------------------ text

    def lines(self) -> list[str]:
        """The terminal summary, one line each."""
        s = self.summary
        t = s.tokens()
        out = [f"tokenguard audit: {s.samples:,} sample{'s' * (s.samples != 1)}, {self.model} "
               f"at {s.knob}="
               f"{s.longest_edge}; {s.rules.describe()}"]
        if self.trainer:
            out.append(f"  trainer: {self.trainer}")
        out.append(f"  tokens: p50 {t['p50']:,}  p90 {t['p90']:,}  p99 {t['p99']:,}  "
                   f"max {t['max']:,}   ({s.images:,} image{'s' * (s.images != 1)}, "
                   f"{s.videos:,} video{'s' * (s.videos != 1)}, "
                   f"{s.image_tokens:,} {s.image_token} tokens)")
        limit = s.rules.max_length
        if limit is not None:
            out.append(f"  over max_length {limit}: {len(s.over_max_length):,}"
                       + (f" ({_ids(s.over_max_length)})" if s.over_max_length else ""))
            cut_end = "start" if s.rules.truncation_side == "left" else "end"
            out.append(f"  cut inside media (TRL's collator raises 'Mismatch in `image` token "
                       f"count'; the cut takes the {cut_end}): {len(s.cut_inside_media):,}"
                       + (f" ({_ids(s.cut_inside_media)})" if s.cut_inside_media else ""))
            if s.cut_media_wrapper:
                out.append(f"  cut in a block's wrapper tokens (trained on a broken block): "
                           f"{_ids(s.cut_media_wrapper)}")
        for ident, reason in s.refused[:SHOWN]:
            out.append(f"  refused by TRL: sample {ident}: {reason}")
        for ident, error in s.errors[:SHOWN]:
            out.append(f"  cannot be priced: sample {ident}: {error}")
        hidden = len(s.refused) + len(s.errors) - min(len(s.refused), SHOWN) - min(
            len(s.errors), SHOWN)
        if hidden > 0:
            out.append(f"  ... and {hidden} more refused or unpriced (see --json)")
        worst = s.worst_samples()
        if worst:
            out.append("  longest: " + ", ".join(f"{i} ({n:,})" for i, n in worst[:5]))
        if self.worst is not None:
            w = self.worst
            verdict = ("" if w.limit_bytes is None else
                       f" {'within' if w.fits else 'OVER'} {format_bytes(w.limit_bytes)}")
            out.append(f"  worst batch: {w.batch} x {w.seq_len:,} tokens, {w.tiles} tiles: "
                       f"predicted GPU peak {format_bytes(w.peak_bytes)}{verdict}")
        if self.memory_refused:
            out.append(f"  worst batch: not predicted: {self.memory_refused}")
        if limit is not None and s.frames and any(s.frame_lengths):
            frames = s.largest_frames_within(limit, self.keep)
            rate = s.largest_fps_within(limit, self.keep) if s.rates else None
            out.append(f"  videos: largest num_frames that fits {self.keep:.0%}: "
                       f"{frames if frames is not None else 'none'}; largest fps: "
                       f"{'none' if rate is None else f'{rate:g}'} (the processor call's "
                       "num_frames= and fps=)")
        if not self.failed and not s.over_max_length:
            out.append("  fits: every sample trains uncut at these settings")
        elif self.fits:
            out.append(f"  settings that fit ({self.keep:.0%} of the samples"
                       + (", the worst batch within the GPU" if self.worst is not None
                          and self.worst.limit_bytes is not None else "") + "):")
            for fit in self.fits:
                peak = "" if fit.peak_bytes is None else f", peak {format_bytes(fit.peak_bytes)}"
                out.append(f"    {fit.what} ({fit.share:.1%} fit{peak}):")
                out.append(f"      {fit.processor_line(self.model)}")
                out.append(f"      {fit.config_line(self.gradient_checkpointing)}")
        else:
            out.append("  no candidate setting fits; lower --keep, or give a larger GPU")
        return out

    def markdown(self) -> str:
        """The GitHub step summary."""
        s = self.summary
        t = s.tokens()
        status = "❌ fails" if self.failed else "✅ trains"
        rows = [f"### tokenguard audit: {status}", "",
                f"{s.samples:,} samples, `{self.model}` at `{s.knob}={s.longest_edge}`; "
                f"{s.rules.describe()}", "",
                "| p50 | p90 | p99 | max | over max_length | cut inside media |",
                "| ---: | ---: | ---: | ---: | ---: | ---: |",
                f"| {t['p50']:,} | {t['p90']:,} | {t['p99']:,} | {t['max']:,} | "
                f"{len(s.over_max_length):,} | {len(s.cut_inside_media):,} |", ""]
        if s.cut_inside_media:
            rows.append(f"Cut inside media: {_ids(s.cut_inside_media)}")
        if self.worst is not None:
            rows.append(f"Worst batch: predicted GPU peak {format_bytes(self.worst.peak_bytes)}"
                        + ("" if self.worst.limit_bytes is None else
                           f" against {format_bytes(self.worst.limit_bytes)}"))
        if self.fits:
            rows += ["", "Settings that fit:", "", "```python"]
            for fit in self.fits:
                rows += [f"# {fit.what} ({fit.share:.1%} fit)", fit.processor_line(self.model),
                         fit.config_line(self.gradient_checkpointing)]
            rows.append("```")
        return "\n".join(rows) + "\n"


def histogram_png(report: AuditReport) -> bytes:
    """A histogram of the samples' lengths with ``max_length`` drawn, as PNG bytes."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from ..errors import InputError

        raise InputError("--histogram needs matplotlib: pip install "
                         "'pytest-tokenguard[audit]'") from None
    s = report.summary
    values = sorted(s.lengths)
    weights = [s.lengths[v] for v in values]
    figure, axes = plt.subplots(figsize=(7, 3.2), dpi=100)
    axes.hist(values, bins=min(60, max(len(values), 1)), weights=weights, color="#4c72b0")
    limit = s.rules.max_length
    if limit is not None:
        axes.axvline(limit, color="#c44e52", linewidth=2,
                     label=f"max_length {limit:,} ({len(s.over_max_length):,} over, "
                           f"{len(s.cut_inside_media):,} cut inside media)")
        axes.legend(loc="upper right", fontsize=8)
    axes.set_xlabel(f"tokens per sample ({s.knob}={s.longest_edge})")
    axes.set_ylabel("samples")
    axes.set_title(f"{s.samples:,} samples, {report.model.split('/')[-1]}", fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()
