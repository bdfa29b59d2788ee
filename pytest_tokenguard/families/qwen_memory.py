"""The memory model's side of the Qwen-VL family: the published architecture of the
Qwen2.5-VL checkpoints it knows offline, and their shapes for :mod:`pytest_tokenguard.gpu.model`.

Only the standard library is imported here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["QWEN_CONFIGS"]


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
