"""The memory model for Qwen2.5-VL (issue 18) and mixed precision (issue 20) on CPU: the
published architecture equals what transformers builds, the recorded GPU cases' shapes are
what the family's arithmetic says, the step options reach the prediction, and what is not
modelled is refused by name. The accuracy against the recorded held-out cases is
``tests/unit/test_memory_model.py::test_prediction_within_5_percent_and_never_2_percent_below``
(its HOLDOUT includes ``results-h100-qwen.json`` and all of
``results-h100-qwen-holdout.json``, issue 18's acceptance set)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_tokenguard.families.qwen_memory import QWEN_CONFIGS, qwen_architecture
from pytest_tokenguard.gpu.model import MemoryModelError, estimate_for_model, lora_modules, validate

ROOT = Path(__file__).resolve().parents[2]
RECORDED = [case for name in ("results-h100-qwen.json", "results-h100-qwen-holdout.json")
            for case in json.loads((ROOT / "benchmarks" / "gpu" / name)
                                   .read_text(encoding="utf-8"))["cases"]]
QWEN = [c for c in RECORDED if c["case"].startswith("qwen-")]
QWEN_3B, QWEN_7B = QWEN_CONFIGS


@pytest.mark.parametrize("name", sorted(QWEN_CONFIGS))
def test_parameter_count_and_linear_names_match_transformers(name: str) -> None:
    """Built on the meta device from the same values the GPU harness builds from."""
    torch = pytest.importorskip("torch")
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            Qwen2_5_VLConfig(**QWEN_CONFIGS[name]), dtype=torch.bfloat16)
    arch = qwen_architecture(QWEN_CONFIGS[name], name)
    assert arch.parameters == sum(p.numel() for p in model.parameters())
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert {m.name for m in arch.linear_modules()} == set(linears)
    for module in arch.linear_modules():
        assert (module.fan_in, module.fan_out) == (linears[module.name].in_features,
                                                   linears[module.name].out_features)


@pytest.mark.parametrize("case", QWEN, ids=[c["case"] for c in QWEN])
def test_recorded_shapes_and_counts_are_what_the_model_predicts(case: dict[str, Any]) -> None:
    """The processor's patches and the harness's tokens equal the family's arithmetic, and
    LoRA's trained parameters and the model's total equal the recorded ones."""
    from benchmarks.gpu.make_table import qwen_keywords

    estimate = estimate_for_model(case["model"], **qwen_keywords(case))
    assert estimate.tiles_per_sample == case["patches_per_sample"]
    assert estimate.seq_len == case["seq_len"]
    assert estimate.parameters == case["parameters"]
    assert estimate.trained_parameters == case["trainable"]


def test_default_lora_targets_reach_the_vision_mlp_not_its_attention() -> None:
    arch = qwen_architecture(QWEN_CONFIGS[QWEN_3B], QWEN_3B)
    chosen = lora_modules(arch, validate(lora_rank=16))
    roles = {(m.part, m.role) for m in chosen}
    assert ("vision", "gate_proj") in roles
    assert ("vision", "down_proj") in roles
    assert not {r for p, r in roles if p == "vision"} & {"qkv", "proj"}
    assert len(chosen) == 32 * 3 + 36 * 7


def test_image_sizes_one_per_image_and_video_reach_the_prediction() -> None:
    one = estimate_for_model(QWEN_3B, image_size="1024x768", images=2)
    two = estimate_for_model(QWEN_3B, image_size=["1024x768", "1024x768"])
    assert one.peak_bytes == two.peak_bytes
    assert one.tiles_per_sample == 2 * 3996
    mixed = estimate_for_model(QWEN_3B, image_size=[(4032, 3024), (640, 480)])
    assert mixed.tiles_per_sample == 62208 + 1564
    video = estimate_for_model(QWEN_3B, images=0, video="640x480x16")
    assert video.tiles_per_sample == 8 * 1564  # 16 frames, temporal patch 2
    smaller = estimate_for_model(QWEN_3B, image_size=(4032, 3024), images=1,
                                 max_pixels=1003520)
    assert smaller.tiles_per_sample == 4920


@pytest.mark.parametrize(("model", "keywords", "message"), [
    (QWEN_3B, {"longest_edge": 1536}, "give max_pixels instead"),
    (QWEN_3B, {"loop": "manual"}, "loop=manual is not modelled"),
    (QWEN_3B, {"dtype": "float32"}, "mixed precision"),
    (QWEN_3B, {"gpus": 2, "sharding": "ddp"}, "gpus=2"),
    ("HuggingFaceTB/SmolVLM2-256M-Video-Instruct", {"video": "640x480x16"},
     "video is a Qwen-VL option"),
    ("HuggingFaceTB/SmolVLM2-256M-Video-Instruct", {"max_pixels": 1003520},
     "max_pixels is a Qwen-VL option"),
    (QWEN_3B, {"image_size": ["640x480", "640x480"], "images": 3}, "one per image"),
    (QWEN_3B, {"loop": "sft-trainer", "dtype": "float32"}, "loop=trainer"),
])
def test_what_is_not_modelled_is_refused_by_name(model: str, keywords: dict[str, Any],
                                                 message: str) -> None:
    with pytest.raises(MemoryModelError, match=message):
        estimate_for_model(model, **keywords)


def test_mixed_precision_is_priced_above_bf16_by_the_fp32_master_terms() -> None:
    """fp32 weights, gradients and AdamW states: 8 bytes a parameter more than bf16, plus
    autocast's bf16 weight copies at the end of the forward."""
    model = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"
    bf16 = estimate_for_model(model, longest_edge=1536, image_size=(640, 480))
    mixed = estimate_for_model(model, longest_edge=1536, image_size=(640, 480),
                               dtype="float32")
    assert mixed.weights == 2 * bf16.weights
    assert mixed.optimizer == 2 * bf16.optimizer
    assert mixed.peak_bytes > bf16.peak_bytes + bf16.weights + bf16.optimizer
    assert "mixed precision" in mixed.recipe


def run(*argv: str) -> tuple[int, str, str]:
    import argparse

    from pytest_tokenguard.cli.memory import add_memory_parser, run_memory

    parser = argparse.ArgumentParser(prog="tokenguard")
    add_memory_parser(parser.add_subparsers())
    out, err = io.StringIO(), io.StringIO()
    try:
        args = parser.parse_args(["memory", *argv])
    except SystemExit as exc:
        return int(str(exc.code)), "", ""
    return run_memory(args, out, err), out.getvalue(), err.getvalue()


def test_cli_takes_repeatable_image_sizes_a_video_and_max_pixels() -> None:
    code, out, err = run("--json", "--model", QWEN_3B, "--image-size", "4032x3024",
                         "--image-size", "640x480", "--video", "640x480x16", "--max-pixels",
                         "1003520", "--lora-rank", "16", "--gradient-checkpointing")
    assert code == 0, err
    data = json.loads(out)
    api = estimate_for_model(QWEN_3B, image_size=["4032x3024", "640x480"],
                             video=(640, 480, 16), max_pixels=1003520, lora_rank=16,
                             gradient_checkpointing=True)
    assert data["peak_bytes"] == api.peak_bytes
    assert "2 images of 4032x3024, 640x480" in data["sample"]
    assert run("--model", QWEN_3B, "--video", "640x480")[0] == 2
    code, _, err = run("--model", QWEN_3B, "--loop", "manual")
    assert code == 2
    assert "--loop manual is not modelled" in err


def _qwen_folder(root: Path, config: dict[str, Any]) -> Path:
    folder = root / "Qwen2.5-VL-3B-Instruct"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "merge_size": 2,
        "temporal_patch_size": 2}), encoding="utf-8")
    return folder


def test_a_checkpoint_folder_is_read_like_the_published_values(tmp_path: Path) -> None:
    folder = _qwen_folder(tmp_path, QWEN_CONFIGS[QWEN_3B])
    by_folder = estimate_for_model(str(folder), image_size=(1024, 768), images=1)
    by_id = estimate_for_model(QWEN_3B, image_size=(1024, 768), images=1)
    assert by_folder.peak_bytes == by_id.peak_bytes


def test_a_broken_qwen_config_is_one_line_naming_the_key(tmp_path: Path) -> None:
    config = json.loads(json.dumps(QWEN_CONFIGS[QWEN_3B]))
    config["vision_config"]["depth"] = -3
    folder = _qwen_folder(tmp_path, config)
    code, out, err = run("--model", str(folder))
    assert code == 2
    assert "vision_config.depth must be a positive integer" in err
    assert len(err.strip().splitlines()) == 1
    assert not out


def test_the_qwen_holdout_spans_what_issue_18_accepts_on() -> None:
    """The held-out Qwen cases (nothing fitted on them; their accuracy is checked by
    test_memory_model.py's holdout test) cover the issue's list: 3B and 7B, full
    fine-tuning, LoRA and the vision tower frozen, gradient checkpointing on and off, a
    phone photo, a video, and batches over 1."""
    path = ROOT / "benchmarks" / "gpu" / "results-h100-qwen-holdout.json"
    cases = [c for c in json.loads(path.read_text(encoding="utf-8"))["cases"] if "steady" in c]
    assert {c["size"] for c in cases} == {"3B", "7B"}
    assert {c["recipe"] for c in cases} == {"full", "lora", "frozen-vision"}
    assert {c["gradient_checkpointing"] for c in cases} == {True, False}
    assert any(c["video"] for c in cases)
    assert any(max(max(size) for size in c["images"] or [(0, 0)]) >= 4000 for c in cases)
    assert any(c["batch"] > 1 for c in cases)
    from benchmarks.gpu.make_table import is_holdout

    assert all(is_holdout(path.name, c["case"]) for c in cases)


def test_the_readme_quotes_the_held_out_qwen_steps_as_recorded() -> None:
    """Each row of the README's held-out Qwen table is a recorded case: its measured peak,
    the model's prediction for it today and the error between them (a change of the model
    that moves a prediction must update the README)."""
    import re

    from benchmarks.gpu.make_table import predict

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("**Held out, measured after the model was final**", 1)[1]
    table = table.split("\n\n", 2)[1]
    rows = re.findall(r"\| ([\d.]+) GiB \| ([\d.]+) GiB \| ([+\u2212-][\d.]+)% \|", table)
    path = ROOT / "benchmarks" / "gpu" / "results-h100-qwen-holdout.json"
    cases = {f"{c['steady']['torch_allocated'] / 2**30:.2f}": c
             for c in json.loads(path.read_text(encoding="utf-8"))["cases"] if "steady" in c}
    assert len(rows) == len(cases) == 12
    for measured, predicted, error in rows:
        case = cases[measured]
        estimate = predict(case)
        real = (estimate.peak_bytes - case["steady"]["torch_allocated"]) / case["steady"][
            "torch_allocated"]
        assert f"{estimate.peak_gib:.2f}" == predicted, case["case"]
        assert float(error.replace("\u2212", "-")) == round(real * 100, 1), case["case"]
