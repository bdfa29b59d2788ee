"""The GPU peak of a SmolVLM2 fine-tuning step in the loops users run: the Hugging Face
``Trainer`` and TRL's ``SFTTrainer`` (and the manual loop, on the same samples).

What is measured (issue 20), one case per fresh process:

* the model built from the checkpoint's ``config.json`` with random weights, ``sdpa``,
  loaded in bf16 (``precision="bf16"``, what ``from_pretrained(dtype=torch.bfloat16)``
  gives) or in fp32 (``precision="mixed"``: fp32 master weights, gradients and AdamW
  states, the forward under bf16 autocast);
* ``Trainer(args=TrainingArguments(bf16=True, ...))`` with its defaults: the optimizer
  ``adamw_torch_fused``, ``max_grad_norm=1.0`` (clipping), no gradient accumulation; a
  collator that calls the processor as users write it (``labels = input_ids``, the
  processor's fp32 ``pixel_values`` moved to the GPU by the Trainer);
* ``SFTTrainer(args=SFTConfig(bf16=True, max_length=None, ...))`` on a conversational
  dataset (``messages`` + ``images``), so TRL builds its own vision-language collator
  (``DataCollatorForVisionLanguageModeling``) and its fused LM head (log-probabilities,
  entropy and top-1 accuracy computed in chunks, never the full logits);
* ``manual``: ``loss.backward(); AdamW(fused=True).step()`` on the same batch, bf16 model,
  pixel values cast to bf16 (the recipe of ``smolvlm_step.py``).

Variants that isolate where the memory lives (a suffix of the case id): ``noclip``
(``max_grad_norm=0``), ``noamp`` (``bf16=False`` on the bf16 model: no autocast),
``lp`` (SFTTrainer's fused head computing log-probabilities only, no entropy or
accuracy). The peak of step 2 (the steady state: AdamW's states exist) is the headline;
step 3 is split into phases (forward, backward, clipping, optimizer step) with a forward
hook and the Trainer's callbacks. torch, transformers and TRL are imported inside
functions only.

    PYTHONPATH=. python benchmarks/gpu/loop_step.py --models-dir ../shared/models \
        --out results-loops.json --cases all
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

USER_TEXT = "Describe what changes across these photos, one sentence per photo."
ASSISTANT_TEXT = (
    "The first photo shows a bright gradient. In the second the gradient turns darker. "
    "The third photo adds coarse noise, and the last one fades to a flat colour."
)
_SIZES = {
    "2.2B": "SmolVLM2-2.2B-Instruct",
    "500M": "SmolVLM2-500M-Video-Instruct",
    "256M": "SmolVLM2-256M-Video-Instruct",
}
LOOPS = ("trainer", "sft", "manual")
VARIANTS = ("noclip", "noamp")


@dataclass(frozen=True)
class LoopCase:
    """One measured step: checkpoint, sample, loop and recipe."""

    size: str  # "256M", "500M" or "2.2B"
    longest_edge: int
    gradient_checkpointing: bool
    batch: int
    images: int
    width: int
    height: int
    loop: str  # trainer, sft or manual
    precision: str = "bf16"  # or "mixed": fp32 model, bf16=True
    variant: str = ""

    @property
    def model(self) -> str:
        return _SIZES[self.size]

    @property
    def id(self) -> str:
        gc = "gc" if self.gradient_checkpointing else "nogc"
        parts = [self.size, f"le{self.longest_edge}", gc, f"b{self.batch}", f"i{self.images}",
                 f"{self.width}x{self.height}", self.loop]
        if self.precision != "bf16":
            parts.append(self.precision)
        if self.variant:
            parts.append(self.variant)
        return "-".join(parts)

    @classmethod
    def from_id(cls, case_id: str) -> LoopCase:
        size, edge, gc, batch, images, wh, loop, *rest = case_id.split("-")
        width, height = (int(v) for v in wh.split("x"))
        precision = "mixed" if "mixed" in rest else "bf16"
        variant = next((part for part in rest if part in VARIANTS), "")
        if loop not in LOOPS or any(p not in (*VARIANTS, "mixed") for p in rest):
            raise ValueError(f"{case_id}: unknown loop or part")
        return cls(size, int(edge[2:]), gc == "gc", int(batch[1:]), int(images[1:]), width,
                   height, loop, precision, variant)


def make_image(width: int, height: int, seed: int) -> Any:
    """A deterministic RGB photo-sized image (gradient plus noise)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    base = (x * (seed + 1) / 4 + y / 2) % 256
    noisy = base + rng.normal(0, 24, (height, width, 1)).astype(np.float32)
    return Image.fromarray(np.clip(np.broadcast_to(noisy, (height, width, 3)), 0, 255)
                           .astype(np.uint8), "RGB")


def messages(images: int) -> list[dict[str, Any]]:
    content: list[dict[str, str]] = [{"type": "image"} for _ in range(images)]
    content.append({"type": "text", "text": USER_TEXT})
    return [{"role": "user", "content": content},
            {"role": "assistant", "content": [{"type": "text", "text": ASSISTANT_TEXT}]}]


class _Marks:
    """Allocated bytes at the edges of each phase of a step, and each phase's peak."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.steps: list[dict[str, int]] = []
        self.current: dict[str, int] = {}
        self.phase_start = ""

    def _now(self) -> tuple[int, int, int]:
        import torch

        if self.device.type != "cuda":  # a CPU smoke run of the harness
            return 0, 0, 0
        torch.cuda.synchronize(self.device)
        return (int(torch.cuda.memory_allocated(self.device)),
                int(torch.cuda.max_memory_allocated(self.device)),
                int(torch.cuda.max_memory_reserved(self.device)))

    def begin(self) -> None:
        import torch

        allocated, _, _ = self._now()
        self.current = {"before": allocated}
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.step_peak = 0
        self.step_reserved = 0

    def mark(self, name: str) -> None:
        """End the running phase here: record its peak and what is allocated now."""
        import torch

        if not self.current:
            return
        allocated, peak, reserved = self._now()
        self.current[f"peak_{name}"] = peak
        self.current[f"after_{name}"] = allocated
        self.step_peak = max(self.step_peak, peak)
        self.step_reserved = max(self.step_reserved, reserved)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def end(self) -> None:
        self.mark("end")
        self.current["peak"] = self.step_peak
        self.current["reserved"] = self.step_reserved
        self.steps.append(self.current)
        self.current = {}


@contextmanager
def steady_peak(result: dict[str, Any], marks: _Marks, device: Any) -> Iterator[None]:
    """Run a case's training steps inside this block, and write what they measured into
    ``result``: ``oom`` (an out-of-memory error ends the block, recorded with its first
    line as ``error`` and, on a GPU, the peak it reached as ``partial_torch_allocated``;
    any other error propagates), ``steps`` (each step's marks), and ``steady``, the peak
    of step 2 (the steady state: the optimizer's states exist) with the card, where two
    steps ran on a GPU. Shared by ``loop_step.py`` and ``qwen_step.py``."""
    import torch

    try:
        yield
        result["oom"] = False
    except torch.OutOfMemoryError as exc:
        result["oom"] = True
        result["error"] = str(exc).splitlines()[0]
        if device.type == "cuda":
            result["partial_torch_allocated"] = int(torch.cuda.max_memory_allocated(device))
    result["steps"] = marks.steps
    if len(marks.steps) >= 2 and device.type == "cuda":
        result["steady"] = {"torch_allocated": marks.steps[1]["peak"],
                            "torch_reserved": marks.steps[1]["reserved"],
                            "device_name": torch.cuda.get_device_name(device),
                            "total_memory": torch.cuda.get_device_properties(device).total_memory}


def _build_model(folder: Path, case: LoopCase, device: Any) -> Any:
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(str(folder))
    config.use_cache = False
    config.text_config.use_cache = False
    dtype = torch.float32 if case.precision == "mixed" else torch.bfloat16
    auto: Any = AutoModelForImageTextToText
    torch.manual_seed(0)
    with torch.device(device):
        model = auto.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model


def _processor(folder: Path, case: LoopCase) -> Any:
    from transformers import AutoProcessor

    auto: Any = AutoProcessor
    return auto.from_pretrained(str(folder), size={"longest_edge": case.longest_edge},
                                local_files_only=True)


def _photos(case: LoopCase) -> list[Any]:
    return [make_image(case.width, case.height, seed) for seed in range(case.images)]


def _hooks(model: Any, marks: _Marks) -> Any:
    """Mark the end of the forward pass (the loss included: it is computed inside)."""
    return model.register_forward_hook(lambda module, args, output: marks.mark("forward"))


def _run_manual(folder: Path, case: LoopCase, device: Any, marks: _Marks,
                result: dict[str, Any]) -> None:
    import torch

    from pytest_tokenguard.processor.chat import render_chat

    processor = _processor(folder, case)
    text = render_chat(processor, messages(case.images))
    photos = _photos(case)
    batch = dict(processor(text=[text] * case.batch, images=[photos] * case.batch,
                           return_tensors="pt"))
    batch["labels"] = batch["input_ids"].clone()
    result["seq_len"] = int(batch["input_ids"].shape[1])
    result["tiles_per_sample"] = int(batch["pixel_values"].shape[1])
    inputs = {k: v.to(device) for k, v in batch.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    model = _build_model(folder, case, device)
    model.train()
    if case.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    result["weights_bytes"] = marks._now()[0]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    handle = _hooks(model, marks)
    for _ in range(3):
        marks.begin()
        loss = model(**inputs).loss
        loss.backward()
        del loss
        marks.mark("backward")
        optimizer.step()
        marks.mark("optimizer")
        optimizer.zero_grad(set_to_none=True)
        marks.end()
    handle.remove()


def _run_trainer(folder: Path, case: LoopCase, device: Any, marks: _Marks,
                 result: dict[str, Any]) -> None:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    processor = _processor(folder, case)
    photos = _photos(case)
    model = _build_model(folder, case, device)
    result["weights_bytes"] = marks._now()[0]
    common: dict[str, Any] = dict(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=case.batch, max_steps=3,
        learning_rate=1e-5, bf16=case.variant != "noamp", report_to="none",
        logging_steps=1000, save_strategy="no", dataloader_num_workers=0,
        gradient_checkpointing=case.gradient_checkpointing, seed=0,
        use_cpu=device.type != "cuda",
    )
    if case.variant == "noclip":
        common["max_grad_norm"] = 0.0

    class Marker(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            marks.begin()

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            marks.mark("clip")

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            marks.mark("optimizer")

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            marks.end()

    rows = [{"messages": messages(case.images), "images": photos}
            for _ in range(case.batch * 3)]
    if case.loop == "trainer":
        from pytest_tokenguard.processor.chat import render_chat

        text = render_chat(processor, messages(case.images))

        def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
            out = dict(processor(text=[text] * len(examples),
                                 images=[e["images"] for e in examples], return_tensors="pt"))
            out["labels"] = out["input_ids"].clone()
            result.setdefault("seq_len", int(out["input_ids"].shape[1]))
            result.setdefault("tiles_per_sample", int(out["pixel_values"].shape[1]))
            result.setdefault("input_dtypes", {k: str(v.dtype) for k, v in out.items()})
            return out

        trainer: Any = Trainer(
            model=model, args=TrainingArguments(remove_unused_columns=False, **common),
            train_dataset=_ListDataset(rows), data_collator=collate,
            callbacks=[Marker()])
    else:
        from trl import SFTConfig, SFTTrainer

        train = _dataset(rows)
        trainer = SFTTrainer(
            model=model, args=SFTConfig(max_length=None, **common), train_dataset=train,
            processing_class=processor, callbacks=[Marker()])
        if case.variant == "lp":
            from trl.trainer.utils import add_fused_lm_head

            add_fused_lm_head(model, outputs=("log_probs",))
        collator = trainer.data_collator

        def spy(examples: list[dict[str, Any]]) -> dict[str, Any]:
            out = collator(examples)
            result.setdefault("seq_len", int(out["input_ids"].shape[1]))
            result.setdefault("tiles_per_sample", int(out["pixel_values"].shape[1]))
            result.setdefault("input_dtypes", {k: str(v.dtype) for k, v in out.items()})
            result.setdefault("label_tokens", int((out["labels"] != -100).sum()))
            return dict(out)

        trainer.data_collator = spy
    clip = trainer._clip_grad_norm

    def clip_marked(*args: Any, **kwargs: Any) -> Any:
        marks.mark("backward")
        return clip(*args, **kwargs)

    trainer._clip_grad_norm = clip_marked
    handle = _hooks(trainer.model, marks)
    trainer.train()
    handle.remove()
    result["optimizer_class"] = type(trainer.optimizer.optimizer
                                     if hasattr(trainer.optimizer, "optimizer")
                                     else trainer.optimizer).__name__
    result["max_grad_norm"] = trainer.args.max_grad_norm
    result["gradient_checkpointing_kwargs"] = trainer.args.gradient_checkpointing_kwargs


class _ListDataset:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]


def _dataset(rows: list[dict[str, Any]]) -> Any:
    """A ``datasets.Dataset`` of ``rows``; the stub's list-backed one where ``datasets``
    is not installed (the GPU machine has no pyarrow; TRL only iterates the rows)."""
    import datasets

    if hasattr(datasets.Dataset, "from_list") and not getattr(datasets, "STUB", False):
        # real datasets cannot hold PIL images in a list column without features; keep rows
        return datasets.Dataset.from_list(rows)
    return datasets.Dataset(rows)


def measure_case(folder: Path, case: LoopCase) -> dict[str, Any]:
    import gc

    import torch

    from benchmarks.gpu.smolvlm_step import environment

    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    result: dict[str, Any] = {"case": case.id, **asdict(case), "model": case.model}
    marks = _Marks(device)
    started = time.perf_counter()
    with steady_peak(result, marks, device):
        if case.loop == "manual":
            _run_manual(folder, case, device, marks, result)
        else:
            _run_trainer(folder, case, device, marks, result)
    result["step_s"] = round(time.perf_counter() - started, 1)
    result["environment"] = {**environment(), "trl": _version("trl")}
    gc.collect()
    return result


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def main_one(case_id: str, models_dir: str) -> None:
    # folders of stand-ins for packages the GPU machine lacks (datasets, pyarrow), after
    # site-packages so that an installed package wins
    sys.path.extend(filter(None, os.environ.get("LOOP_STEP_EXTRA_PATH", "").split(":")))
    case = LoopCase.from_id(case_id)
    folder = Path(models_dir) / "HuggingFaceTB" / case.model
    print(json.dumps(measure_case(folder, case)), flush=True)


def _reservation(case_id: str) -> float:
    """GiB to hold back for a case while others run beside it on the same GPU: the manual
    loop's prediction, plus what the Trainer's autocast may add, plus the CUDA context."""
    from pytest_tokenguard.counting import count_image
    from pytest_tokenguard.gpu.model import KNOWN_ARCHITECTURES, estimate_step
    from pytest_tokenguard.specs import KNOWN_SPECS

    case = LoopCase.from_id(case_id)
    hub = f"HuggingFaceTB/{case.model}"
    cost = count_image(case.width, case.height, case.longest_edge, KNOWN_SPECS[hub])
    estimate = estimate_step(
        KNOWN_ARCHITECTURES[hub], tiles_per_sample=case.images * cost.patches,
        seq_len=case.images * cost.block_tokens + 60, batch=case.batch,
        gradient_checkpointing=case.gradient_checkpointing, loop="manual",
        dtype="float32" if case.precision == "mixed" else "bfloat16")
    return estimate.peak_gib * (1.1 if case.gradient_checkpointing else 1.25) + 2.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default="../shared/models")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cases", required=True, help="comma-separated ids or 'all'")
    parser.add_argument("--memory-gib", type=float, default=74.0,
                        help="GPU memory the cases running side by side may reserve")
    parser.add_argument("--parallel", type=int, default=3)
    parser.add_argument("--budget", type=float, default=480.0)
    parser.add_argument("--case-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    cases = CASES if args.cases == "all" else args.cases.split(",")
    started = time.perf_counter()
    cond = threading.Condition()
    free = [args.memory_gib]
    results: dict[str, dict[str, Any]] = {}
    report: dict[str, Any] = {"cases": []}

    pending = {case_id: min(_reservation(case_id), args.memory_gib) for case_id in cases}

    def take() -> tuple[str, float] | None:
        """The first pending case that fits beside those running (greedy packing)."""
        with cond:
            while pending:
                fits = [c for c, need in pending.items() if need <= free[0]]
                if fits:
                    need = pending.pop(fits[0])
                    free[0] -= need
                    return fits[0], need
                cond.wait()
            return None

    def worker() -> None:
        while (taken := take()) is not None:
            case_id, need = taken
            try:
                if time.perf_counter() - started > args.budget:
                    result: dict[str, Any] = {"case": case_id, "error": "not run: time budget"}
                else:
                    result = _subprocess(case_id, args.models_dir, args.case_timeout)
            finally:
                with cond:
                    free[0] += need
                    cond.notify_all()
            record(case_id, result, need)

    def record(case_id: str, result: dict[str, Any], need: float) -> None:
        with cond:
            results[case_id] = result
            steady = result.get("steady") or {}
            if "card" not in report and steady:
                report["card"] = steady["device_name"]
                report["total_memory"] = steady["total_memory"]
                report["environment"] = result["environment"]
            report["cases"] = [results[c] for c in cases if c in results]
            print(f"{case_id:48s} peak={steady.get('torch_allocated', 0) / 2**30:.2f}GiB "
                  f"need={need:.1f} {result.get('error', '')[:300]} "
                  f"({time.perf_counter() - started:.0f}s)", flush=True)
            args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")

    threads = [threading.Thread(target=worker) for _ in range(args.parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 0


def run_case(case_id: str, code: str, args: list[str], timeout: float,
             env: dict[str, str], tail_lines: int = 6) -> dict[str, Any]:
    """One case in a fresh Python process running ``code`` with ``args``: the last JSON
    line it printed, or an error naming the timeout or its exit and last lines (shared by
    this driver and ``qwen_step.py``'s)."""
    try:
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"case": case_id, "error": f"timed out after {timeout:.0f}s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-tail_lines:]
        return {"case": case_id, "error": f"exit {done.returncode}: " + " | ".join(tail)}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _subprocess(case_id: str, models_dir: str, timeout: float) -> dict[str, Any]:
    return run_case(case_id, "import sys; from benchmarks.gpu.loop_step import main_one; "
                    "main_one(sys.argv[1], sys.argv[2])", [case_id, models_dir], timeout,
                    {**os.environ, "TOKENIZERS_PARALLELISM": "false"})


#: Issue 20's grid: the three checkpoints, each loop, with and without gradient
#: checkpointing, phone photos (4032x3024) and 640x480, several edges and batches; the
#: toggles that find where the memory lives on the issue's own case (256M, 1536, b2).
CASES = [
    "256M-le1536-nogc-b2-i4-640x480-trainer",
    "256M-le1536-nogc-b2-i4-640x480-sft",
    "2.2B-le1152-nogc-b1-i2-4032x3024-trainer",
    "2.2B-le1152-nogc-b1-i2-4032x3024-sft",
    "2.2B-le768-gc-b1-i4-640x480-trainer-mixed",
    "2.2B-le1536-gc-b1-i4-4032x3024-trainer",
    "2.2B-le1536-gc-b2-i4-640x480-sft",
    "2.2B-le768-nogc-b1-i4-640x480-trainer",
    "2.2B-le768-nogc-b1-i4-640x480-trainer-noamp",
    "2.2B-le384-nogc-b2-i4-640x480-trainer",
    "500M-le1536-nogc-b1-i4-4032x3024-trainer",
    "500M-le1536-nogc-b1-i4-4032x3024-sft",
    "500M-le1024-nogc-b1-i4-640x480-trainer-mixed",
    "500M-le2048-nogc-b1-i2-640x480-trainer",
    "256M-le1024-nogc-b4-i2-4032x3024-trainer",
    "256M-le512-nogc-b8-i4-640x480-sft",
    "256M-le1536-nogc-b1-i4-640x480-manual",
    "256M-le1536-nogc-b1-i4-640x480-trainer",
    "256M-le1536-nogc-b1-i4-640x480-trainer-noclip",
    "256M-le1536-nogc-b1-i4-640x480-trainer-noamp",
    "256M-le2048-nogc-b1-i2-4032x3024-trainer",
    "256M-le768-nogc-b1-i4-640x480-sft-mixed",
    "500M-le1536-gc-b2-i4-4032x3024-trainer",
    "500M-le768-gc-b4-i4-640x480-sft",
    "500M-le1536-gc-b1-i4-640x480-trainer-mixed",
    "256M-le1536-gc-b2-i4-640x480-trainer",
    "256M-le1536-gc-b2-i4-640x480-sft",
    "256M-le2048-gc-b1-i4-4032x3024-sft",
]


if __name__ == "__main__":
    raise SystemExit(main())
