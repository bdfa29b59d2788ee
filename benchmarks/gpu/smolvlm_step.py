"""One SmolVLM2 fine-tuning step, built the way users build it, for measuring its GPU peak.

The GPU regression tests and ``benchmarks/gpu/measure_step.py`` share this code, so
the recorded table and the tests measure the same thing. The recipe measured:

* the model is built from the checkpoint's ``config.json`` with random weights
  (``AutoModelForImageTextToText.from_config``), **pure bf16**: parameters and
  gradients in bf16, and ``torch.optim.AdamW`` (its default foreach implementation),
  whose two moment buffers are ``zeros_like(param)`` and therefore bf16 too. This is
  what loading a checkpoint in bf16 and training it with AdamW gives (the SmolVLM
  fine-tuning notebooks, or the HF Trainer on a bf16 model); a recipe with fp32
  master weights would add 12 bytes per parameter and is not measured here;
* attention through ``sdpa`` (transformers' default on GPU);
* inputs made by the real processor at ``size={"longest_edge": N}`` from samples of
  ``images`` generated 384x384 frames plus a short user/assistant exchange through
  the checkpoint's chat template; ``labels = input_ids`` (every token is a target);
* recipes (issue 10), each a suffix of the case id: the optimizer (``fused`` for
  ``AdamW(fused=True)``, the HF Trainer's default ``adamw_torch_fused``; ``sgd``;
  none for ``AdamW(foreach=True)``, the recipe of the first recorded cases); LoRA
  through peft (``lora8``: rank 8, alpha 8, dropout 0, on :data:`LORA_TARGETS`,
  adapters in fp32 as ``get_peft_model`` makes them; ``lora8d``: dropout 0.1 as the
  SmolVLM notebook sets it); frozen towers (``fzvision``, ``fztext``: their
  parameters get ``requires_grad=False``); data parallel on N GPUs (``ddpN``:
  ``DistributedDataParallel`` with its default buckets; ``fsdpN``: FSDP2
  ``fully_shard`` on every vision encoder layer and text decoder layer, then the
  root), one process per GPU through ``torchrun`` (``benchmarks/gpu/dist_step.py``),
  each rank with its own batch of ``batch`` samples;
* the peak that matters is the **steady-state** step: the first step allocates the
  optimizer's moments after backward, so from the second step on they are held
  through forward and backward too. Step 1 is run and recorded ("cold"), step 2 is
  the headline measure, step 3 is split into phases for the memory model.

torch, transformers and PIL are imported inside functions only.
"""

from __future__ import annotations

import gc
import json
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pytest_tokenguard.gpu.measure import GpuMeasure
from pytest_tokenguard.processor.chat import render_chat

#: Text of every sample; the assistant answer is long enough that text is not nil.
USER_TEXT = "Describe what changes across these video frames, one sentence per frame."
ASSISTANT_TEXT = (
    "The first frame shows a bright gradient. In the second the gradient turns darker. "
    "The third frame adds coarse noise, and the last one fades to a flat colour."
)
FRAME_SIDE = 384


#: peft ``target_modules`` of the measured LoRA cases: the SmolVLM fine-tuning notebook's.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_SIZES = {
    "2.2B": "SmolVLM2-2.2B-Instruct",
    "500M": "SmolVLM2-500M-Video-Instruct",
    "256M": "SmolVLM2-256M-Video-Instruct",
}


@dataclass(frozen=True)
class StepCase:
    """One measured configuration: which checkpoint, at which resolution, how trained."""

    model: str  # folder name under HuggingFaceTB/, e.g. "SmolVLM2-2.2B-Instruct"
    longest_edge: int
    gradient_checkpointing: bool
    batch: int = 1
    images: int = 4
    optimizer: str = "adamw-foreach"  # or "adamw-fused", "sgd"
    lora_rank: int = 0
    lora_dropout: float = 0.0
    freeze: str = ""  # "", "vision" or "text"
    gpus: int = 1
    sharding: str = "none"  # "none", "ddp" or "fsdp"

    @property
    def id(self) -> str:
        size = self.model.split("-")[1]
        gc_part = "gc" if self.gradient_checkpointing else "nogc"
        parts = [f"{size}-le{self.longest_edge}-{gc_part}-b{self.batch}-i{self.images}"]
        if self.optimizer != "adamw-foreach":
            parts.append({"adamw-fused": "fused", "sgd": "sgd"}[self.optimizer])
        if self.lora_rank:
            parts.append(f"lora{self.lora_rank}" + ("d" if self.lora_dropout else ""))
        if self.freeze:
            parts.append(f"fz{self.freeze}")
        if self.sharding != "none":
            parts.append(f"{self.sharding}{self.gpus}")
        return "-".join(parts)

    @classmethod
    def from_id(cls, case_id: str) -> StepCase:
        size, edge, gc_part, batch, images, *rest = case_id.split("-")
        extra: dict[str, Any] = {}
        for part in rest:
            if part in ("fused", "sgd"):
                extra["optimizer"] = {"fused": "adamw-fused", "sgd": "sgd"}[part]
            elif part.startswith("lora"):
                extra["lora_rank"] = int(part[4:].rstrip("d"))
                extra["lora_dropout"] = 0.1 if part.endswith("d") else 0.0
            elif part.startswith("fz"):
                extra["freeze"] = part[2:]
            elif part.startswith(("ddp", "fsdp")):
                name = part.rstrip("0123456789")
                extra["sharding"], extra["gpus"] = name, int(part[len(name):])
            else:
                raise ValueError(f"{case_id}: unknown part {part!r}")
        return cls(_SIZES[size], int(edge[2:]), gc_part == "gc", int(batch[1:]),
                   int(images[1:]), **extra)


def make_frames(count: int, seed: int) -> list[Any]:
    """``count`` deterministic 384x384 RGB frames (gradients plus noise, like video)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, FRAME_SIDE, dtype=np.float32)
    frames = []
    for index in range(count):
        base = (ramp[None, :, None] * (index + 1) / count + ramp[:, None, None] / 2) % 256
        noisy = base + rng.normal(0, 24, (FRAME_SIDE, FRAME_SIDE, 3))
        frames.append(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB"))
    return frames


def build_inputs(folder: Path, case: StepCase) -> dict[str, Any]:
    """The processor's batch (CPU tensors) for ``case``, with ``labels = input_ids``."""
    from transformers import AutoProcessor

    auto: Any = AutoProcessor  # transformers' loaders are untyped
    processor = auto.from_pretrained(
        str(folder), size={"longest_edge": case.longest_edge}, local_files_only=True
    )
    content: list[dict[str, str]] = [{"type": "image"} for _ in range(case.images)]
    content.append({"type": "text", "text": USER_TEXT})
    messages = [
        {"role": "user", "content": content},
        {"role": "assistant", "content": [{"type": "text", "text": ASSISTANT_TEXT}]},
    ]
    text = render_chat(processor, messages)
    images = [make_frames(case.images, seed) for seed in range(case.batch)]
    batch = processor(text=[text] * case.batch, images=images, return_tensors="pt")
    inputs = dict(batch)
    inputs["labels"] = inputs["input_ids"].clone()
    return inputs


def build_model(folder: Path, case: StepCase, device: Any) -> Any:
    """The checkpoint's architecture with random bf16 weights, built on ``device``, with
    the case's frozen parts, gradient checkpointing and LoRA adapters applied."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(str(folder))
    config.use_cache = False
    config.text_config.use_cache = False
    auto: Any = AutoModelForImageTextToText  # transformers' loaders are untyped
    torch.manual_seed(0)
    with torch.device(device):
        model = auto.from_config(
            config, dtype=torch.bfloat16, attn_implementation="sdpa"
        )
    model.train()
    if case.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    frozen = []
    if case.freeze == "vision":
        frozen = [model.model.vision_model]
    elif case.freeze == "text":
        frozen = [model.model.text_model, model.lm_head]
    for part in frozen:
        part.requires_grad_(False)
    if case.lora_rank:
        from peft import LoraConfig, get_peft_model

        targets: Any = list(LORA_TARGETS)
        if case.freeze:
            # no adapters inside a frozen tower: only the other tower's modules
            tower = "text_model" if case.freeze == "vision" else "vision_model"
            targets = rf".*\.{tower}\..*\.({'|'.join(LORA_TARGETS)})"
        lora = LoraConfig(r=case.lora_rank, lora_alpha=case.lora_rank,
                          lora_dropout=case.lora_dropout, target_modules=targets)
        model = get_peft_model(model, lora)
    return model


def unwrap(model: Any) -> Any:
    """The SmolVLM ``...ForConditionalGeneration`` inside DDP and peft wrappers."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    if hasattr(model, "get_base_model"):  # peft
        model = model.get_base_model()
    return model


def make_optimizer(model: Any, case: StepCase) -> Any:
    """The case's optimizer over the trainable parameters."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if case.optimizer == "sgd":
        return torch.optim.SGD(params, lr=1e-4)
    fused = case.optimizer == "adamw-fused"
    return torch.optim.AdamW(params, lr=1e-5, fused=fused, foreach=None if fused else True)


def training_step(model: Any, optimizer: Any, inputs: dict[str, Any]) -> float:
    """Forward, backward, optimizer step, ``zero_grad(set_to_none=True)``; the loss."""
    loss = model(**inputs).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _phases(model: Any, optimizer: Any, inputs: dict[str, Any], device: Any) -> dict[str, int]:
    """Allocated bytes around each phase of one step, and the vision/text split of the
    forward pass (forward hooks), for calibrating the memory model."""
    import torch

    marks: dict[str, int] = {}

    def pre(name: str) -> Any:
        def hook(module: Any, args: Any, kwargs: Any = None) -> None:
            marks.setdefault(f"{name}_in", int(torch.cuda.memory_allocated(device)))

        return hook

    def post(name: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            marks.setdefault(f"{name}_out", int(torch.cuda.memory_allocated(device)))

        return hook

    inner = unwrap(model).model
    handles = []
    for name, module in (
        ("vision", inner.vision_model),
        ("connector", inner.connector),
        ("text", inner.text_model),
    ):
        handles.append(module.register_forward_pre_hook(pre(name)))
        handles.append(module.register_forward_hook(post(name)))
    try:
        torch.cuda.synchronize(device)
        marks["before_forward"] = int(torch.cuda.memory_allocated(device))
        torch.cuda.reset_peak_memory_stats(device)
        loss = model(**inputs).loss
        torch.cuda.synchronize(device)
        marks["after_forward"] = int(torch.cuda.memory_allocated(device))
        marks["peak_forward"] = int(torch.cuda.max_memory_allocated(device))
        torch.cuda.reset_peak_memory_stats(device)
        loss.backward()
        del loss
        torch.cuda.synchronize(device)
        marks["after_backward"] = int(torch.cuda.memory_allocated(device))
        marks["peak_backward"] = int(torch.cuda.max_memory_allocated(device))
        torch.cuda.reset_peak_memory_stats(device)
        optimizer.step()
        torch.cuda.synchronize(device)
        marks["after_step"] = int(torch.cuda.memory_allocated(device))
        marks["peak_step"] = int(torch.cuda.max_memory_allocated(device))
        optimizer.zero_grad(set_to_none=True)
    finally:
        for handle in handles:
            handle.remove()
    return marks


def parameter_counts(model: Any) -> dict[str, int]:
    """All parameters (adapters included) and the trainable ones, counted on the model."""
    params = list(model.parameters())
    return {
        "parameters": sum(int(p.numel()) for p in params),
        "trainable_parameters": sum(int(p.numel()) for p in params if p.requires_grad),
    }


def environment() -> dict[str, Any]:
    """Versions that decide the numbers: torch, CUDA, transformers, Python, allocator."""
    import os

    import torch
    import transformers

    return {
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
        "transformers": str(transformers.__version__),
        "python": platform.python_version(),
        "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""),
        "peft": _version("peft"),
        "nccl": (".".join(map(str, torch.cuda.nccl.version()))
                 if torch.cuda.is_available() else None),
    }


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def measure_case(folder: Path, case: StepCase, device_index: int = 0) -> dict[str, Any]:
    """Build, run three steps of ``case`` and return everything measured (JSON-ready).

    An out-of-memory error is a result too (``"oom": true`` and the peak up to it).
    """
    import torch

    device = torch.device("cuda", device_index)
    torch.cuda.set_device(device)
    result: dict[str, Any] = {"case": case.id, **asdict(case)}
    inputs = build_inputs(folder, case)
    result["seq_len"] = int(inputs["input_ids"].shape[1])
    result["pixel_values_shape"] = list(inputs["pixel_values"].shape)
    result["tiles_per_sample"] = int(inputs["pixel_values"].shape[1])
    result["input_dtypes"] = {key: str(value.dtype) for key, value in inputs.items()}
    inputs = {key: value.to(device) for key, value in inputs.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    model = optimizer = None
    measure: GpuMeasure | None = None
    try:
        with GpuMeasure(device_index) as build:
            model = build_model(folder, case, device)
        result["build"] = build.peak.to_dict()
        result.update(parameter_counts(model))
        result["weights_bytes"] = int(torch.cuda.memory_allocated(device))
        optimizer = make_optimizer(model, case)
        with GpuMeasure(device_index, empty_cache=False) as measure:
            result["loss_cold"] = training_step(model, optimizer, inputs)
        result["cold"] = measure.peak.to_dict()
        with GpuMeasure(device_index, empty_cache=False) as measure:
            result["loss"] = training_step(model, optimizer, inputs)
        result["steady"] = measure.peak.to_dict()
        result["phases"] = _phases(model, optimizer, inputs, device)
        result["oom"] = False
    except torch.OutOfMemoryError as exc:
        result["oom"] = True
        result["error"] = str(exc).splitlines()[0]
        if measure is not None and measure._peak is not None:
            result["partial"] = measure.peak.to_dict()
        else:
            result["partial_torch_allocated"] = int(torch.cuda.max_memory_allocated(device))
    finally:
        del model, optimizer, inputs
        gc.collect()
        torch.cuda.empty_cache()
    result["environment"] = environment()
    return result


def main_one(case_id: str, models_dir: str) -> None:
    """Entry for a subprocess: measure one case, print its JSON on the last line."""
    case = StepCase.from_id(case_id)
    folder = Path(models_dir) / "HuggingFaceTB" / case.model
    print(json.dumps(measure_case(folder, case)), flush=True)
