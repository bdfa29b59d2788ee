"""The GPU harness's shared measuring block (``benchmarks/gpu/loop_step.steady_peak``, used
by ``loop_step.py`` and ``qwen_step.py``), on the CPU with stand-ins for the device and
the CUDA counters: the result keys and their order are what the recorded results hold."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from benchmarks.gpu.loop_step import steady_peak  # noqa: E402

CUDA = SimpleNamespace(type="cuda")
STEPS = [{"before": 1, "peak": 10, "reserved": 12}, {"before": 2, "peak": 20, "reserved": 24}]


@pytest.fixture
def card(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: SimpleNamespace(total_memory=85_000_000_000))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 77_000_000_000)


def test_two_steps_on_a_gpu_give_the_second_as_the_steady_peak(card: None) -> None:
    result: dict[str, Any] = {"case": "c"}
    marks = SimpleNamespace(steps=STEPS)
    with steady_peak(result, marks, CUDA):  # type: ignore[arg-type]
        result["optimizer_class"] = "AdamW"
    assert json.dumps(result) == json.dumps({
        "case": "c", "optimizer_class": "AdamW", "oom": False, "steps": STEPS,
        "steady": {"torch_allocated": 20, "torch_reserved": 24,
                   "device_name": "NVIDIA H100 80GB HBM3", "total_memory": 85_000_000_000}})


def test_out_of_memory_is_recorded_not_raised(card: None) -> None:
    result: dict[str, Any] = {}
    marks = SimpleNamespace(steps=STEPS[:1])
    with steady_peak(result, marks, CUDA):  # type: ignore[arg-type]
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.\n"
                                     "Of the allocated memory ...")
    assert result == {"oom": True, "error": "CUDA out of memory. Tried to allocate 2.00 GiB.",
                      "partial_torch_allocated": 77_000_000_000, "steps": STEPS[:1]}


def test_a_cpu_smoke_run_records_steps_and_no_peak() -> None:
    result: dict[str, Any] = {}
    marks = SimpleNamespace(steps=STEPS)
    with steady_peak(result, marks, SimpleNamespace(type="cpu")):  # type: ignore[arg-type]
        pass
    assert result == {"oom": False, "steps": STEPS}


def test_other_errors_propagate() -> None:
    result: dict[str, Any] = {}
    with pytest.raises(ValueError, match="bad batch"), \
            steady_peak(result, SimpleNamespace(steps=[]),  # type: ignore[arg-type]
                        SimpleNamespace(type="cpu")):
        raise ValueError("bad batch")
    assert result == {}


def test_run_case_reads_the_last_json_line_or_names_the_failure() -> None:
    """The one case runner of loop_step.py and qwen_step.py: a fresh process's last JSON
    line, else its exit status and last lines (as many as asked), else the timeout."""
    import os

    from benchmarks.gpu.loop_step import run_case

    env = dict(os.environ)
    ok = run_case("c1", "import json, sys; print('noise'); print(json.dumps({'a': 1}));"
                  "print(json.dumps({'case': sys.argv[1]}))", ["c1"], 60, env)
    assert ok == {"case": "c1"}
    failed = run_case("c2", "import sys\nfor i in range(10): print('line', i, file=sys.stderr)\n"
                      "sys.exit(3)", [], 60, env, tail_lines=2)
    assert failed == {"case": "c2", "error": "exit 3: line 8 | line 9"}
    slow = run_case("c3", "import time; time.sleep(30)", [], 0.5, env)
    assert slow == {"case": "c3", "error": "timed out after 0s"}
