"""Write ``docs/gpu-memory.md`` from the recorded ``results-*.json`` and the memory model.

Every number in the document comes from a results file or from
:func:`pytest_tokenguard.gpu.model.estimate_step`; nothing is typed by hand, and
``tests/unit/test_memory_model.py`` fails when the document is stale.

    PYTHONPATH=. python benchmarks/gpu/make_table.py > docs/gpu-memory.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.gpu.smolvlm_step import FRAME_SIDE
from pytest_tokenguard.counting import count_image
from pytest_tokenguard.gpu.model import KNOWN_ARCHITECTURES, MemoryEstimate, estimate_step
from pytest_tokenguard.specs import KNOWN_SPECS

HERE = Path(__file__).resolve().parent
GIB = 1024**3


def recipe(case: dict[str, Any]) -> dict[str, Any]:
    """The memory model's keywords for a recorded case (the first files predate recipes:
    their optimizer was ``AdamW(foreach=True)``, full fine-tuning, one GPU)."""
    keywords: dict[str, Any] = {
        "batch": case["batch"],
        "gradient_checkpointing": case["gradient_checkpointing"],
        "optimizer": case.get("optimizer", "adamw-foreach"),
    }
    if case.get("lora_rank"):
        keywords.update(lora_rank=case["lora_rank"], lora_dropout=case.get("lora_dropout", 0.0))
    if case.get("freeze"):
        keywords["freeze"] = case["freeze"]
    if case.get("gpus", 1) > 1:
        keywords.update(gpus=case["gpus"], sharding=case["sharding"])
    return keywords


def predict(case: dict[str, Any]) -> MemoryEstimate:
    """The model's prediction for a recorded case, from the shapes the processor made."""
    return estimate_step(
        KNOWN_ARCHITECTURES[f"HuggingFaceTB/{case['model']}"],
        tiles_per_sample=case["tiles_per_sample"],
        seq_len=case["seq_len"],
        **recipe(case),
    )


def recipe_label(case: dict[str, Any]) -> str:
    """A short recipe name for the table: optimizer, LoRA, frozen part, sharding."""
    parts = [case.get("optimizer", "adamw-foreach")]
    if case.get("lora_rank"):
        dropout = " +dropout" if case.get("lora_dropout") else ""
        parts.append(f"LoRA r{case['lora_rank']}{dropout}")
    if case.get("freeze"):
        parts.append(f"{case['freeze']} frozen")
    if case.get("gpus", 1) > 1:
        parts.append(f"{case['sharding'].upper()} x{case['gpus']}")
    return ", ".join(parts)


def _pct(predicted: int, measured: int) -> str:
    return f"{(predicted - measured) / measured * 100:+.1f}%"


def table(report: dict[str, Any]) -> tuple[list[str], list[float], list[float]]:
    """Markdown rows for one results file, and the errors vs allocated and reserved."""
    rows = [
        "| case | recipe | longest_edge | grad. ckpt | batch x images | tiles/sample | "
        "tokens/sample (text) | torch peak allocated | torch peak reserved | NVML peak (process) | "
        "predicted | error vs allocated | error vs reserved |",
        "|---|---|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    vs_alloc: list[float] = []
    vs_reserved: list[float] = []
    for case in report["cases"]:
        steady = case.get("steady")
        if steady is None:
            rows.append(f"| {case['case']} | not measured: {case.get('error', '?')} |")
            continue
        estimate = predict(case)
        allocated, reserved = steady["torch_allocated"], steady["torch_reserved"]
        nvml = steady.get("nvml_used")
        vs_alloc.append((estimate.peak_bytes - allocated) / allocated)
        vs_reserved.append((estimate.peak_bytes - reserved) / reserved)
        rows.append(
            f"| {case['case']} | {recipe_label(case)} | {case['longest_edge']} | "
            f"{'yes' if case['gradient_checkpointing'] else 'no'} | "
            f"{case['batch']} x {case['images']} | {case['tiles_per_sample']} | "
            f"{case['seq_len']} ({text_tokens(case)}) | {allocated / GIB:.2f} GiB | "
            f"{reserved / GIB:.2f} GiB | "
            f"{'-' if nvml is None else f'{nvml / GIB:.2f} GiB'} | "
            f"{estimate.peak_gib:.2f} GiB | {_pct(estimate.peak_bytes, allocated)} | "
            f"{_pct(estimate.peak_bytes, reserved)} |"
        )
    return rows, vs_alloc, vs_reserved


def by_recipe(report: dict[str, Any]) -> list[str]:
    """Per recipe family, the error range vs allocated: what the README's table quotes."""
    groups: dict[str, list[float]] = {}
    for case in report["cases"]:
        if "steady" not in case:
            continue
        measured = case["steady"]["torch_allocated"]
        error = (predict(case).peak_bytes - measured) / measured
        family = recipe_label(case).split(", ")
        key = family[0] + "".join(
            f", {part.split(' x')[0]}" for part in family[1:] if not part.endswith("frozen")
        ) + ("" if not any(p.endswith("frozen") for p in family) else ", frozen tower")
        groups.setdefault(key, []).append(error)
    if len(groups) < 2:
        return []
    rows = ["", "| recipe | cases | error vs allocated |", "|---|---:|---|"]
    for key in sorted(groups):
        errors = groups[key]
        rows.append(f"| {key} | {len(errors)} | {min(errors) * 100:+.1f}% to "
                    f"{max(errors) * 100:+.1f}% |")
    return rows


def step3_peak(case: dict[str, Any]) -> int:
    """The largest allocated peak of the recorded third step (forward, backward, optimizer)."""
    phases = case["phases"]
    return max(int(phases[key]) for key in ("peak_forward", "peak_backward", "peak_step"))


def ddp_second_step(report: dict[str, Any]) -> list[str]:
    """The DDP cases' second step against their third: the first step's bucket, held or not
    (``pytest_tokenguard/gpu/model.py`` says why), and what the model predicts for both."""
    cases = [c for c in report["cases"] if c.get("sharding") == "ddp" and "steady" in c]
    if not cases:
        return []
    rows = [
        "",
        "**DDP's second step.** DDP reduces the first step's gradients in one flat bucket and",
        "rebuilds 25 MiB buckets at the second forward; NCCL may keep the old bucket allocated",
        "through that forward and the loss's backward (a race with its watchdog). The model",
        "predicts the held case (the column *predicted* above); from the third step on, the",
        "bucket is gone.",
        "",
        "*Held* is the worst second step the measured parts allow: the larger of step 2 and",
        "step 3's forward peak plus the bucket (one gradient set, counted on the GPU model).",
        "",
        "| case | step 2 (measured) | step 3 peak | step 2 - step 3 | first bucket | held | "
        "predicted, step 3 on | error vs step 3 | predicted, held | error vs held |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        estimate = predict(case)
        second, third = case["steady"]["torch_allocated"], step3_peak(case)
        held = held_second_step(case)
        rows.append(
            f"| {case['case']} | {second / GIB:.3f} GiB | {third / GIB:.3f} GiB | "
            f"{(second - third) / 2**20:+,.1f} MiB | {first_bucket(case) / 2**20:,.1f} MiB | "
            f"{held / GIB:.3f} GiB | {estimate.steady_peak_bytes / GIB:.3f} GiB | "
            f"{_pct(estimate.steady_peak_bytes, third)} | {estimate.peak_gib:.3f} GiB | "
            f"{_pct(estimate.peak_bytes, held)} |"
        )
    return rows


def first_bucket(case: dict[str, Any]) -> int:
    """DDP's first-step bucket of a recorded case: every trained gradient, bf16 (the
    harness's dtype), from the parameters counted on the GPU model."""
    return 2 * int(case["trainable_parameters"])


def held_second_step(case: dict[str, Any]) -> int:
    """The worst second step of a recorded DDP case from measured parts: the larger of
    the measured step 2 and step 3's forward peak plus the first step's bucket."""
    forward = int(case["phases"]["peak_forward"])
    return max(int(case["steady"]["torch_allocated"]), forward + first_bucket(case))


def text_tokens(case: dict[str, Any]) -> int:
    """Text tokens of a recorded sample: its length minus the image blocks (count_image)."""
    spec = KNOWN_SPECS[f"HuggingFaceTB/{case['model']}"]
    cost = count_image(FRAME_SIDE, FRAME_SIDE, case["longest_edge"], spec)
    return int(case["seq_len"]) - int(case["images"]) * cost.block_tokens


def reading(reports: list[dict[str, Any]]) -> list[str]:
    """The closing notes, with their numbers read from the results files."""
    first = reports[0]
    by_id = {case["case"]: case for case in first["cases"] if "steady" in case}
    plain = by_id["2.2B-le1536-nogc-b1-i4"]["steady"]
    ckpt = by_id["2.2B-le1536-gc-b1-i4"]["steady"]
    nvml_plain = plain.get("nvml_used") or plain["torch_reserved"]
    smallest = min(reports, key=lambda report: report["total_memory"])
    return [
        "## Reading the numbers",
        "",
        "* The model predicts the measured **allocated** peak of every case within the",
        "  ranges above. It is derived from the layer structure (bytes each layer saves",
        "  per token, which Linear inputs a recipe keeps), not fitted; the measured",
        "  constants are named in `pytest_tokenguard/gpu/model.py`.",
        "* The **reserved** peak adds the allocator's cache, which fragments most with",
        "  gradient checkpointing (one layer is recomputed and freed at a time).",
        "  `PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True` shrinks that overhead; the",
        "  table measured with it shows by how much. The NVML peak adds the CUDA context.",
        "  When gating a card with `tokenguard memory --limit`, leave that headroom: pass",
        "  the card's size minus the context and the reserved overhead of your setting.",
        "* The same step takes the same memory on both cards (same software); the tables",
        "  differ by a few MiB at most.",
        f"* At 1536 the 2.2B step without checkpointing needs "
        f"{plain['torch_allocated'] / GIB:.1f} GiB allocated,",
        f"  {plain['torch_reserved'] / GIB:.1f} GiB reserved and {nvml_plain / GIB:.2f} GiB on "
        f"the driver: {(smallest['total_memory'] - nvml_plain) / GIB:.2f} GiB short of",
        f"  filling the {smallest['card']} ({smallest['total_memory'] / GIB:.2f} GiB as torch "
        "sees it). Gradient checkpointing",
        f"  brings the allocated peak to {ckpt['torch_allocated'] / GIB:.1f} GiB, about the "
        "optimizer step's floor",
        "  (weights + gradients + two moments + AdamW's parameter-sized temporary).",
        "* The GPU regression tests (`tests/gpu/test_smolvlm_step_gpu.py`) fail a case",
        "  whose reserved peak grows more than 10% over its recorded value.",
        "",
    ]


def render(paths: list[Path]) -> str:
    out = [
        "# GPU memory of a SmolVLM2 training step: measured and predicted",
        "",
        "Generated by `benchmarks/gpu/make_table.py` from `benchmarks/gpu/results-*.json`",
        "(measured by `benchmarks/gpu/measure_step.py`) and the memory model",
        "(`pytest_tokenguard/gpu/model.py`, `tokenguard memory`). Do not edit by hand.",
        "",
        "**Recipe measured.** Architecture from the checkpoint's `config.json`, random",
        "weights; pure bf16 (parameters, gradients and `torch.optim.AdamW`'s moments, which",
        "are `zeros_like(param)`); `sdpa` attention; inputs made by the real processor at",
        "`size={\"longest_edge\": N}` from samples of 384x384 generated frames plus a short",
        "chat exchange; `labels = input_ids`. Each case runs in a fresh",
        "process: step 1 creates the optimizer's moments, step 2 is measured (the steady",
        "state, moments held through forward and backward), step 3 is split into phases.",
        "",
        "**Measures.** *torch peak allocated*: `torch.cuda.max_memory_allocated`, what was",
        "live at once. *torch peak reserved*: what the caching allocator held (allocated",
        "plus its cache). *NVML peak*: the driver's used memory of the process, sampled every",
        "5 ms (reserved plus the CUDA context and libraries). The model predicts the",
        "allocated peak; the error columns are (predicted - measured) / measured.",
        "",
    ]
    for path in paths:
        report = json.loads(path.read_text(encoding="utf-8"))
        env = report["environment"]
        rows, vs_alloc, vs_reserved = table(report)
        conf = env.get("alloc_conf") or "default (unset)"
        out += [
            f"## {report['card']}, PYTORCH_CUDA_ALLOC_CONF={conf}",
            "",
            f"`{path.name}`: {report['card']} ({report['total_memory'] / GIB:.1f} GiB), "
            f"driver {report['driver']}, torch {env['torch']} (CUDA {env['cuda']}), "
            f"transformers {env['transformers']}, Python {env['python']}.",
            "",
            *rows,
            "",
            f"Error vs allocated: from {min(vs_alloc) * 100:+.1f}% to "
            f"{max(vs_alloc) * 100:+.1f}% ({len(vs_alloc)} cases). vs reserved: from "
            f"{min(vs_reserved) * 100:+.1f}% to {max(vs_reserved) * 100:+.1f}%.",
            *by_recipe(report),
            *ddp_second_step(report),
            "",
        ]
    out += reading([json.loads(path.read_text(encoding="utf-8")) for path in paths])
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    paths = [Path(a) for a in args] or sorted(
        HERE.glob("results-*.json"), key=lambda p: (len(p.name), p.name)
    )
    sys.stdout.write(render(paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
