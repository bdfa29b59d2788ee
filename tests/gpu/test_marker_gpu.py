"""On a real GPU: the ceiling check catches a planted over-ceiling allocation, passes an
under-ceiling one, and reports both measures (torch and NVML).

These use :class:`GpuMeasure` and :func:`check_gpu_limit` directly, which is exactly
what the ``limit_gpu_memory`` marker runs around a test, so they stand without pytester.
Skipped, with the reason, where no CUDA device is visible.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_tokenguard.gpu import measure as gpu
from pytest_tokenguard.gpu.measure import GpuMeasure, check_gpu_limit, cuda_status
from pytest_tokenguard.units import parse_size

_STATUS = cuda_status()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _STATUS.available, reason=_STATUS.reason or "no CUDA"),
]

MiB = 1024**2


@pytest.fixture
def torch_cuda() -> Iterator[Any]:
    import torch

    torch.cuda.empty_cache()
    yield torch
    torch.cuda.empty_cache()


def _hold(torch: Any, size: int, seconds: float = 0.05) -> None:
    """Allocate ``size`` bytes, touch them, hold them long enough for NVML samples, free."""
    block = torch.ones(size, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    time.sleep(seconds)
    del block


def test_planted_over_ceiling_allocation_fails(torch_cuda: Any) -> None:
    with GpuMeasure() as measure:
        _hold(torch_cuda, 768 * MiB)
    peak = measure.peak
    result = check_gpu_limit(peak, parse_size("512 MiB"))
    assert not result.passed
    assert result.message.startswith("Test was limited to 512.0MiB but its GPU peak was ")
    assert peak.torch_allocated >= 768 * MiB
    assert peak.torch_reserved >= peak.torch_allocated
    # the allocation was freed inside the block: only sampling can have seen it
    assert peak.nvml_used is not None, peak.nvml_note
    assert peak.nvml_used >= 768 * MiB
    assert "torch peak allocated" in result.detail
    assert "torch peak reserved" in result.detail
    assert "NVML" in result.detail
    print(result.message)
    print(result.detail)


def test_under_ceiling_allocation_passes(torch_cuda: Any) -> None:
    with GpuMeasure() as measure:
        _hold(torch_cuda, 64 * MiB)
    peak = measure.peak
    # the NVML process measure includes the CUDA context, so leave room for it
    result = check_gpu_limit(peak, parse_size("4 GiB"))
    assert result.passed, result.detail
    tight = check_gpu_limit(peak, parse_size("96 MiB"), measure="allocated")
    assert tight.passed, tight.detail
    assert 64 * MiB <= peak.torch_allocated < 96 * MiB
    print(result.message)
    print(result.detail)


def test_nvml_sees_memory_outside_torch(torch_cuda: Any) -> None:
    """Memory taken with the driver API directly is invisible to torch.cuda; NVML sees it."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        pytest.skip(f"libcuda.so.1 cannot be loaded: {exc}")
    torch_cuda.zeros(1, device="cuda")  # make torch's primary context current
    size = 512 * MiB
    pointer = ctypes.c_uint64()
    with GpuMeasure() as measure:
        code = libcuda.cuMemAlloc_v2(ctypes.byref(pointer), ctypes.c_size_t(size))
        assert code == 0, f"cuMemAlloc_v2 failed with CUresult {code}"
        time.sleep(0.05)
        libcuda.cuMemFree_v2(pointer)
    peak = measure.peak
    assert peak.torch_allocated < 64 * MiB
    assert peak.nvml_used is not None, peak.nvml_note
    assert peak.nvml_used >= size
    result = check_gpu_limit(peak, parse_size("256 MiB"), measure="nvml")
    assert not result.passed
    assert result.measure.startswith("NVML")


def test_nvml_missing_keeps_torch_measures(
    torch_cuda: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gpu, "nvml_module", lambda: (None, "NVML not measured: planted"))
    with GpuMeasure() as measure:
        _hold(torch_cuda, 64 * MiB, seconds=0)
    peak = measure.peak
    assert peak.nvml_used is None
    assert peak.nvml_note == "NVML not measured: planted"
    assert peak.torch_allocated >= 64 * MiB
    result = check_gpu_limit(peak, parse_size("32 MiB"))
    assert not result.passed
    assert result.measure == "torch reserved"
    assert "NVML not measured: planted" in result.detail


def test_out_of_memory_keeps_peak(torch_cuda: Any) -> None:
    """An OOM inside the block propagates and the peak up to it is still kept."""
    free, _total = torch_cuda.cuda.mem_get_info()
    measure = GpuMeasure()

    def planted() -> None:
        with measure:
            keep = torch_cuda.empty(256 * MiB, dtype=torch_cuda.uint8, device="cuda")
            torch_cuda.empty(free * 2, dtype=torch_cuda.uint8, device="cuda")
            del keep

    with pytest.raises(torch_cuda.OutOfMemoryError):
        planted()
    assert measure.peak.torch_allocated >= 256 * MiB
