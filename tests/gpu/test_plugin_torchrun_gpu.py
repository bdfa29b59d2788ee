"""On 2 GPUs, through pytest: ``limit_gpu_memory(..., devices="all")`` around a test that
launches a 2-process ``torchrun`` FSDP2 step (``benchmarks/gpu/dist_step.py``).

A planted test file runs under ``pytest --tokenguard --tokenguard-require-gpu``: the test
with a planted ceiling (1 GiB per GPU, below what each worker's CUDA context, weights and
step hold) fails, naming every GPU's peak in its failure and in the tokenguard summary;
the test under the right ceiling (the memory model's per-GPU prediction, plus 5% and 3 GiB for each
worker's CUDA context, NCCL's buffers and the allocator's cache) passes, and the peaks it
reports hold at least what each worker's torch allocator recorded on the same step.
Skipped, with the reason, on fewer than 2 GPUs.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from pytest_tokenguard.gpu.model import KNOWN_ARCHITECTURES, estimate_step
from pytest_tokenguard.units import format_bytes, parse_size
from tests.helpers import gpu_model_folder, needs_gpus, plugin_args, recorded_results

ROOT = Path(__file__).resolve().parents[2]
CASE = "256M-le1536-nogc-b1-i4-fused-fsdp2"
GiB = 1024**3


pytestmark = needs_gpus(2)

PLANTED = """
import os
import subprocess

import pytest

COMMAND = {command!r}
ENV = {env!r}
ROOT = {root!r}


def fsdp_step():
    done = subprocess.run(COMMAND, capture_output=True, text=True, timeout=300,
                          env={{**os.environ, **ENV}}, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.limit_gpu_memory({planted!r}, devices="all")
def test_over_planted_ceiling():
    fsdp_step()


@pytest.mark.limit_gpu_memory({right!r}, devices="all")
def test_under_right_ceiling():
    fsdp_step()
"""


def _recorded() -> dict[str, object]:
    for case in recorded_results():
        if case["case"] == CASE:
            return case
    pytest.skip(f"{CASE}: no recorded measurement in benchmarks/gpu/results-*.json")


def test_torchrun_job_is_gated_per_gpu(pytester: pytest.Pytester,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    folder = gpu_model_folder("SmolVLM2-256M-Video-Instruct")
    record = _recorded()
    predicted = estimate_step(
        KNOWN_ARCHITECTURES["HuggingFaceTB/SmolVLM2-256M-Video-Instruct"],
        tiles_per_sample=int(record["tiles_per_sample"]),  # type: ignore[call-overload]
        seq_len=int(record["seq_len"]),  # type: ignore[call-overload]
        optimizer="adamw-fused", gpus=2, sharding="fsdp")
    # measured on 2x H100 (driver 580.159.04, torch 2.11): 18.5GiB per GPU under 18.9GiB
    # (prediction + 3 GiB); 5% more leaves room for the allocator's cache run to run
    right = format_bytes(int(predicted.peak_bytes * 1.05) + 3 * GiB)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    env = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
           "NVSHMEM_DISABLE_NVLS": "1", "CUDA_VISIBLE_DEVICES": "0,1", "PYTHONPATH": path}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node=2", "-m", "benchmarks.gpu.dist_step", CASE,
               str(folder.parents[1])]
    pytester.makepyfile(PLANTED.format(command=command, env=env, root=str(ROOT),
                                       planted="1 GiB", right=right))
    result = pytester.runpytest_subprocess(*plugin_args(), "--tokenguard",
                                           "--tokenguard-require-gpu", "-p", "no:cacheprovider",
                                           timeout=900)
    out = result.stdout.str()
    print(out[-6000:])
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*Test was limited to 1.0GiB per GPU but 2 of 2 GPUs passed it: GPU ? peaked at *"
        "(GPU 0 *, GPU 1 *)",
        "*GPU peaks per device (NVML, driver *)*",
        "*GPU 0 * (process-tree, * samples)  OVER",
        "*GPU 1 * (process-tree, * samples)  OVER",
        "*GPU peaks (measured, or predicted by the memory model):",
        "*OVER *::test_over_planted_ceiling: * of 1.0GiB [[]GPU 0: *, GPU 1: *[]]",
        f"*::test_under_right_ceiling: * of {right} [[]GPU 0: *, GPU 1: *[]]",
    ])
    assert "OVER test_torchrun_job_is_gated_per_gpu.py::test_under" not in out
    # the peaks the passing test reports are the workers' (not this process's, not zero):
    # each GPU held at least what its worker's torch allocator recorded for the step
    line = next(x for x in out.splitlines() if "::test_under_right_ceiling:" in x)
    peaks = [parse_size(size) for size in re.findall(r"GPU \d: ([0-9.]+[KMGT]iB)", line)]
    ranks = record["ranks"]
    assert isinstance(ranks, list)
    floors = [int(rank["steady"]["torch_allocated"]) for rank in ranks]
    assert len(peaks) == 2
    for peak, floor in zip(peaks, floors, strict=True):
        assert peak >= floor * 0.95, (format_bytes(peak), format_bytes(floor))  # 1-decimal print
