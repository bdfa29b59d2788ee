"""Predict the per-GPU peak of one SmolVLM2 (or Qwen2.5-VL) training step from the model's
shapes alone.

Most CI has no GPU, so this model lets CI gate "fits in 80 GB" from ``config.json``,
the tiles the processor makes, the text length and the training recipe. Memory
estimators in the wild (accelerate's ``estimate-memory``, DeepSpeed's) count weights and
optimizer states only; for a VLM the vision tower's activations grow with every image
tile and are usually the largest term, so they are modelled here layer by layer.

**Families.** SmolVLM2's towers are :class:`Architecture` itself; another family supplies
a subclass on the family seam (``memory_architecture``: Qwen2.5-VL's window-attention ViT
and Qwen2 text model, ``families/qwen_memory.py``), with its own per-layer terms and sample
arithmetic (``memory_sample``: Qwen's patches from ``max_pixels``, one size per image, a
video's frames); everything below applies to both.

**What is modelled** (:class:`StepShape`, one definition shared by this module,
``tokenguard memory`` and the ``limit_predicted_gpu_memory`` marker): pure bf16 (or
fp16/fp32) parameters and gradients, or **mixed precision** (an fp32 model under the
Trainer's ``bf16=True``: fp32 weights, gradients and AdamW states, autocast's bf16 copies
of every Linear weight from the forward to its layer's backward, the fp32 residual stream
and norms, each Linear's own bf16 cast of its input), ``sdpa`` attention,
``labels = input_ids``, the
steady-state step (optimizer states already exist when forward runs; under DDP, the
second step, whose transient is described below), and

* the optimizer: ``adamw-fused`` (``torch.optim.AdamW(fused=True)``, the Hugging Face
  Trainer's default ``adamw_torch_fused`` and the default here), ``adamw-foreach``
  (``AdamW(foreach=True)``, torch's own default) or ``sgd`` (no momentum);
* full fine-tuning, or LoRA through peft (``get_peft_model`` with its defaults: adapters
  in fp32, the input of each adapted Linear cast to fp32) on the Linear modules that
  ``lora_targets`` names, matched by peft's rule;
* frozen towers (``freeze``: the vision tower, or the text model with ``lm_head``);
* data parallelism on ``gpus`` GPUs, one process each: ``ddp`` (DistributedDataParallel
  with its default gradient buckets) or ``fsdp`` (FSDP2 ``fully_shard`` on every encoder
  and decoder layer, then the root), ``batch`` samples per GPU.

Anything else is refused with :class:`MemoryModelError`, never approximated.

The peak predicted is **torch's peak allocated** memory on the busiest GPU: what must be
live at once. The allocator's reserved memory and the driver's view add a cache and the
CUDA context on top; ``docs/gpu-memory.md`` records by how much.

How the terms are derived (``b`` = bytes per element of the dtype, 2 for bf16), from
what autograd saves for backward (a Linear saves its input only when its weight is
trained; a frozen one saves nothing but its weight):

* a SigLIP vision layer saves its two LayerNorm inputs (``b·h`` each, plus fp32 mean
  and rstd), q/k/v and the attention output (``4·b·h``, plus the fp32 log-sum-exp per
  head), the fc1 output (GELU's input, ``b·i``) and, for each trained Linear, its input
  (LayerNorm outputs ``b·h``, GELU output ``b·i``); a Llama text layer saves per RMSNorm
  the fp32 upcast (``4·h``), the normalised bf16 value when the norm's weight trains,
  ``b·(2·heads + 2·kv_heads)·head_dim`` for attention, ``3·b·i`` for the SwiGLU MLP, and
  the inputs of trained Linears; a LoRA adapter saves the fp32 copy of its input
  (``4·in``), plus a 1-byte dropout mask per element when dropout is on, and its ``r``
  intermediate values;
* with gradient checkpointing each layer keeps only its input (``b·h`` per token) and
  one layer is recomputed at a time during backward;
* the loss upcasts the logits to fp32: the forward briefly holds ``b + 4 + 4`` bytes
  per logit (bf16 logits, fp32 copy, log-softmax) and keeps 4; the backward's first
  node holds 8 more;
* the step holds weights + optimizer states throughout, gradients as backward makes
  them; AdamW keeps two moments per trained parameter, its foreach step allocates one
  parameter-sized temporary, the fused step none; SGD keeps nothing;
* DDP adds its gradient buckets, a second copy of the trained gradients, held from
  construction on, and in its second step the first step's bucket too (below); FSDP2
  keeps ``1/gpus`` of parameters, gradients and states, plus what does not shrink with
  more GPUs: every activation, the root's parameters (embeddings, connector, norms,
  ``lm_head``), which it keeps gathered from forward to the end of backward, the root's
  gradients at full size until its reduce-scatter at the end of backward, and the layers
  being all-gathered, reduced and prefetched (:data:`FSDP_LAYER_BUFFERS` layer-sized
  buffers).

The peak is the largest of six moments of the step (end of forward, start of backward,
start of the vision tower's backward, end of backward, the embedding's backward,
optimizer step); :attr:`MemoryEstimate.phase` says which one sets it. The derived terms
were checked against per-phase GPU measurements of all three checkpoints
(``benchmarks/gpu``). Measured constants, not derived: :data:`LIBRARY_WORKSPACES` (the
CUDA libraries' workspaces), :data:`FSDP_LAYER_BUFFERS` (how many layer-sized buffers
FSDP2 holds at once) and the 14 bytes per pixel of the processor's inputs on the GPU.

**DDP's second step.** A run's peak is the largest over all its steps, so a transient of
step 2 must fit too. Derived from torch's source (read for 2.14 and its C++ headers; the
recorded runs used 2.11): with ``find_unused_parameters=False`` (DDP's default) the first
step reduces every gradient in ONE flat bucket (``bucket_size_limits=[sys.maxsize]``); at
the next forward (``_rebuild_buckets``, before any activation) the reducer drops it for
25 MiB buckets. That bucket was the tensor of the first step's all-reduce, and
ProcessGroupNCCL stashes an async collective's tensors (``stashed_for_allocator_safety_``)
until ``work.wait()``, which DDP never calls (it waits on the future); the watchdog,
polling every 100 ms, hands a finished work's stash to the main thread, which drops it at
the next collective it issues. After the rebuild those are the buffer broadcast before
the forward, then the bucket all-reduces of backward, the first once ``lm_head``'s
gradient exists (the first ready, alone in the 1 MiB first bucket). So when the watchdog
has not polled between the first all-reduce finishing and that broadcast, a flat copy of
every trained gradient stays allocated through step 2's forward and the loss's backward:
the moments "end of forward" and "start of backward" hold that much more
(:attr:`MemoryEstimate.first_bucket`), in step 2 only. Measured: the recorded 256M DDP
step 2 peaks exactly that block (513,802,240 bytes) above its step 3's backward peak; the
2.2B and 500M DDP runs (and a probe of the 256M) freed it before their forward's peak.
Whether it is held is a race of the watchdog against the step, which a model of shapes
cannot time: the model predicts the held case (``peak_bytes``), and the peak from step 3
on is :attr:`MemoryEstimate.steady_peak_bytes`. Assumed, not measured: that the watchdog
has polled by step 2's first bucket all-reduce; a step 2 that issues it within 100 ms of
step 1's all-reduce finishing could hold the bucket at later moments too (no recorded case
shows it; it would not raise the 256M's peak, and would raise the 2.2B's at the vision
tower's backward by another 2.2 GiB). FSDP2 keeps no bucket across steps (its recorded
second steps peak as its third), nor does DDP with ``find_unused_parameters=True`` (25 MiB
buckets from the start, never rebuilt): for that the prediction is one gradient set high.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from ..counting import count_image
from ..errors import MemoryModelError as MemoryModelError
from ..errors import TokenguardError
from ..specs import ModelSpec
from ..units import format_bytes
from ..verdict import LimitResult

__all__ = [
    "DEFAULT_LORA_TARGETS",
    "DTYPE_BYTES",
    "FREEZABLE",
    "FSDP_LAYER_BUFFERS",
    "FUSED_HEAD_TOKENS",
    "FUSED_HEAD_VOCAB",
    "KNOWN_ARCHITECTURES",
    "LIBRARY_WORKSPACES",
    "LOOPS",
    "LOOP_TABLE",
    "OPTIMIZERS",
    "OPTIMIZER_TABLE",
    "SHARDINGS",
    "Architecture",
    "LinearModule",
    "Loop",
    "MemoryEstimate",
    "MemoryModelError",
    "Optimizer",
    "ShapeField",
    "StepShape",
    "architecture_from_config",
    "check_predicted_for_model",
    "check_predicted_limit",
    "estimate_for_model",
    "estimate_step",
    "lora_modules",
    "resolve_model",
    "sample_shape",
    "shape_fields",
    "validate",
]

DTYPE_BYTES = {"bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "float32": 4, "fp32": 4}
GIB = 1024**3

#: Memory torch's allocator holds beyond weights, moments and inputs before the
#: forward pass: measured 70-136 MB across the recorded cases, so its floor is taken.
#: Attributed (not verified) to cuBLAS workspaces, 32 MiB per handle on Hopper, one
#: for the forward thread and one for autograd's backward thread.
LIBRARY_WORKSPACES = 2 * 32 * 1024**2

#: FSDP2's layer-sized buffers live at once during backward: the layer's all-gathered
#: parameters, the next layer's (prefetched), the layer's unsharded gradients and the
#: reduce-scatter input they are copied into. Measured (see ``docs/gpu-memory.md``).
FSDP_LAYER_BUFFERS = 4

#: Bytes per element of the embedding table that its backward holds beyond the gradient,
#: measured (steps whose peak is the end of backward reach that much above weights,
#: states and gradients), attributed to an fp32 accumulation buffer and sort buffers.
EMBEDDING_BACKWARD = 5

#: The SmolVLM fine-tuning notebook's LoRA targets: every projection of attention and MLP.
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                        "down_proj")
@dataclass(frozen=True)
class Optimizer:
    """What an optimizer implementation keeps and allocates, per byte of trained parameter."""

    name: str
    help: str
    #: state buffers per trained parameter, each ``zeros_like(param)`` (AdamW's two moments)
    states: int
    #: the foreach step's temporaries: one parameter-sized (the second moment's square
    #: root) and, measured, one more of the largest tensor (the vocab x hidden table)
    foreach_temporary: bool


#: The optimizer implementations modelled, by name: one row each, no branch on a name.
OPTIMIZER_TABLE: dict[str, Optimizer] = {
    opt.name: opt
    for opt in (
        Optimizer("adamw-fused", "torch.optim.AdamW(fused=True), the HF Trainer's default "
                  "adamw_torch_fused", states=2, foreach_temporary=False),
        Optimizer("adamw-foreach", "torch.optim.AdamW(foreach=True), torch's own default",
                  states=2, foreach_temporary=True),
        Optimizer("sgd", "torch.optim.SGD without momentum: no state", states=0,
                  foreach_temporary=False),
    )
}
#: ``adamw`` is kept as an alias of ``adamw-foreach`` (what ``torch.optim.AdamW`` runs by
#: default, and what the first recorded cases used); the Trainer's ``optim`` names too.
OPTIMIZERS = tuple(OPTIMIZER_TABLE)
_OPTIMIZER_ALIASES = {"adamw": "adamw-foreach", "adamw_torch_fused": "adamw-fused",
                      "adamw_torch": "adamw-foreach"}


@dataclass(frozen=True)
class Loop:
    """The training loop that runs the step, and what it changes in memory (issue 20)."""

    name: str
    help: str
    #: the forward runs under ``torch.autocast(bfloat16)`` (the Trainer's ``bf16=True``,
    #: through accelerate): LayerNorm is on autocast's fp32 list, so each vision LayerNorm
    #: saves an fp32 copy of its input, and each Linear that reads its fp32 output saves
    #: its own bf16 cast of it (three for q, k, v)
    autocast: bool
    #: bytes per channel of the pixel values on the GPU: the processor's fp32 tensor as the
    #: Trainer's collator hands it over (4), or cast to the model's dtype first (None)
    pixel_bytes: int | None
    #: TRL's fused LM head: log-probabilities computed in vocabulary chunks, never the full
    #: logits; it saves the hidden states it scores and its gradients accumulate in fp32
    fused_lm_head: bool


#: The loops modelled, by name. The default is the loop most users run.
LOOP_TABLE: dict[str, Loop] = {
    loop.name: loop
    for loop in (
        Loop("trainer", "transformers' Trainer with bf16=True (autocast), its collator's fp32 "
             "pixel values, gradient clipping", autocast=True, pixel_bytes=4,
             fused_lm_head=False),
        Loop("sft-trainer", "TRL's SFTTrainer (bf16=True, its vision collator, its fused LM "
             "head: no full logits)", autocast=True, pixel_bytes=4, fused_lm_head=True),
        Loop("manual", "loss.backward(); optimizer.step() on a model loaded in dtype, pixel "
             "values cast to it, no autocast", autocast=False, pixel_bytes=None,
             fused_lm_head=False),
    )
}
LOOPS = tuple(LOOP_TABLE)
_LOOP_ALIASES = {"sft": "sft-trainer", "sfttrainer": "sft-trainer", "hf-trainer": "trainer"}

#: TRL's fused LM head (``trl.kernels.chunked_logprob``, TRL 1.16): tiles of this many
#: tokens by this many vocabulary entries.
FUSED_HEAD_TOKENS = 4096
FUSED_HEAD_VOCAB = 32768

FREEZABLE = ("vision", "text")
SHARDINGS = ("ddp", "fsdp")


def _meta(help_text: str, accepted: str, kind: str,
          choices: tuple[str, ...] = ()) -> dict[str, Any]:
    """A field's help, accepted values and ``kind``: how a command line spells it
    (``count``/``positive``: an integer from 0/1, ``positive?``: one or none, ``flag``,
    ``choice``/``choice?``: one of ``choices`` (or none), ``choices``: repeatable,
    ``size``: WIDTHxHEIGHT, ``names``: comma-separated, ``fraction``)."""
    return {"help": help_text, "accepted": accepted, "kind": kind, "choices": choices}


@dataclass(frozen=True)
class StepShape:
    """The sample and the recipe of one training step: every keyword the memory model
    takes, checked on construction (:func:`validate` builds one from keywords).

    The one definition behind ``estimate_for_model``, ``tokenguard memory``'s options and
    the ``limit_predicted_gpu_memory`` marker's keywords: each field's metadata carries
    its help text and accepted values (:func:`shape_fields`).
    """

    longest_edge: int | None = field(default=None, metadata=_meta(
        "processor resolution in pixels (default: the checkpoint's own)",
        "a positive integer, or None for the checkpoint's default", "positive?"))
    images: int | None = field(default=None, metadata=_meta(
        "images per sample (default: one per image size given, or 4 of one size)",
        "an integer, 0 or more, or None", "count?"))
    image_size: tuple[tuple[int, int], ...] = field(default=((384, 384),), metadata=_meta(
        "WIDTHxHEIGHT of the images: one size for every image, or one size per image",
        "a size such as (384, 384) or '384x384', or a list of them, one per image", "sizes"))
    max_pixels: int | None = field(default=None, metadata=_meta(
        "Qwen-VL: the processor's max_pixels (default: the checkpoint's)",
        "a positive integer, or None for the checkpoint's", "positive?"))
    video: tuple[int, int, int] | None = field(default=None, metadata=_meta(
        "Qwen-VL: one video per sample, WIDTHxHEIGHTxFRAMES (the frames handed to the "
        "processor)", "three positive integers, e.g. (640, 480, 16) or '640x480x16'",
        "video"))
    text_tokens: int = field(default=64, metadata=_meta(
        "text tokens per sample besides the image blocks", "an integer, 0 or more", "count"))
    batch: int = field(default=1, metadata=_meta(
        "samples per step on each GPU", "an integer, 1 or more", "positive"))
    gradient_checkpointing: bool = field(default=False, metadata=_meta(
        "recompute each layer in backward (non-reentrant checkpointing)", "True or False",
        "flag"))
    dtype: str = field(default="bfloat16", metadata=_meta(
        "dtype of parameters, gradients and optimizer states", ", ".join(DTYPE_BYTES),
        "choice", tuple(DTYPE_BYTES)))
    loop: str = field(default="trainer", metadata=_meta(
        "the training loop: " + "; ".join(f"{loop.name}: {loop.help}"
                                          for loop in LOOP_TABLE.values()),
        ", ".join(LOOPS), "choice", LOOPS))
    optimizer: str = field(default="adamw-fused", metadata=_meta(
        "adamw-fused is the HF Trainer's default (adamw_torch_fused); adamw-foreach is "
        "torch.optim.AdamW's own default ('adamw' is an alias); sgd keeps no state",
        ", ".join(OPTIMIZERS), "choice", (*OPTIMIZERS, *_OPTIMIZER_ALIASES)))
    lora_rank: int | None = field(default=None, metadata=_meta(
        "LoRA rank through peft (default: full fine-tuning)", "an integer, 1 or more",
        "positive?"))
    lora_targets: tuple[str, ...] = field(default=DEFAULT_LORA_TARGETS, metadata=_meta(
        "Linear modules that get LoRA adapters, as peft's target_modules list matches them "
        "(a module's full name or its trailing dotted parts; 'all-linear' for every Linear "
        "but lm_head), vision tower included",
        "module names, comma-separated or a list", "names"))
    lora_dropout: float = field(default=0.0, metadata=_meta(
        "LoRA dropout (any value above 0 adds a dropout mask and copy per adapter)",
        "a number from 0 to below 1", "fraction"))
    freeze: tuple[str, ...] = field(default=(), metadata=_meta(
        "frozen part: the vision tower, or the text model with lm_head",
        ", ".join(FREEZABLE), "choices", FREEZABLE))
    gpus: int = field(default=1, metadata=_meta(
        "data-parallel GPUs, one process each; the prediction is per GPU",
        "an integer, 1 or more", "positive"))
    sharding: str | None = field(default=None, metadata=_meta(
        "how several GPUs share the model: ddp (a full copy each) or fsdp (FSDP2 "
        "fully_shard per layer)", ", ".join(SHARDINGS), "choice?", SHARDINGS))

    def __post_init__(self) -> None:
        for spec in fields(self):
            check = _CHECKS[spec.name]
            object.__setattr__(self, spec.name, check(spec.name, getattr(self, spec.name)))
        sizes = len(self.image_size)
        if self.images is None:
            object.__setattr__(self, "images", sizes if sizes > 1 else 4)
        elif sizes > 1 and self.images != sizes:
            raise MemoryModelError(
                f"image_size gives {sizes} sizes, one per image, but images={self.images}; "
                "drop images, or give one size for every image")
        self._check_combination()

    @property
    def image_count(self) -> int:
        """Images per sample (``images`` once resolved)."""
        return self.images if self.images is not None else 4

    @property
    def image_sizes(self) -> tuple[tuple[int, int], ...]:
        """The size of each image of a sample, in order."""
        if len(self.image_size) > 1:
            return self.image_size
        return self.image_size * self.image_count

    def _check_combination(self) -> None:
        if self.images == 0 and self.text_tokens == 0 and self.video is None:
            raise MemoryModelError(
                "images=0 and text_tokens=0: a sample of nothing has nothing to train on; "
                "give images or text tokens (1 or more)")
        if self.lora_rank is None and self.lora_targets != DEFAULT_LORA_TARGETS:
            raise MemoryModelError("lora_targets is given without lora_rank; give lora_rank "
                                   "(1 or more) for LoRA, or drop lora_targets")
        if self.lora_rank is None and self.lora_dropout:
            raise MemoryModelError("lora_dropout is given without lora_rank; give lora_rank "
                                   "(1 or more) for LoRA, or drop lora_dropout")
        if set(self.freeze) == set(FREEZABLE):
            raise MemoryModelError(
                "freeze=vision,text freezes everything but the connector: not a modelled "
                "recipe; freeze one of vision, text")
        if LOOP_TABLE[self.loop].autocast and self.dtype in ("float16", "fp16"):
            raise MemoryModelError(
                f"loop={self.loop} with dtype={self.dtype}: bf16=True on a model loaded in "
                f"{self.dtype} is not modelled; load the model in bfloat16, or in float32 for "
                "mixed precision (fp32 master weights), or give loop=manual for a pure "
                f"{self.dtype} step")
        if self.mixed and LOOP_TABLE[self.loop].fused_lm_head:
            raise MemoryModelError(
                f"loop={self.loop} with dtype={self.dtype}: mixed precision is measured and "
                "modelled for the Trainer's loop only (loop=trainer); TRL's fused LM head over "
                "fp32 weights is not; load the model in bfloat16 for sft-trainer")
        if self.gpus > 1 and self.sharding is None:
            raise MemoryModelError(f"gpus={self.gpus} needs sharding: ddp or fsdp")
        if self.gpus == 1 and self.sharding is not None:
            raise MemoryModelError(
                f"sharding={self.sharding} with gpus=1: sharding is modelled on 2 GPUs or "
                "more; give gpus 2 or more, or drop sharding")

    @property
    def mixed(self) -> bool:
        """Mixed precision: an fp32 model (master weights, gradients and optimizer states in
        fp32) under a loop that runs the forward in bf16 autocast (``bf16=True``)."""
        return LOOP_TABLE[self.loop].autocast and DTYPE_BYTES[self.dtype] == 4

    def recipe(self) -> str:
        """The recipe in a few words, for reports."""
        dtype = "mixed precision (fp32 weights, bf16 autocast)" if self.mixed else self.dtype
        parts = [self.loop, dtype, self.optimizer]
        if self.lora_rank is None:
            parts.append("full fine-tuning")
        else:
            dropout = f", dropout {self.lora_dropout:g}" if self.lora_dropout else ""
            parts.append(f"LoRA r={self.lora_rank} on {','.join(self.lora_targets)}{dropout}")
        if self.freeze:
            parts.append(f"{' and '.join(self.freeze)} frozen")
        parts.append("gradient checkpointing " + ("on" if self.gradient_checkpointing else "off"))
        if self.sharding is not None:
            parts.append(f"{self.sharding.upper()} on {self.gpus} GPUs, per GPU")
        return ", ".join(parts)

    def sample(self, longest_edge: int | None = None, resolution: str | None = None) -> str:
        """The sample predicted, named in full: a prediction never hides its shape.
        ``resolution`` names the processor setting (``longest_edge=N`` by default)."""
        setting = resolution or f"longest_edge={longest_edge}"
        sizes = self.image_sizes
        if len(set(sizes)) <= 1:
            width, height = self.image_size[0]
            images = (f"{self.image_count} image{'' if self.image_count == 1 else 's'} "
                      f"of {width}x{height}")
        else:
            images = f"{len(sizes)} images of " + ", ".join(f"{w}x{h}" for w, h in sizes)
        video = "" if self.video is None else " + a video of {}x{}x{} frames".format(
            *self.video)
        return (f"batch {self.batch} x ({images} at {setting}{video} + {self.text_tokens} "
                "text tokens)")


@dataclass(frozen=True)
class ShapeField:
    """One :class:`StepShape` keyword: its default, help text and accepted values."""

    name: str
    default: Any
    help: str
    accepted: str
    kind: str = "choice"
    choices: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        """Its ``tokenguard memory`` option, e.g. ``--lora-rank``."""
        return "--" + self.name.replace("_", "-")


def shape_fields() -> tuple[ShapeField, ...]:
    """Every keyword of :class:`StepShape`, in order: what the CLI and the marker list."""
    return tuple(
        ShapeField(spec.name, spec.default if spec.default is not MISSING else None,
                   spec.metadata["help"], spec.metadata["accepted"], spec.metadata["kind"],
                   spec.metadata["choices"])
        for spec in fields(StepShape)
    )


def validate(**kwargs: Any) -> StepShape:
    """A :class:`StepShape` from keywords, each checked; an unknown keyword, a bad value or
    a combination that is not modelled raises :class:`MemoryModelError` naming it."""
    known = {spec.name for spec in fields(StepShape)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise MemoryModelError(
            f"unknown keyword{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; the "
            f"memory model takes: {', '.join(spec.name for spec in fields(StepShape))}")
    return StepShape(**kwargs)


#: The largest count the model takes, from a config.json or a keyword (2**31 - 1, a C
#: int as the checkpoint's own loaders read it): above it is a broken or hostile input,
#: and the arithmetic would leave what a float (and so a printed size) can hold.
MAX_CONFIG_INT = 2**31 - 1


def _bad(name: str, value: object, accepted: str) -> MemoryModelError:
    return MemoryModelError(f"{name}={value!r} is not accepted; {name} takes {accepted}")


def _integer(minimum: int) -> Callable[[str, object], int]:
    def check(name: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _bad(name, value, f"an integer, {minimum} or more")
        if value > MAX_CONFIG_INT:
            raise _bad(name, value, f"an integer, at most {MAX_CONFIG_INT}")
        return value

    return check


def _optional_positive(name: str, value: object) -> int | None:
    return None if value is None else _integer(1)(name, value)


def _boolean(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _bad(name, value, "True or False")
    return value


def _choice(choices: tuple[str, ...], aliases: Mapping[str, str] | None = None,
            optional: bool = False) -> Callable[[str, object], Any]:
    def check(name: str, value: object) -> str | None:
        if value is None and optional:
            return None
        if isinstance(value, str):
            value = (aliases or {}).get(value.lower(), value.lower())
        if value not in choices:
            raise _bad(name, value, "one of " + ", ".join(choices))
        return str(value)

    return check


def _image_sizes(name: str, value: object) -> tuple[tuple[int, int], ...]:
    """One size (``(w, h)``, ``"WxH"``) or a list of them, one per image."""
    if isinstance(value, str) or (isinstance(value, (tuple, list)) and len(value) == 2
                                  and all(isinstance(v, int) for v in value)):
        return (_image_size(name, value),)
    if not isinstance(value, (tuple, list)) or not value:
        raise _bad(name, value, "a size such as (384, 384) or '384x384', or a list of them")
    return tuple(_image_size(name, item) for item in value)


def _video(name: str, value: object) -> tuple[int, int, int] | None:
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.lower().split("x")
        with contextlib.suppress(ValueError):
            if len(parts) == 3 and all(part.strip().isdigit() for part in parts):
                value = tuple(int(part) for part in parts)
    if (not isinstance(value, (tuple, list)) or len(value) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_CONFIG_INT
                       for v in value)):
        raise _bad(name, value, "WIDTHxHEIGHTxFRAMES, three positive integers, e.g. "
                   "(640, 480, 16) or '640x480x16'")
    return int(value[0]), int(value[1]), int(value[2])


def _image_size(name: str, value: object) -> tuple[int, int]:
    if isinstance(value, str):
        parts = value.lower().split("x")
        with contextlib.suppress(ValueError):  # "²".isdigit() is True, int("²") fails
            if len(parts) == 2 and all(part.strip().isdigit() for part in parts):
                value = (int(parts[0]), int(parts[1]))
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_CONFIG_INT
                       for v in value)):
        raise _bad(name, value, f"two integers from 1 to {MAX_CONFIG_INT}, e.g. (384, 384) or "
                   "'384x384'")
    return int(value[0]), int(value[1])


def _names(name: str, value: object) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (tuple, list)) or not all(isinstance(v, str) for v in items):
        raise _bad(name, value, "module names, comma-separated or a list")
    names = tuple(item.strip() for item in items)
    if not names or not all(names):
        raise _bad(name, value, "one or more non-empty module names")
    return names


def _dropout(name: str, value: object) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0 <= value < 1):
        raise _bad(name, value, "a number from 0 to below 1")
    return float(value)


def _freeze(name: str, value: object) -> tuple[str, ...]:
    parts = _names(name, value) if value not in ((), [], "") else ()
    for part in parts:
        if part not in FREEZABLE:
            raise _bad(name, value, "vision or text")
    return tuple(sorted(set(parts), key=FREEZABLE.index))


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "longest_edge": _optional_positive,
    "images": lambda name, value: None if value is None else _integer(0)(name, value),
    "image_size": _image_sizes,
    "max_pixels": _optional_positive,
    "video": _video,
    "text_tokens": _integer(0),
    "batch": _integer(1),
    "gradient_checkpointing": _boolean,
    "dtype": _choice(tuple(DTYPE_BYTES)),
    "loop": _choice(LOOPS, _LOOP_ALIASES),
    "optimizer": _choice(OPTIMIZERS, _OPTIMIZER_ALIASES),
    "lora_rank": _optional_positive,
    "lora_targets": _names,
    "lora_dropout": _dropout,
    "freeze": _freeze,
    "gpus": _integer(1),
    "sharding": _choice(SHARDINGS, optional=True),
}


@dataclass(frozen=True)
class LinearModule:
    """One ``nn.Linear`` of the model: its peft-visible name and where it sits."""

    name: str
    part: str  # "vision", "connector", "text" or "lm_head"
    layer: int | None
    role: str  # q_proj, fc1, ... the last part of the name
    fan_in: int
    fan_out: int


@dataclass(frozen=True)
class Architecture:
    """The shapes of a SmolVLM-family checkpoint that decide its memory.

    Read from ``config.json`` (:func:`architecture_from_config`) or taken from
    :data:`KNOWN_ARCHITECTURES` (published values) when the folder is not at hand.
    """

    name: str
    text_layers: int
    text_hidden: int
    text_intermediate: int
    text_heads: int
    text_kv_heads: int
    head_dim: int
    vocab_size: int
    vision_layers: int
    vision_hidden: int
    vision_intermediate: int
    vision_heads: int
    patch_size: int
    image_size: int
    scale_factor: int
    tie_word_embeddings: bool = False

    @property
    def patches_per_tile(self) -> int:
        """Vision tokens the tower encodes per tile (e.g. 27x27 = 729 for 384 px / 14 px)."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def vision_parameters(self) -> int:
        h, i = self.vision_hidden, self.vision_intermediate
        per_layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h
        embeddings = 3 * self.patch_size**2 * h + h + self.patches_per_tile * h
        return self.vision_layers * per_layer + embeddings + 2 * h

    @property
    def connector_parameters(self) -> int:
        return self.vision_hidden * self.scale_factor**2 * self.text_hidden

    @property
    def text_parameters(self) -> int:
        """Decoder layers, final norm and input embeddings (lm_head counted apart)."""
        h, i, d = self.text_hidden, self.text_intermediate, self.head_dim
        attention = h * self.text_heads * d * 2 + h * self.text_kv_heads * d * 2
        per_layer = attention + 3 * h * i + 2 * h
        return self.text_layers * per_layer + h + self.vocab_size * h

    @property
    def lm_head_parameters(self) -> int:
        return 0 if self.tie_word_embeddings else self.vocab_size * self.text_hidden

    def linear_modules(self) -> tuple[LinearModule, ...]:
        """Every ``nn.Linear`` of the model with the name ``named_modules()`` gives it in
        transformers 5 (the names peft's ``target_modules`` are matched against)."""
        hv, iv = self.vision_hidden, self.vision_intermediate
        h, i = self.text_hidden, self.text_intermediate
        q_out, kv_out = self.text_heads * self.head_dim, self.text_kv_heads * self.head_dim
        found: list[LinearModule] = []
        for index in range(self.vision_layers):
            stem = f"model.vision_model.encoder.layers.{index}"
            for role, fan_in, fan_out in (("q_proj", hv, hv), ("k_proj", hv, hv),
                                          ("v_proj", hv, hv), ("out_proj", hv, hv),
                                          ("fc1", hv, iv), ("fc2", iv, hv)):
                group = "self_attn" if role.endswith("proj") else "mlp"
                found.append(LinearModule(f"{stem}.{group}.{role}", "vision", index, role,
                                          fan_in, fan_out))
        found.append(LinearModule("model.connector.modality_projection.proj", "connector", None,
                                  "proj", hv * self.scale_factor**2, h))
        for index in range(self.text_layers):
            stem = f"model.text_model.layers.{index}"
            for role, fan_in, fan_out in (("q_proj", h, q_out), ("k_proj", h, kv_out),
                                          ("v_proj", h, kv_out), ("o_proj", q_out, h),
                                          ("gate_proj", h, i), ("up_proj", h, i),
                                          ("down_proj", i, h)):
                group = "self_attn" if role[0] in "qkvo" else "mlp"
                found.append(LinearModule(f"{stem}.{group}.{role}", "text", index, role,
                                          fan_in, fan_out))
        found.append(LinearModule("lm_head", "lm_head", None, "lm_head", h, self.vocab_size))
        return tuple(found)

    def other_module_names(self) -> tuple[str, ...]:
        """Names of the modules that are not ``nn.Linear`` (what a LoRA target that is no
        Linear matches: embeddings, convolutions, norms, containers)."""
        names = ["model", "model.vision_model", "model.vision_model.embeddings",
                 "model.vision_model.embeddings.patch_embedding",
                 "model.vision_model.embeddings.position_embedding",
                 "model.vision_model.encoder", "model.vision_model.encoder.layers",
                 "model.vision_model.post_layernorm", "model.connector",
                 "model.connector.modality_projection", "model.text_model",
                 "model.text_model.embed_tokens", "model.text_model.layers",
                 "model.text_model.norm", "model.text_model.rotary_emb"]
        for index in range(self.vision_layers):
            stem = f"model.vision_model.encoder.layers.{index}"
            names += [stem, f"{stem}.self_attn", f"{stem}.mlp", f"{stem}.layer_norm1",
                      f"{stem}.layer_norm2", f"{stem}.mlp.activation_fn"]
        for index in range(self.text_layers):
            stem = f"model.text_model.layers.{index}"
            names += [stem, f"{stem}.self_attn", f"{stem}.mlp", f"{stem}.input_layernorm",
                      f"{stem}.post_attention_layernorm", f"{stem}.mlp.act_fn"]
        return tuple(names)

    @property
    def vision_layer_parameters(self) -> int:
        h, i = self.vision_hidden, self.vision_intermediate
        return 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h

    # What differs between the families' towers: SmolVLM2's answers here, another family's
    # architecture (Qwen-VL: families/qwen_memory.py) overrides them.

    #: bytes torch holds beyond weights, states and inputs before a step (library
    #: workspaces; see :data:`LIBRARY_WORKSPACES`)
    @property
    def persistent_bytes(self) -> int:
        return LIBRARY_WORKSPACES

    #: what ``tiles_per_sample`` counts, in reports
    vision_unit = "tiles"

    def module_name(self, part: str, index: int, role: str) -> str:
        """The ``named_modules()`` name of layer ``index``'s Linear ``role`` in ``part``."""
        if part == "vision":
            group = "self_attn" if role.endswith("proj") else "mlp"
            return f"model.vision_model.encoder.layers.{index}.{group}.{role}"
        group = "mlp" if role in ("gate_proj", "up_proj", "down_proj") else "self_attn"
        return f"model.text_model.layers.{index}.{group}.{role}"

    def vision_layer(self, saver: _Saver, lin: Callable[[str], _Linear], norms: bool,
                     live: bool) -> bool:
        """Add what one vision layer saves per vision token; whether its output needs grad."""
        return _vision_layer(self, saver, lin, norms, live)

    def text_layer(self, saver: _Saver, lin: Callable[[str], _Linear], norms: bool,
                   live: bool) -> bool:
        return _text_layer(self, saver, lin, norms, live)

    def vision_live_at_start(self, shape: StepShape, trains: bool) -> bool:
        """Whether the vision tower's first layer input needs grad: the patch embedding
        trains with the tower."""
        return trains

    def vision_outside(self, saver: _Saver, full: Mapping[str, bool], vision_end: bool,
                       adapted: set[str]) -> bool:
        """What the tower saves outside its layers, per vision token, and whether the
        connector's output needs grad."""
        hv = self.vision_hidden
        if vision_end or full["vision"]:  # post_layernorm, and the connector's pixel shuffle
            # keeps one more copy of the tower's output (measured: b·hv per vision token)
            saver.layer_norm(hv)
            saver.bytes += saver.b * hv
        return saver.linears(
            hv, [_Linear(full["connector"],
                         "model.connector.modality_projection.proj" in adapted)],
            vision_end or full["vision"])

    def input_bytes(self, tiles: int, pixel_bytes: int) -> int:
        """The processor's vision inputs on the GPU for ``tiles`` tiles: 3 channels of
        ``pixel_bytes`` and the int64 pixel attention mask per pixel (measured 14 bytes per
        pixel with bf16 pixel values)."""
        return tiles * self.image_size**2 * (3 * pixel_bytes + 8)

    @property
    def text_layer_parameters(self) -> int:
        h, i, d = self.text_hidden, self.text_intermediate, self.head_dim
        return h * self.text_heads * d * 2 + h * self.text_kv_heads * d * 2 + 3 * h * i + 2 * h

    @property
    def parameters(self) -> int:
        return (
            self.vision_parameters
            + self.connector_parameters
            + self.text_parameters
            + self.lm_head_parameters
        )


def _int(section: Mapping[str, Any], key: str, where: str,
         fix: str = "is this a SmolVLM config.json? Restore it from the checkpoint") -> int:
    """``section[key]`` as a positive integer a config can hold, else the one-line error
    naming the key, the value and ``fix`` (what the family says to do)."""
    value = section.get(key)
    if (isinstance(value, bool) or not isinstance(value, int) or value < 1
            or value > MAX_CONFIG_INT):
        raise MemoryModelError(
            f"{where}.{key} must be a positive integer (at most {MAX_CONFIG_INT}), got "
            f"{_shown(value)}; {fix}"
        )
    return value


def _shown(value: object) -> str:
    """``value`` for a one-line message: a hostile file's value can be megabytes long."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _optional_int(section: dict[str, Any], key: str, default: int, where: str) -> int:
    """A key transformers fills in when absent (or null), but checked like the others when
    given: ``head_dim: -64`` or ``num_key_value_heads: "eight"`` is a broken file."""
    if section.get(key) is None:
        return default
    return _int(section, key, where)


def architecture_from_config(config: dict[str, Any], name: str = "config",
                             where: str | None = None) -> Architecture:
    """An :class:`Architecture` from the parsed ``config.json`` of a SmolVLM checkpoint.

    ``name`` names the architecture (the model as the user gave it); ``where`` names the
    file in error messages (its path), which then name the key too:
    ``.../config.json: text_config.head_dim must be a positive integer, got -64``.
    """
    where = where or name
    text = config.get("text_config")
    vision = config.get("vision_config")
    if not isinstance(text, dict) or not isinstance(vision, dict):
        missing = "text_config" if not isinstance(text, dict) else "vision_config"
        raise MemoryModelError(
            f"{where}: {missing} must be a JSON object, got {_shown(config.get(missing))}; "
            "needs 'text_config' and 'vision_config' objects (a SmolVLM / Idefics3 "
            "config.json)"
        )
    t, v = f"{where}: text_config", f"{where}: vision_config"
    heads = _int(text, "num_attention_heads", t)
    hidden = _int(text, "hidden_size", t)
    return Architecture(
        name=name,
        text_layers=_int(text, "num_hidden_layers", t),
        text_hidden=hidden,
        text_intermediate=_int(text, "intermediate_size", t),
        text_heads=heads,
        text_kv_heads=_optional_int(text, "num_key_value_heads", heads, t),
        head_dim=_optional_int(text, "head_dim", max(hidden // heads, 1), t),
        vocab_size=_int(text, "vocab_size", t),
        vision_layers=_int(vision, "num_hidden_layers", v),
        vision_hidden=_int(vision, "hidden_size", v),
        vision_intermediate=_int(vision, "intermediate_size", v),
        vision_heads=_int(vision, "num_attention_heads", v),
        patch_size=_int(vision, "patch_size", v),
        image_size=_int(vision, "image_size", v),
        scale_factor=_int(config, "scale_factor", f"{where}: config"),
        tie_word_embeddings=bool(
            config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))
        ),
    )


def _arch(name: str, text: tuple[int, ...], vision: tuple[int, ...], scale: int) -> Architecture:
    layers, hidden, inter, heads, kv, vocab = text
    v_layers, v_hidden, v_inter, v_heads, patch, image = vision
    return Architecture(
        name, layers, hidden, inter, heads, kv, 64, vocab,
        v_layers, v_hidden, v_inter, v_heads, patch, image, scale,
    )  # fmt: skip


#: Published architecture values of the three SmolVLM2 checkpoints (their
#: config.json), so the model works offline; tests check them against the files.
KNOWN_ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        _arch(
            "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
            (24, 2048, 8192, 32, 32, 49280), (27, 1152, 4304, 16, 14, 384), 3,
        ),
        _arch(
            "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
            (32, 960, 2560, 15, 5, 49280), (12, 768, 3072, 12, 16, 512), 4,
        ),
        _arch(
            "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
            (30, 576, 1536, 9, 3, 49280), (12, 768, 3072, 12, 16, 512), 4,
        ),
    )
}  # fmt: skip


def _model_error(exc: TokenguardError) -> MemoryModelError:
    """``exc`` as a :class:`MemoryModelError`, its settings still open to rewording (a
    front end names ``--model`` where the plugin names ``--tokenguard-model``)."""
    error = MemoryModelError(str(exc))
    error.template = exc.template
    return error


def _family_model(model: str) -> tuple[Architecture, Any, Any] | None:
    """``(architecture, spec, family)`` of a model of another family than SmolVLM2, which
    supplies its memory architecture on the seam (``memory_architecture``); None for
    SmolVLM2 and for a model no family claims (the SmolVLM2 resolver then answers)."""
    from ..errors import SpecError
    from ..families import resolve_family

    try:
        resolved = resolve_family(model)
    except (SpecError, ValueError, RecursionError):
        # an unreadable or hostile file: the SmolVLM2 resolver reports it, as before
        return None
    if resolved is None or resolved.family.name == "smolvlm":
        return None
    try:
        build = getattr(resolved.family, "memory_architecture", None)
        if build is None:
            raise MemoryModelError(f"{model}: the {resolved.family.name} family supplies no "
                                   "memory architecture; the memory model cannot predict it")
        return build(model, resolved.folder), resolved.spec(), resolved.family
    except SpecError as exc:
        raise _model_error(exc) from None


def resolve_model(model: str) -> tuple[Architecture, Any]:
    """The architecture and token spec of ``model``: a family's own (Qwen-VL, by the family
    seam), else through the SmolVLM2 model resolver
    (:func:`~pytest_tokenguard.processor.source.resolve_source`, never the network): a
    checkpoint folder's ``config.json``, or the published architecture of a known hub id."""
    from ..errors import ProcessorLoadError, SpecError
    from ..processor.source import resolve_source

    other = _family_model(model)
    if other is not None:
        return other[0], other[1]

    try:
        source = resolve_source(model, network_timeout=None)
    except (ProcessorLoadError, SpecError) as exc:
        raise _model_error(exc) from None
    path = source.folder / "config.json" if source.folder is not None else None
    try:
        config = source.read_json("config.json")
        spec = source.spec()
    except (ProcessorLoadError, SpecError) as exc:
        raise _model_error(exc) from None
    except (ValueError, RecursionError) as exc:
        # what read_json lets through: an integer of over 4300 digits (Python's limit on
        # int from str), brackets nested too deep for the parser
        what = str(exc).split("\n")[0][:120] or type(exc).__name__
        raise MemoryModelError(
            f"{path or model}: cannot be read as a SmolVLM config ({what}); restore the file "
            "from the checkpoint") from None
    if config is not None:
        return architecture_from_config(config, name=model, where=str(path)), spec
    if source.folder is None and source.known is not None:
        return KNOWN_ARCHITECTURES[source.known], spec
    raise MemoryModelError(
        f"{source.folder}: has no config.json, which the memory model reads the architecture "
        f"from; add it, or give one of {', '.join(KNOWN_ARCHITECTURES)}"
    )


def lora_modules(arch: Architecture, shape: StepShape) -> tuple[LinearModule, ...]:
    """The Linear modules peft puts adapters on for ``shape``, by peft's rule for a list of
    ``target_modules``: a module matches a target equal to its full name or to its
    trailing dotted parts (``q_proj`` matches ``...self_attn.q_proj`` in both towers);
    ``all-linear`` takes every Linear but ``lm_head``. A frozen tower gets no adapters.

    Raises :class:`MemoryModelError` for a target that matches no Linear module.
    """
    if shape.lora_rank is None:
        return ()
    linears = arch.linear_modules()
    chosen: dict[str, LinearModule] = {}
    for target in shape.lora_targets:
        if target == "all-linear":
            hits = [m for m in linears if m.part != "lm_head"]
        else:
            hits = [m for m in linears if m.name == target or m.name.endswith("." + target)]
        if not hits:
            others = [n for n in arch.other_module_names()
                      if n == target or n.endswith("." + target)]
            what = ("names no Linear module (only Linear targets are modelled: LoRA on "
                    "embeddings, convolutions or containers is not)" if others
                    else "matches no module")
            roles = sorted({m.role for m in linears})
            raise MemoryModelError(
                f"lora_targets: {target!r} {what} of {arch.name}; Linear modules end in "
                f"{', '.join(roles)}")
        chosen.update((m.name, m) for m in hits)
    frozen = {"vision": {"vision"}, "text": {"text", "lm_head"}}
    skip = set().union(*(frozen[part] for part in shape.freeze)) if shape.freeze else set()
    return tuple(m for m in linears if m.name in chosen and m.part not in skip)


@dataclass(frozen=True)
class _Linear:
    """How one Linear trains: its base weight, and its LoRA adapter (if any)."""

    base: bool = False
    lora: bool = False


class _Saver:
    """Bytes per token autograd saves along one layer, following which values need grad."""

    def __init__(self, b: int, rank: int, dropout: bool, autocast: bool = False,
                 mixed: bool = False) -> None:
        self.b, self.rank, self.dropout, self.autocast = b, rank, dropout, autocast
        #: mixed precision: fp32 residual stream and norms, bf16 (``b``) Linear outputs
        self.mixed = mixed
        self.bytes = 0

    def layer_norm(self, h: int) -> None:
        """A LayerNorm on the path to a trained value saves its input, mean and rstd; under
        autocast (fp32 list) the input it saves is an fp32 copy."""
        self.bytes += (4 if self.autocast else self.b) * h + 8

    def linears(self, fan_in: int, users: list[_Linear], live: bool,
                input_saved: bool = False, fp32_input: bool = False) -> bool:
        """Linears sharing one input: it is saved once if a base weight trains (unless
        ``input_saved``: another node keeps it already); each LoRA adapter saves its own
        fp32 copy (or dropout output and mask) and its r values. An ``fp32_input`` (a
        LayerNorm's output under autocast) is cast to bf16 by each Linear apart (autocast
        caches casts of parameters only), and each saves its own copy."""
        if fp32_input and self.autocast:
            self.bytes += self.b * fan_in * sum(user.base for user in users)
        elif any(user.base for user in users) and not input_saved:
            self.bytes += self.b * fan_in
        for user in users:
            if not user.lora:
                continue
            if self.autocast:
                # peft casts the input to the adapter's fp32, autocast casts it back for
                # lora_A's matmul, which saves that bf16 copy; lora_B saves its bf16 input
                self.bytes += 2 * fan_in + 2 * self.rank + (fan_in if self.dropout else 0)
                continue
            shared = self.b == 4 and not self.dropout and not any(u.base for u in users)
            self.bytes += (0 if shared else 4 * fan_in) + 4 * self.rank
            self.bytes += fan_in if self.dropout else 0
        return live or any(user.base or user.lora for user in users)


def _vision_layer(arch: Architecture, saver: _Saver, lin: Callable[[str], _Linear],
                  norms: bool, live: bool) -> bool:
    h, i, b = arch.vision_hidden, arch.vision_intermediate, saver.b
    if live or norms:  # layer_norm1 saves its input, mean and rstd
        saver.layer_norm(h)
    live = live or norms
    attn = saver.linears(h, [lin("q_proj"), lin("k_proj"), lin("v_proj")], live,
                         fp32_input=True)
    if attn:  # sdpa saves q, k, v, its output and the log-sum-exp
        saver.bytes += 4 * b * h + 4 * arch.vision_heads
    # out_proj's input is the attention output sdpa saves already
    live = saver.linears(h, [lin("out_proj")], attn, input_saved=attn) or live
    if live or norms:  # layer_norm2
        saver.layer_norm(h)
    mlp = saver.linears(h, [lin("fc1")], live or norms, fp32_input=True)
    if mlp:  # GELU saves its input
        saver.bytes += b * i
    return saver.linears(i, [lin("fc2")], mlp) or live


def _text_layer(arch: Architecture, saver: _Saver, lin: Callable[[str], _Linear],
                norms: bool, live: bool) -> bool:
    h, i, b, d = arch.text_hidden, arch.text_intermediate, saver.b, arch.head_dim

    def rms_norm(live: bool) -> bool:
        if live or norms:  # the fp32 upcast and rsqrt; the normalised value for the weight
            # (bf16, or fp32 under mixed precision, where the norm's output stays fp32)
            saver.bytes += 4 * h + 4 + ((4 if saver.mixed else b) * h if norms else 0)
        return live or norms

    # under mixed precision the norm's fp32 output is cast by each Linear apart
    attn = saver.linears(h, [lin("q_proj"), lin("k_proj"), lin("v_proj")], rms_norm(live),
                         fp32_input=saver.mixed)
    if attn:
        saver.bytes += b * (2 * arch.text_heads + 2 * arch.text_kv_heads) * d
        saver.bytes += 4 * arch.text_heads
    live = saver.linears(arch.text_heads * d, [lin("o_proj")], attn, input_saved=attn) or live
    mlp = saver.linears(h, [lin("gate_proj"), lin("up_proj")], rms_norm(live),
                        fp32_input=saver.mixed)
    if mlp:  # SiLU's input, its output and up_proj's output (the product saves both)
        saver.bytes += 3 * b * i
    return saver.linears(i, [lin("down_proj")], mlp) or live


@dataclass(frozen=True)
class _Plan:
    """What trains and what autograd saves, per token, for one recipe."""

    weights: int
    trained: int  # bytes of trained parameters (= gradient bytes)
    trained_vision: int
    trained_root: int  # bytes of trained parameters outside the FSDP-wrapped layers
    root_weights: int  # bytes of parameters outside the wrapped layers
    largest_layer: int  # bytes of the largest wrapped layer
    trained_parameters: int
    lora_parameters: int
    vision_layers: tuple[int, ...]  # saved bytes per vision token, per layer
    vision_live: tuple[bool, ...]  # whether each layer's output needs grad
    vision_outside: int
    text_layers: tuple[int, ...]
    text_live: tuple[bool, ...]
    text_outside: int
    embedding_trains: bool
    vision_casts: int = 0  # mixed precision: bf16 copies of the vision tower's weights
    text_casts: int = 0  # ... of the connector's, the text model's and lm_head's


def _plan(arch: Architecture, shape: StepShape) -> _Plan:
    b = DTYPE_BYTES[shape.dtype]
    autocast = LOOP_TABLE[shape.loop].autocast
    # what autograd saves is in the activations' dtype: bf16 under mixed precision
    ba = 2 if shape.mixed else b
    adapters = lora_modules(arch, shape)
    lora = shape.lora_rank is not None
    rank = shape.lora_rank or 0
    adapted = {m.name for m in adapters}
    lora_params = sum(rank * (m.fan_in + m.fan_out) for m in adapters)
    lora_by_part: dict[str, int] = {}
    for m in adapters:
        lora_by_part[m.part] = lora_by_part.get(m.part, 0) + rank * (m.fan_in + m.fan_out)
    full = {"vision": not lora and "vision" not in shape.freeze,
            "connector": not lora,
            "text": not lora and "text" not in shape.freeze}
    params = {"vision": arch.vision_parameters, "connector": arch.connector_parameters,
              "text": arch.text_parameters + arch.lm_head_parameters}
    trained_params = sum(params[p] for p in params if full[p])
    # peft keeps adapters in fp32 (autocast_adapter_dtype) whatever the model's dtype
    trained = trained_params * b + lora_params * 4
    trained_vision = (params["vision"] * b if full["vision"] else 0) + 4 * lora_by_part.get(
        "vision", 0)
    v_layer, t_layer = arch.vision_layer_parameters, arch.text_layer_parameters
    root_params = arch.parameters - arch.vision_layers * v_layer - arch.text_layers * t_layer
    root_trained = (
        (params["vision"] - arch.vision_layers * v_layer if full["vision"] else 0)
        + (params["connector"] if full["connector"] else 0)
        + (params["text"] - arch.text_layers * t_layer if full["text"] else 0)
    )
    root_lora = sum(rank * (m.fan_in + m.fan_out) for m in adapters if m.layer is None)
    layer_lora = max((sum(rank * (m.fan_in + m.fan_out) for m in adapters
                          if m.part == part and m.layer == 0) for part in ("vision", "text")),
                     default=0)

    def run(part: str, layer_fn: Any, count: int, live: bool) -> tuple[list[int], list[bool]]:
        saved, lives = [], []
        for index in range(count):
            saver = _Saver(ba, rank, shape.lora_dropout > 0, autocast, shape.mixed)

            def lin(role: str, index: int = index) -> _Linear:
                return _Linear(base=full[part],
                               lora=arch.module_name(part, index, role) in adapted)

            live = layer_fn(saver, lin, full[part], live)
            saved.append(saver.bytes)
            lives.append(live)
        return saved, lives

    start = arch.vision_live_at_start(shape, full["vision"])
    vision_saved, vision_live = run("vision", arch.vision_layer, arch.vision_layers, start)
    vision_end = vision_live[-1] if vision_live else start
    outside = _Saver(ba, rank, shape.lora_dropout > 0, autocast, shape.mixed)
    connector_live = arch.vision_outside(outside, full, vision_end, adapted)
    # merged embeddings need grad when image features do, or the embedding table trains
    text_in = connector_live or full["text"]
    text_saved, text_live = run("text", arch.text_layer, arch.text_layers, text_in)
    text_end = text_live[-1] if text_live else text_in
    h = arch.text_hidden
    text_outside = _Saver(ba, rank, shape.lora_dropout > 0, autocast, shape.mixed)
    if text_end or full["text"]:  # the final RMSNorm
        text_outside.bytes += 4 * h + 4 + ((4 if shape.mixed else ba) * h if full["text"] else 0)
    text_outside.linears(h, [_Linear(full["text"], "lm_head" in adapted)], text_end)
    # mixed precision: autocast's bf16 copies of the Linear (and convolution) weights, which
    # each Linear saves for its backward; the vision tower's when its values need grad
    casts = {"vision": 0, "text": 0}
    if shape.mixed:
        for m in arch.linear_modules():
            part = "vision" if m.part == "vision" else "text"
            casts[part] += 2 * (m.fan_in + 1) * m.fan_out
        casts["vision"] += 2 * 3 * arch.patch_size**2 * arch.vision_hidden * getattr(
            arch, "temporal_patch", 1)
        if not (any(vision_live) or full["vision"]):
            casts["vision"] = 0
    return _Plan(
        weights=arch.parameters * b + lora_params * 4,
        vision_casts=casts["vision"],
        text_casts=casts["text"],
        trained=trained,
        trained_vision=trained_vision,
        trained_root=root_trained * b + root_lora * 4,
        root_weights=root_params * b + root_lora * 4,
        largest_layer=max(v_layer, t_layer) * b + layer_lora * 4,
        trained_parameters=trained_params + lora_params,
        lora_parameters=lora_params,
        vision_layers=tuple(vision_saved),
        vision_live=tuple(vision_live),
        vision_outside=outside.bytes,
        text_layers=tuple(text_saved),
        text_live=tuple(text_live),
        text_outside=text_outside.bytes,
        embedding_trains=full["text"],
    )


@dataclass(frozen=True)
class MemoryEstimate:
    """The predicted per-GPU peak of one training step and what it is made of (bytes).

    ``activations`` is what the forward pass leaves saved for backward (vision + text +
    kept logits); ``transient`` is what the phase that sets the peak adds on top of the
    other terms (buffers of the loss, one recomputed layer, the optimizer's temporary,
    gradients made so far, FSDP's gathered layers...). ``peak_bytes`` is their sum at
    that phase, plus :data:`LIBRARY_WORKSPACES`. Under FSDP ``weights``, ``gradients``
    and ``optimizer`` are this GPU's shards, and ``gathered`` is what FSDP holds
    unsharded at the peak. Under DDP ``first_bucket`` is the first step's flat gradient
    bucket when it is part of the peak (step 2 only, see the module docstring) and
    ``steady_peak_bytes`` the peak of the steps after it; otherwise the two peaks are equal.
    """

    model: str
    peak_bytes: int
    phase: str
    weights: int
    gradients: int
    optimizer: int
    activations: int
    vision_activations: int
    text_activations: int
    logits: int
    inputs: int
    transient: int
    parameters: int
    batch: int
    tiles_per_sample: int
    seq_len: int
    gradient_checkpointing: bool
    dtype: str
    optimizer_name: str
    trained_parameters: int = 0
    lora_parameters: int = 0
    gathered: int = 0
    buckets: int = 0
    first_bucket: int = 0
    steady_peak_bytes: int = 0
    gpus: int = 1
    sharding: str | None = None
    recipe: str = ""
    sample: str = ""
    #: what ``tiles_per_sample`` counts: SmolVLM2's tiles, Qwen-VL's patches
    vision_unit: str = "tiles"

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB

    @property
    def weights_gib(self) -> float:
        return self.weights / GIB

    @property
    def activations_gib(self) -> float:
        return self.activations / GIB

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field in bytes plus the ``*_gib`` keys the CLI promises."""
        data = asdict(self)
        data.update(
            peak_gib=round(self.peak_gib, 3),
            weights_gib=round(self.weights_gib, 3),
            activations_gib=round(self.activations_gib, 3),
            gradients_gib=round(self.gradients / GIB, 3),
            optimizer_gib=round(self.optimizer / GIB, 3),
            steady_peak_gib=round(self.steady_peak_bytes / GIB, 3),
        )
        return data

    def describe(self) -> str:
        """A few lines for humans: the peak, the sample and recipe, the phase, the terms."""
        per_gpu = " per GPU" if self.gpus > 1 else ""
        rows = [
            ("weights" + (" (this GPU's shard)" if self.sharding == "fsdp" else ""),
             self.weights),
            ("gradients", self.gradients),
            (f"optimizer ({self.optimizer_name})", self.optimizer),
            ("activations, vision", self.vision_activations),
            ("activations, text", self.text_activations),
            ("logits kept for the loss", self.logits),
            ("inputs", self.inputs),
        ]
        if self.buckets:
            rows.append(("DDP gradient buckets", self.buckets))
        if self.first_bucket:
            rows.append(("DDP first step's bucket (step 2)", self.first_bucket))
        if self.gathered:
            rows.append(("FSDP gathered (unsharded)", self.gathered))
        rows.append((f"transient at {self.phase}", self.transient))
        trained = (f", {self.trained_parameters / 1e6:.1f}M trained"
                   if self.trained_parameters != self.parameters else "")
        # "tile" for one (SmolVLM2); a family's own unit (Qwen-VL's vision tokens) is never one
        unit = ("tile" if (self.vision_unit, self.tiles_per_sample) == ("tiles", 1)
                else self.vision_unit)
        lines = [
            f"{self.model}: predicted peak {format_bytes(self.peak_bytes)}{per_gpu} (torch "
            f"allocated) at {self.phase}",
            f"  sample: {self.sample or f'batch {self.batch}'}: {self.tiles_per_sample} "
            f"{unit}, "
            f"{self.seq_len} tokens per sample",
            f"  recipe: {self.recipe or self.optimizer_name}; "
            f"{self.parameters / 1e9:.2f}B parameters{trained}",
        ]
        lines += [f"  {name:<34} {format_bytes(value):>10}" for name, value in rows]
        if self.steady_peak_bytes != self.peak_bytes:
            lines.append(f"  from step 3 on (no first bucket): "
                         f"{format_bytes(self.steady_peak_bytes)}{per_gpu}")
        return "\n".join(lines)


def _check_count(name: str, value: object, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MemoryModelError(f"{name} must be an integer, 0 or more, got {value!r}; {fix}")
    return value


def estimate_step(
    arch: Architecture,
    *,
    tiles_per_sample: int,
    seq_len: int,
    shape: StepShape | None = None,
    **recipe: Any,
) -> MemoryEstimate:
    """The predicted per-GPU peak allocated bytes of one steady-state training step.

    ``tiles_per_sample`` counts every tile the vision tower encodes for one sample
    (global images included), ``seq_len`` the sample's tokens (image blocks + text). The
    recipe is ``shape`` or :class:`StepShape` keywords (``batch``, ``optimizer``,
    ``lora_rank``, ``gpus``...); its sample keywords are not used here.
    """
    _check_count("tiles_per_sample", tiles_per_sample, "count tiles with count_image()")
    _check_count("seq_len", seq_len, "give the tokens of one sample")
    if shape is None:
        shape = validate(**recipe)
    elif recipe:
        raise MemoryModelError("give the recipe as shape= or as keywords, not both")
    b = DTYPE_BYTES[shape.dtype]
    plan = _plan(arch, shape)
    fsdp = shape.sharding == "fsdp"
    shards = shape.gpus if fsdp else 1
    opt = OPTIMIZER_TABLE[shape.optimizer]
    loop = LOOP_TABLE[shape.loop]
    states = opt.states * plan.trained
    step_temp = (plan.trained + b * arch.vocab_size * arch.text_hidden
                 if opt.foreach_temporary else 0)
    buckets = plan.trained if shape.sharding == "ddp" else 0
    # DDP's second step: the first step's one flat bucket of every trained gradient, kept
    # by NCCL's stash from the rebuild to the first bucket all-reduce (module docstring)
    first_bucket = plan.trained if shape.sharding == "ddp" else 0

    hv = arch.vision_hidden
    tiles = shape.batch * tiles_per_sample
    vision_tokens = tiles * arch.patches_per_tile
    text_tokens = shape.batch * seq_len

    if shape.gradient_checkpointing:
        # every checkpointed layer keeps its input, measured so even in a frozen tower
        vision_saved = vision_tokens * (arch.vision_layers * b * hv + plan.vision_outside)
        text_saved = text_tokens * (arch.text_layers * b * arch.text_hidden + plan.text_outside)
        # one layer recomputed: what it saves and the residual stream's gradients
        vision_recompute = vision_tokens * max(
            (saved + 2 * b * hv
             for saved, live in zip(plan.vision_layers, plan.vision_live, strict=True)
             if live), default=0)
        text_recompute = text_tokens * max(
            (saved + 2 * b * arch.text_hidden
             for saved, live in zip(plan.text_layers, plan.text_live, strict=True) if live),
            default=0)
    else:
        vision_saved = vision_tokens * (sum(plan.vision_layers) + plan.vision_outside)
        text_saved = text_tokens * (sum(plan.text_layers) + plan.text_outside)
        # gradients of the residual stream while the vision tower runs backward
        vision_recompute = vision_tokens * 2 * b * hv if any(plan.vision_live) else 0
        text_recompute = 0
    # the logits are bf16 under mixed precision (lm_head runs in autocast)
    head = _head_terms(arch, loop, 2 if shape.mixed else b, text_tokens, plan.embedding_trains)
    # mixed precision: the forward ends holding autocast's bf16 weight copies (its cache, and
    # what each Linear saved); under checkpointing they go with the cache, else each stays
    # until its layer's backward
    casts = plan.vision_casts + plan.text_casts
    kept_casts = 0 if shape.gradient_checkpointing else casts
    vision_casts = 0 if shape.gradient_checkpointing else plan.vision_casts
    # a loop that hands the processor's fp32 pixel values to the model keeps them (the model
    # casts them itself); three int64 tensors per token (ids, mask, labels)
    pixel_bytes = loop.pixel_bytes or b
    inputs = arch.input_bytes(tiles, pixel_bytes) + text_tokens * 8 * 3
    weights = _shard(plan.weights, shards)
    gradients = _shard(plan.trained, shards)
    optimizer = _shard(states, shards)
    # FSDP2: the root stays gathered from forward to the end of backward, its gradients
    # stay unsharded until the final reduce-scatter; layers are gathered a few at a time
    # (the gathered copies come on top of the shards, which FSDP2 keeps)
    gathered = plan.root_weights + FSDP_LAYER_BUFFERS * plan.largest_layer if fsdp else 0
    root_grads = plan.trained_root - _shard(plan.trained_root, shards) if fsdp else 0
    grads_not_vision = _shard(plan.trained - plan.trained_vision, shards) + root_grads

    held = weights + optimizer + inputs + buckets + arch.persistent_bytes
    saved = vision_saved + text_saved + head.kept
    # the embedding table's backward runs last; a frozen vision tower's checkpointed
    # inputs are still held then
    embedding = (EMBEDDING_BACKWARD * arch.vocab_size * arch.text_hidden
                 if plan.embedding_trains else 0)
    vision_held = 0 if any(plan.vision_live) else vision_saved
    moments = {
        "end of forward": held + gathered + vision_saved + text_saved + head.forward + casts,
        "start of backward": held + gathered + saved + head.backward + kept_casts,
        "start of vision backward": held + gathered + vision_saved + grads_not_vision
        + max(text_recompute, vision_recompute) + vision_casts,
        "end of backward": held + gathered + gradients + root_grads + vision_recompute,
        "embedding backward": held + gathered + gradients + root_grads + vision_held
        + embedding,
        "optimizer step": held + gradients + _shard(step_temp, shards),
    }
    steady_peak = max(moments.values())
    # the moments before step 2's first bucket all-reduce hold the old bucket as well
    for moment in _FIRST_BUCKET_MOMENTS:
        moments[moment] += first_bucket
    phase, peak = max(moments.items(), key=lambda item: item[1])
    at_peak = 0 if phase == "optimizer step" else gathered
    bucket_at_peak = first_bucket if phase in _FIRST_BUCKET_MOMENTS else 0
    accounted = held + at_peak + bucket_at_peak
    if phase in ("end of forward", "start of backward"):
        accounted += saved
    elif phase == "start of vision backward":
        accounted += vision_saved + grads_not_vision
    else:
        accounted += gradients
    return MemoryEstimate(
        model=arch.name,
        peak_bytes=peak,
        phase=phase,
        weights=weights,
        gradients=gradients,
        optimizer=optimizer,
        activations=saved,
        vision_activations=vision_saved,
        text_activations=text_saved,
        logits=head.kept,
        inputs=inputs,
        transient=peak - accounted,
        parameters=arch.parameters + plan.lora_parameters,
        batch=shape.batch,
        tiles_per_sample=tiles_per_sample,
        seq_len=seq_len,
        gradient_checkpointing=shape.gradient_checkpointing,
        dtype=shape.dtype,
        optimizer_name=shape.optimizer,
        trained_parameters=plan.trained_parameters,
        lora_parameters=plan.lora_parameters,
        gathered=at_peak,
        buckets=buckets,
        first_bucket=bucket_at_peak,
        steady_peak_bytes=steady_peak,
        gpus=shape.gpus,
        sharding=shape.sharding,
        recipe=shape.recipe(),
        vision_unit=arch.vision_unit,
    )


@dataclass(frozen=True)
class _Head:
    """What the language-model head and the loss hold, in bytes: ``kept`` from the forward
    to the head's backward, ``forward`` at the end of the forward (``kept`` included),
    ``backward`` at the start of backward on top of ``kept``."""

    kept: int
    forward: int
    backward: int


def _head_terms(arch: Architecture, loop: Loop, b: int, tokens: int,
                lm_head_trains: bool) -> _Head:
    """The head's terms for ``tokens`` scored tokens (every token of the batch: the
    labels are the inputs)."""
    if not loop.fused_lm_head:
        # the loss upcasts the logits to fp32: the forward briefly holds b + 4 + 4 bytes
        # per logit (bf16 logits, fp32 copy, log-softmax) and keeps 4; the backward's first
        # node holds 8 more. The Trainer's fp32 copy of the outputs (accelerate's
        # convert_outputs_to_fp32) replaces the bf16 logits within the same b + 8.
        logits = tokens * arch.vocab_size
        return _Head(kept=4 * logits, forward=(b + 8) * logits, backward=8 * logits)
    h = arch.text_hidden
    # TRL's ChunkedLogProbFunction saves the hidden states it scores (a gathered copy),
    # the targets (int64), log Z and the entropy (fp32); its forward computes one tile of
    # logits at a time and keeps seven fp32 statistics per token
    kept = tokens * (b * h + 8 + 4 + 4)
    tile = min(tokens, FUSED_HEAD_TOKENS) * min(arch.vocab_size, FUSED_HEAD_VOCAB) * b
    # its backward accumulates the hidden states' gradient, and lm_head's when it trains,
    # in fp32, recomputes the tiles, and casts both to the model's dtype at the end while
    # the fp32 ones are still held
    weight = (4 + b) * arch.vocab_size * h if lm_head_trains else 0
    return _Head(kept=kept, forward=kept + tile + 7 * 4 * tokens,
                 backward=(4 + b) * h * tokens + weight + tile + 4 * tokens)


#: The moments of :func:`estimate_step` that come before step 2's first bucket all-reduce:
#: under DDP they also hold the first step's flat bucket (see the module docstring).
_FIRST_BUCKET_MOMENTS = ("end of forward", "start of backward")


def _shard(size: int, shards: int) -> int:
    """One GPU's share of ``size`` bytes split over ``shards`` (rounded up, as FSDP pads)."""
    return math.ceil(size / shards)


def sample_shape(
    spec: ModelSpec,
    longest_edge: int,
    images: int,
    text_tokens: int,
    image_size: tuple[int, int] = (384, 384),
) -> tuple[int, int]:
    """``(tiles_per_sample, seq_len)`` of a sample of ``images`` images of ``image_size``
    plus ``text_tokens`` tokens, counted exactly as the processor would."""
    _check_count("images", images, "give 0 images or more")
    _check_count("text_tokens", text_tokens, "give 0 text tokens or more")
    cost = count_image(image_size[0], image_size[1], longest_edge, spec)
    return images * cost.patches, images * cost.block_tokens + text_tokens


def estimate_for_model(model: str, shape: StepShape | None = None,
                       **kwargs: Any) -> MemoryEstimate:
    """:func:`estimate_step` for ``model`` (folder or known hub id) and a sample and recipe
    (``shape``, or :class:`StepShape` keywords); ``longest_edge`` defaults to the
    checkpoint's, and the estimate names the edge and sample it predicted."""
    if shape is None:
        shape = validate(**kwargs)
    elif kwargs:
        raise MemoryModelError("give the sample as shape= or as keywords, not both")
    from dataclasses import replace

    other = _family_model(model)
    if other is not None:
        arch, spec, family = other
        tiles, seq_len, setting = family.memory_sample(spec, shape)
        estimate = estimate_step(arch, tiles_per_sample=tiles, seq_len=seq_len, shape=shape)
        return replace(estimate, sample=shape.sample(resolution=setting))
    for name in ("video", "max_pixels"):
        if getattr(shape, name) is not None:
            raise MemoryModelError(
                f"{name} is a Qwen-VL option; {model} (SmolVLM2) takes longest_edge and images "
                f"(a SmolVLM2 video is priced as its frames: give them as images)")
    arch, spec = resolve_model(model)
    edge = spec.default_longest_edge if shape.longest_edge is None else shape.longest_edge
    tiles = seq_len = 0
    for width, height in (shape.image_sizes if shape.image_count else ()):
        image_tiles, tokens = sample_shape(spec, edge, 1, 0, (width, height))
        tiles, seq_len = tiles + image_tiles, seq_len + tokens
    estimate = estimate_step(arch, tiles_per_sample=tiles, seq_len=seq_len + shape.text_tokens,
                             shape=shape)
    return replace(estimate, sample=shape.sample(edge))


def check_predicted_limit(
    estimate: MemoryEstimate, limit_bytes: int, margin: float = 0.0, *, subject: str = "Test"
) -> LimitResult:
    """Compare a predicted peak, raised by ``margin`` (0.1 = 10%), with a ceiling.

    The margin is where a caller states how much the allocator's cache and the CUDA
    context may add on its setup (``docs/gpu-memory.md`` records what was measured).
    ``subject`` starts the failure message: ``"Test"`` for the marker, ``"The step"`` for
    the CLI. The message names the sample and recipe predicted, so a default (the
    checkpoint's longest edge, 384x384 images) never passes unseen.
    """
    if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int) or limit_bytes < 1:
        raise ValueError(f"limit_bytes must be a positive int, got {limit_bytes!r}")
    if not 0 <= margin < 10:
        raise ValueError(f"margin must be a fraction such as 0.1, got {margin!r}")
    peak = int(estimate.peak_bytes * (1 + margin))
    measure = "predicted" if margin == 0 else f"predicted + {margin:.0%} margin"
    passed = peak <= limit_bytes
    what = f" for {estimate.sample}" if estimate.sample else ""
    per_gpu = " per GPU" if estimate.gpus > 1 else ""
    if passed:
        message = (
            f"predicted GPU peak{per_gpu} {format_bytes(peak)} ({measure}){what} is within "
            f"the limit of {format_bytes(limit_bytes)}"
        )
    else:
        limited = "was limited" if subject == "Test" else "is limited"
        message = (
            f"{subject} {limited} to {format_bytes(limit_bytes)} but its predicted GPU "
            f"peak{per_gpu} was {format_bytes(peak)} ({measure}){what}"
        )
    detail = f"  limit {format_bytes(limit_bytes)}\n" + estimate.describe()
    return LimitResult(passed, limit_bytes, peak, measure, message, detail)


def check_predicted_for_model(
    limit: int | str,
    model: str,
    *,
    margin: float = 0.0,
    **kwargs: Any,
) -> LimitResult:
    """One call for a marker such as ``limit_predicted_gpu_memory("80 GB", longest_edge=1536)``:
    parse the ceiling (:func:`~pytest_tokenguard.units.parse_size`), validate the sample
    and recipe (:func:`validate`), predict, compare.

    Raises ``ValueError`` (bad size, bad margin) or :class:`MemoryModelError`
    (unknown model, bad keyword) with a message fit for a collection error.
    """
    from ..units import parse_size

    limit_bytes = parse_size(limit)
    estimate = estimate_for_model(model, validate(**kwargs))
    return check_predicted_limit(estimate, limit_bytes, margin)
