"""Predict the GPU peak of one SmolVLM2 training step from the model's shapes alone.

Most CI has no GPU, so this model lets CI gate "fits in 80 GB" from ``config.json``,
the tiles the processor makes and the text length. Memory estimators in the wild
(accelerate's ``estimate-memory``, DeepSpeed's) count weights and optimizer states
only; for a VLM the vision tower's activations grow with every image tile and are
usually the largest term, so they are modelled here layer by layer.

The recipe modelled is the one measured in ``benchmarks/gpu`` (see
``benchmarks/gpu/smolvlm_step.py``): pure bf16 parameters and gradients,
``torch.optim.AdamW`` with its moments in the parameter dtype, ``sdpa`` attention,
``labels = input_ids``, the steady-state step (the optimizer's moments already exist
when forward runs). The peak predicted is **torch's peak allocated** memory: what
must be live at once. The allocator's reserved memory and the driver's view add a
cache and the CUDA context on top; ``docs/gpu-memory.md`` records by how much.

How the terms are derived (``b`` = bytes per element of the dtype, 2 for bf16):

* per token and layer, a SigLIP vision layer saves ``b·(8·h + 2·i)`` bytes (two
  LayerNorm inputs and outputs, q/k/v, the attention output, the MLP's fc1 output
  and GELU output) plus the attention's fp32 log-sum-exp; a Llama text layer saves
  ``2·(4 + 2b)·h`` for its two RMSNorms (transformers upcasts to fp32 and keeps it),
  ``b·(2·heads + 2·kv_heads)·head_dim`` for attention and ``4·b·i`` for the SwiGLU MLP;
* with gradient checkpointing each layer keeps only its input (``b·h`` per token)
  and one layer is recomputed at a time during backward;
* the loss upcasts the logits to fp32: the forward briefly holds ``b + 4 + 4`` bytes
  per logit (bf16 logits, fp32 copy, log-softmax) and keeps 4; the backward's first
  node holds 8 more;
* the step holds weights + moments throughout, gradients as backward makes them,
  and AdamW's foreach step allocates one parameter-sized temporary.

The peak is the largest of five moments of the step (end of forward, start of
backward, start of the vision tower's backward, end of backward, optimizer step);
:attr:`MemoryEstimate.phase` says which one sets it. The derived coefficients were
checked against per-phase GPU measurements of all three checkpoints (within about
1-2% per term); no free parameter was fitted. One measured constant is added: the
CUDA libraries' workspaces (:data:`LIBRARY_WORKSPACES`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..counting import count_image
from ..errors import MemoryModelError as MemoryModelError
from ..specs import ModelSpec
from ..units import format_bytes
from ..verdict import LimitResult

Optimizer = Literal["adamw", "sgd"]
DTYPE_BYTES = {"bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "float32": 4, "fp32": 4}
GIB = 1024**3

#: Memory torch's allocator holds beyond weights, moments and inputs before the
#: forward pass: measured 70-136 MB across the recorded cases, so its floor is taken.
#: Attributed (not verified) to cuBLAS workspaces, 32 MiB per handle on Hopper, one
#: for the forward thread and one for autograd's backward thread.
LIBRARY_WORKSPACES = 2 * 32 * 1024**2


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

    @property
    def parameters(self) -> int:
        return (
            self.vision_parameters
            + self.connector_parameters
            + self.text_parameters
            + self.lm_head_parameters
        )


def _int(section: dict[str, Any], key: str, where: str) -> int:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MemoryModelError(
            f"{where}: {key} must be a positive integer, got {value!r}; is this a SmolVLM "
            "config.json?"
        )
    return value


def architecture_from_config(config: dict[str, Any], name: str = "config") -> Architecture:
    """An :class:`Architecture` from the parsed ``config.json`` of a SmolVLM checkpoint."""
    text = config.get("text_config")
    vision = config.get("vision_config")
    if not isinstance(text, dict) or not isinstance(vision, dict):
        raise MemoryModelError(
            f"{name}: needs 'text_config' and 'vision_config' objects (a SmolVLM / Idefics3 "
            "config.json)"
        )
    heads = _int(text, "num_attention_heads", f"{name} text_config")
    hidden = _int(text, "hidden_size", f"{name} text_config")
    return Architecture(
        name=name,
        text_layers=_int(text, "num_hidden_layers", f"{name} text_config"),
        text_hidden=hidden,
        text_intermediate=_int(text, "intermediate_size", f"{name} text_config"),
        text_heads=heads,
        text_kv_heads=int(text.get("num_key_value_heads") or heads),
        head_dim=int(text.get("head_dim") or hidden // heads),
        vocab_size=_int(text, "vocab_size", f"{name} text_config"),
        vision_layers=_int(vision, "num_hidden_layers", f"{name} vision_config"),
        vision_hidden=_int(vision, "hidden_size", f"{name} vision_config"),
        vision_intermediate=_int(vision, "intermediate_size", f"{name} vision_config"),
        vision_heads=_int(vision, "num_attention_heads", f"{name} vision_config"),
        patch_size=_int(vision, "patch_size", f"{name} vision_config"),
        image_size=_int(vision, "image_size", f"{name} vision_config"),
        scale_factor=_int(config, "scale_factor", name),
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


def resolve_model(model: str) -> tuple[Architecture, ModelSpec]:
    """The architecture and token spec of ``model``, through the one model resolver
    (:func:`~pytest_tokenguard.processor.source.resolve_source`, never the network): a
    checkpoint folder's ``config.json``, or the published architecture of a known hub id."""
    from ..errors import ProcessorLoadError, SpecError
    from ..processor.source import resolve_source

    try:
        source = resolve_source(model, network_timeout=None)
        config = source.read_json("config.json")
        spec = source.spec()
    except (ProcessorLoadError, SpecError) as exc:
        raise MemoryModelError(str(exc)) from None
    if config is not None:
        return architecture_from_config(config, name=model), spec
    if source.folder is None and source.known is not None:
        return KNOWN_ARCHITECTURES[source.known], spec
    raise MemoryModelError(
        f"{source.folder}: has no config.json, which the memory model reads the architecture "
        f"from; add it, or give one of {', '.join(KNOWN_ARCHITECTURES)}"
    )


@dataclass(frozen=True)
class MemoryEstimate:
    """The predicted peak of one training step and what it is made of (bytes).

    ``activations`` is what the forward pass leaves saved for backward (vision +
    text + kept logits); ``transient`` is what the phase that sets the peak adds on
    top of the other terms (buffers of the loss, one recomputed layer, the optimizer's
    temporary, gradients made so far...). ``peak_bytes`` is their sum at that phase,
    plus :data:`LIBRARY_WORKSPACES`.
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
        )
        return data

    def describe(self) -> str:
        """A few lines for humans: the peak, the phase that sets it, the terms."""
        rows = [
            ("weights", self.weights),
            ("gradients", self.gradients),
            (f"optimizer ({self.optimizer_name})", self.optimizer),
            ("activations, vision", self.vision_activations),
            ("activations, text", self.text_activations),
            ("logits kept for the loss", self.logits),
            ("inputs", self.inputs),
            (f"transient at {self.phase}", self.transient),
        ]
        checkpointing = "on" if self.gradient_checkpointing else "off"
        lines = [
            f"{self.model}: predicted peak {format_bytes(self.peak_bytes)} (torch allocated) at "
            f"{self.phase}",
            f"  batch {self.batch} x {self.tiles_per_sample} tiles, {self.seq_len} tokens per "
            f"sample, {self.dtype}, {self.optimizer_name}, gradient checkpointing "
            f"{checkpointing}, {self.parameters / 1e9:.2f}B parameters",
        ]
        lines += [f"  {name:<28} {format_bytes(value):>10}" for name, value in rows]
        return "\n".join(lines)


def _check_count(name: str, value: object, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MemoryModelError(f"{name} must be a non-negative integer, got {value!r}; {fix}")
    return value


def estimate_step(
    arch: Architecture,
    *,
    tiles_per_sample: int,
    seq_len: int,
    batch: int = 1,
    dtype: str = "bfloat16",
    optimizer: Optimizer = "adamw",
    gradient_checkpointing: bool = False,
) -> MemoryEstimate:
    """The predicted peak allocated bytes of one steady-state training step.

    ``tiles_per_sample`` counts every tile the vision tower encodes for one sample
    (global images included), ``seq_len`` the sample's tokens (image blocks + text).
    """
    _check_count("tiles_per_sample", tiles_per_sample, "count tiles with count_image()")
    _check_count("seq_len", seq_len, "give the tokens of one sample")
    if _check_count("batch", batch, "use --batch 1 or more") < 1:
        raise MemoryModelError("batch must be at least 1; use --batch 1 or more")
    if dtype not in DTYPE_BYTES:
        raise MemoryModelError(f"dtype {dtype!r} unknown; use one of {', '.join(DTYPE_BYTES)}")
    if optimizer not in ("adamw", "sgd"):
        raise MemoryModelError(f"optimizer {optimizer!r} unknown; use 'adamw' or 'sgd'")
    b = DTYPE_BYTES[dtype]
    p = arch.parameters
    weights = gradients = p * b
    # torch AdamW keeps exp_avg and exp_avg_sq as zeros_like(param); its foreach step
    # allocates one parameter-sized temporary (sqrt of exp_avg_sq). Plain SGD keeps none.
    states, step_temp = (2 * p * b, p * b) if optimizer == "adamw" else (0, 0)
    grads_not_vision = (p - arch.vision_parameters) * b

    hv, iv = arch.vision_hidden, arch.vision_intermediate
    h, i, d = arch.text_hidden, arch.text_intermediate, arch.head_dim
    tiles = batch * tiles_per_sample
    vision_tokens = tiles * arch.patches_per_tile
    text_tokens = batch * seq_len
    logits_elems = text_tokens * arch.vocab_size

    # bytes saved per token by one layer, and by what lies outside the layers
    vision_layer = b * (8 * hv + 2 * iv) + 4 * arch.vision_heads + 16
    vision_outside = 2 * b * hv  # the post-LayerNorm's input and output
    text_layer = (
        2 * (4 + 2 * b) * h
        + b * (2 * arch.text_heads + 2 * arch.text_kv_heads) * d
        + 4 * arch.text_heads
        + 4 * b * i
    )
    text_outside = (4 + 2 * b) * h  # final RMSNorm
    if gradient_checkpointing:
        vision_saved = vision_tokens * (arch.vision_layers * b * hv + vision_outside)
        text_saved = text_tokens * (arch.text_layers * b * h + text_outside)
        vision_recompute = vision_tokens * (vision_layer + 2 * b * hv)
        text_recompute = text_tokens * (text_layer + 2 * b * h)
    else:
        vision_saved = vision_tokens * (arch.vision_layers * vision_layer + vision_outside)
        text_saved = text_tokens * (arch.text_layers * text_layer + text_outside)
        vision_recompute = vision_tokens * 2 * b * hv  # gradients of the residual stream
        text_recompute = 0
    logits_kept = 4 * logits_elems
    pixels = tiles * arch.image_size**2
    # measured: 14 bytes per pixel on the GPU (bf16 pixel values, 6; the processor's
    # pixel attention mask, 8), and three int64 tensors per token (ids, mask, labels)
    inputs = pixels * (3 * b + 8) + text_tokens * 8 * 3

    held = weights + states + inputs + LIBRARY_WORKSPACES
    saved = vision_saved + text_saved + logits_kept
    moments = {
        "end of forward": held + vision_saved + text_saved + (b + 4 + 4) * logits_elems,
        "start of backward": held + saved + 8 * logits_elems,
        "start of vision backward": held
        + vision_saved
        + grads_not_vision
        + max(text_recompute, vision_recompute),
        "end of backward": held + gradients + vision_recompute,
        "optimizer step": held + gradients + step_temp,
    }
    phase, peak = max(moments.items(), key=lambda item: item[1])
    accounted = weights + states + inputs + LIBRARY_WORKSPACES
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
        optimizer=states,
        activations=saved,
        vision_activations=vision_saved,
        text_activations=text_saved,
        logits=logits_kept,
        inputs=inputs,
        transient=peak - accounted,
        parameters=p,
        batch=batch,
        tiles_per_sample=tiles_per_sample,
        seq_len=seq_len,
        gradient_checkpointing=gradient_checkpointing,
        dtype=dtype,
        optimizer_name=optimizer,
    )


def sample_shape(
    spec: ModelSpec,
    longest_edge: int,
    images: int,
    text_tokens: int,
    image_size: tuple[int, int] = (384, 384),
) -> tuple[int, int]:
    """``(tiles_per_sample, seq_len)`` of a sample of ``images`` images of ``image_size``
    plus ``text_tokens`` tokens, counted exactly as the processor would."""
    _check_count("images", images, "use --images 0 or more")
    _check_count("text_tokens", text_tokens, "use --text-tokens 0 or more")
    cost = count_image(image_size[0], image_size[1], longest_edge, spec)
    return images * cost.patches, images * cost.block_tokens + text_tokens


def estimate_for_model(
    model: str,
    *,
    longest_edge: int | None = None,
    images: int = 4,
    text_tokens: int = 64,
    batch: int = 1,
    gradient_checkpointing: bool = False,
    dtype: str = "bfloat16",
    optimizer: Optimizer = "adamw",
    image_size: tuple[int, int] = (384, 384),
) -> MemoryEstimate:
    """:func:`estimate_step` for ``model`` (folder or known hub id) and a sample described
    by its images and text length; ``longest_edge`` defaults to the checkpoint's."""
    arch, spec = resolve_model(model)
    edge = spec.default_longest_edge if longest_edge is None else longest_edge
    tiles, seq_len = sample_shape(spec, edge, images, text_tokens, image_size)
    return estimate_step(
        arch,
        tiles_per_sample=tiles,
        seq_len=seq_len,
        batch=batch,
        dtype=dtype,
        optimizer=optimizer,
        gradient_checkpointing=gradient_checkpointing,
    )


def check_predicted_limit(
    estimate: MemoryEstimate, limit_bytes: int, margin: float = 0.0
) -> LimitResult:
    """Compare a predicted peak, raised by ``margin`` (0.1 = 10%), with a ceiling.

    The margin is where a caller states how much the allocator's cache and the CUDA
    context may add on its setup (``docs/gpu-memory.md`` records what was measured).
    """
    if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int) or limit_bytes < 1:
        raise ValueError(f"limit_bytes must be a positive int, got {limit_bytes!r}")
    if not 0 <= margin < 10:
        raise ValueError(f"margin must be a fraction such as 0.1, got {margin!r}")
    peak = int(estimate.peak_bytes * (1 + margin))
    measure = "predicted" if margin == 0 else f"predicted + {margin:.0%} margin"
    passed = peak <= limit_bytes
    if passed:
        message = (
            f"predicted GPU peak {format_bytes(peak)} ({measure}) is within the limit of "
            f"{format_bytes(limit_bytes)}"
        )
    else:
        message = (
            f"Test was limited to {format_bytes(limit_bytes)} but its predicted GPU peak was "
            f"{format_bytes(peak)} ({measure})"
        )
    detail = f"  limit {format_bytes(limit_bytes)}\n" + estimate.describe()
    return LimitResult(passed, limit_bytes, peak, measure, message, detail)


def check_predicted_for_model(
    limit: int | str,
    model: str,
    *,
    longest_edge: int | None = None,
    images: int = 4,
    text_tokens: int = 64,
    batch: int = 1,
    gradient_checkpointing: bool = False,
    dtype: str = "bfloat16",
    optimizer: Optimizer = "adamw",
    image_size: tuple[int, int] = (384, 384),
    margin: float = 0.0,
) -> LimitResult:
    """One call for a marker such as ``limit_predicted_gpu_memory("80 GB", longest_edge=1536)``:
    parse the ceiling (:func:`~pytest_tokenguard.units.parse_size`), predict, compare.

    Raises ``ValueError`` (bad size, bad margin) or :class:`MemoryModelError`
    (unknown model, bad shape) with a message fit for a collection error.
    """
    from ..units import parse_size

    limit_bytes = parse_size(limit)
    estimate = estimate_for_model(
        model,
        longest_edge=longest_edge,
        images=images,
        text_tokens=text_tokens,
        batch=batch,
        gradient_checkpointing=gradient_checkpointing,
        dtype=dtype,
        optimizer=optimizer,
        image_size=image_size,
    )
    return check_predicted_limit(estimate, limit_bytes, margin)
