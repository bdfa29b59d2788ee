"""On a real GPU, through pytest: the ``limit_gpu_memory`` marker fails a planted
over-ceiling test, passes an under-ceiling one, and reports both measures.

Skipped, with the reason, where no CUDA device is visible.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from pytest_tokenguard.gpu.measure import cuda_status

_STATUS = cuda_status()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _STATUS.available, reason=_STATUS.reason or "no CUDA"),
]

PLANTED = """
import time

import pytest
import torch

MiB = 1024**2


def hold(size):
    block = torch.ones(size, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    time.sleep(0.05)  # long enough for NVML's 5 ms samples
    del block


# the default measure is the largest of torch allocated, torch reserved and NVML's
# process memory, which includes the CUDA context (about 0.7 GiB): ceilings leave room


@pytest.mark.limit_gpu_memory("2 GiB")
def test_over_ceiling():
    hold(3072 * MiB)


@pytest.mark.limit_gpu_memory("2 GiB")
def test_under_ceiling():
    hold(64 * MiB)


@pytest.mark.limit_gpu_memory("512 MiB", measure="allocated")
def test_over_allocated():
    hold(768 * MiB)


@pytest.mark.limit_gpu_memory("512 MiB", measure="allocated")
def test_under_allocated():
    hold(64 * MiB)
"""


def _plugin_args() -> list[str]:
    """``-p`` for the plugin where it is not installed (the GPU machine runs from a copy)."""
    installed = any("tokenguard" in ep.name for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "pytest_tokenguard.plugin"]


def test_marker_fails_over_and_passes_under_the_ceiling(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLANTED)
    result = pytester.runpytest_subprocess(*_plugin_args(), "--tokenguard",
                                           "--tokenguard-require-gpu", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*Test was limited to 2.0GiB but its GPU peak was *",
        "*Test was limited to 512.0MiB but its GPU peak was 768.0MiB (torch allocated)",
        "*GPU peaks*",
        "*OVER *test_over_allocated: 768.0MiB (torch allocated) of 512.0MiB",
        "*OVER *test_over_ceiling: * of 2.0GiB",
        "*test_under_allocated: 64.0MiB (torch allocated) of 512.0MiB",
        "*test_under_ceiling: * of 2.0GiB",
    ])
    assert "OVER test_marker_fails_over_and_passes_under_the_ceiling.py::test_under" not in out
    # the detail section lists every measure
    assert "torch peak allocated" in out
    assert "torch peak reserved" in out
    assert "NVML process used (sampled)" in out
