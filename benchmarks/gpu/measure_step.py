"""Measure the GPU peak of one SmolVLM2 training step for every case; write JSON.

Each case runs in its own Python process, so every peak (torch's and NVML's, which
counts the whole process) starts from a clean device and no cache or workspace of an
earlier case is counted. The results file is rewritten after each case, so a run
cut short still leaves what it measured.

    PYTHONPATH=. python benchmarks/gpu/measure_step.py --models-dir ../shared/models \
        --out benchmarks/gpu/results-h100.json

The recipe (pure bf16 + AdamW, sdpa, steady-state step) is described in
``benchmarks/gpu/smolvlm_step.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

#: The cases of issue 5 first (2.2B at 384 and 1536, with and without gradient
#: checkpointing; then 500M and 256M), then cases that vary batch, images and
#: resolution so the memory model is validated off the headline grid too.
CASES = [
    "2.2B-le384-nogc-b1-i4",
    "2.2B-le384-gc-b1-i4",
    "2.2B-le1536-gc-b1-i4",
    "2.2B-le1536-nogc-b1-i4",
    "500M-le384-nogc-b1-i4",
    "500M-le384-gc-b1-i4",
    "500M-le1536-nogc-b1-i4",
    "500M-le1536-gc-b1-i4",
    "256M-le384-nogc-b1-i4",
    "256M-le384-gc-b1-i4",
    "256M-le1536-nogc-b1-i4",
    "256M-le1536-gc-b1-i4",
    "2.2B-le768-nogc-b1-i4",
    "2.2B-le384-nogc-b4-i4",
    "2.2B-le1536-gc-b2-i4",
    "2.2B-le1152-nogc-b1-i2",
    "500M-le1536-nogc-b2-i4",
    "500M-le1024-gc-b4-i4",
    "256M-le1536-gc-b4-i4",
    "256M-le1024-nogc-b2-i4",
]

#: The recipes of issue 10 on the three checkpoints: the Trainer's fused AdamW, SGD,
#: LoRA (rank 8 on the notebook's targets, with and without dropout), each tower
#: frozen, and DDP / FSDP2 on 2 and 4 GPUs. Shapes where the optimizer sets the peak
#: (384, checkpointing at 1536) and where activations do (1536 without) both appear.
RECIPE_CASES = [
    # 4 GPUs
    "2.2B-le1536-gc-b1-i4-fused-fsdp4",
    "2.2B-le384-nogc-b1-i4-fused-fsdp4",
    "500M-le1536-nogc-b1-i4-fused-fsdp4",
    "256M-le1536-gc-b1-i4-fused-fsdp4",
    "2.2B-le384-nogc-b1-i4-fused-ddp4",
    # 2 GPUs
    "2.2B-le1536-gc-b1-i4-fused-fsdp2",
    "2.2B-le768-nogc-b1-i4-fused-fsdp2",
    "500M-le384-nogc-b1-i4-fused-fsdp2",
    "256M-le1536-nogc-b1-i4-fused-fsdp2",
    "2.2B-le384-nogc-b1-i4-fused-ddp2",
    "500M-le1536-gc-b1-i4-fused-ddp2",
    "256M-le384-nogc-b1-i4-fused-ddp2",
    "2.2B-le384-nogc-b1-i4-lora8-fsdp2",
    # one GPU: fused AdamW
    "2.2B-le384-nogc-b1-i4-fused",
    "2.2B-le1536-gc-b1-i4-fused",
    "2.2B-le1536-nogc-b1-i4-fused",
    "500M-le384-gc-b1-i4-fused",
    "500M-le1536-nogc-b1-i4-fused",
    "256M-le384-nogc-b1-i4-fused",
    "256M-le1536-gc-b4-i4-fused",
    # SGD
    "2.2B-le1536-gc-b1-i4-sgd",
    "500M-le1536-nogc-b1-i4-sgd",
    "256M-le384-gc-b1-i4-sgd",
    # LoRA
    "2.2B-le384-nogc-b1-i4-fused-lora8",
    "2.2B-le1152-nogc-b1-i2-fused-lora8",
    "2.2B-le1536-gc-b1-i4-fused-lora8",
    "2.2B-le768-nogc-b1-i4-fused-lora8d",
    "500M-le1536-nogc-b1-i4-fused-lora8",
    "500M-le1536-gc-b2-i4-fused-lora16d",
    "256M-le1536-nogc-b1-i4-fused-lora8",
    "256M-le384-nogc-b1-i4-fused-lora8d",
    "2.2B-le1536-nogc-b1-i4-fused-lora8-fzvision",
    # frozen towers
    "2.2B-le1536-nogc-b1-i4-fused-fzvision",
    "2.2B-le384-gc-b1-i4-fused-fzvision",
    "2.2B-le1536-nogc-b1-i4-fused-fztext",
    "500M-le1536-nogc-b1-i4-fused-fzvision",
    "500M-le1536-gc-b1-i4-fused-fztext",
    "256M-le1536-nogc-b1-i4-fused-fztext",
    "256M-le384-gc-b1-i4-fused-fzvision",
    # the old recipe on this card, to tie the files together
    "2.2B-le384-nogc-b1-i4",
    "256M-le1536-gc-b4-i4",
]


#: NVLink multicast stays off on the shared GPU hosts (see the device README): a
#: program that uses it can put the host's GPUs out of service.
SAFE_ENV = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}


def case_gpus(case_id: str) -> int:
    """How many GPUs a case needs (``...-fsdp4`` needs 4)."""
    from benchmarks.gpu.smolvlm_step import StepCase

    return StepCase.from_id(case_id).gpus


def command_for(case_id: str, models_dir: str) -> list[str]:
    """A fresh interpreter for one GPU, ``torchrun`` (one process per GPU) for several."""
    if case_gpus(case_id) == 1:
        return [sys.executable, "-c", "import sys; from benchmarks.gpu.smolvlm_step import "
                "main_one; main_one(sys.argv[1], sys.argv[2])", case_id, models_dir]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={case_gpus(case_id)}", "-m", "benchmarks.gpu.dist_step",
            case_id, models_dir]


def run_case(
    case_id: str, models_dir: str, timeout: float, devices: list[int] | None = None
) -> dict[str, Any]:
    """One case in a fresh interpreter (or torchrun) on ``devices``; its JSON, or an error."""
    env = {**os.environ, **SAFE_ENV}
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, devices))
    started = time.perf_counter()
    try:
        done = subprocess.run(command_for(case_id, models_dir), capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"case": case_id, "error": f"timed out after {timeout:.0f}s"}
    elapsed = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-8:]
        return {"case": case_id, "error": f"exit {done.returncode}: " + " | ".join(tail)}
    result: dict[str, Any] = json.loads(lines[-1])
    result["wall_s"] = round(elapsed, 1)
    result["devices"] = devices
    return result


class DevicePool:
    """Hands out GPU indices so that cases run side by side, each on its own GPUs."""

    def __init__(self, count: int) -> None:
        self._free = list(range(count))
        self._cond = threading.Condition()

    def take(self, n: int) -> list[int]:
        with self._cond:
            self._cond.wait_for(lambda: len(self._free) >= n)
            taken, self._free = self._free[:n], self._free[n:]
            return taken

    def give(self, devices: list[int]) -> None:
        with self._cond:
            self._free = sorted(self._free + devices)
            self._cond.notify_all()


def _line(case_id: str, result: dict[str, Any]) -> str:
    steady = result.get("steady") or {}
    return (f"{case_id:34s} dev={result.get('devices')} seq={result.get('seq_len')} "
            f"alloc={steady.get('torch_allocated', 0) / 2**30:.2f}GiB "
            f"reserved={(steady.get('torch_reserved') or 0) / 2**30:.2f}GiB "
            f"{'OOM ' if result.get('oom') else ''}{result.get('error', '')} "
            f"({result.get('wall_s', 0)}s)")


def preflight(cases: list[str], models_dir: str) -> None:
    """Make one batch per checkpoint here first (the processor, on the CPU): a missing
    package (num2words) or model folder then stops the run before any GPU time is spent."""
    from benchmarks.gpu.smolvlm_step import StepCase, build_inputs

    seen: set[str] = set()
    for case_id in cases:
        case = StepCase.from_id(case_id)
        if case.model not in seen:
            seen.add(case.model)
            build_inputs(Path(models_dir) / "HuggingFaceTB" / case.model, case)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=os.environ.get("TOKENGUARD_MODELS_DIR",
                                                               "../shared/models"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cases", default="all",
                        help="comma-separated case ids, 'all' (CASES) or 'recipes' (RECIPE_CASES)")
    parser.add_argument("--gpus", type=int, default=1,
                        help="GPUs to spread the cases over (one case per GPU at a time)")
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds; no case is started after this")
    parser.add_argument("--case-timeout", type=float, default=240.0)
    args = parser.parse_args(argv)
    named = {"all": CASES, "recipes": RECIPE_CASES}
    cases = named.get(args.cases) or args.cases.split(",")
    cases = [c for c in cases if case_gpus(c) <= args.gpus]
    preflight(cases, args.models_dir)
    started = time.perf_counter()
    pool = DevicePool(args.gpus)
    lock = threading.Lock()
    results: dict[str, dict[str, Any]] = {}
    report: dict[str, Any] = {"gpus_on_host": args.gpus, "cases": []}

    def one(case_id: str) -> None:
        devices = pool.take(case_gpus(case_id))
        try:
            if time.perf_counter() - started > args.budget:
                result: dict[str, Any] = {"case": case_id, "error": "not run: time budget spent"}
            else:
                result = run_case(case_id, args.models_dir, args.case_timeout, devices)
        finally:
            pool.give(devices)
        with lock:
            results[case_id] = result
            steady = result.get("steady") or {}
            if "card" not in report and steady:
                report["card"] = steady["device_name"]
                report["driver"] = steady["driver_version"]
                report["total_memory"] = steady["total_memory"]
                report["environment"] = result["environment"]
            report["cases"] = [results[c] for c in cases if c in results]
            print(_line(case_id, result), flush=True)
            args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")

    # the widest cases first, so a 4-GPU case is not starved by single-GPU ones
    order = sorted(cases, key=lambda c: -case_gpus(c))
    with ThreadPoolExecutor(max_workers=args.gpus) as executor:
        list(executor.map(one, order))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
