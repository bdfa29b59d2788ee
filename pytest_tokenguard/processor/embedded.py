"""The embedded default processor: SmolVLM2's own tokenizer in transformers' own classes.

Used only when the configured checkpoint cannot be had (offline and not cached): a
laptop, a CI runner without the model cache. Every count it gives is exact, text
included, because nothing in it is an approximation:

- the tokenizer is SmolVLM2's ``tokenizer.json`` (the same file in all three
  checkpoints), shipped gzip-compressed in ``data/``; ``data/NOTICE.md`` states its
  source, its licence (Apache-2.0) and the sha256 checked on every load. It is wrapped
  in transformers' fast tokenizer with the settings of the checkpoints'
  ``tokenizer_config.json`` and ``special_tokens_map.json``;
- the image, video and processor objects are transformers' ``SmolVLMImageProcessor``,
  ``SmolVLMVideoProcessor`` and ``SmolVLMProcessor``, built from each checkpoint's
  published ``preprocessor_config.json`` / ``processor_config.json`` values the way
  ``AutoProcessor.from_pretrained`` builds them: the same settings for both
  processors, with the caller's keyword arguments (``size=...``) on top.

Only the tokenizer is a file: the other settings are a few published values, kept
here in code and compared with the real files by ``tests/oracle/test_embedded.py``,
which also checks that the embedded default gives the real files' ``input_ids``.

The tokenizer is decompressed and built once per process; transformers and tokenizers
are imported inside the functions only.
"""

from __future__ import annotations

import gzip
import hashlib
from functools import lru_cache
from importlib.resources import files
from typing import Any

from ..errors import ProcessorLoadError
from ..specs import SpecError, known_spec

__all__ = [
    "CHAT_TEMPLATE",
    "TOKENIZER_FILE",
    "TOKENIZER_SETTINGS",
    "TOKENIZER_SHA256",
    "build_embedded_processor",
    "embedded_tokenizer",
    "fingerprint",
    "preprocessor_settings",
    "tokenizer_json",
]

#: The chat template shipped with the SmolVLM2 checkpoints (identical for the three).
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

#: The shipped tokenizer, relative to this package, and the sha256 of its uncompressed bytes.
TOKENIZER_FILE = "data/smolvlm2-tokenizer.json.gz"
TOKENIZER_SHA256 = "5ece781dc8d2b2f3e2f289ca0ae50b17cfc27dd27bfe7971bb8241e0b964331a"

#: ``tokenizer_config.json`` / ``special_tokens_map.json`` of the three checkpoints (the
#: same files), as keyword arguments of the fast tokenizer. transformers 5 calls
#: ``additional_special_tokens`` ``extra_special_tokens``. The ``image_token`` /
#: ``fake_image_token`` / ... keys of ``special_tokens_map.json`` are not tokenizer
#: settings: ``SmolVLMProcessor`` has the same strings as its own defaults.
TOKENIZER_SETTINGS: dict[str, Any] = {
    "add_prefix_space": False,
    "bos_token": "<|im_start|>",
    "eos_token": "<end_of_utterance>",
    "pad_token": "<|im_end|>",
    "unk_token": "<|endoftext|>",
    "extra_special_tokens": ["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
    "clean_up_tokenization_spaces": False,
    "legacy": False,
    "model_max_length": 8192,
    "truncation_side": "left",
}


def preprocessor_settings(model: str) -> dict[str, Any]:
    """A known checkpoint's ``preprocessor_config.json`` (a new dict on every call).

    The three differ only in the tile (``max_image_size``, also the video frame size)
    and the default ``longest_edge``, which are the spec's published values.
    """
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
        "video_sampling": {
            "fps": 1,
            "max_frames": 64,
            "video_size": {"longest_edge": spec.tile_size},
        },
    }


@lru_cache(maxsize=1)
def tokenizer_json() -> str:
    """The shipped ``tokenizer.json``, decompressed and checked against its sha256."""
    resource = files(__package__ or "pytest_tokenguard.processor").joinpath(TOKENIZER_FILE)
    try:
        data = gzip.decompress(resource.read_bytes())
    except (OSError, EOFError) as exc:
        raise ProcessorLoadError(
            f"the embedded SmolVLM2 tokenizer ({TOKENIZER_FILE}) cannot be read ({exc}); "
            "reinstall pytest-tokenguard"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != TOKENIZER_SHA256:
        raise ProcessorLoadError(
            f"the embedded SmolVLM2 tokenizer ({TOKENIZER_FILE}) is damaged (sha256 {digest}, "
            f"expected {TOKENIZER_SHA256}); reinstall pytest-tokenguard"
        )
    return data.decode("utf-8")


@lru_cache(maxsize=1)
def embedded_tokenizer() -> Any:
    """SmolVLM2's fast tokenizer from the shipped file, built once per process (about
    0.2 s) and shared by every embedded processor, as the checkpoints share the file."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(tokenizer_json()), **TOKENIZER_SETTINGS
    )


def build_embedded_processor(model: str, **kwargs: Any) -> Any:
    """A real ``SmolVLMProcessor`` for a known checkpoint, without its files.

    ``kwargs`` are the ones users pass to ``from_pretrained`` (``size=...``); like
    ``from_pretrained``, they apply to the image and the video processor.
    """
    from transformers import SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

    spec = known_spec(model)
    if spec is None:
        raise SpecError(f"no embedded default for {model!r}")
    # a fresh settings dict for each: SmolVLMVideoProcessor rewrites video_sampling in place
    image_processor = SmolVLMImageProcessor(**{**preprocessor_settings(model), **kwargs})
    video_processor = SmolVLMVideoProcessor(**{**preprocessor_settings(model), **kwargs})
    processor = SmolVLMProcessor(
        image_processor=image_processor,
        tokenizer=embedded_tokenizer(),
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

    return json.dumps({"settings": preprocessor_settings(model), "template": CHAT_TEMPLATE,
                       "tokenizer": TOKENIZER_SHA256,
                       "tokenizer_settings": TOKENIZER_SETTINGS}, sort_keys=True).encode()
