"""On 2 GPUs: ``limit_gpu_memory(..., devices="all")`` measures a ``torchrun`` job per GPU.

A 2-process FSDP2 step of SmolVLM2-256M (``benchmarks/gpu/dist_step.py``) runs under
:class:`MultiGpuMeasure` — what the marker runs around a test with ``devices="all"``.
The per-GPU check fails over a planted ceiling (256 MiB, below any worker's CUDA
context) and passes under the right one: the memory model's per-GPU prediction plus the
CUDA context and allocator cache. Skipped, with the reason, on fewer than 2 GPUs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_tokenguard.gpu.measure import (
    GpuUnavailable,
    MultiGpuMeasure,
    check_gpu_limits,
)
from pytest_tokenguard.gpu.model import KNOWN_ARCHITECTURES, estimate_step
from tests.helpers import gpu_model_folder as model_folder
from tests.helpers import needs_gpus

ROOT = Path(__file__).resolve().parents[2]
CASE = "256M-le384-nogc-b1-i4-fused-fsdp2"
GiB = 1024**3


pytestmark = needs_gpus(2)


def test_torchrun_fsdp_step_is_measured_per_gpu() -> None:
    folder = model_folder("SmolVLM2-256M-Video-Instruct")
    env = {**os.environ, "NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
           "NVSHMEM_DISABLE_NVLS": "1", "CUDA_VISIBLE_DEVICES": "0,1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), env_path()])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node=2", "-m", "benchmarks.gpu.dist_step", CASE,
               str(folder.parents[1])]
    try:
        with MultiGpuMeasure(devices=[0, 1]) as measure:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                                  env=env, cwd=ROOT)
    except GpuUnavailable as exc:
        pytest.skip(str(exc))
    assert done.returncode == 0, done.stderr[-3000:]
    peak = measure.peak
    assert [d.index for d in peak.devices] == [0, 1]

    planted = check_gpu_limits(peak, 256 * 1024**2)
    assert not planted.passed
    assert planted.message.startswith("Test was limited to 256.0MiB per GPU but 2 of 2 GPUs")
    assert "GPU 0" in planted.detail
    assert "GPU 1" in planted.detail

    arch = KNOWN_ARCHITECTURES["HuggingFaceTB/SmolVLM2-256M-Video-Instruct"]
    import json

    record = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    predicted = estimate_step(arch, tiles_per_sample=record["tiles_per_sample"],
                              seq_len=record["seq_len"], optimizer="adamw-fused",
                              gpus=2, sharding="fsdp")
    # every worker's driver-side peak holds at least torch's allocated peak
    for device, rank in zip(peak.devices, record["ranks"], strict=True):
        assert device.used >= rank["steady"]["torch_allocated"], (device, rank["steady"])
    # the right ceiling: the prediction plus each worker's CUDA context, NCCL's buffers and
    # the allocator's cache (measured 2.2 GiB over the prediction on H100s, 2 workers)
    right = check_gpu_limits(peak, predicted.peak_bytes + 3 * GiB)
    print(f"\n{right.message}\n{right.detail}")
    assert right.passed, right.message + "\n" + right.detail


def env_path() -> str:
    return os.environ.get("PYTHONPATH", "")
