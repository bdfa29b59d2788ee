"""GPU measurement without a GPU: every failure path and the ceiling check, on CPU CI.

torch and pynvml are replaced by small fakes in ``sys.modules`` (the module imports
them lazily, so a fake is exactly what it sees), which lets these tests cover: no
torch, a CPU-only torch, no device, NVML missing, NVML failing at init or at a read,
the process and device-delta NVML modes, and the messages of ``check_gpu_limit``.
"""

from __future__ import annotations

import os
import sys
import types
from dataclasses import FrozenInstanceError, replace
from typing import Any

import pytest

from pytest_tokenguard.gpu import measure as gpu
from pytest_tokenguard.gpu.measure import (
    GpuMeasure,
    GpuPeak,
    GpuUnavailable,
    NvmlSampler,
    check_gpu_limit,
    cuda_status,
    nvml_module,
)

GiB = 1024**3
MiB = 1024**2


class FakeCuda:
    """The slice of ``torch.cuda`` that GpuMeasure uses, driven by the test."""

    def __init__(self, available: bool = True, count: int = 1) -> None:
        self.available = available
        self.count = count
        self.allocated = 100 * MiB
        self.reserved = 128 * MiB
        self.peak_allocated = self.allocated
        self.peak_reserved = self.reserved
        self.calls: list[str] = []

    def is_available(self) -> bool:
        return self.available

    def device_count(self) -> int:
        return self.count

    def current_device(self) -> int:
        return 0

    def synchronize(self, device: int | None = None) -> None:
        self.calls.append("synchronize")

    def empty_cache(self) -> None:
        self.calls.append("empty_cache")
        self.reserved = self.allocated

    def get_device_properties(self, index: int) -> Any:
        return types.SimpleNamespace(name="Fake H100", total_memory=80 * GiB, uuid="abc-123")

    def memory_allocated(self, device: int | None = None) -> int:
        return self.allocated

    def memory_reserved(self, device: int | None = None) -> int:
        return self.reserved

    def reset_peak_memory_stats(self, device: int | None = None) -> None:
        self.calls.append("reset")
        self.peak_allocated, self.peak_reserved = self.allocated, self.reserved

    def max_memory_allocated(self, device: int | None = None) -> int:
        return self.peak_allocated

    def max_memory_reserved(self, device: int | None = None) -> int:
        return self.peak_reserved

    def use(self, size: int) -> None:
        """Simulate an allocation of ``size`` bytes that is then freed."""
        self.peak_allocated = max(self.peak_allocated, self.allocated + size)
        self.peak_reserved = max(self.peak_reserved, self.reserved + size)


def fake_torch(cuda_version: str | None = "12.4", **cuda: Any) -> Any:
    module = types.ModuleType("torch")
    module.__version__ = "2.9.0"  # type: ignore[attr-defined]
    module.version = types.SimpleNamespace(cuda=cuda_version)  # type: ignore[attr-defined]
    module.cuda = FakeCuda(**cuda)  # type: ignore[attr-defined]
    return module


class NVMLError(Exception):
    pass


class FakeNvml(types.ModuleType):
    """pynvml with one device; ``used`` is the device's used memory, ``process`` this
    process's (None: the driver does not list the process, as inside some VMs)."""

    NVMLError = NVMLError

    def __init__(self, init_error: bool = False, process: int | None = 700 * MiB) -> None:
        super().__init__("pynvml")
        self.init_error = init_error
        self.used = 1 * GiB
        self.process = process
        self.fail_reads = False
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.init_error:
            raise NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"580.1"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        if uuid != "GPU-abc-123":
            raise NVMLError("Not Found")
        return "handle"

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return "handle"

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> Any:
        if self.fail_reads:
            raise NVMLError("GPU is lost")
        return types.SimpleNamespace(used=self.used, total=80 * GiB)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[Any]:
        if self.process is None:
            return [types.SimpleNamespace(pid=1, usedGpuMemory=5 * GiB)]
        return [types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=self.process)]


@pytest.fixture
def torch_cuda(monkeypatch: pytest.MonkeyPatch) -> Any:
    module = fake_torch()
    monkeypatch.setitem(sys.modules, "torch", module)
    return module.cuda


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    module = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return module


# --- why a measure is missing -------------------------------------------------------


def test_no_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    status = cuda_status()
    assert not status.available
    assert status.reason.startswith("torch is not installed")
    assert "pip install torch" in status.reason


def test_torch_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", fake_torch(cuda_version=None))
    status = cuda_status()
    assert not status.available
    assert "torch 2.9.0 was built without CUDA" in status.reason
    assert status.torch_version == "2.9.0"


def test_no_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", fake_torch(available=False, count=0))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    status = cuda_status()
    assert not status.available
    assert status.reason.startswith("no CUDA device: torch 2.9.0 (CUDA 12.4) sees none")
    assert "CUDA_VISIBLE_DEVICES=''" in status.reason


def test_cuda_available(torch_cuda: FakeCuda) -> None:
    status = cuda_status()
    assert status.available
    assert status.reason == ""
    assert status.device_count == 1


def test_measure_raises_skip_reason_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", fake_torch(cuda_version=None))
    with pytest.raises(GpuUnavailable, match="built without CUDA"), GpuMeasure():
        pytest.fail("the block must not run without CUDA")


def test_nvml_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    module, reason = nvml_module()
    assert module is None
    assert reason.startswith("NVML not measured: pynvml cannot be imported")
    assert "nvidia-ml-py" in reason
    assert "torch measures are still taken" in reason


def test_nvml_failing_at_init(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(init_error=True))
    module, reason = nvml_module()
    assert module is None
    assert "nvmlInit failed (Driver Not Loaded)" in reason


# --- measuring with fakes -------------------------------------------------------------


def test_measure_torch_and_nvml_process_mode(torch_cuda: FakeCuda, nvml: FakeNvml) -> None:
    with GpuMeasure(interval=0.001) as measure:
        torch_cuda.use(2 * GiB)
        nvml.process = 3 * GiB
    peak = measure.peak
    assert torch_cuda.calls[:3] == ["synchronize", "empty_cache", "reset"]
    assert peak.baseline_allocated == 100 * MiB
    assert peak.baseline_reserved == 100 * MiB  # the cache was emptied first
    assert peak.torch_allocated == 100 * MiB + 2 * GiB
    assert peak.nvml_mode == "process"
    assert peak.nvml_used == 3 * GiB  # the stop sample sees it even if the thread did not
    assert peak.nvml_samples >= 2
    assert peak.driver_version == "580.1"
    assert peak.device_name == "Fake H100"
    assert nvml.shutdowns == 1


def test_measure_nvml_device_delta_when_process_not_listed(
    torch_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = FakeNvml(process=None)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    with GpuMeasure(interval=0.001) as measure:
        module.used += 512 * MiB
    peak = measure.peak
    assert peak.nvml_mode == "device-delta"
    assert peak.nvml_used == 512 * MiB
    assert "NVML device used above start" in peak.measures()


def test_measure_without_nvml_keeps_torch(
    torch_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with GpuMeasure() as measure:
        torch_cuda.use(GiB)
    peak = measure.peak
    assert peak.nvml_used is None
    assert peak.nvml_note.startswith("NVML not measured: pynvml cannot be imported")
    assert peak.torch_allocated > GiB
    result = check_gpu_limit(peak, GiB)
    assert not result.passed
    assert result.measure == "torch reserved"
    assert "pynvml cannot be imported" in result.detail


def test_nvml_read_failures_are_reported_not_raised(
    torch_cuda: FakeCuda, nvml: FakeNvml
) -> None:
    nvml.process = None  # device-delta mode reads nvmlDeviceGetMemoryInfo
    measure = GpuMeasure(interval=0.001)
    with measure:
        nvml.fail_reads = True
    # the start sample succeeded, so a peak exists; a later failure is kept as text
    assert measure.peak.nvml_used == 0
    nvml.fail_reads = False
    sampler = NvmlSampler(nvml, "handle")
    nvml.fail_reads = True
    sampler.sample()
    assert sampler.error == "NVML read failed: GPU is lost"


def test_nvml_disabled_by_caller(torch_cuda: FakeCuda, nvml: FakeNvml) -> None:
    with GpuMeasure(nvml=False) as measure:
        pass
    assert measure.peak.nvml_used is None
    assert measure.peak.nvml_note == "NVML not measured: disabled by the caller"


def test_peak_read_before_the_end_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="after the with-block"):
        _ = GpuMeasure().peak


def test_exception_in_block_propagates_and_peak_is_kept(torch_cuda: FakeCuda) -> None:
    measure = GpuMeasure(nvml=False)

    def failing_step() -> None:
        with measure:
            torch_cuda.use(3 * GiB)
            raise MemoryError("planted")

    with pytest.raises(MemoryError, match="planted"):
        failing_step()
    assert measure.peak.torch_allocated >= 3 * GiB


def test_monkeypatched_nvml_module_is_used(
    torch_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gpu, "nvml_module", lambda: (None, "NVML not measured: planted"))
    with GpuMeasure() as measure:
        pass
    assert measure.peak.nvml_note == "NVML not measured: planted"


# --- the ceiling check --------------------------------------------------------------


def make_peak(**changes: Any) -> GpuPeak:
    base = GpuPeak(
        device_index=0,
        device_name="NVIDIA H100 80GB HBM3",
        total_memory=80 * GiB,
        torch_version="2.11.0",
        cuda_version="13.0",
        driver_version="580.159.04",
        baseline_allocated=GiB,
        baseline_reserved=GiB,
        torch_allocated=int(24.5 * GiB),
        torch_reserved=int(25.3 * GiB),
        nvml_used=None,
        nvml_note="NVML not measured: pynvml cannot be imported",
    )
    return replace(base, **changes)


def test_over_limit_message_names_limit_peak_and_measure() -> None:
    result = check_gpu_limit(make_peak(), 24 * GiB)
    assert not result.passed
    assert result.message == (
        "Test was limited to 24.0GiB but its GPU peak was 25.3GiB (torch reserved)"
    )
    assert result.limit_bytes == 24 * GiB
    assert result.headroom_bytes < 0


def test_detail_lists_both_measures_and_limit() -> None:
    peak = make_peak(nvml_used=26 * GiB, nvml_mode="process", nvml_samples=40)
    result = check_gpu_limit(peak, 24 * GiB)
    assert result.measure == "NVML process used"
    lines = result.detail.splitlines()
    assert lines[0].startswith("GPU peak on NVIDIA H100 80GB HBM3 (device 0, 80.0GiB")
    assert "driver 580.159.04" in lines[0]
    assert any(line.split()[:2] == ["limit", "24.0GiB"] for line in lines)
    assert any("torch peak allocated" in line and "24.5GiB" in line for line in lines)
    assert any("torch peak reserved" in line and "25.3GiB" in line for line in lines)
    assert any("NVML process used (sampled)" in line and "26.0GiB" in line for line in lines)


def test_under_limit_passes() -> None:
    result = check_gpu_limit(make_peak(), 26 * GiB)
    assert result.passed
    assert result.message == "GPU peak 25.3GiB (torch reserved) is within the limit of 26.0GiB"


@pytest.mark.parametrize(
    ("measure", "name", "passed"),
    [("allocated", "torch allocated", True), ("reserved", "torch reserved", False)],
)
def test_one_measure_can_be_chosen(measure: Any, name: str, passed: bool) -> None:
    result = check_gpu_limit(make_peak(), 25 * GiB, measure=measure)
    assert (result.measure, result.passed) == (name, passed)


def test_nvml_measure_asked_but_missing_falls_back_and_says_so() -> None:
    result = check_gpu_limit(make_peak(), 30 * GiB, measure="nvml")
    assert result.measure == "torch reserved"
    assert "NVML was asked for but is missing" in result.detail


def test_tie_names_the_more_inclusive_measure() -> None:
    peak = make_peak(torch_allocated=GiB, torch_reserved=GiB)
    assert check_gpu_limit(peak, 1).measure == "torch reserved"


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "24 GiB"])
def test_bad_limit_rejected(limit: Any) -> None:
    with pytest.raises(ValueError, match="limit_bytes"):
        check_gpu_limit(make_peak(), limit)


def test_bad_measure_rejected() -> None:
    with pytest.raises(ValueError, match="measure must be one of max, allocated"):
        check_gpu_limit(make_peak(), GiB, measure="peak")  # type: ignore[arg-type]


def test_results_are_frozen() -> None:
    result = check_gpu_limit(make_peak(), GiB)
    with pytest.raises(FrozenInstanceError):
        result.passed = True  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        make_peak().torch_allocated = 0  # type: ignore[misc]


def test_peak_to_dict_is_json_ready() -> None:
    import json

    data = make_peak().to_dict()
    assert json.loads(json.dumps(data)) == data
    assert GpuPeak(**data) == make_peak()
