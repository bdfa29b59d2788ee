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
    DevicePeak,
    DevicesPeak,
    GpuMeasure,
    GpuPeak,
    GpuUnavailable,
    MultiGpuMeasure,
    NvmlSampler,
    check_gpu_limit,
    check_gpu_limits,
    cuda_status,
    nvml_module,
    validate_devices,
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


# --- several devices through NVML: MultiGpuMeasure and check_gpu_limits ----------------


class FakeDevice:
    def __init__(self, name: str, uuid: str, used: int) -> None:
        self.name, self.uuid, self.used = name, uuid, used
        #: (pid, used bytes) of the compute processes the driver lists on this device
        self.processes: list[tuple[int, int]] = []
        self.list_fails = False


class FakeMultiNvml(types.ModuleType):
    """pynvml with several devices, their used memory and compute processes, driven by
    the test; it counts nvmlInit/nvmlShutdown so a test can check they pair up."""

    NVMLError = NVMLError

    def __init__(self, devices: list[FakeDevice]) -> None:
        super().__init__("pynvml")
        self.devices = devices
        self.inits = 0
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.159.04"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeDevice:
        if not 0 <= index < len(self.devices):
            raise NVMLError("Invalid Argument")
        return self.devices[index]

    def nvmlDeviceGetUUID(self, handle: FakeDevice) -> bytes:
        return handle.uuid.encode()

    def nvmlDeviceGetName(self, handle: FakeDevice) -> bytes:
        return handle.name.encode()

    def nvmlDeviceGetMemoryInfo(self, handle: FakeDevice) -> Any:
        return types.SimpleNamespace(used=handle.used, total=80 * GiB)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeDevice) -> list[Any]:
        if handle.list_fails:
            raise NVMLError("Not Supported")
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=used)
                for pid, used in handle.processes]


WORKER_0, WORKER_1, STRANGER = 900_001, 900_002, 900_003


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch) -> FakeMultiNvml:
    """Two fake H100s; two torchrun workers of this process, one process of someone else.

    The process tree is read from ``/proc``; the fake pids' parents are planted."""
    module = FakeMultiNvml([FakeDevice("NVIDIA H100 80GB HBM3", "GPU-aaaa-0", 2 * GiB),
                            FakeDevice("NVIDIA H100 80GB HBM3", "GPU-bbbb-1", 3 * GiB)])
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    torchrun = 900_000
    parents = {WORKER_0: torchrun, WORKER_1: torchrun, torchrun: os.getpid(), STRANGER: 1}
    monkeypatch.setattr(gpu, "_parent", lambda pid: parents.get(pid, 0))
    return module


def test_process_tree_mode_sums_this_tree_only_per_gpu(gpus: FakeMultiNvml) -> None:
    zero, one = gpus.devices
    zero.processes = [(STRANGER, 30 * GiB)]  # on the GPU before and during: not ours
    with MultiGpuMeasure(devices="all", interval=0.001) as measure:
        zero.processes += [(WORKER_0, 5 * GiB)]
        one.processes = [(WORKER_1, 6 * GiB), (os.getpid(), GiB)]
        zero.used, one.used = 37 * GiB, 10 * GiB
    peak = measure.peak
    assert [(d.index, d.mode, d.used) for d in peak.devices] == [
        (0, "process-tree", 5 * GiB), (1, "process-tree", 7 * GiB)]
    assert peak.worst.index == 1
    assert peak.per_gpu() == {0: 5 * GiB, 1: 7 * GiB}
    assert peak.driver_version == "580.159.04"
    assert [d.uuid for d in peak.devices] == ["GPU-aaaa-0", "GPU-bbbb-1"]
    assert all(d.samples >= 2 for d in peak.devices)
    assert gpus.inits == gpus.shutdowns == 1


def test_device_delta_mode_when_no_process_of_the_tree_is_listed(gpus: FakeMultiNvml) -> None:
    zero, one = gpus.devices
    one.list_fails = True  # inside some containers the driver lists nothing
    with MultiGpuMeasure(devices=[0, 1], interval=0.001) as measure:
        zero.processes = [(STRANGER, 4 * GiB)]
        zero.used += 4 * GiB  # someone else's process: device-delta cannot tell
        one.used += 512 * MiB
    peak = measure.peak
    assert [(d.mode, d.used, d.baseline) for d in peak.devices] == [
        ("device-delta", 4 * GiB, 2 * GiB), ("device-delta", 512 * MiB, 3 * GiB)]


def test_device_delta_never_goes_negative(gpus: FakeMultiNvml) -> None:
    with MultiGpuMeasure(devices=0, interval=0.001) as measure:
        gpus.devices[0].used -= GiB  # memory freed during the block
    assert measure.peak.devices[0].used == 0


@pytest.mark.parametrize(("visible", "names"), [
    ("1,0", ["GPU-bbbb-1", "GPU-aaaa-0"]),
    ("GPU-bbbb", ["GPU-bbbb-1"]),  # a UUID prefix, as CUDA accepts it
    ("1,7,0", ["GPU-bbbb-1"]),  # CUDA stops at the first invalid entry
    ("0,,1", ["GPU-aaaa-0"]),  # and at an empty one
])
def test_cuda_visible_devices_renumbers_as_torch_does(gpus: FakeMultiNvml,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      visible: str, names: list[str]) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    with MultiGpuMeasure(devices="all", interval=0.001) as measure:
        pass
    peak = measure.peak
    assert [d.uuid for d in peak.devices] == names
    assert [d.index for d in peak.devices] == list(range(len(names)))  # torch's numbering


def test_devices_list_picks_torch_indices_under_cuda_visible_devices(
        gpus: FakeMultiNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    with MultiGpuMeasure(devices=[1], interval=0.001) as measure:
        gpus.devices[0].used += GiB
    (device,) = measure.peak.devices
    assert (device.index, device.uuid, device.used) == (1, "GPU-aaaa-0", GiB)


def test_uuid_prefix_matching_several_gpus_is_refused(gpus: FakeMultiNvml,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-")
    with pytest.raises(GpuUnavailable, match="CUDA_VISIBLE_DEVICES entry 'GPU-' names no "
                                             "single GPU NVML knows"), MultiGpuMeasure():
        pytest.fail("the block must not run")
    assert gpus.inits == gpus.shutdowns == 1


def test_device_index_that_does_not_exist(gpus: FakeMultiNvml) -> None:
    with pytest.raises(GpuUnavailable, match=r"devices=\[0, 5\]: no visible GPU 5 "
                                             r"\(2 visible\)"), MultiGpuMeasure(devices=[0, 5]):
        pytest.fail("the block must not run")
    assert gpus.inits == gpus.shutdowns == 1


def test_no_gpu_visible(gpus: FakeMultiNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(GpuUnavailable, match="no GPU visible to NVML "
                                             "\\(CUDA_VISIBLE_DEVICES=''\\)"), MultiGpuMeasure():
        pytest.fail("the block must not run")


def test_nvml_missing_is_unavailable_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(GpuUnavailable) as excinfo, MultiGpuMeasure(devices="all"):
        pytest.fail("the block must not run")
    reason = str(excinfo.value)
    assert reason.startswith("NVML not measured: pynvml cannot be imported")
    assert "pip install nvidia-ml-py" in reason
    assert reason.endswith("; devices='all' measures through NVML only")
    assert "torch measures are still taken" not in reason  # there are none here


def test_nvml_failing_at_init_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(init_error=True))
    with pytest.raises(GpuUnavailable, match=r"nvmlInit failed \(Driver Not Loaded\)"), \
            MultiGpuMeasure():
        pytest.fail("the block must not run")


def test_multi_peak_read_before_the_end_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="after the with-block"):
        _ = MultiGpuMeasure().peak


@pytest.mark.parametrize("devices", ["al", "", [], [-1], [True], 1.5, "0,1", b"all", [0, "1"]])
def test_bad_devices_are_refused_before_measuring(devices: Any) -> None:
    with pytest.raises(ValueError, match=r"devices=.* is not accepted; give 'all'"):
        MultiGpuMeasure(devices=devices)


def test_devices_are_deduplicated_in_order() -> None:
    assert validate_devices([1, 0, 1]) == (1, 0)
    assert validate_devices(2) == (2,)
    assert validate_devices("all") == "all"
    assert validate_devices(None) is None


def make_devices_peak(*used: int) -> DevicesPeak:
    return DevicesPeak(tuple(
        DevicePeak(index=i, name="NVIDIA H100 80GB HBM3", uuid=f"GPU-{i}", total_memory=80 * GiB,
                   used=u, mode="process-tree", samples=40, baseline=0)
        for i, u in enumerate(used)), "580.159.04", 2.5)


def test_limits_fail_when_any_gpu_passes_naming_every_peak() -> None:
    result = check_gpu_limits(make_devices_peak(3 * GiB, 5 * GiB), 4 * GiB)
    assert not result.passed
    assert result.message == ("Test was limited to 4.0GiB per GPU but 1 of 2 GPUs passed it: "
                              "GPU 1 peaked at 5.0GiB (GPU 0 3.0GiB, GPU 1 5.0GiB)")
    assert (result.peak_bytes, result.limit_bytes) == (5 * GiB, 4 * GiB)
    assert result.measure == "NVML process-tree, GPU 1"
    lines = result.detail.splitlines()
    assert lines[0] == "GPU peaks per device (NVML, driver 580.159.04), 2.50s measured:"
    assert lines[1].split() == ["limit", "per", "GPU", "4.0GiB"]
    assert lines[2].endswith("3.0GiB (process-tree, 40 samples)")
    assert lines[3].endswith("5.0GiB (process-tree, 40 samples)  OVER")


def test_limits_pass_when_every_gpu_is_under() -> None:
    result = check_gpu_limits(make_devices_peak(3 * GiB, 2 * GiB), 4 * GiB)
    assert result.passed
    assert result.message == ("GPU peaks (GPU 0 3.0GiB, GPU 1 2.0GiB) are within the limit "
                              "of 4.0GiB per GPU")
    assert "OVER" not in result.detail


def test_limit_exactly_reached_passes() -> None:
    assert check_gpu_limits(make_devices_peak(4 * GiB), 4 * GiB).passed


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "4 GiB"])
def test_limits_bad_limit_rejected(limit: Any) -> None:
    with pytest.raises(ValueError, match="limit_bytes must be a positive int"):
        check_gpu_limits(make_devices_peak(GiB), limit)
