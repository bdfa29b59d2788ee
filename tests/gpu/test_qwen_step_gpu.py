"""GPU tests of issues 18 and 20: a real ``Trainer`` step of Qwen2.5-VL (bf16) and of a
SmolVLM2 model loaded in fp32 under ``bf16=True`` (mixed precision), against what
``tokenguard memory`` predicts for it.

Each case runs in a fresh process (``benchmarks/gpu/qwen_step.py``'s driver): the
published architecture with random weights, the real image processor, the Trainer's
defaults. The prediction comes through the CLI's path (``estimate_for_model``) and must be
within 5% of the measured allocated peak of step 2, and never 2% below it. Needs
transformers 5.25 or later (SmolVLM2's fp32 merge, the Qwen processors) and peft for LoRA.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import pytest

from pytest_tokenguard.gpu.measure import cuda_status

_STATUS = cuda_status()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _STATUS.available, reason=_STATUS.reason or "no CUDA"),
]

#: Small cases that are not in the recorded file.
QWEN_CASES = {
    "qwen-3B-lora-gc-b1-1x1280x960": dict(size="3B", recipe="lora",
                                          gradient_checkpointing=True,
                                          images=((1280, 960),)),
    "qwen-3B-full-nogc-b1-1x640x480": dict(size="3B", recipe="full",
                                           gradient_checkpointing=False,
                                           images=((640, 480),)),
}
MIXED_CASES = ["256M-le768-nogc-b2-i2-640x480-trainer-mixed",
               "500M-le1024-gc-b1-i4-4032x3024-trainer-mixed"]


@pytest.mark.parametrize("case_id", sorted(QWEN_CASES))
def test_qwen_trainer_step_within_the_prediction(case_id: str) -> None:
    from benchmarks.gpu import qwen_step
    from benchmarks.gpu.make_table import qwen_keywords
    from pytest_tokenguard.gpu.model import estimate_for_model

    fields = QWEN_CASES[case_id]
    if fields["recipe"] == "lora" and importlib.util.find_spec("peft") is None:
        pytest.skip("peft is not installed: pip install peft to measure LoRA")
    case = qwen_step.QwenCase(case_id, **fields)  # type: ignore[arg-type]
    result: dict[str, Any] = qwen_step.measure_case(case)
    assert "error" not in result, result.get("error")
    estimate = estimate_for_model(case.model, **qwen_keywords(result))
    assert estimate.tiles_per_sample == result["patches_per_sample"]
    assert estimate.seq_len == result["seq_len"]
    _within(case_id, estimate.peak_bytes, result["steady"]["torch_allocated"])


@pytest.mark.parametrize("case_id", MIXED_CASES)
def test_mixed_precision_trainer_step_within_the_prediction(case_id: str) -> None:
    from benchmarks.gpu.loop_step import LoopCase
    from benchmarks.gpu.make_table import predict
    from benchmarks.gpu.qwen_step import _subprocess
    from tests.helpers import gpu_model_folder

    folder = gpu_model_folder(LoopCase.from_id(case_id).model)
    os.environ["SMOLVLM_MODELS"] = str(folder.parents[1])
    result = _subprocess(case_id, 400, os.environ.get("PYTHONPATH", ""))
    assert "error" not in result, result.get("error")
    _within(case_id, predict(result).peak_bytes, result["steady"]["torch_allocated"])


def _within(case_id: str, predicted: int, measured: int) -> None:
    error = (predicted - measured) / measured
    print(f"{case_id}: measured {measured / 2**30:.3f} GiB, predicted "
          f"{predicted / 2**30:.3f} GiB ({error:+.2%})")
    assert -0.02 <= error <= 0.05, f"{case_id}: predicted {error:+.1%} off the measured peak"
