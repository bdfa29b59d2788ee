"""The embedded default processor: real transformers SmolVLM classes, this package's config.

Used only when the configured checkpoint cannot be had (offline and not cached). The
image processor, video processor and processor are transformers' own classes, built
from the checkpoint's published settings below, so tiling and the image block are the
real code paths. The tokenizer carries the real special and added tokens at their real
ids (``<image>`` is 49190) but not the 49,152-token SmolLM2 vocabulary: ordinary text
is one token per UTF-8 byte, and two newlines in a row are one token as in SmolLM2.
That rule can only over-count text relative to SmolLM2's byte-level BPE, never under.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ..specs import SpecError, known_spec

#: The chat template shipped with the SmolVLM2 checkpoints (identical for the three).
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

_LEADING_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>", "<file_sep>",
    "<filename>", "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>",
    "<jupyter_start>", "<jupyter_text>", "<jupyter_code>", "<jupyter_output>",
    "<jupyter_script>", "<empty_output>",
]
BASE_VOCAB_SIZE = 49152  # SmolLM2's vocabulary; added tokens start here


def added_tokens() -> list[str]:
    """SmolVLM's added tokens in id order, from 49152 (``<global-img>``) to 49279."""
    markers = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    reserved = [f"<|reserved_special_token_{i}|>" for i in range(88)]
    return ["<global-img>", *markers, "<fake_token_around_image>", "<image>", *reserved,
            "<end_of_utterance>"]


def _preprocessor_settings(model: str) -> dict[str, Any]:
    spec = known_spec(model)
    if spec is None:
        raise SpecError(f"no embedded default for {model!r}")
    return {
        "do_convert_rgb": True,
        "do_image_splitting": spec.do_image_splitting,
        "do_normalize": True,
        "do_pad": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "max_image_size": {"longest_edge": spec.tile_size},
        "resample": 1,
        "rescale_factor": 1 / 255,
        "size": {"longest_edge": spec.default_longest_edge},
    }


@lru_cache(maxsize=1)
def build_byte_tokenizer() -> Any:
    """A ``PreTrainedTokenizerFast`` with SmolVLM's special tokens and a byte-level text rule."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    byte_symbols = sorted(set(ByteLevel.alphabet()))
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(_LEADING_SPECIALS)}
    for symbol in byte_symbols:
        vocab[symbol] = len(vocab)
    vocab["ĊĊ"] = len(vocab)  # "\n\n", merged as SmolLM2 merges it
    for filler in range(len(vocab), BASE_VOCAB_SIZE):  # unreachable: keeps real ids
        vocab[f"<tokenguard_unused_{filler}>"] = filler
    model = models.BPE(vocab=vocab, merges=[("Ċ", "Ċ")])
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(_LEADING_SPECIALS)
    extra = added_tokens()
    tokenizer.add_special_tokens(extra)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        extra_special_tokens=["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
        model_max_length=16384,
    )
    wrapped.fake_image_token = "<fake_token_around_image>"
    wrapped.image_token = "<image>"
    wrapped.global_image_token = "<global-img>"
    wrapped.end_of_utterance_token = "<end_of_utterance>"
    return wrapped


def build_embedded_processor(model: str, **kwargs: Any) -> Any:
    """A real ``SmolVLMProcessor`` for a known checkpoint, without its files.

    ``kwargs`` are the ones users pass to ``from_pretrained`` (``size=...``).
    """
    from transformers import SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

    spec = known_spec(model)
    if spec is None:
        raise SpecError(f"no embedded default for {model!r}")
    settings = _preprocessor_settings(model)
    settings.update(kwargs)
    image_processor = SmolVLMImageProcessor(**settings)
    video_processor = SmolVLMVideoProcessor(
        video_sampling={
            "fps": 1,
            "max_frames": 64,
            "video_size": {"longest_edge": spec.tile_size},
        },
        max_image_size={"longest_edge": spec.tile_size},
    )
    processor = SmolVLMProcessor(
        image_processor=image_processor,
        tokenizer=build_byte_tokenizer(),
        video_processor=video_processor,
        image_seq_len=spec.image_seq_len,
        chat_template=CHAT_TEMPLATE,
    )
    processor.name_or_path = model
    return processor


def fingerprint(model: str) -> bytes:
    """What decides the embedded default's counts for ``model``, as bytes to hash: its
    processor settings, its chat template and its tokenizer."""
    import json

    return json.dumps({"settings": _preprocessor_settings(model), "template": CHAT_TEMPLATE,
                       "tokenizer": "byte-level rule v1"}, sort_keys=True).encode()
