"""Benchmark: what the recorder adds to a processor call, both sides in one run.

The same 100 processor calls (four 384×384 frames at longest_edge 384, the shape of a
video sample) run without a recorder and inside an open recording; the issue's budget
is 5% of a call. Run them (they run once, untimed, in the normal suite):

    pytest tests/benchmarks/test_bench_recording.py --benchmark-enable \\
        --benchmark-group-by=group --benchmark-columns=min,median,mean,stddev,rounds

Both benchmarks also check what they ran: the recorded side must have recorded every
call exactly (lengths equal to the plain side's attention masks).
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_tokenguard.processor.recording import Recorder
from tests.helpers import real_processor

MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"
CALLS = 100
GROUP = f"{CALLS} processor calls, 4 frames of 384x384 at longest_edge 384"


@pytest.fixture(scope="module")
def call() -> Any:
    import torch
    from PIL import Image

    torch.set_num_threads(1)  # the machine's other cores stay out of the comparison
    processor = real_processor(MODEL, 384)
    frames = [Image.new("RGB", (384, 384), (i * 40, 90, 200 - i * 40)) for i in range(4)]
    text = ["<image>" * 4 + " What happens in these frames?"]

    def run() -> Any:
        out = None
        for _ in range(CALLS):
            out = processor(text=text, images=[frames])
        return out

    return run


def test_calls_without_recorder(benchmark: Any, call: Any) -> None:
    benchmark.group = GROUP
    out = benchmark.pedantic(call, rounds=10, warmup_rounds=1)
    assert len(out["input_ids"][0]) == sum(out["attention_mask"][0])


def test_calls_recorded(benchmark: Any, call: Any, recorder: Recorder) -> None:
    benchmark.group = GROUP
    with recorder.record("bench") as recording:
        out = benchmark.pedantic(call, rounds=10, warmup_rounds=1)
    assert recording.calls >= CALLS
    assert recording.calls % CALLS == 0
    assert {s.length for s in recording.sequences} == {sum(out["attention_mask"][0])}
    assert len(recording.images) == 4 * recording.calls
    assert {r.image_tokens for r in recording.images} == {81}
