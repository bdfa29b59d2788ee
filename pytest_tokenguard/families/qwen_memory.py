"""The memory model's side of the Qwen-VL family: Qwen2.5-VL's towers for
:mod:`pytest_tokenguard.gpu.model`, from a ``config.json`` or the published values.

What a Qwen2.5-VL step saves for backward, read from transformers 5.25
(``models/qwen2_5_vl/modeling_qwen2_5_vl.py``) and checked tensor by tensor with autograd's
saved-tensor hooks under autocast (per vision token, ``b`` bytes per element, ``h`` = 1280,
``i`` = 3420):

* a vision block (``Qwen2_5_VLVisionBlock``, window or full attention alike: the ``sdpa``
  path splits the sequence per window and saves the same per token) saves, per RMSNorm on
  the path to a trained value, its fp32 upcast (``4·h``) and ``rsqrt`` (4), plus the bf16
  normalised value when the norm's weight trains; the fused ``qkv`` output (``3·b·h``: ``v``
  is a view of it), the rotated ``q`` and ``k`` (``b·h`` each), the attention output
  (``b·h``) and its fp32 log-sum-exp per head; ``proj``'s input (``b·h``, the concatenated
  windows) when it trains; the SwiGLU MLP's ``3·b·i``; each trained Linear's input;
* outside the blocks: the patch embedding's bf16 copy of the pixel values (``b·1176``) when
  it trains, the rotary cos/sin (fp32, ``2·4·head_dim/2·2`` = 640) shared by every block,
  the window permutation's indices, and the merger (``ln_q``, GELU's input and the inputs of
  its two Linears: ``b·h`` each per vision token, 4 tokens merged into one);
* the text model is Qwen2 (Llama's layer with biases on q/k/v): the SmolVLM2 text terms;
* under gradient checkpointing the Trainer's ``enable_input_require_grads`` hooks every
  input embedding, the vision tower's patch embedding included (transformers 5.25): the
  tower's values then need grad even when it is frozen.

Only the standard library is imported here (the memory model's classes are imported when
an architecture is built).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..gpu.model import Architecture, StepShape

__all__ = ["QWEN_CONFIGS", "QWEN_PERSISTENT", "qwen_architecture", "qwen_sample"]

#: Bytes a Qwen2.5-VL Trainer step holds at its start beyond weights, AdamW states, inputs
#: and the library workspaces: measured at the start of step 2 of ONE recorded case
#: (``qwen-3B-full-gc-b1-1x4032x3024-mp4014080``, 303 MiB: 114 MiB already there when the
#: model is built, the rest after the first step), not fitted to any peak. The other
#: recorded cases are held out (tests/unit/test_qwen_memory.py); their own offsets are
#: 74 to 344 MiB (smaller with LoRA), the source of the last percent.
QWEN_PERSISTENT = 303 * 2**20


def _qwen25(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int,
            vocab: int, tied: bool) -> dict[str, Any]:
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
        "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
        "vision_start_token_id": 151652, "vision_end_token_id": 151653,
        "vision_token_id": 151654, "image_token_id": 151655, "video_token_id": 151656,
        "hidden_act": "silu", "hidden_size": hidden, "initializer_range": 0.02,
        "intermediate_size": intermediate, "max_position_embeddings": 128000,
        "max_window_layers": 70 if tied else 28, "num_attention_heads": heads,
        "num_hidden_layers": layers, "num_key_value_heads": kv_heads, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": tied,
        "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "vocab_size": vocab,
        "vision_config": {
            "depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
            "num_heads": 16, "in_chans": 3, "out_hidden_size": hidden, "patch_size": 14,
            "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
            "temporal_patch_size": 2,
        },
    }


#: The published ``config.json`` values of the Qwen2.5-VL checkpoints (the keys that shape
#: memory, and the special-token ids), so the memory model works offline; the GPU harness
#: builds its random-weight models from these same values.
QWEN_CONFIGS: dict[str, dict[str, Any]] = {
    "Qwen/Qwen2.5-VL-3B-Instruct": _qwen25(2048, 11008, 36, 16, 2, 151936, tied=True),
    "Qwen/Qwen2.5-VL-7B-Instruct": _qwen25(3584, 18944, 28, 28, 4, 152064, tied=False),
}


def _positive(section: Mapping[str, Any], key: str, where: str) -> int:
    from ..gpu.model import _int

    return _int(section, key, where, fix="restore config.json from the checkpoint")


def qwen_architecture(config: Mapping[str, Any], name: str, where: str | None = None
                      ) -> Architecture:
    """A Qwen2.5-VL :class:`~pytest_tokenguard.gpu.model.Architecture` from a parsed
    ``config.json`` (the published layout: text keys at the top level or under
    ``text_config``, the tower under ``vision_config``)."""
    from ..gpu.model import MemoryModelError

    where = where or name
    if config.get("model_type") not in (None, "qwen2_5_vl"):
        raise MemoryModelError(
            f"{where}: model_type {config.get('model_type')!r}: the memory model knows "
            "Qwen2.5-VL's towers (model_type qwen2_5_vl); Qwen2-VL and Qwen3-VL are counted "
            "but not modelled")
    vision = config.get("vision_config")
    text = config.get("text_config") or config
    if not isinstance(vision, Mapping) or not isinstance(text, Mapping):
        raise MemoryModelError(f"{where}: vision_config must be a JSON object; is this a "
                               "Qwen2.5-VL config.json?")
    t, v = f"{where}: text_config", f"{where}: vision_config"
    heads = _positive(text, "num_attention_heads", t)
    hidden = _positive(text, "hidden_size", t)
    out_hidden = _positive(vision, "out_hidden_size", v)
    if out_hidden != hidden:
        raise MemoryModelError(f"{where}: vision_config.out_hidden_size {out_hidden} is not the "
                               f"text hidden_size {hidden}; restore config.json")
    merge = _positive(vision, "spatial_merge_size", v)
    tied = config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))
    arch: Architecture = _qwen_class()(
        name=name,
        text_layers=_positive(text, "num_hidden_layers", t),
        text_hidden=hidden,
        text_intermediate=_positive(text, "intermediate_size", t),
        text_heads=heads,
        text_kv_heads=_positive(text, "num_key_value_heads", t)
        if text.get("num_key_value_heads") is not None else heads,
        head_dim=hidden // heads,
        vocab_size=_positive(text, "vocab_size", t),
        vision_layers=_positive(vision, "depth", v),
        vision_hidden=_positive(vision, "hidden_size", v),
        vision_intermediate=_positive(vision, "intermediate_size", v),
        vision_heads=_positive(vision, "num_heads", v),
        patch_size=_positive(vision, "patch_size", v),
        image_size=_positive(vision, "patch_size", v),  # one patch is the unit ("tile")
        scale_factor=merge,
        tie_word_embeddings=bool(tied),
        temporal_patch=_positive(vision, "temporal_patch_size", v),
    )
    return arch


_CLASS: list[type] = []


def _qwen_class() -> type:
    """:class:`QwenArchitecture`, defined on first use (it subclasses the memory model's
    Architecture, which this module does not import at import time)."""
    if _CLASS:
        return _CLASS[0]
    from dataclasses import dataclass

    from ..gpu.model import Architecture, _Linear, _Saver

    @dataclass(frozen=True)
    class QwenArchitecture(Architecture):
        """Qwen2.5-VL: a window-attention ViT with RMSNorm and SwiGLU, a 2x2 patch merger,
        a Qwen2 decoder. A "tile" is one patch of ``temporal_patch·patch²`` pixels."""

        temporal_patch: int = 2
        vision_unit = "vision tokens (patches before the 2x2 merge)"

        @property
        def patches_per_tile(self) -> int:
            return 1

        @property
        def persistent_bytes(self) -> int:
            from ..gpu.model import LIBRARY_WORKSPACES

            return LIBRARY_WORKSPACES + QWEN_PERSISTENT

        @property
        def vision_layer_parameters(self) -> int:
            h, i = self.vision_hidden, self.vision_intermediate
            return (h * 3 * h + 3 * h) + (h * h + h) + 2 * (h * i + i) + (i * h + h) + 2 * h

        @property
        def vision_parameters(self) -> int:
            """Patch embedding (no bias) and blocks; the merger is the connector."""
            embed = 3 * self.temporal_patch * self.patch_size**2 * self.vision_hidden
            return embed + self.vision_layers * self.vision_layer_parameters

        @property
        def connector_parameters(self) -> int:
            h, m = self.vision_hidden, self.vision_hidden * self.scale_factor**2
            return h + (m * m + m) + (m * self.text_hidden + self.text_hidden)

        @property
        def text_layer_parameters(self) -> int:
            h, i, d = self.text_hidden, self.text_intermediate, self.head_dim
            q, kv = self.text_heads * d, self.text_kv_heads * d
            return h * q + q + 2 * (h * kv + kv) + q * h + 3 * h * i + 2 * h

        @property
        def text_parameters(self) -> int:
            return (self.text_layers * self.text_layer_parameters + self.text_hidden
                    + self.vocab_size * self.text_hidden)

        def module_name(self, part: str, index: int, role: str) -> str:
            mlp = role in ("gate_proj", "up_proj", "down_proj")
            if part == "vision":
                return f"model.visual.blocks.{index}.{'mlp' if mlp else 'attn'}.{role}"
            return f"model.language_model.layers.{index}.{'mlp' if mlp else 'self_attn'}.{role}"

        def linear_modules(self) -> tuple[Any, ...]:
            from ..gpu.model import LinearModule

            hv, iv = self.vision_hidden, self.vision_intermediate
            h, i = self.text_hidden, self.text_intermediate
            q_out, kv_out = self.text_heads * self.head_dim, self.text_kv_heads * self.head_dim
            merged = hv * self.scale_factor**2
            found = []
            for index in range(self.vision_layers):
                for role, fan_in, fan_out in (("qkv", hv, 3 * hv), ("proj", hv, hv),
                                              ("gate_proj", hv, iv), ("up_proj", hv, iv),
                                              ("down_proj", iv, hv)):
                    found.append(LinearModule(self.module_name("vision", index, role), "vision",
                                              index, role, fan_in, fan_out))
            found += [LinearModule("model.visual.merger.mlp.0", "connector", None, "0", merged,
                                   merged),
                      LinearModule("model.visual.merger.mlp.2", "connector", None, "2", merged,
                                   h)]
            for index in range(self.text_layers):
                for role, fan_in, fan_out in (("q_proj", h, q_out), ("k_proj", h, kv_out),
                                              ("v_proj", h, kv_out), ("o_proj", q_out, h),
                                              ("gate_proj", h, i), ("up_proj", h, i),
                                              ("down_proj", i, h)):
                    found.append(LinearModule(self.module_name("text", index, role), "text",
                                              index, role, fan_in, fan_out))
            found.append(LinearModule("lm_head", "lm_head", None, "lm_head", h, self.vocab_size))
            return tuple(found)

        def other_module_names(self) -> tuple[str, ...]:
            names = ["model", "model.visual", "model.visual.patch_embed",
                     "model.visual.patch_embed.proj", "model.visual.rotary_pos_emb",
                     "model.visual.blocks", "model.visual.merger", "model.visual.merger.ln_q",
                     "model.visual.merger.mlp", "model.visual.merger.mlp.1",
                     "model.language_model", "model.language_model.embed_tokens",
                     "model.language_model.layers", "model.language_model.norm",
                     "model.language_model.rotary_emb"]
            for index in range(self.vision_layers):
                stem = f"model.visual.blocks.{index}"
                names += [stem, f"{stem}.norm1", f"{stem}.norm2", f"{stem}.attn", f"{stem}.mlp",
                          f"{stem}.mlp.act_fn"]
            for index in range(self.text_layers):
                stem = f"model.language_model.layers.{index}"
                names += [stem, f"{stem}.self_attn", f"{stem}.mlp", f"{stem}.input_layernorm",
                          f"{stem}.post_attention_layernorm", f"{stem}.mlp.act_fn"]
            return tuple(names)

        def vision_live_at_start(self, shape: StepShape, trains: bool) -> bool:
            # gradient checkpointing: enable_input_require_grads hooks the patch embedding
            return trains or shape.gradient_checkpointing

        def vision_layer(self, saver: Any, lin: Any, norms: bool, live: bool) -> bool:
            h, i, b = self.vision_hidden, self.vision_intermediate, saver.b

            def rms_norm(live: bool) -> bool:
                if live or norms:  # fp32 upcast, rsqrt; the bf16 normalised value for the weight
                    saver.bytes += 4 * h + 4 + (b * h if norms else 0)
                return live or norms

            attn = saver.linears(h, [lin("qkv")], rms_norm(live))
            if attn:  # qkv's output (v is a view), rotated q and k, output, log-sum-exp
                saver.bytes += 6 * b * h + 4 * self.vision_heads
            live = saver.linears(h, [lin("proj")], attn) or live
            mlp = saver.linears(h, [lin("gate_proj"), lin("up_proj")], rms_norm(live))
            if mlp:  # SiLU's input, its output and up_proj's output
                saver.bytes += 3 * b * i
            return bool(saver.linears(i, [lin("down_proj")], mlp)) or live

        def vision_outside(self, saver: Any, full: Mapping[str, bool], vision_end: bool,
                           adapted: set[str]) -> bool:
            h, b = self.vision_hidden, saver.b
            if full["vision"]:  # the patch embedding saves its cast of the pixel values
                saver.bytes += b * 3 * self.temporal_patch * self.patch_size**2
            if vision_end:  # rotary cos and sin (fp32, shared by the blocks), window indices
                saver.bytes += 2 * 4 * (h // self.vision_heads) + 4
            trains = full["connector"]
            live = vision_end or trains
            if live:  # ln_q: fp32 upcast and rsqrt, the normalised value when it trains
                saver.bytes += 4 * h + 4 + (b * h if trains else 0)
            # per vision token: the merger's Linears read 4 merged tokens' h values
            hidden = saver.linears(h, [_Linear(trains, "model.visual.merger.mlp.0" in adapted)],
                                   live)
            if hidden:  # GELU's input
                saver.bytes += b * h
            return bool(saver.linears(
                h, [_Linear(trains, "model.visual.merger.mlp.2" in adapted)], hidden))

        def input_bytes(self, tiles: int, pixel_bytes: int) -> int:
            return tiles * 3 * self.temporal_patch * self.patch_size**2 * pixel_bytes

    assert _Saver is not None
    _CLASS.append(QwenArchitecture)
    return QwenArchitecture


def qwen_sample(spec: Any, shape: StepShape) -> tuple[int, int, str]:
    """``(vision tokens, tokens, setting)`` of one sample of ``shape`` on a Qwen-VL
    ``spec``: the patches the tower encodes (before the 2x2 merge), the sample's tokens
    (each image's and the video's block, and the text) and the resolution setting used."""
    from ..gpu.model import MemoryModelError
    from ..video import video_info
    from .qwen import QwenSettings, count_qwen_image, count_qwen_video

    refused = [
        (shape.mixed, f"dtype={shape.dtype} with loop={shape.loop} (mixed precision)",
         "load the model in bfloat16"),
        (shape.loop != "trainer", f"loop={shape.loop}", "give loop=trainer"),
        (shape.gpus > 1, f"gpus={shape.gpus}", "predict one GPU (gpus=1)"),
    ]
    for refuse, what, fix in refused:
        if refuse:
            raise MemoryModelError(
                f"{what} is not modelled for {spec.name}: Qwen2.5-VL is measured and modelled "
                f"in the Trainer's loop with a bf16 model on one GPU; {fix}")
    if shape.longest_edge is not None:
        raise MemoryModelError(
            f"longest_edge={shape.longest_edge} is SmolVLM2's resolution; Qwen-VL resizes by "
            "max_pixels: give max_pixels instead")
    settings = QwenSettings(max_pixels=shape.max_pixels)
    merge = spec.image.merge_size ** 2
    patches = tokens = 0
    for width, height in (shape.image_sizes if shape.image_count else ()):
        cost = count_qwen_image(width, height, spec, settings)
        patches += cost.image_tokens * merge
        tokens += cost.block_tokens
    if shape.video is not None:
        width, height, frames = shape.video
        video = count_qwen_video(video_info(frames, None, width=width, height=height), spec,
                                 do_sample_frames=False, settings=settings)
        patches += video.video_tokens * merge
        tokens += video.block_tokens
    max_pixels = shape.max_pixels or spec.image.max_pixels
    return patches, tokens + shape.text_tokens, f"max_pixels={max_pixels}"
