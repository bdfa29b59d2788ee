"""Measure the GPU memory peak of a block of code, with no pytest involved.

Two views of the same peak are taken, because each misses something the other sees:

* **torch**: ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` after a
  ``reset_peak_memory_stats`` at the start. Exact (the allocator counts every block)
  but blind to memory outside PyTorch's caching allocator: the CUDA context, cuBLAS
  workspaces allocated by libraries, NCCL buffers, other frameworks.
* **NVML**: the driver's view, sampled in a background thread. The process's own
  used memory when the driver reports it (it does not inside some containers and
  VMs, where PIDs are namespaced), else the device's used memory above its level at
  the start. Sees everything, but only at sampling instants.

:class:`GpuMeasure` is a context manager that returns a frozen :class:`GpuPeak`;
:func:`check_gpu_limit` is a pure function that turns a peak and a ceiling into a
:class:`~pytest_tokenguard.limits.LimitResult`. The pytest marker is a thin layer
over these two.

Every reason a measure cannot be taken (no torch, a CPU-only torch, no device, no
NVML, NVML failing) has its own function that returns a clear sentence: a missing
CUDA device raises :class:`GpuUnavailable` (the plugin turns it into a skip, or a
failure under ``--tokenguard-require-gpu``); a missing NVML only drops the NVML
measure and says why, since the torch measures still hold.

torch and pynvml are imported inside functions only, so importing this module is free.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

from ..errors import GpuUnavailable as GpuUnavailable
from ..units import format_bytes
from ..verdict import LimitResult

__all__ = [
    "MEASURES",
    "CudaStatus",
    "DevicePeak",
    "Devices",
    "DevicesPeak",
    "GpuMeasure",
    "GpuPeak",
    "GpuUnavailable",
    "Measure",
    "MultiGpuMeasure",
    "NvmlSampler",
    "check_gpu_limit",
    "check_gpu_limits",
    "cuda_status",
    "gpu_detail",
    "gpus_detail",
    "nvml_module",
    "validate_devices",
]

Measure = Literal["max", "allocated", "reserved", "nvml"]
MEASURES: tuple[Measure, ...] = ("max", "allocated", "reserved", "nvml")

#: Seconds between NVML samples. NVML's own counters refresh about this often; a
#: shorter interval only burns CPU in the sampling thread.
DEFAULT_INTERVAL = 0.005


@dataclass(frozen=True)
class CudaStatus:
    """Whether torch can measure a CUDA device here, and if not, why not."""

    available: bool
    reason: str
    torch_version: str | None = None
    cuda_version: str | None = None
    device_count: int = 0


def cuda_status() -> CudaStatus:
    """Check torch and CUDA without creating a CUDA context.

    The three failures read differently because their fixes differ: install torch;
    install a CUDA build of torch; run where a GPU and its driver are visible.
    """
    try:
        import torch
    except ImportError as exc:
        return CudaStatus(
            False,
            f"torch is not installed ({exc}); GPU memory is measured through torch.cuda: "
            "pip install torch (a CUDA build)",
        )
    version = str(torch.__version__)
    cuda = torch.version.cuda
    if cuda is None:
        return CudaStatus(
            False,
            f"torch {version} was built without CUDA (torch.version.cuda is None); install a "
            "CUDA build of torch to measure GPU memory",
            version,
        )
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f", CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
        return CudaStatus(
            False,
            f"no CUDA device: torch {version} (CUDA {cuda}) sees none "
            f"(torch.cuda.is_available() is False{hint}); run on a machine with an NVIDIA "
            "GPU and its driver",
            version,
            cuda,
        )
    return CudaStatus(True, "", version, cuda, count)


def nvml_module() -> tuple[Any | None, str]:
    """``(pynvml, "")`` with NVML initialised, or ``(None, reason)``.

    Each call initialises NVML once more; NVML counts initialisations, so every
    successful call must be paired with ``pynvml.nvmlShutdown()``.
    """
    try:
        import pynvml
    except ImportError as exc:
        return None, (
            f"NVML not measured: pynvml cannot be imported ({exc}); pip install nvidia-ml-py "
            "(the torch measures are still taken)"
        )
    try:
        pynvml.nvmlInit()
    except (pynvml.NVMLError, OSError) as exc:
        return None, (
            f"NVML not measured: nvmlInit failed ({exc or type(exc).__name__}); is the NVIDIA "
            "driver loaded and libnvidia-ml.so on the library path? (the torch measures are "
            "still taken)"
        )
    return pynvml, ""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Background:
    """Calls ``sample()`` every ``interval`` seconds on a daemon thread between
    :meth:`start` and :meth:`stop`, and once at each (so a block shorter than the interval
    still has readings)."""

    _thread_name = "tokenguard-nvml"

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def start(self) -> None:
        self.sample()
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()


class NvmlSampler(_Background):
    """Background sampler of the driver's used memory for one device.

    ``mode`` is ``"process"`` when the driver lists this process with its used
    memory (the value is absolute: the context, the allocator's cache, everything),
    else ``"device-delta"``: the device's used memory minus its level at the start
    (what the measured block added, other processes' changes included).
    """

    def __init__(self, pynvml: Any, handle: Any, interval: float = DEFAULT_INTERVAL) -> None:
        super().__init__(interval)
        self._nvml = pynvml
        self._handle = handle
        self._pid = os.getpid()
        self.baseline = int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
        self.mode: Literal["process", "device-delta"] = (
            "process" if self._process_used() is not None else "device-delta"
        )
        self.peak = 0
        self.samples = 0
        self.error = ""

    def _process_used(self) -> int | None:
        try:
            processes = self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle)
        except self._nvml.NVMLError:
            return None
        for process in processes:
            used = getattr(process, "usedGpuMemory", None)
            if process.pid == self._pid and isinstance(used, int):
                return used
        return None

    def sample(self) -> None:
        """Take one reading now (also called at start and stop, so a block shorter than
        the interval still has readings)."""
        try:
            if self.mode == "process":
                value = self._process_used()
                if value is None:
                    return
            else:
                used = int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)
                value = max(used - self.baseline, 0)
        except self._nvml.NVMLError as exc:  # a failing read must not kill the test
            self.error = f"NVML read failed: {exc}"
            return
        self.samples += 1
        self.peak = max(self.peak, value)


@dataclass(frozen=True)
class GpuPeak:
    """The GPU memory peak of one measured block, with the facts needed to read it.

    ``torch_*`` are absolute peaks of this process's caching allocator (what was live
    and what was held); ``baseline_*`` are their levels at the start, so a caller can
    tell what the block itself added. ``nvml_used`` is ``None`` when NVML could not be
    read, and ``nvml_note`` then says why.
    """

    device_index: int
    device_name: str
    total_memory: int
    torch_version: str
    cuda_version: str | None
    driver_version: str | None
    baseline_allocated: int
    baseline_reserved: int
    torch_allocated: int
    torch_reserved: int
    nvml_used: int | None = None
    nvml_mode: str | None = None
    nvml_note: str = ""
    nvml_samples: int = 0
    duration_s: float = 0.0

    @property
    def nvml_label(self) -> str:
        if self.nvml_mode == "process":
            return "NVML process used"
        return "NVML device used above start"

    def measures(self) -> dict[str, int]:
        """Every available measure by its printed name, torch first."""
        found = {"torch allocated": self.torch_allocated, "torch reserved": self.torch_reserved}
        if self.nvml_used is not None:
            found[self.nvml_label] = self.nvml_used
        return found

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (bytes as ints)."""
        return asdict(self)


def _device_facts(torch: Any, index: int) -> tuple[str, int, str]:
    props = torch.cuda.get_device_properties(index)
    return str(props.name), int(props.total_memory), str(getattr(props, "uuid", ""))


def _nvml_handle(pynvml: Any, index: int, uuid: str) -> Any:
    """The NVML handle of torch's device ``index``: by UUID, since CUDA_VISIBLE_DEVICES
    renumbers devices for torch but not for NVML."""
    if uuid:
        for candidate in (f"GPU-{uuid}", uuid):
            try:
                return pynvml.nvmlDeviceGetHandleByUUID(candidate)
            except pynvml.NVMLError:
                continue
    return pynvml.nvmlDeviceGetHandleByIndex(index)


P = TypeVar("P")


class _Measured(Generic[P]):
    """What both measuring contexts share: the peak, readable once the block has ended."""

    _peak: P | None = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finish()  # exceptions from the block propagate; the peak is kept

    def _finish(self) -> None:
        """Stop measuring and set ``_peak``."""
        raise NotImplementedError

    @property
    def peak(self) -> P:
        if self._peak is None:
            raise RuntimeError(f"{type(self).__name__}.peak is read after the with-block has "
                               "ended")
        return self._peak


class GpuMeasure(_Measured["GpuPeak"]):
    """Context manager: the GPU memory peak of the ``with`` block on one device.

    On entry it synchronises, optionally empties the allocator's cache (so memory
    cached by earlier code is not counted as this block's reserved peak), records the
    baselines and resets torch's peak counters, then starts the NVML sampler. On exit
    it synchronises and reads the peaks into :attr:`peak`. Exceptions from the block
    (an out-of-memory error, say) propagate; the peak up to the failure is still kept.

    Raises :class:`GpuUnavailable` on entry when no CUDA device can be measured.
    """

    def __init__(
        self,
        device: int | None = None,
        *,
        nvml: bool = True,
        interval: float = DEFAULT_INTERVAL,
        empty_cache: bool = True,
    ) -> None:
        self._device = device
        self._use_nvml = nvml
        self._interval = interval
        self._empty_cache = empty_cache
        self._sampler: NvmlSampler | None = None
        self._pynvml: Any = None
        self._nvml_note = "" if nvml else "NVML not measured: disabled by the caller"
        self._driver: str | None = None

    def __enter__(self) -> GpuMeasure:
        status = cuda_status()
        if not status.available:
            raise GpuUnavailable(status.reason)
        import torch

        self._index = torch.cuda.current_device() if self._device is None else self._device
        self._torch = torch
        torch.cuda.synchronize(self._index)
        if self._empty_cache:
            torch.cuda.empty_cache()
        self._name, self._total, uuid = _device_facts(torch, self._index)
        self._baseline_allocated = int(torch.cuda.memory_allocated(self._index))
        self._baseline_reserved = int(torch.cuda.memory_reserved(self._index))
        torch.cuda.reset_peak_memory_stats(self._index)
        if self._use_nvml:
            self._start_nvml(uuid)
        self._t0 = time.perf_counter()
        return self

    def _start_nvml(self, uuid: str) -> None:
        pynvml, reason = nvml_module()
        if pynvml is None:
            self._nvml_note = reason
            return
        self._pynvml = pynvml
        try:
            self._driver = _text(pynvml.nvmlSystemGetDriverVersion())
            handle = _nvml_handle(pynvml, self._index, uuid)
            self._sampler = NvmlSampler(pynvml, handle, self._interval)
            self._sampler.start()
        except pynvml.NVMLError as exc:
            self._nvml_note = f"NVML not measured: {exc} (the torch measures are still taken)"
            self._sampler = None

    def _finish(self) -> None:
        torch = self._torch
        # a failed kernel can poison the context; keep what we have
        with contextlib.suppress(RuntimeError):
            torch.cuda.synchronize(self._index)
        duration = time.perf_counter() - self._t0
        allocated = int(torch.cuda.max_memory_allocated(self._index))
        reserved = int(torch.cuda.max_memory_reserved(self._index))
        nvml_used: int | None = None
        mode: str | None = None
        samples = 0
        note = self._nvml_note
        if self._sampler is not None:
            self._sampler.stop()
            samples = self._sampler.samples
            if samples:
                nvml_used, mode = self._sampler.peak, self._sampler.mode
            else:
                note = f"NVML not measured: no reading succeeded ({self._sampler.error})"
        if self._pynvml is not None:
            with contextlib.suppress(self._pynvml.NVMLError):
                self._pynvml.nvmlShutdown()
        self._peak = GpuPeak(
            device_index=self._index, device_name=self._name, total_memory=self._total,
            torch_version=str(torch.__version__), cuda_version=torch.version.cuda,
            driver_version=self._driver,
            baseline_allocated=self._baseline_allocated,
            baseline_reserved=self._baseline_reserved,
            torch_allocated=allocated, torch_reserved=reserved,
            nvml_used=nvml_used, nvml_mode=mode, nvml_note=note, nvml_samples=samples,
            duration_s=duration,
        )


def _pick(peak: GpuPeak, measure: Measure) -> tuple[str, int, str]:
    """(name, bytes, note) of the measure to compare."""
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    if measure == "allocated":
        return "torch allocated", peak.torch_allocated, ""
    if measure == "reserved":
        return "torch reserved", peak.torch_reserved, ""
    if measure == "nvml":
        if peak.nvml_used is None:
            return "torch reserved", peak.torch_reserved, "NVML was asked for but is missing; "
        return peak.nvml_label, peak.nvml_used, ""
    # reversed: on a tie the more inclusive measure (NVML, then reserved) is named
    name, value = max(reversed(peak.measures().items()), key=lambda item: item[1])
    return name, value, ""


def gpu_detail(peak: GpuPeak, limit_bytes: int | None = None) -> str:
    """The multi-line section listing both measures (and the limit), for reports."""
    driver = f"driver {peak.driver_version}, " if peak.driver_version else ""
    lines = [
        f"GPU peak on {peak.device_name} (device {peak.device_index}, "
        f"{format_bytes(peak.total_memory)}, {driver}torch {peak.torch_version}, "
        f"CUDA {peak.cuda_version}), {peak.duration_s:.2f}s measured:"
    ]
    if limit_bytes is not None:
        lines.append(f"  limit                          {format_bytes(limit_bytes):>10}")
    lines.append(
        f"  torch peak allocated           {format_bytes(peak.torch_allocated):>10}"
        f"  (at start {format_bytes(peak.baseline_allocated)})"
    )
    lines.append(
        f"  torch peak reserved            {format_bytes(peak.torch_reserved):>10}"
        f"  (at start {format_bytes(peak.baseline_reserved)})"
    )
    if peak.nvml_used is not None:
        label = f"{peak.nvml_label} (sampled)"
        lines.append(
            f"  {label:<30} {format_bytes(peak.nvml_used):>10}  ({peak.nvml_samples} samples)"
        )
    else:
        lines.append(f"  {peak.nvml_note or 'NVML not measured'}")
    return "\n".join(lines)


def check_gpu_limit(peak: GpuPeak, limit_bytes: int, measure: Measure = "max") -> LimitResult:
    """Compare ``peak`` with a ceiling of ``limit_bytes``.

    ``measure="max"`` (the default) compares the largest available measure, because
    the device runs out when any of them passes its capacity; ``"allocated"``,
    ``"reserved"`` or ``"nvml"`` pick one. The message names the measure compared.
    """
    if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int) or limit_bytes < 1:
        raise ValueError(f"limit_bytes must be a positive int, got {limit_bytes!r}")
    name, value, note = _pick(peak, measure)
    passed = value <= limit_bytes
    if passed:
        message = (
            f"GPU peak {format_bytes(value)} ({name}) is within the limit of "
            f"{format_bytes(limit_bytes)}"
        )
    else:
        message = (
            f"Test was limited to {format_bytes(limit_bytes)} but its GPU peak was "
            f"{format_bytes(value)} ({name})"
        )
    detail = gpu_detail(peak, limit_bytes)
    if note:
        detail += f"\n  {note}compared torch reserved instead"
    return LimitResult(passed, limit_bytes, value, name, message, detail)


# --- several devices, several processes: the driver's view --------------------------

#: ``devices=`` values: ``None`` (the current device, measured through torch and NVML
#: as :class:`GpuMeasure` does), ``"all"`` (every visible GPU) or a list of indices in
#: torch's numbering (``CUDA_VISIBLE_DEVICES`` order).
Devices = int | Sequence[int] | str | None


def validate_devices(devices: object) -> tuple[int, ...] | Literal["all"] | None:
    """``devices=`` checked at collection: ``None``, ``"all"``, an index or a list of them."""
    if devices is None:
        return None
    if devices == "all":
        return "all"
    items = [devices] if isinstance(devices, int) else devices
    if (isinstance(devices, (str, bytes)) or not isinstance(items, (list, tuple))
            or not items or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                    for i in items)):
        raise ValueError(
            f"devices={devices!r} is not accepted; give 'all' (every visible GPU), a GPU "
            "index or a list of indices (torch's numbering), or leave it out for the "
            "current device")
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class DevicePeak:
    """The driver's peak for one GPU over the measured block.

    ``mode`` is ``"process-tree"`` when the driver listed processes of this process's
    tree (the test and what it started, e.g. ``torchrun`` workers): ``used`` is then
    their summed memory; else ``"device-delta"``: the GPU's used memory above its level
    at the start (other processes' changes included).
    """

    index: int
    name: str
    uuid: str
    total_memory: int
    used: int
    mode: str
    samples: int
    baseline: int


@dataclass(frozen=True)
class DevicesPeak:
    """Per-GPU peaks of one block, measured through NVML on several devices."""

    devices: tuple[DevicePeak, ...]
    driver_version: str | None
    duration_s: float

    @property
    def worst(self) -> DevicePeak:
        """The GPU that came closest to running out (the largest peak)."""
        return max(self.devices, key=lambda device: device.used)

    def per_gpu(self) -> dict[int, int]:
        """``{index: peak bytes}``: what a report's summary lists."""
        return {device.index: device.used for device in self.devices}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _visible_indices(pynvml: Any) -> list[tuple[int, Any]]:
    """``(torch index, NVML handle)`` of every GPU this process may use, honouring
    ``CUDA_VISIBLE_DEVICES`` (indices or ``GPU-`` UUID prefixes), without touching CUDA."""
    count = int(pynvml.nvmlDeviceGetCount())
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [(i, pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
    found = []
    for position, item in enumerate(part.strip() for part in visible.split(",")):
        if not item:
            break
        if item.isdigit():
            if int(item) >= count:
                break  # CUDA stops at the first invalid entry
            found.append((position, pynvml.nvmlDeviceGetHandleByIndex(int(item))))
            continue
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        matches = [h for h in handles
                   if _text(pynvml.nvmlDeviceGetUUID(h)).startswith(item)]
        if len(matches) != 1:
            raise GpuUnavailable(
                f"CUDA_VISIBLE_DEVICES entry {item!r} names no single GPU NVML knows; use "
                "indices or GPU- UUIDs")
        found.append((position, matches[0]))
    return found


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


class _TreeSampler(_Background):
    """Samples several GPUs: this process tree's memory and each device's used memory."""

    _thread_name = "tokenguard-nvml-all"

    def __init__(self, pynvml: Any, handles: list[tuple[int, Any]], interval: float) -> None:
        super().__init__(interval)
        self._nvml, self._handles = pynvml, handles
        self._root = os.getpid()
        self._ours: dict[int, bool] = {self._root: True}
        self.baseline = [int(pynvml.nvmlDeviceGetMemoryInfo(h).used) for _, h in handles]
        self.tree_peak = [0] * len(handles)
        self.delta_peak = [0] * len(handles)
        self.seen_tree = [False] * len(handles)
        self.samples = [0] * len(handles)

    def _in_tree(self, pid: int) -> bool:
        chain: list[int] = []
        while pid > 1 and pid not in self._ours and len(chain) < 64:
            chain.append(pid)
            pid = _parent(pid)
        ours = self._ours.get(pid, False)
        self._ours.update(dict.fromkeys(chain, ours))
        return ours

    def sample(self) -> None:
        for slot, (_, handle) in enumerate(self._handles):
            try:
                used = int(self._nvml.nvmlDeviceGetMemoryInfo(handle).used)
                try:
                    processes = self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
                except self._nvml.NVMLError:
                    processes = []
            except self._nvml.NVMLError:
                continue
            tree = [int(getattr(p, "usedGpuMemory", 0) or 0)
                    for p in processes if self._in_tree(int(p.pid))]
            if tree:
                self.seen_tree[slot] = True
                self.tree_peak[slot] = max(self.tree_peak[slot], sum(tree))
            self.delta_peak[slot] = max(self.delta_peak[slot], used - self.baseline[slot])
            self.samples[slot] += 1


class MultiGpuMeasure(_Measured["DevicesPeak"]):
    """Context manager: the per-GPU peaks of the ``with`` block on several devices.

    Everything is read through NVML, so memory of processes the block starts (a
    ``torchrun`` job, one worker per GPU) is seen; no CUDA context is created here, so
    none is counted. ``devices="all"`` takes every GPU visible to this process; a list
    takes those indices (torch's numbering). Raises :class:`GpuUnavailable` on entry
    when NVML cannot be read (the reason says why) or a device does not exist.
    """

    def __init__(self, devices: Devices = "all", *, interval: float = DEFAULT_INTERVAL
                 ) -> None:
        chosen = validate_devices(devices)
        self._wanted: tuple[int, ...] | None = chosen if isinstance(chosen, tuple) else None
        self._interval = interval

    def __enter__(self) -> MultiGpuMeasure:
        pynvml, reason = nvml_module()
        if pynvml is None:
            raise GpuUnavailable(reason.replace(" (the torch measures are still taken)", "")
                                 + "; devices='all' measures through NVML only")
        self._pynvml = pynvml
        try:
            handles = _visible_indices(pynvml)
            if self._wanted is not None:
                by_index = dict(handles)
                missing = [i for i in self._wanted if i not in by_index]
                if missing:
                    raise GpuUnavailable(
                        f"devices={list(self._wanted)}: no visible GPU {missing[0]} "
                        f"({len(handles)} visible)")
                handles = [(i, by_index[i]) for i in self._wanted]
            if not handles:
                raise GpuUnavailable("no GPU visible to NVML (CUDA_VISIBLE_DEVICES="
                                     f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
            self._handles = handles
            self._driver = _text(pynvml.nvmlSystemGetDriverVersion())
            self._facts = [
                (_text(pynvml.nvmlDeviceGetName(h)), _text(pynvml.nvmlDeviceGetUUID(h)),
                 int(pynvml.nvmlDeviceGetMemoryInfo(h).total)) for _, h in handles
            ]
            self._sampler = _TreeSampler(pynvml, handles, self._interval)
        except BaseException:
            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlShutdown()
            raise
        self._t0 = time.perf_counter()
        self._sampler.start()
        return self

    def _finish(self) -> None:
        sampler = self._sampler
        sampler.stop()
        duration = time.perf_counter() - self._t0
        with contextlib.suppress(self._pynvml.NVMLError):
            self._pynvml.nvmlShutdown()
        peaks = []
        for slot, ((index, _), (name, uuid, total)) in enumerate(
                zip(self._handles, self._facts, strict=True)):
            tree = sampler.seen_tree[slot]
            peaks.append(DevicePeak(
                index=index, name=name, uuid=uuid, total_memory=total,
                used=sampler.tree_peak[slot] if tree else sampler.delta_peak[slot],
                mode="process-tree" if tree else "device-delta",
                samples=sampler.samples[slot], baseline=sampler.baseline[slot],
            ))
        self._peak = DevicesPeak(tuple(peaks), self._driver, duration)


def gpus_detail(peak: DevicesPeak, limit_bytes: int | None = None) -> str:
    """The multi-line section listing every GPU's peak (and the limit), for reports."""
    lines = [f"GPU peaks per device (NVML, driver {peak.driver_version}), "
             f"{peak.duration_s:.2f}s measured:"]
    if limit_bytes is not None:
        lines.append(f"  limit per GPU  {format_bytes(limit_bytes):>10}")
    for device in peak.devices:
        flag = "  OVER" if limit_bytes is not None and device.used > limit_bytes else ""
        lines.append(
            f"  GPU {device.index} {device.name} ({format_bytes(device.total_memory)}): "
            f"{format_bytes(device.used):>10} ({device.mode}, {device.samples} samples){flag}")
    return "\n".join(lines)


def check_gpu_limits(peak: DevicesPeak, limit_bytes: int) -> LimitResult:
    """Compare every GPU's peak with one per-GPU ceiling; fails when any GPU passes it.

    The message names the GPU that peaked highest and lists the others; ``detail``
    lists every GPU with its measure (``process-tree`` or ``device-delta``).
    """
    if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int) or limit_bytes < 1:
        raise ValueError(f"limit_bytes must be a positive int, got {limit_bytes!r}")
    worst = peak.worst
    over = [d for d in peak.devices if d.used > limit_bytes]
    each = ", ".join(f"GPU {d.index} {format_bytes(d.used)}" for d in peak.devices)
    measure = f"NVML {worst.mode}, GPU {worst.index}"
    if not over:
        message = (f"GPU peaks ({each}) are within the limit of {format_bytes(limit_bytes)} "
                   "per GPU")
    else:
        message = (f"Test was limited to {format_bytes(limit_bytes)} per GPU but "
                   f"{len(over)} of {len(peak.devices)} GPUs passed it: GPU {worst.index} "
                   f"peaked at {format_bytes(worst.used)} ({each})")
    return LimitResult(not over, limit_bytes, worst.used, measure, message,
                       gpus_detail(peak, limit_bytes))
