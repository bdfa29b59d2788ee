"""``tokenguard audit DATA``: will this training set, with this trainer's settings, train?

Thin: the work is :mod:`pytest_tokenguard.audit`. The memory model's options are
``tokenguard memory``'s own definitions (:func:`memory_options`), not copies.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any, TextIO

from ..errors import CLI_WORDING, InputError, TokenguardError
from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, integer, reader_left, size, streams

__all__ = ["MEMORY_OPTIONS", "add_audit_parser", "memory_options", "run_audit_command"]

#: the ``tokenguard memory`` options the audit takes, by destination
MEMORY_OPTIONS = ("model", "longest_edge", "max_pixels", "batch", "gradient_checkpointing", "dtype",
                  "optimizer", "lora_rank", "lora_targets", "lora_dropout", "freeze", "gpus",
                  "sharding")


def memory_options(group: Any) -> None:
    """Add ``tokenguard memory``'s own option definitions for :data:`MEMORY_OPTIONS` to
    ``group``. ``--batch`` and ``--gradient-checkpointing`` default to None here, so an
    option given on the command line can be told from a trainer's default."""
    from .memory import add_memory_parser

    donor = add_memory_parser(argparse.ArgumentParser().add_subparsers())
    for action in donor._actions:
        if action.dest in MEMORY_OPTIONS:
            if action.dest in ("batch", "gradient_checkpointing"):
                action.default = None
            group._add_action(action)


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number such as 0.99") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is not a share above 0 and at most 1")
    return value


def add_audit_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "audit",
        help="will this training set, with this trainer's settings, train?",
        description="Price every sample of a training set exactly as the trainer will see "
        "it (TRL's collator: the processor's chat template, no special tokens added, the "
        "tokenizer's truncation side), name the samples over max_length and those cut "
        "inside an image (TRL refuses them mid-epoch), and say what fits.",
    )
    parser.add_argument("data", metavar="DATA", help="a JSON Lines or JSON file, a Parquet "
                        "file or folder, or a datasets save_to_disk folder")
    rules = parser.add_argument_group("the trainer's rules")
    rules.add_argument("--max-length", type=integer(1), default=None,
                       help="the sequence length the trainer cuts at (SFTConfig.max_length)")
    rules.add_argument("--trainer", choices=("trl",), default=None,
                       help="take the installed TRL's SFTConfig defaults (max_length, "
                       "per_device_train_batch_size, gradient_checkpointing); the report says "
                       "which values were used")
    rules.add_argument("--packing", action="store_true", help="refused: TRL refuses packing "
                       "for vision data sets")
    rules.add_argument("--padding-free", action="store_true", help="refused: TRL refuses "
                       "padding-free training for vision data sets")
    rules.add_argument("--num-frames", type=integer(1), default=None,
                       help="video frames sampled per video (the processor call's num_frames)")
    rules.add_argument("--fps", type=float, default=None,
                       help="video frames sampled per second (the processor call's fps)")
    rules.add_argument("--image-root", default=None,
                       help="folder that relative image paths resolve against (default: the "
                       "data file's folder; TRL resolves them against the training run's "
                       "working folder)")
    memory = parser.add_argument_group("the worst batch (tokenguard memory's options)")
    memory_options(memory)
    memory.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing",
                        action="store_false", help="override --trainer trl's default")
    memory.add_argument("--gpu-memory", type=size, default=None,
                        help="exit 1 when the worst batch's predicted peak passes this size "
                        "(e.g. 80GiB)")
    report = parser.add_argument_group("the report")
    report.add_argument("--keep", type=_share, default=1.0,
                        help="share of the samples the settings that fit must keep (1.0)")
    report.add_argument("--json", action="store_true", help="one JSON object on stdout")
    report.add_argument("--per-sample", metavar="FILE", default=None,
                        help="JSON Lines, one object per sample: id, tokens, image_tokens...")
    report.add_argument("--histogram", metavar="PNG", default=None,
                        help="a histogram of the sample lengths with max_length drawn")
    report.add_argument("--workers", type=integer(1), default=1,
                        help="processes that read and price the samples (1)")
    parser.set_defaults(func=run_audit_command)
    return parser


class _Usage(Exception):
    pass


def _rules_and_recipe(args: argparse.Namespace) -> tuple[int | None, list[tuple[str, str]],
                                                          int, bool, str]:
    """(max_length, origins, batch, gradient_checkpointing, trainer line)."""
    from ..audit.trainer import refuse_packing, trl_defaults

    try:
        refuse_packing(args.packing, args.padding_free)
    except InputError as exc:
        raise _Usage(str(exc)) from None
    origins: list[tuple[str, str]] = []
    max_length, batch, checkpointing = args.max_length, args.batch, args.gradient_checkpointing
    trainer = ""
    if args.trainer == "trl":
        try:
            defaults = trl_defaults()
        except InputError as exc:
            raise _Usage(str(exc)) from None
        used = []
        if max_length is None:
            max_length = defaults["max_length"]
            used.append(f"max_length={max_length}")
        if batch is None:
            batch = defaults["per_device_train_batch_size"]
            used.append(f"per_device_train_batch_size={batch}")
        if checkpointing is None:
            checkpointing = bool(defaults["gradient_checkpointing"])
            used.append(f"gradient_checkpointing={checkpointing}")
        origins.append(("max_length", "--max-length" if args.max_length else
                        f"TRL {defaults['version']} SFTConfig default"))
        trainer = (f"TRL {defaults['version']} SFTConfig defaults used: "
                   + (", ".join(used) or "none (all given)")
                   + f"; SFTConfig.truncation_mode={defaults['truncation_mode']!r} is not "
                   "what cuts: the vision collator cuts on the tokenizer's truncation_side")
    elif max_length is not None:
        origins.append(("max_length", "--max-length"))
    return max_length, origins, batch or 1, bool(checkpointing), trainer


def _memory_plan(args: argparse.Namespace, batch: int, checkpointing: bool) -> Any:
    from ..audit.fits import MemoryPlan
    from ..gpu.model import validate

    recipe: dict[str, Any] = {}
    if args.lora_targets is not None:
        recipe["lora_targets"] = args.lora_targets
    shape = validate(batch=batch, gradient_checkpointing=checkpointing, dtype=args.dtype,
                     optimizer=args.optimizer, lora_rank=args.lora_rank,
                     lora_dropout=args.lora_dropout, freeze=tuple(args.freeze), gpus=args.gpus,
                     sharding=args.sharding, **recipe)
    plan = MemoryPlan(args.model, shape, args.gpu_memory)
    plan.peak(1, 1, 1)  # the model resolves: a bad --model is a usage error here
    return plan


def run_audit_command(args: argparse.Namespace, out: TextIO | None = None,
                      err: TextIO | None = None) -> int:
    """Run ``tokenguard audit``; 0, 1 (a sample fails, or the worst batch passes the GPU,
    or an input cannot be read) or 2 (usage)."""
    from ..audit.measure import Auditor, AuditSettings, default_base_dir
    from ..audit.readers import data_files
    from ..audit.run import Progress, run_audit
    from ..audit.trainer import TrainerRules
    from ..errors import MemoryModelError, SpecError
    from ..files import AtomicFile, refuse_same_file

    out, err = streams(out, err)

    def fail(message: str, code: int) -> int:
        print(f"tokenguard audit: {message}", file=err)
        return code

    try:
        max_length, origins, batch, checkpointing, trainer = _rules_and_recipe(args)
        kind, _ = data_files(args.data)
        if kind == "json" and args.workers > 1:
            print(f"tokenguard audit: {args.data} is one JSON array, which one process reads "
                  "(it cannot be cut into parts unparsed); for --workers, write it as JSON "
                  "Lines", file=err)
        for target in (args.per_sample, args.histogram):
            if target is not None:
                if os.path.isdir(target):
                    raise _Usage(f"{target} is a folder; give a file name")
                refuse_same_file(target, [args.data])
        plan = None
        memory_refused = ""
        try:
            plan = _memory_plan(args, batch, checkpointing)
        except (MemoryModelError, SpecError) as exc:
            if args.gpu_memory is not None:
                memory_refused = " ".join(str(exc).split())
        settings = AuditSettings(args.model, args.longest_edge, args.num_frames, args.fps,
                                 args.image_root or default_base_dir(args.data),
                                 args.max_pixels)
        auditor = Auditor(settings)
        try:
            side = auditor.truncation_side  # loads the tokenizer: a bad --model stops here
        except TokenguardError:
            if memory_refused:  # the model itself does not resolve: the memory model's words
                raise _Usage(memory_refused) from None
            raise
    except _Usage as exc:
        return fail(str(exc), EXIT_USAGE)
    except TokenguardError as exc:
        return fail(" ".join(exc.reworded(CLI_WORDING).split()), EXIT_USAGE)
    origins.append(("truncation_side", "the tokenizer's"))
    rules = TrainerRules(max_length, side, tuple(origins), auditor.pricer.wrap_before)
    try:
        if args.per_sample is not None:
            with AtomicFile(args.per_sample, protect=[args.data]) as handle:
                def write(result: Any) -> None:
                    handle.write(json.dumps(result.to_json()).encode() + b"\n")

                summary = run_audit(args.data, auditor, rules, batch=batch,
                                    workers=args.workers, on_result=write,
                                    progress=Progress(err))
        else:
            summary = run_audit(args.data, auditor, rules, batch=batch, workers=args.workers,
                                progress=Progress(err))
    except TokenguardError as exc:
        return fail(" ".join(str(exc).split()), EXIT_FAILED)
    try:
        code = _report(args, summary, plan, max_length, batch, checkpointing, trainer, out,
                       err, fail, memory_refused)
        if memory_refused and code != EXIT_USAGE:
            # the counts are given; the GPU check asked for cannot be made
            return fail(f"--gpu-memory: {memory_refused}", EXIT_USAGE)
        return code
    finally:
        summary.close()


def _report(args: argparse.Namespace, summary: Any, plan: Any, max_length: int | None,
            batch: int, checkpointing: bool, trainer: str, out: TextIO, err: TextIO,
            fail: Callable[[str, int], int], memory_refused: str = "") -> int:
    """The report of a finished run: histogram, step summary, the terminal or JSON."""
    from ..audit.fits import what_fits, worst_batch
    from ..audit.report import AuditReport, histogram_png
    from ..files import AtomicFile

    worst = None
    if plan is not None and summary.priced:
        worst = worst_batch(summary, plan, summary.longest_edge, max_length, batch)
    fits = tuple(what_fits(summary, args.keep, plan))
    report = AuditReport(summary, args.model, args.keep, worst, fits, checkpointing, trainer,
                         memory_refused)
    try:
        if args.histogram is not None:
            png = histogram_png(report)
            with AtomicFile(args.histogram, protect=[args.data]) as image:
                image.write(png)
    except TokenguardError as exc:
        return fail(str(exc), EXIT_USAGE)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        try:
            with open(step_summary, "a", encoding="utf-8") as summary_file:
                summary_file.write(report.markdown())
        except OSError as exc:
            print(f"tokenguard audit: $GITHUB_STEP_SUMMARY {step_summary}: cannot be written "
                  f"({exc.strerror or exc})", file=err)
    try:
        if args.json:
            report.write_json(out)
        else:
            print("\n".join(report.lines()), file=out)
        out.flush()
    except BrokenPipeError:
        return reader_left(out)
    return EXIT_FAILED if report.failed else EXIT_OK
