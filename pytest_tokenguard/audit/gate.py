"""A suite gates on "the training set fits": the check behind
``@pytest.mark.training_set_fits`` and the ``tokenguard_audit`` fixture.

:func:`audit_training_set` runs the same audit as ``tokenguard audit`` (the same
readers, per-sample function, summary and report) and returns the typed
:class:`~pytest_tokenguard.audit.report.AuditReport`; :func:`check_training_set` turns it
into a verdict: the set fits when no sample is cut inside media, refused by the
trainer or unreadable, and at least ``keep`` of the samples are within ``max_length``
(1.0: all). A failure names the samples by id and the settings that fit, as the user
would paste them. The figures (:class:`~pytest_tokenguard.figures.AuditFigure`) go into
the baseline with the test's other figures.

A report is computed once per process for the same settings and the same file (its
size and modification time), so several tests (or ``-n`` workers' tests) that gate on
one set do not audit it again. No pytest import.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from ..errors import TokenguardError
from ..figures import AuditFigure

__all__ = ["AuditResult", "TrainingSetGate", "audit_training_set", "check_training_set",
           "gate_from_marker"]

#: what ``trainer=`` accepts
TRAINERS = ("trl",)


@dataclass(frozen=True)
class TrainingSetGate:
    """The validated arguments of one gate (see :func:`gate_from_marker`)."""

    data: str
    model: str
    max_length: int | None = None
    longest_edge: int | None = None
    trainer: str | None = None
    keep: float = 1.0
    num_frames: int | None = None
    fps: float | None = None
    workers: int = 1
    image_root: str | None = None
    max_pixels: int | None = None


def _positive(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def gate_from_marker(model: str, data: object, *, max_length: object = None,
                     longest_edge: object = None, trainer: object = None, keep: object = 1.0,
                     num_frames: object = None, fps: object = None, workers: object = 1,
                     image_root: object = None, max_pixels: object = None
                     ) -> TrainingSetGate:
    """The arguments validated (a ``ValueError`` naming the one that is wrong). The data
    file itself is read when the test runs: a fixture may write it."""
    if not isinstance(data, str | os.PathLike) or not os.fspath(data):
        raise ValueError(f"data must be the training set's path, got {data!r}")
    if trainer is not None and trainer not in TRAINERS:
        raise ValueError(f"trainer must be one of {', '.join(map(repr, TRAINERS))} or None, "
                         f"got {trainer!r}")
    if isinstance(keep, bool) or not isinstance(keep, int | float) or not 0 < keep <= 1:
        raise ValueError(f"keep must be a share above 0 and at most 1, got {keep!r}")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, int | float)
                            or fps <= 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if image_root is not None and not isinstance(image_root, str | os.PathLike):
        raise ValueError(f"image_root must be a folder's path, got {image_root!r}")
    return TrainingSetGate(
        os.fspath(data), model, _positive("max_length", max_length),
        _positive("longest_edge", longest_edge), trainer, float(keep),
        _positive("num_frames", num_frames), None if fps is None else float(fps),
        _positive("workers", workers) or 1,
        None if image_root is None else os.fspath(image_root),
        _positive("max_pixels", max_pixels))


_CACHE: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.Lock()


def audit_training_set(gate: TrainingSetGate) -> Any:
    """The :class:`~pytest_tokenguard.audit.report.AuditReport` of ``gate``'s data (see
    the module docstring); a :class:`~pytest_tokenguard.errors.TokenguardError` naming
    the input when it cannot be read or a setting cannot be used."""
    from ..errors import InputError
    from .fits import what_fits
    from .measure import Auditor, AuditSettings, default_base_dir
    from .readers import data_files
    from .report import AuditReport
    from .run import run_audit
    from .trainer import TrainerRules, trl_defaults

    data_files(gate.data)  # a missing or unknown input is named before anything loads
    try:
        stat = os.stat(gate.data)
    except OSError as exc:  # pragma: no cover - data_files saw it a moment ago
        raise InputError(f"{gate.data}: cannot be read ({exc.strerror})") from None
    key = (gate, os.path.abspath(gate.data), stat.st_size, stat.st_mtime_ns)
    with _LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    max_length, origins, trainer_line = gate.max_length, [], ""
    if gate.trainer == "trl":
        defaults = trl_defaults()
        if max_length is None:
            max_length = int(defaults["max_length"])
            origins.append(("max_length", f"TRL {defaults['version']} SFTConfig default"))
        trainer_line = f"TRL {defaults['version']} SFTConfig defaults"
    if max_length is not None and not origins:
        origins.append(("max_length", "the marker's max_length"))
    auditor = Auditor(AuditSettings(gate.model, gate.longest_edge, gate.num_frames, gate.fps,
                                    gate.image_root or default_base_dir(gate.data),
                                    gate.max_pixels))
    origins.append(("truncation_side", "the tokenizer's"))
    rules = TrainerRules(max_length, auditor.truncation_side, tuple(origins),
                         auditor.pricer.wrap_before)
    summary = run_audit(gate.data, auditor, rules, workers=gate.workers)
    report = AuditReport(summary, gate.model, gate.keep, None,
                         tuple(what_fits(summary, gate.keep, None)), trainer=trainer_line)
    with _LOCK:
        if len(_CACHE) >= 16:
            _CACHE.clear()
        _CACHE[key] = report
    return report


@dataclass(frozen=True)
class AuditResult:
    """The verdict of a gate (a :class:`~pytest_tokenguard.verdict.Verdict`) with its
    figures (None when the set could not be read) and the report."""

    passed: bool
    message: str
    detail: str
    figure: AuditFigure | None = None
    report: Any = None


def figure_of(report: Any, data: str) -> AuditFigure:
    """The baseline's figures of one report."""
    s = report.summary
    tokens = s.tokens()
    return AuditFigure(data, s.samples, s.rules.max_length, s.longest_edge, tokens["p50"],
                       tokens["p90"], tokens["p99"], tokens["max"], len(s.over_max_length),
                       len(s.cut_inside_media), len(s.refused), len(s.errors), knob=s.knob)


def _ids(ids: Any, shown: int = 10) -> str:
    head = [str(i) for i in ids[:shown]]
    return ", ".join(head) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def check_training_set(gate: TrainingSetGate) -> AuditResult:
    """Whether ``gate``'s training set fits (see the module docstring)."""
    name = f"training set {gate.data}"
    try:
        report = audit_training_set(gate)
    except TokenguardError as exc:
        return AuditResult(False, f"{name}: {' '.join(str(exc).split())}",
                           "@pytest.mark.training_set_fits reads the file when the test runs; "
                           "give its path relative to the folder pytest runs in, or absolute")
    s = report.summary
    figure = figure_of(report, gate.data)
    limit = s.rules.max_length
    problems = []
    if s.cut_inside_media:
        end = "start" if s.rules.truncation_side == "left" else "end"
        problems.append(f"{len(s.cut_inside_media):,} of {s.samples:,} samples are cut inside "
                        f"an image at max_length={limit} (TRL's collator raises 'Mismatch in "
                        f"`image` token count'; the tokenizer cuts the {end}): "
                        f"{_ids(s.cut_inside_media)}")
    if s.refused:
        problems.append(f"{len(s.refused):,} samples are refused by TRL whatever their "
                        f"length: {_ids([i for i, _ in s.refused[:10]])} "
                        f"({s.refused[:1][0][1]})")
    if s.errors:
        problems.append(f"{len(s.errors):,} samples cannot be priced: "
                        f"{_ids([i for i, _ in s.errors[:10]])} ({s.errors[:1][0][1]})")
    within = s.share_within(limit)
    if not s.cut_inside_media and within < gate.keep:
        problems.append(f"{len(s.over_max_length):,} of {s.samples:,} samples are over "
                        f"max_length={limit} (cut, trained on what is left; "
                        f"{within:.1%} fit, keep={gate.keep:g}): {_ids(s.over_max_length)}")
    if not problems:
        return AuditResult(True, "", "", figure, report)
    fixes = [f"{fit.what} ({fit.share:.1%} fit): {fit.processor_line(gate.model)}; "
             f"SFTConfig(max_length={fit.max_length})" for fit in report.fits]
    message = f"{name}: " + "; ".join(problems)
    if fixes:
        message += ". Settings that fit: " + " | ".join(fixes)
    return AuditResult(False, message, "\n".join(report.lines()), figure, report)
