"""The GPU peak of a Qwen2.5-VL fine-tuning step in the Hugging Face ``Trainer`` (issue 18),
and the driver that runs it beside SmolVLM2 mixed-precision steps (issue 20) on one GPU.

What is measured, one case per fresh process:

* ``Qwen2_5_VLForConditionalGeneration._from_config`` on the published ``config.json`` values
  (:data:`pytest_tokenguard.families.qwen_memory.QWEN_CONFIGS`), random weights, bf16,
  ``sdpa``, ``use_cache=False``; no checkpoint is downloaded;
* the inputs the processor writes: ``Qwen2VLImageProcessor`` (and the video processor) on
  deterministic photos at the published ``min_pixels``/``max_pixels`` (or a case's own
  ``max_pixels``), ``input_ids`` written by hand (no tokenizer is needed): text ids, then per
  image ``<|vision_start|>`` + one ``<|image_pad|>`` (151655) per merged patch +
  ``<|vision_end|>`` (``<|video_pad|>`` 151656 for a video), ``labels = input_ids``;
* ``Trainer(args=TrainingArguments(bf16=True, ...))`` with its defaults (the optimizer
  ``adamw_torch_fused``, ``max_grad_norm=1.0``, non-reentrant gradient checkpointing when on);
  full fine-tuning, LoRA through peft (r=16 on q/k/v/o/gate/up/down_proj, which peft matches
  in the text model and in the vision tower's MLP), or the vision tower frozen (its patch
  embedding and blocks; the merger trains).

The peak of step 2 (AdamW's states exist) is the headline, split into phases as in
``loop_step.py``. torch, transformers and peft are imported inside functions only.

    PYTHONPATH=. python benchmarks/gpu/qwen_step.py --out results.json --cases all
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.gpu.loop_step import (
    _ListDataset,
    _Marks,
    _version,
    make_image,
    run_case,
    steady_peak,
)

HUB = {"3B": "Qwen/Qwen2.5-VL-3B-Instruct", "7B": "Qwen/Qwen2.5-VL-7B-Instruct"}
TEXT_TOKENS = 64
LORA_RANK = 16


@dataclass(frozen=True)
class QwenCase:
    """One measured Qwen2.5-VL step."""

    id: str
    size: str  # 3B or 7B
    recipe: str  # full, lora, frozen-vision
    gradient_checkpointing: bool
    images: tuple[tuple[int, int], ...] = ()
    video: tuple[int, int, int] | None = None  # width, height, frames
    max_pixels: int | None = None
    batch: int = 1
    #: GiB held back for it while other cases share the GPU (a rough estimate + margin)
    reserve_gib: float = 70.0
    predict_only: bool = False
    #: text tokens per sample besides the vision blocks (a long answer: thousands)
    text_tokens: int = TEXT_TOKENS

    @property
    def model(self) -> str:
        return HUB[self.size]


PHONE = (4032, 3024)
#: The grid: 3B full fine-tuning with and without gradient checkpointing (phone photos at a
#: lower max_pixels, and smaller photos), LoRA at the default max_pixels, the vision tower
#: frozen, 7B LoRA, a video. 3B full fine-tuning of a phone photo at the default
#: max_pixels, and 7B full fine-tuning, do not fit 80 GB: predicted, not run.
QWEN_CASES = {case.id: case for case in (
    QwenCase("qwen-3B-full-gc-b1-1x4032x3024-mp4014080", "3B", "full", True, (PHONE,),
             max_pixels=4014080, reserve_gib=67),
    QwenCase("qwen-3B-full-nogc-b1-1x1024x768", "3B", "full", False, ((1024, 768),),
             reserve_gib=69),
    QwenCase("qwen-3B-lora-gc-b1-1x4032x3024", "3B", "lora", True, (PHONE,), reserve_gib=55),
    QwenCase("qwen-7B-lora-gc-b1-1x4032x3024", "7B", "lora", True, (PHONE,), reserve_gib=66),
    QwenCase("qwen-3B-frozen-nogc-b1-1x2016x1512", "3B", "frozen-vision", False,
             ((2016, 1512),), reserve_gib=70),
    QwenCase("qwen-3B-lora-nogc-b1-video640x480x16", "3B", "lora", False,
             video=(640, 480, 16), reserve_gib=60),
    QwenCase("qwen-7B-lora-nogc-b1-2x1024x768", "7B", "lora", False,
             ((1024, 768), (1024, 768)), reserve_gib=55),
    QwenCase("qwen-3B-full-gc-b2-2x4032x3024-mp1003520", "3B", "full", True, (PHONE, PHONE),
             max_pixels=1003520, batch=2, reserve_gib=67),
    QwenCase("qwen-3B-full-gc-b1-1x4032x3024", "3B", "full", True, (PHONE,),
             reserve_gib=80, predict_only=True),
    QwenCase("qwen-7B-full-gc-b1-1x1024x768", "7B", "full", True, ((1024, 768),),
             reserve_gib=160, predict_only=True),
)}
PORTRAIT = (3024, 4032)
#: Held out (issue 18's acceptance, measured after the model was final): nothing of the
#: model was fitted on these. Phone photos in both orientations and at several max_pixels,
#: several images of different sizes, images beside a video, longer videos, long answers,
#: batches of 2 to 4, LoRA, the vision tower frozen, full fine-tuning, 3B and 7B.
HOLDOUT_CASES = {case.id: case for case in (
    QwenCase("qwen-3B-full-nogc-b2-1x3024x4032-mp1003520", "3B", "full", False, (PORTRAIT,),
             max_pixels=1003520, batch=2, reserve_gib=65),
    QwenCase("qwen-3B-lora-gc-b1-video1280x720x32", "3B", "lora", True,
             video=(1280, 720, 32), reserve_gib=57),
    QwenCase("qwen-7B-lora-gc-b1-video640x480x16", "7B", "lora", True,
             video=(640, 480, 16), reserve_gib=28),
    QwenCase("qwen-3B-frozen-gc-b1-1x4032x3024-mp4014080", "3B", "frozen-vision", True,
             (PHONE,), max_pixels=4014080, reserve_gib=36),
    QwenCase("qwen-3B-lora-gc-b1-3x-mixed-mp2007040", "3B", "lora", True,
             ((1170, 2532), (4000, 3000), (800, 600)), max_pixels=2007040, reserve_gib=25),
    QwenCase("qwen-7B-lora-gc-b2-1x2016x1512", "7B", "lora", True, ((2016, 1512),), batch=2,
             reserve_gib=40),
    QwenCase("qwen-3B-full-gc-b1-1x1024x768+video640x480x32", "3B", "full", True,
             ((1024, 768),), video=(640, 480, 32), reserve_gib=44),
    QwenCase("qwen-3B-lora-gc-b1-1x1024x768-text3000", "3B", "lora", True, ((1024, 768),),
             text_tokens=3000, reserve_gib=20),
    QwenCase("qwen-7B-lora-nogc-b1-1x4032x3024-mp2007040", "7B", "lora", False, (PHONE,),
             max_pixels=2007040, reserve_gib=62),
    QwenCase("qwen-3B-full-gc-b2-1x1920x1080-text2000", "3B", "full", True, ((1920, 1080),),
             batch=2, text_tokens=2000, reserve_gib=47),
    QwenCase("qwen-3B-lora-gc-b4-1x640x480", "3B", "lora", True, ((640, 480),), batch=4,
             reserve_gib=16),
    QwenCase("qwen-3B-frozen-nogc-b2-2x1280x960-text1000", "3B", "frozen-vision", False,
             ((1280, 960), (1280, 960)), batch=2, text_tokens=1000, reserve_gib=76),
)}
ALL_CASES = {**QWEN_CASES, **HOLDOUT_CASES}


@dataclass
class Batch:
    tensors: dict[str, Any] = field(default_factory=dict)
    seq_len: int = 0
    patches: int = 0


def build_batch(case: QwenCase) -> Batch:
    """The tensors the processor and a collator hand the Trainer, on the CPU."""
    import numpy as np
    import torch
    from transformers import Qwen2VLImageProcessor

    from pytest_tokenguard.families.qwen import (
        IMAGE_PAD,
        KNOWN_QWEN_SPECS,
        VIDEO_PAD,
        VISION_END,
        VISION_START,
    )
    from pytest_tokenguard.families.qwen_memory import QWEN_CONFIGS

    config = QWEN_CONFIGS[case.model]
    spec = KNOWN_QWEN_SPECS[case.model]
    ids = {IMAGE_PAD: config["image_token_id"], VIDEO_PAD: config["video_token_id"],
           VISION_START: config["vision_start_token_id"],
           VISION_END: config["vision_end_token_id"]}
    max_pixels = case.max_pixels or spec.image.max_pixels
    size = {"shortest_edge": spec.image.min_pixels, "longest_edge": max_pixels}
    out: dict[str, Any] = {}
    sample: list[int] = list(range(1000, 1000 + case.text_tokens // 2))
    merge = spec.image.merge_size ** 2
    if case.images:
        processor = Qwen2VLImageProcessor(size=size, patch_size=14, merge_size=2,
                                          temporal_patch_size=2)
        photos = [make_image(w, h, seed) for seed, (w, h) in enumerate(case.images)]
        image = processor(images=photos, return_tensors="pt")
        out["pixel_values"] = image["pixel_values"]
        out["image_grid_thw"] = image["image_grid_thw"]
        for grid in image["image_grid_thw"].tolist():
            tokens = grid[0] * grid[1] * grid[2] // merge
            sample += [ids[VISION_START]] + [ids[IMAGE_PAD]] * tokens + [ids[VISION_END]]
    if case.video is not None:
        from transformers import Qwen2VLVideoProcessor

        width, height, frames = case.video
        video_processor = Qwen2VLVideoProcessor(size=size, patch_size=14, merge_size=2,
                                                temporal_patch_size=2)
        clip = np.stack([np.asarray(make_image(width, height, seed)) for seed in range(frames)])
        video = video_processor(videos=[clip], return_tensors="pt", do_sample_frames=False)
        out["pixel_values_videos"] = video["pixel_values_videos"]
        out["video_grid_thw"] = video["video_grid_thw"]
        for grid in video["video_grid_thw"].tolist():
            tokens = grid[0] * grid[1] * grid[2] // merge
            sample += [ids[VISION_START]] + [ids[VIDEO_PAD]] * tokens + [ids[VISION_END]]
    sample += list(range(2000, 2000 + case.text_tokens - case.text_tokens // 2))
    input_ids = torch.tensor([sample] * case.batch, dtype=torch.long)
    for key in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"):
        if key in out and case.batch > 1:
            out[key] = torch.cat([out[key]] * case.batch)
    out.update(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
               labels=input_ids.clone())
    patches = sum(int(t.shape[0]) for k, t in out.items() if k.startswith("pixel_values"))
    return Batch(out, len(sample), patches // case.batch)


def build_model(case: QwenCase, device: Any) -> Any:
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from pytest_tokenguard.families.qwen_memory import QWEN_CONFIGS

    config = Qwen2_5_VLConfig(**QWEN_CONFIGS[case.model])
    config.use_cache = False
    config.text_config.use_cache = False
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=torch.bfloat16, attn_implementation="sdpa")
    if case.recipe == "frozen-vision":
        visual = model.model.visual
        for name, param in visual.named_parameters():
            if not name.startswith("merger."):
                param.requires_grad_(False)
    if case.recipe == "lora":
        from peft import LoraConfig, get_peft_model

        from pytest_tokenguard.gpu.model import DEFAULT_LORA_TARGETS

        model = get_peft_model(model, LoraConfig(
            r=LORA_RANK, lora_alpha=2 * LORA_RANK, lora_dropout=0.0,
            target_modules=list(DEFAULT_LORA_TARGETS)))
    return model


def measure_case(case: QwenCase) -> dict[str, Any]:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from benchmarks.gpu.smolvlm_step import environment

    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    result: dict[str, Any] = {"case": case.id, **asdict(case), "model": case.model}
    marks = _Marks(device)
    started = time.perf_counter()
    batch = build_batch(case)
    result.update(seq_len=batch.seq_len, patches_per_sample=batch.patches,
                  grids={k: v.tolist() for k, v in batch.tensors.items() if k.endswith("thw")},
                  input_dtypes={k: str(v.dtype) for k, v in batch.tensors.items()})
    with steady_peak(result, marks, device):
        model = build_model(case, device)
        result["weights_bytes"] = marks._now()[0]
        result["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        result["parameters"] = sum(p.numel() for p in model.parameters())

        class Marker(TrainerCallback):  # type: ignore[misc]
            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                marks.begin()

            def on_pre_optimizer_step(self, args: Any, state: Any, control: Any,
                                      **kw: Any) -> None:
                marks.mark("clip")

            def on_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                marks.mark("optimizer")

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                marks.end()

        def collate(rows: list[Any]) -> dict[str, Any]:
            return dict(batch.tensors)

        trainer: Any = Trainer(
            model=model,
            args=TrainingArguments(
                output_dir=tempfile.mkdtemp(), per_device_train_batch_size=case.batch,
                max_steps=2, learning_rate=1e-5, bf16=True, report_to="none",
                logging_steps=1000, save_strategy="no", dataloader_num_workers=0,
                gradient_checkpointing=case.gradient_checkpointing, seed=0,
                remove_unused_columns=False, use_cpu=device.type != "cuda"),
            train_dataset=_ListDataset([{"row": i} for i in range(case.batch * 2)]),
            data_collator=collate, callbacks=[Marker()])
        clip = trainer._clip_grad_norm

        def clip_marked(*args: Any, **kwargs: Any) -> Any:
            marks.mark("backward")
            return clip(*args, **kwargs)

        trainer._clip_grad_norm = clip_marked
        handle = trainer.model.register_forward_hook(
            lambda module, args, output: marks.mark("forward"))
        trainer.train()
        handle.remove()
        result["optimizer_class"] = type(getattr(trainer.optimizer, "optimizer",
                                                 trainer.optimizer)).__name__
    result["step_s"] = round(time.perf_counter() - started, 1)
    result["environment"] = {**environment(), "peft": _version("peft"),
                             "huggingface_hub": _version("huggingface_hub")}
    return result


def main_one(case_id: str) -> None:
    print(json.dumps(measure_case(ALL_CASES[case_id])), flush=True)


def _reservation(case_id: str) -> float:
    if case_id in ALL_CASES:
        return ALL_CASES[case_id].reserve_gib
    from benchmarks.gpu.loop_step import LoopCase
    from benchmarks.gpu.loop_step import _reservation as smolvlm_reservation

    case = LoopCase.from_id(case_id)
    if case.precision != "mixed":
        return smolvlm_reservation(case_id)
    # the bf16 step's reservation plus fp32 master weights, gradients and AdamW states
    # (8 bytes per parameter more) and autocast's bf16 weight copies (2 more)
    from benchmarks.gpu.loop_step import _SIZES

    parameters = {"256M": 0.26e9, "500M": 0.51e9, "2.2B": 2.25e9}[case.size]
    assert case.size in _SIZES
    bf16 = smolvlm_reservation(case_id.removesuffix("-mixed"))
    return bf16 + 10 * parameters / 2**30


def _subprocess(case_id: str, timeout: float, env_path: str) -> dict[str, Any]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": env_path}
    if case_id in ALL_CASES:
        code = "import sys; from benchmarks.gpu.qwen_step import main_one; main_one(sys.argv[1])"
        args = [case_id]
    else:
        code = ("import sys; from benchmarks.gpu.loop_step import main_one; "
                "main_one(sys.argv[1], sys.argv[2])")
        args = [case_id, os.environ.get("SMOLVLM_MODELS", "models")]
    return run_case(case_id, code, args, timeout, env, tail_lines=8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--cases", required=True,
                        help="comma-separated ids (Qwen ids or loop_step.py ids), 'all' (the "
                        "first grid) or 'holdout'")
    parser.add_argument("--memory-gib", type=float, default=76.0)
    parser.add_argument("--parallel", type=int, default=3)
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds after which no new case starts")
    parser.add_argument("--case-timeout", type=float, default=240.0)
    parser.add_argument("--fallback-path", default="",
                        help="PYTHONPATH to retry a case that failed (not out of memory) with")
    args = parser.parse_args(argv)
    chosen = {"all": QWEN_CASES, "holdout": HOLDOUT_CASES}.get(args.cases)
    cases = ([c for c, case in chosen.items() if not case.predict_only]
             if chosen is not None else args.cases.split(","))
    started = time.perf_counter()
    cond = threading.Condition()
    free = [args.memory_gib]
    results: dict[str, dict[str, Any]] = {}
    pending = {c: min(_reservation(c), args.memory_gib) for c in cases}
    order = list(cases)
    env_path = os.environ.get("PYTHONPATH", "")

    def take() -> tuple[str, float] | None:
        with cond:
            while pending:
                if time.perf_counter() - started > args.budget:
                    for case_id in list(pending):
                        pending.pop(case_id)
                        results[case_id] = {"case": case_id, "error": "not run: time budget"}
                    return None
                fits = [c for c in order if c in pending and pending[c] <= free[0]]
                if fits:
                    need = pending.pop(fits[0])
                    free[0] -= need
                    return fits[0], need
                cond.wait(timeout=5)
            return None

    def worker() -> None:
        while (taken := take()) is not None:
            case_id, need = taken
            try:
                result = _subprocess(case_id, args.case_timeout, env_path)
                if result.get("oom") and need < args.memory_gib:
                    # out of memory beside other cases: once more, alone on the GPU
                    with cond:
                        pending[case_id] = args.memory_gib
                    continue
                if (args.fallback_path and result.get("error")
                        and not str(result["error"]).startswith(("timed", "not run"))):
                    retry = _subprocess(case_id, args.case_timeout, args.fallback_path)
                    retry["first_try_error"] = result["error"]
                    result = retry
            finally:
                with cond:
                    free[0] += need
                    cond.notify_all()
            with cond:
                results[case_id] = result
                steady = result.get("steady") or {}
                print(f"{case_id:52s} peak={steady.get('torch_allocated', 0) / 2**30:.2f}GiB "
                      f"{str(result.get('error', ''))[:400]} "
                      f"({time.perf_counter() - started:.0f}s)", flush=True)
                report = {"cases": [results[c] for c in order if c in results]}
                with open(args.out, "w", encoding="utf-8") as handle:
                    handle.write(json.dumps(report, indent=1) + "\n")

    threads = [threading.Thread(target=worker) for _ in range(args.parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = {"cases": [results[c] for c in order if c in results]}
    with open(args.out, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
