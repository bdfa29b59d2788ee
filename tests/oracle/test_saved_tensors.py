"""The memory model's per-token terms against autograd itself (issues 18 and 20): one real
layer of transformers, run on the CPU under autocast with saved-tensor hooks, saves exactly
the bytes per token the model says, for

* Qwen2.5-VL's vision block and text decoder layer in bf16 (the Trainer's ``bf16=True``),
  trained and frozen-but-live;
* SmolVLM2's SigLIP vision layer and Llama text layer in fp32 under bf16 autocast (mixed
  precision: fp32 residual stream and norms, each Linear's own bf16 cast of its input).

Per token: the layer is run at two sequence lengths and the difference is divided by the
difference in tokens, so what does not grow with the sequence (autocast's weight copies)
cancels; the rotary cos/sin given to the layer are shared by all layers and not counted.
The GPU's own numbers are the recorded peaks (results-h100-qwen.json); CPU autocast upcasts
LayerNorm differently from CUDA's, which no case here depends on (Qwen has RMSNorm, and an
fp32 model's LayerNorm input is fp32 already).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from pytest_tokenguard.families.qwen_memory import QWEN_CONFIGS, qwen_architecture  # noqa: E402
from pytest_tokenguard.gpu.model import KNOWN_ARCHITECTURES, _Linear, _Saver  # noqa: E402

QWEN_3B = "Qwen/Qwen2.5-VL-3B-Instruct"


def _saved_per_token(build: Callable[[int], tuple[Callable[[], Any], set[int]]]) -> float:
    """Bytes per token autograd saves in one forward of ``build(n)``'s call."""
    totals = []
    for tokens in (128, 256):
        call, shared = build(tokens)
        seen: dict[int, int] = {}

        def pack(tensor: Any, seen: dict[int, int] = seen, shared: set[int] = shared) -> Any:
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in shared:
                seen[storage.data_ptr()] = storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                torch.autocast("cpu", dtype=torch.bfloat16):
            call()
        totals.append(sum(seen.values()))
    return (totals[1] - totals[0]) / 128


def _predicted(layer: Callable[..., bool], b: int, trains: bool, mixed: bool = False) -> int:
    saver = _Saver(b, 0, False, autocast=True, mixed=mixed)
    layer(saver, lambda role: _Linear(base=trains), trains, True)
    return saver.bytes


def _params(module: Any) -> set[int]:
    return {p.untyped_storage().data_ptr() for p in module.parameters()}


@pytest.mark.parametrize("trains", [True, False], ids=["trained", "frozen"])
def test_qwen_vision_block(trains: bool) -> None:
    from transformers import Qwen2_5_VLConfig
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as qwen

    config = Qwen2_5_VLConfig(**QWEN_CONFIGS[QWEN_3B]).vision_config
    config._attn_implementation = "sdpa"
    block = qwen.Qwen2_5_VLVisionBlock(config).to(torch.bfloat16).requires_grad_(trains)
    head = config.hidden_size // config.num_heads

    def build(tokens: int) -> tuple[Callable[[], Any], set[int]]:
        x = torch.randn(tokens, config.hidden_size, dtype=torch.bfloat16,
                        requires_grad=True) * 1
        windows = torch.arange(0, tokens + 1, 64, dtype=torch.int32)
        angles = torch.randn(tokens, head // 2).repeat(1, 2)
        cos, sin = angles.cos(), angles.sin()
        return (lambda: block(x, cu_seqlens=windows, position_embeddings=(cos, sin)),
                _params(block) | {cos.untyped_storage().data_ptr(),
                                  sin.untyped_storage().data_ptr()})

    arch = qwen_architecture(QWEN_CONFIGS[QWEN_3B], QWEN_3B)
    assert _saved_per_token(build) == _predicted(arch.vision_layer, 2, trains)


@pytest.mark.parametrize("trains", [True, False], ids=["trained", "frozen"])
def test_qwen_text_layer(trains: bool) -> None:
    from transformers import Qwen2_5_VLConfig
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as qwen

    config = Qwen2_5_VLConfig(**QWEN_CONFIGS[QWEN_3B]).text_config
    config._attn_implementation = "sdpa"
    layer = qwen.Qwen2_5_VLDecoderLayer(config, 0).to(torch.bfloat16).requires_grad_(trains)
    head = config.hidden_size // config.num_attention_heads

    def build(tokens: int) -> tuple[Callable[[], Any], set[int]]:
        x = torch.randn(1, tokens, config.hidden_size, dtype=torch.bfloat16,
                        requires_grad=True) * 1
        angles = torch.randn(1, tokens, head // 2).repeat(1, 1, 2)
        cos, sin = angles.cos().bfloat16(), angles.sin().bfloat16()
        return (lambda: layer(x, attention_mask=None, position_embeddings=(cos, sin)),
                _params(layer) | {cos.untyped_storage().data_ptr(),
                                  sin.untyped_storage().data_ptr()})

    arch = qwen_architecture(QWEN_CONFIGS[QWEN_3B], QWEN_3B)
    assert _saved_per_token(build) == _predicted(arch.text_layer, 2, trains)


@pytest.mark.parametrize("part", ["vision", "text"])
def test_smolvlm_layers_in_mixed_precision(part: str) -> None:
    from transformers import SmolVLMConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding
    from transformers.models.smolvlm import modeling_smolvlm as smolvlm

    name = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"
    arch = KNOWN_ARCHITECTURES[name]
    config = SmolVLMConfig(
        text_config={"model_type": "llama", "hidden_size": arch.text_hidden,
                     "intermediate_size": arch.text_intermediate,
                     "num_attention_heads": arch.text_heads,
                     "num_key_value_heads": arch.text_kv_heads, "head_dim": arch.head_dim},
        vision_config={"hidden_size": arch.vision_hidden,
                       "intermediate_size": arch.vision_intermediate,
                       "num_attention_heads": arch.vision_heads})
    sub = config.vision_config if part == "vision" else config.text_config
    sub._attn_implementation = "sdpa"
    module = (smolvlm.SmolVLMEncoderLayer(sub) if part == "vision"
              else LlamaDecoderLayer(sub, 0))
    hidden = arch.vision_hidden if part == "vision" else arch.text_hidden

    def build(tokens: int) -> tuple[Callable[[], Any], set[int]]:
        x = torch.randn(1, tokens, hidden, requires_grad=True) * 1
        if part == "vision":
            return lambda: module(x, attention_mask=None), _params(module)
        cos, sin = LlamaRotaryEmbedding(sub)(x, torch.arange(tokens)[None])
        return (lambda: module(x, attention_mask=None, position_embeddings=(cos, sin)),
                _params(module) | {cos.untyped_storage().data_ptr(),
                                   sin.untyped_storage().data_ptr()})

    layer = arch.vision_layer if part == "vision" else arch.text_layer
    assert _saved_per_token(build) == _predicted(layer, 2, True, mixed=True)
