"""Real transformers Qwen-VL processors, built offline from the published settings.

The hub cannot be reached, so the image and video processors are constructed directly
from the values of each checkpoint's ``preprocessor_config.json`` and
``video_preprocessor_config.json`` (:data:`PUBLISHED`), and the processor gets a
*stand-in tokenizer*: one token per character plus the Qwen special tokens. It is not
Qwen's vocabulary and is used only to read what the processor writes: the expanded text
(decoded back exactly, a character a token) and the number of ``<|image_pad|>`` and
``<|video_pad|>`` tokens, which do not depend on the vocabulary.

For whole conversations (:func:`chat_processor`) the processor also gets a Qwen chat
template (:data:`CHATML_TEMPLATE`) and either stand-in: the character one, or a *real BPE*
(:func:`bpe_tokenizer`: SmolVLM2's shipped byte-level BPE with Qwen's special tokens
added), so text that merges across the pieces the processor writes is really exercised.
"""

from __future__ import annotations

import string
import warnings
from functools import cache
from typing import Any

from hypothesis import strategies as st

from pytest_tokenguard.families.qwen import KNOWN_QWEN_SPECS, QwenSpec

#: What each checkpoint publishes (preprocessor_config.json, video_preprocessor_config.json
#: or None where none is published), trimmed to the keys that decide sizes and sampling.
QWEN2_IMAGE = {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14,
               "temporal_patch_size": 2, "merge_size": 2}
QWEN3_IMAGE = {"size": {"longest_edge": 16777216, "shortest_edge": 65536}, "patch_size": 16,
               "temporal_patch_size": 2, "merge_size": 2}
QWEN3_VIDEO = {"size": {"longest_edge": 25165824, "shortest_edge": 4096}, "patch_size": 16,
               "temporal_patch_size": 2, "merge_size": 2, "do_sample_frames": True, "fps": 2,
               "min_frames": 4, "max_frames": 768}
PUBLISHED: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "Qwen/Qwen2-VL-2B-Instruct": (QWEN2_IMAGE, None),
    "Qwen/Qwen2.5-VL-3B-Instruct": (QWEN2_IMAGE, None),
    "Qwen/Qwen2.5-VL-7B-Instruct": (QWEN2_IMAGE, None),
    "Qwen/Qwen3-VL-4B-Instruct": (QWEN3_IMAGE, QWEN3_VIDEO),
    "Qwen/Qwen3-VL-8B-Instruct": (QWEN3_IMAGE, QWEN3_VIDEO),
}
#: one checkpoint of each generation
GENERATIONS = {"qwen2_vl": "Qwen/Qwen2-VL-2B-Instruct",
               "qwen2_5_vl": "Qwen/Qwen2.5-VL-7B-Instruct",
               "qwen3_vl": "Qwen/Qwen3-VL-8B-Instruct"}
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]


#: The Qwen2-VL / Qwen2.5-VL ChatML chat template: a default "You are a helpful
#: assistant." system message when the first message is not a system one, string content
#: written as it is, ``<|vision_start|><|image_pad|><|vision_end|>`` per image and
#: ``<|vision_start|><|video_pad|><|vision_end|>`` per video, and ``<|im_start|>assistant\n``
#: as the generation prompt. Copied from huggingface/transformers,
#: tests/models/qwen2_vl/test_processing_qwen2_vl.py (``prepare_processor_dict``, commit
#: 1e051943f70c8243472811236ba8ccc7d7d1fcfd), which carries the checkpoints' template.
#: Qwen3-VL's own Instruct template was not found in a public copy we could cite, so the
#: Qwen3-VL processors get this one too (the counter renders whatever template it is given).
CHATML_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@cache
def char_tokenizer() -> Any:
    """A fast tokenizer with one token per printable ASCII character and Qwen's special
    tokens (ids from 1000 on): a stand-in to read the processor's expansion."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(string.printable)}
    vocab["[UNK]"] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")


@cache
def bpe_tokenizer() -> Any:
    """A real byte-level BPE: SmolVLM2's shipped tokenizer with Qwen's special tokens added
    (``<|im_start|>`` is SmolVLM2's own). Not Qwen's vocabulary; its merges span the
    pieces the processor joins (``"\n<"`` before a Qwen3-VL timestamp, say)."""
    from tokenizers import AddedToken, Tokenizer
    from transformers import PreTrainedTokenizerFast

    from pytest_tokenguard.processor.embedded import tokenizer_json

    backend = Tokenizer.from_str(tokenizer_json())
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")


TOKENIZERS = {"char": char_tokenizer, "bpe": bpe_tokenizer}


@cache
def chat_processor(model: str, tokenizer: str = "char") -> Any:
    """The checkpoint's processor class over the real image and video processors, a
    stand-in tokenizer (``"char"`` or ``"bpe"``) and :data:`CHATML_TEMPLATE`."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor, Qwen3VLProcessor

    cls = {"qwen2_vl": Qwen2VLProcessor, "qwen2_5_vl": Qwen2_5_VLProcessor,
           "qwen3_vl": Qwen3VLProcessor}[model_spec(model).generation]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(image_processor=image_processor(model), tokenizer=TOKENIZERS[tokenizer](),
                   video_processor=video_processor(model), chat_template=CHATML_TEMPLATE)


def image_processor(model: str) -> Any:
    from transformers import Qwen2VLImageProcessor

    return Qwen2VLImageProcessor(**PUBLISHED[model][0])


def video_processor(model: str) -> Any:
    image, video = PUBLISHED[model]
    if model_spec(model).generation == "qwen3_vl":
        from transformers import Qwen3VLVideoProcessor

        return Qwen3VLVideoProcessor(**(video or {}))
    from transformers import Qwen2VLVideoProcessor

    return Qwen2VLVideoProcessor(**(video or image))


@cache
def processor(model: str) -> Any:
    """The checkpoint's processor class over the real image and video processors and the
    stand-in tokenizer."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor, Qwen3VLProcessor

    cls = {"qwen2_vl": Qwen2VLProcessor, "qwen2_5_vl": Qwen2_5_VLProcessor,
           "qwen3_vl": Qwen3VLProcessor}[model_spec(model).generation]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(image_processor=image_processor(model), tokenizer=char_tokenizer(),
                   video_processor=video_processor(model))


def model_spec(model: str) -> QwenSpec:
    return KNOWN_QWEN_SPECS[model]


def expand(proc: Any, text: str, **kwargs: Any) -> tuple[list[int], str, Any]:
    """``proc(text=[text], **kwargs)``: its ids, the text they spell, and the output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = proc(text=[text], return_tensors="pt", **kwargs)
    ids = [int(i) for i in out["input_ids"][0]]
    return ids, "".join(proc.tokenizer.convert_ids_to_tokens(ids)), out


def _pixels(item: dict[str, Any]) -> Any:
    """The image to hand the processor for an image item of the chat-template form: its PIL
    image or path, else a blank of its size (only the size decides the tokens)."""
    if item.get("image") is not None:
        return item["image"]
    if item.get("path"):
        return str(item["path"])
    from PIL import Image

    return Image.new("RGB", (int(item["width"]), int(item["height"])), (90, 120, 30))


def qwen_input_ids(proc: Any, messages: Any, *, add_generation_prompt: bool = False,
                   min_pixels: int | None = None, max_pixels: int | None = None) -> list[int]:
    """The oracle: ``input_ids`` of ``proc(text=proc.apply_chat_template(messages,
    tokenize=False, ...), images=..., videos=..., video_metadata=...)`` with the call's
    ``min_pixels``/``max_pixels``; videos as blank decoded frames of their frame size with
    their metadata, sampled by the processor as the items say (``num_frames``/
    ``sample_fps``: ``do_sample_frames=True``; on Qwen3-VL ``num_frames`` alone goes with
    ``fps=None``, as its own ``fps=2`` would clash)."""
    import numpy as np

    from pytest_tokenguard.conversation import parse_message, to_chat_template, videos_of

    parsed = tuple(parse_message(m, i) for i, m in enumerate(messages))
    hf = to_chat_template(parsed)
    rendered = proc.apply_chat_template(hf, tokenize=False,
                                        add_generation_prompt=add_generation_prompt)
    kwargs: dict[str, Any] = {}
    images = [_pixels(item) for m in hf if not isinstance(m["content"], str)
              for item in m["content"] if item["type"] == "image"]
    if images:
        kwargs["images"] = images
    videos = videos_of(parsed)
    if videos:
        frames, metadata = [], []
        for video in videos:
            info = video.info()
            assert info.width is not None
            assert info.height is not None
            frames.append(np.zeros((info.total_frames, info.height, info.width, 3), np.uint8))
            metadata.append(video.processor_metadata())
        kwargs.update(videos=frames, video_metadata=metadata)
        num_frames, fps = videos[0].num_frames, videos[0].sample_fps
        if num_frames is not None or fps is not None:
            kwargs["do_sample_frames"] = True
            if num_frames is not None:
                kwargs["num_frames"] = num_frames
            kwargs["fps"] = fps
    if min_pixels is not None:
        kwargs["min_pixels"] = min_pixels
    if max_pixels is not None:
        kwargs["max_pixels"] = max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = proc(text=[rendered], return_tensors="pt", **kwargs)
    return [int(i) for i in out["input_ids"][0]]


# ------------------------------------------------------------------ strategies

#: phone photos (both orientations), screenshots, and the edges of the 28/32 factor
PHONE = [(4032, 3024), (3024, 4032), (1170, 2532), (1080, 1920), (4000, 3000)]
SIDES = st.integers(1, 1600) | st.sampled_from([1, 27, 28, 29, 31, 32, 33, 56, 448])
IMAGE_SIZES = st.tuples(SIDES, SIDES) | st.sampled_from(PHONE)
#: text the tokenizer and template meet: unicode, whitespace runs, ChatML's own specials,
#: and the characters of a Qwen3-VL timestamp (``<0.5 seconds>``)
TEXTS = st.text(st.characters(exclude_categories=["Cs"]), max_size=30) | st.sampled_from(
    ["", " ", "\n", "\n\n", " \t ", "<", "seconds>", "0.5", "你好\uff0c世界", "é\u0301",
     "<|im_end|>", "<|vision_end|>x", "\u2028", "  trailing  "])
PIXELS = st.sampled_from([(None, None), (None, 50176), (None, 230400), (None, 1003520),
                          (200704, None), (3136, 12544), (65536, 262144)])


def text_item(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


@st.composite
def qwen_videos(draw: st.DrawFn) -> dict[str, Any]:
    total = draw(st.integers(1, 40))
    fps = draw(st.sampled_from([1.0, 2.0, 10.0, 24.0, 30000 / 1001, 30.0]))
    item: dict[str, Any] = {"type": "video", "total_frames": total, "fps": fps,
                            "width": draw(st.integers(8, 120)),
                            "height": draw(st.integers(8, 120))}
    sampling = draw(st.sampled_from(["default", "num_frames", "sample_fps"]))
    if sampling == "num_frames":
        item["num_frames"] = draw(st.integers(1, 12))
    elif sampling == "sample_fps":
        item["sample_fps"] = draw(st.sampled_from([0.5, 1.0, 2.0, 4.0]))
    if total > 4 and draw(st.booleans()):
        start = draw(st.integers(0, total - 2))
        item["start"], item["end"] = start, draw(st.integers(start + 1, total))
    return item


@st.composite
def conversations(draw: st.DrawFn, videos: bool) -> list[dict[str, Any]]:
    """0-6 images of random sizes among 1-5 messages (system or not, string content or
    items, frames sent as images), at most one video."""
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        system = draw(TEXTS) or "Be brief."
        messages.append({"role": "system", "content": system if draw(st.booleans())
                         else [text_item(system)]})
    budget = draw(st.integers(0, 6))
    video_left = videos and draw(st.booleans())
    for turn in range(draw(st.integers(1, 4))):
        role = "user" if turn % 2 == 0 else "assistant"
        if draw(st.integers(0, 4)) == 0:
            messages.append({"role": role, "content": draw(TEXTS) or "ok"})
            continue
        content: list[dict[str, Any]] = []
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["text", "text", "image", "frames", "video"]))
            if kind == "image" and budget:
                width, height = draw(IMAGE_SIZES)
                content.append({"type": "image", "width": width, "height": height})
                budget -= 1
            elif kind == "frames" and budget >= 2:
                width, height = draw(IMAGE_SIZES)
                start = draw(st.integers(0, 100))
                content.append({"type": "frames", "start": start, "end": start + 2,
                                "width": width, "height": height})
                budget -= 2
            elif kind == "video" and video_left:
                content.append(draw(qwen_videos()))
                video_left = False
            else:
                content.append(text_item(draw(TEXTS)))
        messages.append({"role": role, "content": content})
    return messages
