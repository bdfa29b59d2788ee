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


#: The recorded cases that the model's measured constants were fitted on, or a mechanism
#: was read from, by results file: the rest is the holdout, the only cases the accuracy
#: test (``tests/unit/test_memory_model.py``) checks. ``results-h100.json`` is issue 5's
#: grid, on which the per-layer terms, LIBRARY_WORKSPACES, EMBEDDING_BACKWARD and the
#: 14 bytes per pixel were measured; FSDP_LAYER_BUFFERS and DDP's buckets were read from
#: the multi-GPU recipe cases; the Trainer's autocast and input terms were checked against
#: the loop file's diagnostic toggles (bf16=False, max_grad_norm=0, the manual loop).
FIT_CASES: dict[str, frozenset[str] | None] = {
    "results-h100.json": None,  # every case
    "results-h100x4-recipes.json": frozenset({
        "2.2B-le1536-gc-b1-i4-fused-fsdp4", "2.2B-le384-nogc-b1-i4-fused-fsdp4",
        "500M-le1536-nogc-b1-i4-fused-fsdp4", "256M-le1536-gc-b1-i4-fused-fsdp4",
        "2.2B-le384-nogc-b1-i4-fused-ddp4", "2.2B-le1536-gc-b1-i4-fused-fsdp2",
        "2.2B-le384-nogc-b1-i4-fused-ddp2", "256M-le384-nogc-b1-i4-fused-ddp2",
    }),
    "results-h100-loops.json": frozenset({
        "256M-le1536-nogc-b1-i4-640x480-manual", "256M-le1536-nogc-b1-i4-640x480-trainer",
        "256M-le1536-nogc-b1-i4-640x480-trainer-noclip",
        "256M-le1536-nogc-b1-i4-640x480-trainer-noamp",
        "2.2B-le768-nogc-b1-i4-640x480-trainer", "2.2B-le768-nogc-b1-i4-640x480-trainer-noamp",
    }),
    # issue 18's Qwen2.5-VL steps and issue 20's mixed precision: QWEN_PERSISTENT was read
    # from the first case's step start; the lifetime of autocast's weight copies was
    # checked on the second's forward (their cache is freed when the forward ends)
    "results-h100-qwen.json": frozenset({
        "qwen-3B-full-gc-b1-1x4032x3024-mp4014080",
        "2.2B-le768-gc-b1-i4-640x480-trainer-mixed",
    }),
}


def is_holdout(file: str, case_id: str) -> bool:
    """Whether a recorded case is held out: nothing of the model was fitted on it."""
    if file not in FIT_CASES:
        return True
    fitted = FIT_CASES[file]
    return fitted is not None and case_id not in fitted


#: ``loop_step.py``'s loop names in the memory model's words.
LOOP_NAMES = {"sft": "sft-trainer"}


def recipe(case: dict[str, Any]) -> dict[str, Any]:
    """The memory model's keywords for a recorded case (the first files predate recipes:
    their optimizer was ``AdamW(foreach=True)``, full fine-tuning, one GPU)."""
    keywords: dict[str, Any] = {
        "loop": LOOP_NAMES.get(case.get("loop", "manual"), case.get("loop", "manual")),
        "batch": case["batch"],
        "gradient_checkpointing": case["gradient_checkpointing"],
        "optimizer": case.get("optimizer", "adamw-fused" if "loop" in case
                              else "adamw-foreach"),
    }
    if case.get("variant") == "noamp":  # bf16=False: no autocast, the fp32 pixel values
        keywords["loop"] = "manual"
    if case.get("precision") == "mixed":  # an fp32 model under bf16=True
        keywords["dtype"] = "float32"
    if case.get("lora_rank"):
        keywords.update(lora_rank=case["lora_rank"], lora_dropout=case.get("lora_dropout", 0.0))
    if case.get("freeze"):
        keywords["freeze"] = case["freeze"]
    if case.get("gpus", 1) > 1:
        keywords.update(gpus=case["gpus"], sharding=case["sharding"])
    return keywords


def qwen_keywords(case: dict[str, Any]) -> dict[str, Any]:
    """``tokenguard memory`` keywords for a recorded Qwen case (``qwen_step.py``)."""
    keywords: dict[str, Any] = {
        "gradient_checkpointing": case["gradient_checkpointing"], "batch": case["batch"],
        "text_tokens": case.get("text_tokens", 64), "images": len(case["images"]),
    }
    if case["images"]:
        keywords["image_size"] = [tuple(size) for size in case["images"]]
    if case["video"]:
        keywords["video"] = tuple(case["video"])
    if case["max_pixels"]:
        keywords["max_pixels"] = case["max_pixels"]
    if case["recipe"] == "lora":
        keywords["lora_rank"] = 16
    if case["recipe"] == "frozen-vision":
        keywords["freeze"] = ("vision",)
    return keywords


def predict(case: dict[str, Any]) -> MemoryEstimate:
    """The model's prediction for a recorded case, from the shapes the processor made
    (a Qwen case from its images, through ``tokenguard memory``'s own path)."""
    if case["case"].startswith("qwen-"):
        from pytest_tokenguard.gpu.model import estimate_for_model

        return estimate_for_model(case["model"], **qwen_keywords(case))
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


def _manual_peak(case: dict[str, Any]) -> int:
    """What the model predicted for a loop case before issue 20 (the manual loop)."""
    keywords = {**recipe(case), "loop": "manual"}
    return estimate_step(
        KNOWN_ARCHITECTURES[f"HuggingFaceTB/{case['model']}"],
        tiles_per_sample=case["tiles_per_sample"], seq_len=case["seq_len"], **keywords,
    ).peak_bytes


def loop_section(path: Path, report: dict[str, Any]) -> list[str]:
    """The loops users run (``loop_step.py``'s file): measured against predicted, the
    prediction of the manual-loop model beside it, and what each part costs."""
    env = report["environment"]
    rows = [
        f"## The loops users run: Trainer and SFTTrainer ({report['card']})",
        "",
        f"`{path.name}`: {report['card']} ({report['total_memory'] / GIB:.1f} GiB), torch "
        f"{env['torch']} (CUDA {env['cuda']}), transformers {env['transformers']}, TRL "
        f"{env.get('trl')}, Python {env['python']}. Measured by "
        "`benchmarks/gpu/loop_step.py`: the model loaded in bf16, `bf16=True`, the default",
        "optimizer (`adamw_torch_fused`) and clipping (`max_grad_norm=1.0`); the Trainer with",
        "a collator that calls the processor (`labels = input_ids`), SFTTrainer on a",
        "conversational dataset with `max_length=None` (its own vision collator and fused LM",
        "head). Images are generated photos of the size given. *predicted* is",
        "`tokenguard memory --loop LOOP`; *manual-loop model* is what the model predicted",
        "before it knew the loop (issue 20). *set*: holdout cases were predicted without any",
        "change to the model; fit cases are the diagnostic toggles the mechanism was read from.",
        "",
        "| case | loop | set | longest_edge | grad. ckpt | batch x images | image | "
        "tiles/sample | tokens/sample | torch peak allocated | torch peak reserved | "
        "predicted | error | manual-loop model | its error |",
        "|---|---|---|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    errors: dict[str, list[float]] = {}
    for case in report["cases"]:
        steady = case.get("steady")
        if steady is None:
            continue
        estimate, old = predict(case), _manual_peak(case)
        measured = steady["torch_allocated"]
        loop = recipe_loop(case)
        holdout = is_holdout(path.name, case["case"])
        if holdout:
            errors.setdefault(loop, []).append((estimate.peak_bytes - measured) / measured)
        rows.append(
            f"| {case['case']} | {loop} | {'holdout' if holdout else 'fit'} | "
            f"{case['longest_edge']} | {'yes' if case['gradient_checkpointing'] else 'no'} | "
            f"{case['batch']} x {case['images']} | {case['width']}x{case['height']} | "
            f"{case['tiles_per_sample']} | {case['seq_len']} | {measured / GIB:.2f} GiB | "
            f"{steady['torch_reserved'] / GIB:.2f} GiB | {estimate.peak_gib:.2f} GiB | "
            f"{_pct(estimate.peak_bytes, measured)} | {old / GIB:.2f} GiB | "
            f"{_pct(old, measured)} |"
        )
    rows += ["", "Holdout error vs allocated, by loop: " + "; ".join(
        f"{loop} {min(e) * 100:+.1f}% to {max(e) * 100:+.1f}% ({len(e)} cases)"
        for loop, e in sorted(errors.items())) + ".", ""]
    return rows + loop_costs(report)


#: Steps predicted but not measured (the device time went to the grid above).
QWEN_PREDICTED_ONLY: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("Qwen/Qwen2.5-VL-3B-Instruct", "full fine-tuning, gradient checkpointing, one 4032x3024 "
     "photo at the default max_pixels", {"gradient_checkpointing": True,
                                         "image_size": (4032, 3024), "images": 1}),
    ("Qwen/Qwen2.5-VL-7B-Instruct", "full fine-tuning in pure bf16 (bf16 AdamW states), "
     "gradient checkpointing, one 1024x768 photo",
     {"gradient_checkpointing": True, "image_size": (1024, 768), "images": 1}),
)


def qwen_section(path: Path, report: dict[str, Any]) -> list[str]:
    """Issue 18's Qwen2.5-VL steps and issue 20's mixed precision (``qwen_step.py``); a
    file of Qwen cases only (the held-out acceptance set) has no mixed-precision part."""
    from pytest_tokenguard.gpu.model import estimate_for_model

    env = report["environment"]
    holdout_file = not any(not c["case"].startswith("qwen-") for c in report["cases"])
    title = ("Qwen2.5-VL in the Trainer, held out" if holdout_file
             else "Qwen2.5-VL in the Trainer, and mixed precision")
    rows = [
        f"## {title} ({report['card']})",
        "",
        f"`{path.name}`: {report['card']} ({report['total_memory'] / GIB:.1f} GiB), torch "
        f"{env['torch']} (CUDA {env['cuda']}), transformers {env['transformers']} (carried as "
        f"a wheel), peft {env.get('peft')}, Python {env['python']}. Measured by "
        "`benchmarks/gpu/qwen_step.py`: `Qwen2_5_VLForConditionalGeneration` built from the",
        "published `config.json` values with random weights in bf16, `sdpa`; pixel values from",
        "`Qwen2VLImageProcessor` / `Qwen2VLVideoProcessor` at the published `min_pixels` and",
        "`max_pixels` (or the case's `mp`), `input_ids` written with one `<|image_pad|>` per",
        "merged patch inside `<|vision_start|>`/`<|vision_end|>` and 64 text tokens (or the",
        "case's `text`), `labels = input_ids`;",
        "`Trainer(bf16=True)` with its defaults (`adamw_torch_fused`,",
        "clipping). LoRA: peft r=16 on q/k/v/o/gate/up/down_proj (the vision MLP's too).",
        "*predicted* is `tokenguard memory --model Qwen/... --image-size WxH ...`.",
        "",
        "| case | set | grad. ckpt | batch | images / video | max_pixels | vision tokens "
        "| tokens/sample | torch peak allocated | torch peak reserved | predicted | error |",
        "|---|---|:---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    errors: dict[str, list[float]] = {}
    for case in report["cases"]:
        if not case["case"].startswith("qwen-") or "steady" not in case:
            continue
        estimate, measured = predict(case), case["steady"]["torch_allocated"]
        holdout = is_holdout(path.name, case["case"])
        if holdout:
            errors.setdefault("Qwen2.5-VL", []).append((estimate.peak_bytes - measured)
                                                       / measured)
        inputs = ", ".join([f"{w}x{h}" for w, h in case["images"]]
                           + (["video {}x{}x{}".format(*case["video"])] if case["video"] else []))
        rows.append(
            f"| {case['case']} | {'holdout' if holdout else 'fit'} | "
            f"{'yes' if case['gradient_checkpointing'] else 'no'} | {case['batch']} | "
            f"{inputs} | {case['max_pixels'] or 'default'} | {case['patches_per_sample']} | "
            f"{case['seq_len']} | {measured / GIB:.2f} GiB | "
            f"{case['steady']['torch_reserved'] / GIB:.2f} GiB | {estimate.peak_gib:.2f} GiB | "
            f"{_pct(estimate.peak_bytes, measured)} |")
    mixed = [c for c in report["cases"] if not c["case"].startswith("qwen-") and "steady" in c]
    if not mixed:
        rows += ["", "Holdout error vs allocated: " + "; ".join(
            f"{name} {min(e) * 100:+.1f}% to {max(e) * 100:+.1f}% ({len(e)} cases)"
            for name, e in sorted(errors.items())) + ".", ""]
        return rows
    rows += ["", "Predicted, not measured (7B full fine-tuning with fp32 AdamW states, as mixed",
             "precision keeps them, needs 16 bytes a parameter, 124 GiB before any activation:",
             "it does not fit 80 GB, and the model refuses mixed precision on Qwen, unmeasured):",
             ""]
    for model, what, keywords in QWEN_PREDICTED_ONLY:
        estimate = estimate_for_model(model, **keywords)
        rows.append(f"- {model}, {what}: {estimate.peak_gib:.1f} GiB ({estimate.phase}).")
    rows += [
        "",
        "### Mixed precision: an fp32 model under `Trainer(bf16=True)`",
        "",
        "SmolVLM2 loaded in fp32 (`loop_step.py`'s `-mixed` cases; transformers 5.17 crashed",
        "in `inputs_merger` on fp32 weights, 5.25 casts there): fp32 weights, gradients and",
        "AdamW states, the forward under bf16 autocast. *predicted* is `tokenguard memory",
        "--dtype float32` (the Trainer's loop). The bf16 row is the same step on a bf16 model,",
        f"re-measured with transformers {env['transformers']} (recorded at 19.42 GiB with 5.17).",
        "",
        "| case | set | longest_edge | grad. ckpt | batch x images | image | tiles/sample | "
        "tokens/sample | torch peak allocated | predicted | error | phase |",
        "|---|---|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for case in report["cases"]:
        if case["case"].startswith("qwen-") or "steady" not in case:
            continue
        estimate, measured = predict(case), case["steady"]["torch_allocated"]
        holdout = is_holdout(path.name, case["case"])
        if holdout and case.get("precision") == "mixed":
            errors.setdefault("mixed precision", []).append((estimate.peak_bytes - measured)
                                                            / measured)
        rows.append(
            f"| {case['case']} | {'holdout' if holdout else 'fit'} | {case['longest_edge']} | "
            f"{'yes' if case['gradient_checkpointing'] else 'no'} | "
            f"{case['batch']} x {case['images']} | {case['width']}x{case['height']} | "
            f"{case['tiles_per_sample']} | {case['seq_len']} | {measured / GIB:.2f} GiB | "
            f"{estimate.peak_gib:.2f} GiB | {_pct(estimate.peak_bytes, measured)} | "
            f"{estimate.phase} |")
    rows += ["", "Holdout error vs allocated: " + "; ".join(
        f"{name} {min(e) * 100:+.1f}% to {max(e) * 100:+.1f}% ({len(e)} cases)"
        for name, e in sorted(errors.items())) + ".", ""]
    return rows


def recipe_loop(case: dict[str, Any]) -> str:
    name = str(LOOP_NAMES.get(case["loop"], case["loop"]))
    return name + (" (bf16=False)" if case.get("variant") == "noamp" else "") + (
        " (max_grad_norm=0)" if case.get("variant") == "noclip" else "")


def loop_costs(report: dict[str, Any]) -> list[str]:
    """What each part of the Trainer's and SFTTrainer's step costs, from pairs of recorded
    cases that differ in one thing."""
    by_id = {case["case"]: case for case in report["cases"] if "steady" in case}

    def peak(case_id: str) -> float:
        return float(by_id[case_id]["steady"]["torch_allocated"]) / GIB

    pairs = [
        ("the Trainer's autocast (bf16=True on the bf16 model) over bf16=False",
         "256M-le1536-nogc-b1-i4-640x480-trainer", "256M-le1536-nogc-b1-i4-640x480-trainer-noamp"),
        ("the same, 2.2B", "2.2B-le768-nogc-b1-i4-640x480-trainer",
         "2.2B-le768-nogc-b1-i4-640x480-trainer-noamp"),
        ("gradient clipping (max_grad_norm=1.0) over none",
         "256M-le1536-nogc-b1-i4-640x480-trainer", "256M-le1536-nogc-b1-i4-640x480-trainer-noclip"),
        ("the Trainer with bf16=False over the manual loop (fp32 pixel values on the GPU)",
         "256M-le1536-nogc-b1-i4-640x480-trainer-noamp", "256M-le1536-nogc-b1-i4-640x480-manual"),
        ("SFTTrainer over the Trainer (its fused LM head: no full logits)",
         "256M-le1536-nogc-b2-i4-640x480-sft", "256M-le1536-nogc-b2-i4-640x480-trainer"),
        ("the same, 2.2B at 1152", "2.2B-le1152-nogc-b1-i2-4032x3024-sft",
         "2.2B-le1152-nogc-b1-i2-4032x3024-trainer"),
        ("the same with gradient checkpointing", "256M-le1536-gc-b2-i4-640x480-sft",
         "256M-le1536-gc-b2-i4-640x480-trainer"),
    ]
    rows = ["**What each part costs** (step 2's allocated peak, one thing changed):", "",
            "| what | case | with | without | difference |", "|---|---|---:|---:|---:|"]
    for what, with_id, without_id in pairs:
        if with_id in by_id and without_id in by_id:
            rows.append(f"| {what} | {with_id} | {peak(with_id):.2f} GiB | "
                        f"{peak(without_id):.2f} GiB | "
                        f"{peak(with_id) - peak(without_id):+.2f} GiB |")
    return [*rows, ""]


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
        "# GPU memory of a SmolVLM2 or Qwen2.5-VL training step: measured and predicted",
        "",
        "Generated by `benchmarks/gpu/make_table.py` from `benchmarks/gpu/results-*.json`",
        "(measured by `benchmarks/gpu/measure_step.py`) and the memory model",
        "(`pytest_tokenguard/gpu/model.py`, `tokenguard memory`). Do not edit by hand.",
        "",
        "The loops users run come first (issue 20): the Hugging Face `Trainer` and TRL's",
        "`SFTTrainer`, which `tokenguard memory` predicts by default (`--loop trainer`). The",
        "manual-loop tables after them are the recipes of issues 5 and 10 (`--loop manual`).",
        "",
        "**Recipe measured (manual loop).** Architecture from the checkpoint's",
        "`config.json`, random",
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
    reports = [(path, json.loads(path.read_text(encoding="utf-8"))) for path in paths]
    qwen = [(p, r) for p, r in reports if p.name.startswith("results-h100-qwen")]
    for path, report in qwen:
        out += qwen_section(path, report)
    reports = [(p, r) for p, r in reports if not p.name.startswith("results-h100-qwen")]
    loops = [(p, r) for p, r in reports if any("loop" in c for c in r["cases"])]
    for path, report in loops:
        out += loop_section(path, report)
    for path, report in reports:
        if (path, report) in loops:
            continue
        env = report["environment"]
        rows, vs_alloc, vs_reserved = table(report)
        conf = env.get("alloc_conf") or "default (unset)"
        out += [
            f"## The manual loop: {report['card']}, PYTORCH_CUDA_ALLOC_CONF={conf}",
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
    out += reading([report for path, report in reports if (path, report) not in loops])
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
