"""The memory model on CPU: its inputs match the checkpoints, it behaves sanely, and its
predictions match the GPU measurements recorded in ``benchmarks/gpu/results-*.json`` that
no constant was fitted on (the holdout: ``benchmarks.gpu.make_table.is_holdout``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.gpu.smolvlm_step import FRAME_SIDE
from pytest_tokenguard.counting import count_image
from pytest_tokenguard.gpu.model import (
    KNOWN_ARCHITECTURES,
    LIBRARY_WORKSPACES,
    Architecture,
    MemoryEstimate,
    MemoryModelError,
    check_predicted_limit,
    estimate_for_model,
    estimate_step,
    resolve_model,
)
from pytest_tokenguard.specs import KNOWN_SPECS
from tests.helpers import assert_parameter_counts, checkpoint_folder

ROOT = Path(__file__).resolve().parents[2]
RESULTS = sorted((ROOT / "benchmarks" / "gpu").glob("results-*.json"))
ARCH_22B = KNOWN_ARCHITECTURES["HuggingFaceTB/SmolVLM2-2.2B-Instruct"]
GiB = 1024**3


def _holdout(case: dict[str, Any]) -> bool:
    from benchmarks.gpu.make_table import is_holdout

    return is_holdout(case["file"], case["case"])


def recorded_cases() -> list[dict[str, Any]]:
    cases = []
    for path in RESULTS:
        report = json.loads(path.read_text(encoding="utf-8"))
        for case in report["cases"]:
            if "steady" in case:
                cases.append({**case, "file": path.name})
    return cases


CASES = recorded_cases()
#: The cases the accuracy target is checked on: none of the model's measured constants
#: was fitted on them, nor a mechanism read from them.
HOLDOUT = [c for c in CASES if _holdout(c)]
#: The manual-loop cases of ``measure_step.py``, recorded with per-phase marks,
#: parameter counts and 384x384 frames.
MANUAL_CASES = [c for c in CASES if "phases" in c]
#: The loop cases of ``loop_step.py`` (Trainer, SFTTrainer, manual on photos).
LOOP_CASES = [c for c in CASES if "loop" in c]
#: The multi-GPU cases (torchrun, DDP or FSDP2), whose step 3 is recorded in phases.
DIST_CASES = [c for c in MANUAL_CASES if c.get("gpus", 1) > 1]
#: The one-GPU cases, whose per-term phases are compared (FSDP gathers inside them).
SINGLE_CASES = [c for c in MANUAL_CASES if c.get("gpus", 1) == 1]


def predict(case: dict[str, Any]) -> MemoryEstimate:
    from benchmarks.gpu.make_table import predict as table_predict

    return table_predict(case)


PROBE = ROOT / "benchmarks" / "gpu" / "probe-ddp-h100x2.jsonl"


# --- the architecture table and the parameter count -------------------------------


@pytest.mark.parametrize("name", sorted(KNOWN_ARCHITECTURES))
def test_parameter_count_matches_transformers(name: str) -> None:
    """The closed-form count equals the model transformers builds from a config.json with
    the architecture's values, on the meta device (no memory). The same against each
    checkpoint's real config.json: tests/oracle/test_real_files.py."""
    assert_parameter_counts(name, checkpoint_folder(name))


def test_parameter_counts_recorded_on_the_gpu_agree() -> None:
    if not CASES:
        pytest.skip("no recorded results")
    for case in MANUAL_CASES:
        estimate = predict(case)
        assert estimate.parameters == case["parameters"], case["case"]
        if "trainable_parameters" in case:
            assert estimate.trained_parameters == case["trainable_parameters"], case["case"]


# --- agreement with the GPU measurements -------------------------------------------


def test_the_holdout_covers_every_loop_and_checkpoint() -> None:
    """The accuracy test runs on cases nothing was fitted on; they must span the loops
    users run (issue 20), the three checkpoints and gradient checkpointing on and off."""
    if not LOOP_CASES:
        pytest.skip("no recorded loop cases")
    from benchmarks.gpu.make_table import recipe

    seen = {(recipe(c)["loop"], c["model"], c["gradient_checkpointing"])
            for c in HOLDOUT if "loop" in c}
    for loop in ("trainer", "sft-trainer"):
        for model in ("SmolVLM2-256M-Video-Instruct", "SmolVLM2-500M-Video-Instruct",
                      "SmolVLM2-2.2B-Instruct"):
            assert (loop, model, False) in seen or (loop, model, True) in seen, (loop, model)
        assert {gc for (name, _, gc) in seen if name == loop} == {False, True}, loop
    assert len(HOLDOUT) < len(CASES)


@pytest.mark.parametrize("case", HOLDOUT, ids=[f"{c['file']}:{c['case']}" for c in HOLDOUT])
def test_prediction_within_5_percent_and_never_2_percent_below(case: dict[str, Any]) -> None:
    """Issues 10 and 20's target, on held-out cases only: every measured case within 5% of
    its peak, none more than 2% below it (a gate that says "fits" must be believed).
    Recorded: the Trainer's and SFTTrainer's steps -0.7% to +1.0%; the manual loop -0.9%
    to +4.9% outside DDP; DDP -0.5% to +3.0% of the held step 2 and -0.6% to +0.5% of step 3.

    The recorded peak is step 2. Under DDP step 2 may also hold the first step's gradient
    bucket (a race with NCCL's watchdog, see ``pytest_tokenguard/gpu/model.py``) and the
    prediction is the held case: never 2% below the measured step 2, and within
    -2%...+5% of the worst step 2 the measured parts allow (step 3's forward peak plus
    the bucket); its step-3-on figure is within -2%...+5% of the measured step 3."""
    measured = case["steady"]["torch_allocated"]
    estimate = predict(case)
    error = (estimate.peak_bytes - measured) / measured
    assert error >= -0.02, f"{case['case']}: predicted {error:+.1%} off the measured peak"
    if not estimate.first_bucket:
        assert error <= 0.05, f"{case['case']}: predicted {error:+.1%} off the measured peak"
        assert estimate.steady_peak_bytes == estimate.peak_bytes
        return
    from benchmarks.gpu.make_table import held_second_step, step3_peak

    held = held_second_step(case)
    held_error = (estimate.peak_bytes - held) / held
    assert -0.02 <= held_error <= 0.05, f"{case['case']}: {held_error:+.1%} off the held step 2"
    third = step3_peak(case)
    steady_error = (estimate.steady_peak_bytes - third) / third
    assert -0.02 <= steady_error <= 0.05, f"{case['case']}: {steady_error:+.1%} off step 3"


@pytest.mark.parametrize("case", DIST_CASES, ids=[c["case"] for c in DIST_CASES])
def test_second_step_exceeds_the_third_only_by_ddp_first_bucket(case: dict[str, Any]) -> None:
    """What the DDP transient rests on, in the recorded data: a step 2 peaks as its step 3
    (within 1%), except under DDP, where it may peak one allocator block of the first
    step's bucket higher (every trained gradient, its segment rounded up to 2 MiB as the
    caching allocator rounds a large allocation). FSDP2 keeps no bucket across steps."""
    from benchmarks.gpu.make_table import first_bucket, step3_peak

    second, third = case["steady"]["torch_allocated"], step3_peak(case)
    excess = second - third
    estimate = predict(case)
    if case["sharding"] != "ddp":
        assert estimate.first_bucket == 0
        assert abs(excess) <= 0.01 * third, f"{case['case']}: step 2 is {excess:+,} bytes over"
        return
    block = -(-first_bucket(case) // 2**21) * 2**21
    held, freed = excess == block, abs(excess) <= 0.01 * third
    assert held or freed, f"{case['case']}: step 2 is {excess:+,} bytes over step 3"
    assert estimate.first_bucket == estimate.buckets == first_bucket(case)


def test_a_recorded_ddp_second_step_holds_the_first_bucket() -> None:
    """The transient is measured, not only derived: the 256M DDP case's step 2 peaks
    exactly one block of the first step's bucket (513,802,240 bytes) over its step 3."""
    case = next((c for c in CASES if c["case"] == "256M-le384-nogc-b1-i4-fused-ddp2"), None)
    if case is None:
        pytest.skip("the 256M DDP case is not recorded")
    from benchmarks.gpu.make_table import step3_peak

    assert case["steady"]["torch_allocated"] - step3_peak(case) == 513_802_240


def _probes() -> list[dict[str, Any]]:
    if not PROBE.is_file():
        return []
    return [json.loads(line) for line in PROBE.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("probe", _probes(),
                         ids=[f"{p['case']}-pause{p['ranks'][0]['pause_s']}" for p in _probes()])
def test_ddp_probe_second_and_third_steps_peak_as_predicted(probe: dict[str, Any]) -> None:
    """The DDP probe's steps 2 and 3 (forward and backward peaks, every rank) are within
    -2%...+5% of the step-3-on prediction, and the prediction (bucket held) is never below
    them. In these runs the first step's bucket was freed before step 2's forward: the
    vision tower's input finds as much allocated in step 2 as in step 3."""
    recorded = next(c for c in CASES if c["case"] == probe["case"])
    estimate = predict(recorded)
    for rank in probe["ranks"]:
        assert rank["gradient_bytes"] == estimate.first_bucket
        for step in ("step2", "step3"):
            measured = max(rank[step]["peak_forward"], rank[step]["peak_backward"])
            error = (estimate.steady_peak_bytes - measured) / measured
            assert -0.02 <= error <= 0.05, f"{probe['case']} {step}: {error:+.1%}"
            assert estimate.peak_bytes >= measured
        assert rank["step2"]["vision_in"][1] == rank["step3"]["vision_in"][1]


@pytest.mark.parametrize("case", SINGLE_CASES,
                         ids=[f"{c['file']}:{c['case']}" for c in SINGLE_CASES])
def test_terms_match_measured_phases(case: dict[str, Any]) -> None:
    """Each derived term against its own measurement, so a compensating error shows (one
    GPU only: FSDP gathers inside the phases)."""
    phases = case["phases"]
    estimate = predict(case)
    held = estimate.weights + estimate.optimizer + estimate.inputs
    # the workspaces are a floor of what is allocated beyond weights, moments and inputs
    assert LIBRARY_WORKSPACES <= phases["before_forward"] - held <= 3 * LIBRARY_WORKSPACES
    vision = phases["vision_out"] - phases["vision_in"]
    arch = KNOWN_ARCHITECTURES[f"HuggingFaceTB/{case['model']}"]
    # the connector's copy of the tower's output is kept outside the hooked vision_model
    tokens = case["batch"] * case["tiles_per_sample"] * arch.patches_per_tile
    outside = 2 * tokens * arch.vision_hidden if case.get("freeze") != "vision" else 0
    assert estimate.vision_activations - outside == pytest.approx(vision, rel=0.05,
                                                                  abs=0.2 * GiB)
    # the text model and the optimizer step carry up to ~0.1 GiB of fixed cost
    text = phases["text_out"] - phases["text_in"]
    assert estimate.text_activations == pytest.approx(text, rel=0.05, abs=0.15 * GiB)
    step = phases["peak_step"] - phases["before_forward"]
    foreach = case.get("optimizer", "adamw-foreach") == "adamw-foreach"
    temp = estimate.gradients if foreach else 0
    assert estimate.gradients + temp == pytest.approx(step, rel=0.05, abs=0.6 * GiB)


SMOLVLM_CASES = [c for c in CASES if not c["case"].startswith("qwen-")]


@pytest.mark.parametrize("case", SMOLVLM_CASES,
                         ids=[f"{c['file']}:{c['case']}" for c in SMOLVLM_CASES])
def test_recorded_shapes_are_what_count_image_predicts(case: dict[str, Any]) -> None:
    """The tiles and sequence the real processor made equal the analytic count, so the
    CLI's ``--longest-edge/--images/--image-size/--text-tokens`` path predicts the same
    cases."""
    spec = KNOWN_SPECS[f"HuggingFaceTB/{case['model']}"]
    size = (case.get("width", FRAME_SIDE), case.get("height", FRAME_SIDE))
    cost = count_image(size[0], size[1], case["longest_edge"], spec)
    assert case["tiles_per_sample"] == case["images"] * cost.patches
    text_tokens = case["seq_len"] - case["images"] * cost.block_tokens
    assert 0 < text_tokens < 100
    from benchmarks.gpu.make_table import recipe

    via_cli = estimate_for_model(
        f"HuggingFaceTB/{case['model']}",
        longest_edge=case["longest_edge"],
        images=case["images"],
        image_size=size,
        text_tokens=text_tokens,
        **recipe(case),
    )
    assert via_cli.peak_bytes == predict(case).peak_bytes


def test_checkpointing_halves_the_measured_2b_1536_peak() -> None:
    by_id = {c["case"]: c for c in CASES}
    if "2.2B-le1536-nogc-b1-i4" not in by_id or "2.2B-le1536-gc-b1-i4" not in by_id:
        pytest.skip("2.2B 1536 cases not recorded")
    plain = by_id["2.2B-le1536-nogc-b1-i4"]["steady"]["torch_allocated"]
    checkpointed = by_id["2.2B-le1536-gc-b1-i4"]["steady"]["torch_allocated"]
    assert checkpointed < plain / 2


def test_docs_table_is_generated_from_the_results() -> None:
    """docs/gpu-memory.md must be exactly what make_table.py writes from the results."""
    if not RESULTS:
        pytest.skip("no recorded results")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu" / "make_table.py")],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    expected = (ROOT / "docs" / "gpu-memory.md").read_text(encoding="utf-8")
    assert done.stdout == expected, "regenerate: python benchmarks/gpu/make_table.py"


# --- sanity properties ---------------------------------------------------------------

shapes = st.tuples(
    st.sampled_from(sorted(KNOWN_ARCHITECTURES)),
    st.integers(1, 300),  # tiles per sample
    st.integers(1, 30_000),  # tokens per sample
    st.integers(1, 8),  # batch
    st.booleans(),  # gradient checkpointing
)


def _estimate(name: str, tiles: int, seq: int, batch: int, gc: bool) -> MemoryEstimate:
    return estimate_step(
        KNOWN_ARCHITECTURES[name],
        tiles_per_sample=tiles, seq_len=seq, batch=batch, gradient_checkpointing=gc,
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(shapes)
def test_monotonic_in_tiles_tokens_and_batch(shape: tuple[str, int, int, int, bool]) -> None:
    name, tiles, seq, batch, gc = shape
    base = _estimate(name, tiles, seq, batch, gc)
    for bigger in (
        _estimate(name, tiles + 1, seq, batch, gc),
        _estimate(name, tiles, seq + 1, batch, gc),
        _estimate(name, tiles, seq, batch + 1, gc),
    ):
        assert bigger.activations > base.activations
        assert bigger.peak_bytes >= base.peak_bytes
    assert base.weights == base.gradients
    assert base.optimizer == 2 * base.weights
    assert base.peak_bytes >= base.weights + base.optimizer + base.activations


@settings(max_examples=200, deadline=None)
@given(shapes)
def test_checkpointing_lowers_activations(shape: tuple[str, int, int, int, bool]) -> None:
    name, tiles, seq, batch, _ = shape
    plain = _estimate(name, tiles, seq, batch, False)
    checkpointed = _estimate(name, tiles, seq, batch, True)
    assert checkpointed.activations < plain.activations
    assert checkpointed.peak_bytes <= plain.peak_bytes


def test_more_tiles_per_image_cost_more_at_higher_resolution() -> None:
    low = estimate_for_model("HuggingFaceTB/SmolVLM2-2.2B-Instruct", longest_edge=384)
    high = estimate_for_model("HuggingFaceTB/SmolVLM2-2.2B-Instruct", longest_edge=1536)
    assert (low.tiles_per_sample, high.tiles_per_sample) == (4, 68)
    assert high.vision_activations > 10 * low.vision_activations


def test_sgd_keeps_no_state() -> None:
    adamw = _estimate("HuggingFaceTB/SmolVLM2-2.2B-Instruct", 4, 400, 1, False)
    sgd = estimate_step(ARCH_22B, tiles_per_sample=4, seq_len=400, optimizer="sgd")
    assert sgd.optimizer == 0
    assert sgd.peak_bytes < adamw.peak_bytes


def test_ddp_second_step_holds_the_first_bucket_before_backward_reduces() -> None:
    """DDP's transient: one flat copy of every trained gradient, at the moments before
    step 2's first bucket all-reduce (end of forward, start of backward) and only under
    DDP; the peak from step 3 on leaves it out."""
    shape: dict[str, Any] = {"tiles_per_sample": 4, "seq_len": 400}
    ddp = estimate_step(ARCH_22B, gpus=2, sharding="ddp", **shape)
    assert ddp.first_bucket == ddp.buckets == ddp.gradients > 0
    assert ddp.phase in ("end of forward", "start of backward")
    assert ddp.steady_peak_bytes < ddp.peak_bytes <= ddp.steady_peak_bytes + ddp.first_bucket
    assert "DDP first step's bucket (step 2)" in ddp.describe()
    assert "from step 3 on" in ddp.describe()
    assert ddp.to_dict()["steady_peak_gib"] == round(ddp.steady_peak_bytes / GiB, 3)
    lora = estimate_step(ARCH_22B, gpus=2, sharding="ddp", lora_rank=8, **shape)
    assert lora.first_bucket == lora.gradients  # the adapters' fp32 gradients only
    for other in (estimate_step(ARCH_22B, gpus=2, sharding="fsdp", **shape),
                  estimate_step(ARCH_22B, **shape)):
        assert other.first_bucket == 0
        assert other.steady_peak_bytes == other.peak_bytes
        assert "from step 3 on" not in other.describe()


def test_fp32_doubles_weights() -> None:
    bf16 = estimate_step(ARCH_22B, tiles_per_sample=4, seq_len=400, loop="manual")
    fp32 = estimate_step(ARCH_22B, tiles_per_sample=4, seq_len=400, dtype="float32",
                         loop="manual")
    assert fp32.weights == 2 * bf16.weights


def test_the_default_loop_is_the_trainer() -> None:
    """Issue 20: the loop most users run is the default, on every entry point."""
    from pytest_tokenguard.gpu.model import StepShape

    assert StepShape().loop == "trainer"
    default = estimate_step(ARCH_22B, tiles_per_sample=20, seq_len=1728)
    trainer = estimate_step(ARCH_22B, tiles_per_sample=20, seq_len=1728, loop="trainer")
    assert default == trainer
    assert "trainer" in default.recipe


def test_trainer_autocast_costs_the_vision_layernorms() -> None:
    """Derived, per vision token and layer, without gradient checkpointing: each of the
    two LayerNorms saves an fp32 input (2 more bytes per channel), and q, k, v each save
    their own bf16 cast of the first one's fp32 output (two more copies): 8 bytes per
    channel; post_layernorm adds 2. The fp32 pixel values add 6 bytes per pixel."""
    arch = KNOWN_ARCHITECTURES["HuggingFaceTB/SmolVLM2-256M-Video-Instruct"]
    manual = estimate_step(arch, tiles_per_sample=40, seq_len=2712, loop="manual")
    trainer = estimate_step(arch, tiles_per_sample=40, seq_len=2712, loop="trainer")
    tokens = 40 * arch.patches_per_tile
    hv = arch.vision_hidden
    assert trainer.vision_activations - manual.vision_activations == tokens * hv * (
        8 * arch.vision_layers + 2)
    assert trainer.inputs - manual.inputs == 40 * arch.image_size**2 * 3 * 2
    assert trainer.text_activations == manual.text_activations


def test_sft_trainer_keeps_no_logits() -> None:
    """SFTTrainer's fused head keeps the scored hidden states, not the logits: far less
    than the Trainer's fp32 log-softmax at a long sequence, the rest unchanged."""
    trainer = estimate_step(ARCH_22B, tiles_per_sample=52, seq_len=4388, loop="trainer")
    sft = estimate_step(ARCH_22B, tiles_per_sample=52, seq_len=4388, loop="sft-trainer")
    assert trainer.logits == 4 * 4388 * ARCH_22B.vocab_size
    assert sft.logits == 4388 * (2 * ARCH_22B.text_hidden + 16)
    assert sft.vision_activations == trainer.vision_activations
    assert sft.peak_bytes < trainer.peak_bytes


@pytest.mark.parametrize(("dtype", "loop"), [("float16", "trainer"),
                                           ("float32", "sft-trainer")])
def test_autocast_over_unmeasured_weights_is_refused(dtype: str, loop: str) -> None:
    """bf16=True on an fp16 model, and SFTTrainer's fused head over fp32 weights, are not
    modelled: refused by name, with the way out. (bf16=True on an fp32 model, mixed
    precision, is: tests/unit/test_qwen_memory.py and the held-out recorded cases.)"""
    with pytest.raises(MemoryModelError, match=rf"loop={loop} with dtype={dtype}"):
        estimate_step(ARCH_22B, tiles_per_sample=4, seq_len=400, dtype=dtype, loop=loop)


def test_optimizers_and_loops_are_tables() -> None:
    """One row per optimizer and per loop: the names the checks accept are the tables'."""
    from pytest_tokenguard.gpu.model import LOOP_TABLE, LOOPS, OPTIMIZER_TABLE, OPTIMIZERS

    assert OPTIMIZERS == tuple(OPTIMIZER_TABLE) == ("adamw-fused", "adamw-foreach", "sgd")
    assert LOOPS == tuple(LOOP_TABLE) == ("trainer", "sft-trainer", "manual")
    assert OPTIMIZER_TABLE["sgd"].states == 0
    assert [loop.fused_lm_head for loop in LOOP_TABLE.values()] == [False, True, False]


def test_json_keys_and_gib_properties() -> None:
    estimate = estimate_step(ARCH_22B, tiles_per_sample=68, seq_len=5721)
    data = json.loads(json.dumps(estimate.to_dict()))
    for key in ("peak_gib", "weights_gib", "activations_gib", "peak_bytes", "phase"):
        assert key in data
    assert data["peak_gib"] == round(estimate.peak_bytes / GiB, 3)
    assert estimate.weights_gib == estimate.weights / GiB
    assert "predicted peak" in estimate.describe()


# --- errors and the predicted-limit check ------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tiles_per_sample": -1, "seq_len": 10}, "tiles_per_sample must be"),
        ({"tiles_per_sample": 1, "seq_len": 1.5}, "seq_len must be"),
        ({"tiles_per_sample": 1, "seq_len": 10, "batch": 0},
         "batch=0 is not accepted; batch takes an integer, 1 or more"),
        ({"tiles_per_sample": 1, "seq_len": 10, "dtype": "int8"}, "dtype='int8' is not accepted"),
        ({"tiles_per_sample": 1, "seq_len": 10, "optimizer": "lion"},
         "optimizer=.lion. is not accepted; optimizer takes one of adamw-fused"),
        ({"tiles_per_sample": 1, "seq_len": 10, "lora_rank": 0}, "lora_rank=0 is not accepted"),
        ({"tiles_per_sample": 1, "seq_len": 10, "gpus": 0}, "gpus=0 is not accepted"),
        ({"tiles_per_sample": 1, "seq_len": 10, "sharding": "fsdp"}, "sharding=fsdp with gpus=1"),
        ({"tiles_per_sample": 1, "seq_len": 10, "freeze": "vision,text"}, "freezes everything"),
    ],
)
def test_bad_inputs_named(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(MemoryModelError, match=match):
        estimate_step(ARCH_22B, **kwargs)


def test_resolve_model_errors(tmp_path: Path) -> None:
    with pytest.raises(MemoryModelError, match="unknown model 'nope/nope'"):
        resolve_model("nope/nope")
    with pytest.raises(MemoryModelError, match=r"has no preprocessor_config\.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"max_image_size": {"longest_edge": 384}, "size": {"longest_edge": 1536}}),
        encoding="utf-8")
    (tmp_path / "processor_config.json").write_text('{"image_seq_len": 81}', encoding="utf-8")
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(MemoryModelError, match="not valid JSON"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text('{"text_config": {}}', encoding="utf-8")
    with pytest.raises(MemoryModelError, match="needs 'text_config' and 'vision_config'"):
        resolve_model(str(tmp_path))
    config = {"text_config": {"hidden_size": 0}, "vision_config": {}}
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(MemoryModelError, match="num_attention_heads must be a positive"):
        resolve_model(str(tmp_path))


def test_resolve_model_folder_uses_its_files() -> None:
    folder = checkpoint_folder("HuggingFaceTB/SmolVLM2-500M-Video-Instruct")
    arch, spec = resolve_model(str(folder))
    assert isinstance(arch, Architecture)
    assert arch.parameters == KNOWN_ARCHITECTURES[
        "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"].parameters
    assert spec.tile_size == 512


def test_check_predicted_limit() -> None:
    estimate = estimate_step(ARCH_22B, tiles_per_sample=68, seq_len=5721, loop="manual")
    over = check_predicted_limit(estimate, 64 * GiB)
    assert not over.passed
    assert over.message == (
        f"Test was limited to 64.0GiB but its predicted GPU peak was "
        f"{estimate.peak_bytes / GiB:.1f}GiB (predicted)"
    )
    assert "activations, vision" in over.detail
    under = check_predicted_limit(estimate, 80 * GiB)
    assert under.passed
    with_margin = check_predicted_limit(estimate, 80 * GiB, margin=0.1)
    assert not with_margin.passed
    assert with_margin.measure == "predicted + 10% margin"
    with pytest.raises(ValueError, match="limit_bytes"):
        check_predicted_limit(estimate, 0)
    with pytest.raises(ValueError, match="margin"):
        check_predicted_limit(estimate, GiB, margin=-0.1)


def test_check_predicted_for_model_parses_and_gates() -> None:
    from pytest_tokenguard.gpu.model import check_predicted_for_model

    model = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"
    assert not check_predicted_for_model("64 GiB", model, longest_edge=1536).passed
    assert check_predicted_for_model(
        "64 GiB", model, longest_edge=1536, gradient_checkpointing=True
    ).passed
    with pytest.raises(ValueError, match="unknown unit"):
        check_predicted_for_model("64 gigs", model)
    with pytest.raises(MemoryModelError, match="unknown model"):
        check_predicted_for_model("64 GiB", "nope/nope")
