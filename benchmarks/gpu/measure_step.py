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
import time
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


def run_case(case_id: str, models_dir: str, timeout: float) -> dict[str, Any]:
    """One case in a fresh interpreter; its JSON, or an error record."""
    command = [sys.executable, "-c", "import sys; from benchmarks.gpu.smolvlm_step import "
               "main_one; main_one(sys.argv[1], sys.argv[2])", case_id, models_dir]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"case": case_id, "error": f"timed out after {timeout:.0f}s"}
    elapsed = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return {"case": case_id, "error": f"exit {done.returncode}: " + " | ".join(tail)}
    result: dict[str, Any] = json.loads(lines[-1])
    result["wall_s"] = round(elapsed, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=os.environ.get("TOKENGUARD_MODELS_DIR",
                                                               "../shared/models"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cases", default="all", help="comma-separated case ids, or 'all'")
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds; no case is started after this")
    parser.add_argument("--case-timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    cases = CASES if args.cases == "all" else args.cases.split(",")
    started = time.perf_counter()
    report: dict[str, Any] = {"cases": []}
    for case_id in cases:
        if time.perf_counter() - started > args.budget:
            report["cases"].append({"case": case_id, "error": "not run: time budget spent"})
            continue
        result = run_case(case_id, args.models_dir, args.case_timeout)
        report["cases"].append(result)
        steady = result.get("steady") or {}
        if "card" not in report and steady:
            report["card"] = steady["device_name"]
            report["driver"] = steady["driver_version"]
            report["total_memory"] = steady["total_memory"]
            report["environment"] = result["environment"]
        peak = steady.get("torch_reserved")
        print(f"{case_id:28s} seq={result.get('seq_len')} "
              f"alloc={steady.get('torch_allocated', 0) / 2**30:.2f}GiB "
              f"reserved={(peak or 0) / 2**30:.2f}GiB "
              f"nvml={(steady.get('nvml_used') or 0) / 2**30:.2f}GiB "
              f"{'OOM ' if result.get('oom') else ''}{result.get('error', '')} "
              f"({result.get('wall_s', 0)}s)", flush=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
