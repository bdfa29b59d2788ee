"""The one helper module of the test suite: which model a test loads, how the processor is
loaded (once per process), the checkpoint folders, and the recorded GPU measurements.

Tests that need "the real processor" name the checkpoint by its hub id
(:func:`model_ref`), exactly as a user does. The suite runs offline
(``HF_HUB_OFFLINE=1``, set in ``conftest.py``), so with no model cache (a fresh machine;
CI uses an empty one) that id resolves through the package's own resolver to the
embedded default, whether or not ``../shared`` exists: every such machine runs the same
tests on the same processor.

Tests that need *a checkpoint folder* (loading from a folder, ``spec_from_folder``, an
edited or broken copy, ``--model FOLDER``) use :func:`checkpoint_folder`: a complete
folder written from tokenguard's built-in copies of the published files, so transformers'
own folder-loading code runs on every machine.

The real files (``../shared/models`` beside the checkout, or ``TOKENGUARD_MODELS_DIR``)
are used by ``tests/oracle/test_real_files.py`` only, which compares every built-in copy
(the embedded default's tokenizer, settings and ``input_ids``, ``KNOWN_SPECS``,
``KNOWN_ARCHITECTURES``, the written folder) with them and skips as one module, with
the reason, where they are absent; and by the GPU tests (:func:`gpu_model_folder`).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from pytest_tokenguard.processor.loading import LoadedProcessor, load_processor
from pytest_tokenguard.tokens import TokenCounter

ROOT = Path(__file__).resolve().parent.parent
REPO = ROOT
FIXTURES = ROOT / "fixtures"
GPU_RESULTS_DIR = ROOT / "benchmarks" / "gpu"
CHECKPOINTS = {
    "2.2B": "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
    "500M": "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
    "256M": "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
}
#: the hub ids of the three checkpoints, 2.2B first
MODEL_IDS = tuple(CHECKPOINTS.values())
RESOLUTIONS = (384, 512, 768, 1024, 1536)
#: every (checkpoint, longest_edge) the property tests run at
GRID = [(ckpt, edge) for ckpt in CHECKPOINTS for edge in RESOLUTIONS]


def models_dir() -> Path:
    return Path(os.environ.get("TOKENGUARD_MODELS_DIR") or ROOT.parent / "shared" / "models")


def model_ref(checkpoint: str = "2.2B") -> str:
    """The hub id of a checkpoint (short name or hub id): what a user passes as the model.

    Offline and uncached it resolves to the embedded default, whether or not the real
    files are in ``../shared``.
    """
    return CHECKPOINTS.get(checkpoint, checkpoint)


#: the files a checkpoint folder holds (no weights): all of them in the real folders
CHECKPOINT_FILES = ("chat_template.json", "config.json", "preprocessor_config.json",
                    "processor_config.json", "special_tokens_map.json", "tokenizer.json",
                    "tokenizer_config.json")
#: why ``tests/oracle/test_real_files.py`` skips where the real files are absent
REAL_FILES_MISSING = ("the real SmolVLM2 processor files are not in ../shared/models or "
                      "$TOKENGUARD_MODELS_DIR: this module compares tokenguard's built-in "
                      "copies with them")


def real_files_present() -> bool:
    """Whether every file of the three checkpoints' real folders is here."""
    return all((models_dir() / model / name).is_file()
               for model in MODEL_IDS for name in CHECKPOINT_FILES)


def real_folder(name: str, needs: str = "preprocessor_config.json") -> Path:
    """The folder of a checkpoint's REAL files (hub id or short name); skips with the
    reason where ``needs`` is not there. Only ``tests/oracle/test_real_files.py`` and the
    GPU tests use it: any other test that needs a folder uses :func:`checkpoint_folder`."""
    folder = models_dir() / model_ref(name)
    if not (folder / needs).is_file():
        pytest.skip(f"real files of {name} ({needs}) not found in {models_dir()}; set "
                    "TOKENGUARD_MODELS_DIR to the shared models folder")
    return folder


@cache
def _load(model: str, edge: int | None) -> LoadedProcessor:
    import torch

    torch.set_num_threads(1)  # one core per xdist worker; many small ops
    return load_processor(model, edge)


def real_processor(name: str, longest_edge: int | None = None) -> Any:
    """The transformers processor of a checkpoint, loaded as users load it (by hub id,
    ``size={"longest_edge": ...}`` at load time; None keeps the checkpoint's default),
    cached per process."""
    return _load(model_ref(name), longest_edge).processor


def folder_processor(name: str, longest_edge: int | None = None) -> Any:
    """The processor loaded from a checkpoint folder (:func:`checkpoint_folder`) by
    transformers' ``from_pretrained``, cached per process."""
    return _load(str(checkpoint_folder(name)), longest_edge).processor


def real_folder_processor(name: str, longest_edge: int | None = None) -> Any:
    """The processor loaded from the checkpoint's REAL files (skips where they are
    missing): the reference ``tests/oracle/test_real_files.py`` compares with."""
    return _load(str(real_folder(name)), longest_edge).processor


def needs_gpus(count: int) -> list[pytest.MarkDecorator]:
    """``pytestmark`` of a module that needs ``count`` GPUs, counted through NVML (which
    sees them without initialising CUDA in the test process)."""
    from pytest_tokenguard.gpu.measure import nvml_module

    pynvml, reason = nvml_module()
    if pynvml is None:
        visible, reason = 0, f"needs {count} GPUs, counted through NVML: " + reason.split(
            " (the torch")[0]
    else:
        try:
            visible, reason = int(pynvml.nvmlDeviceGetCount()), ""
        finally:
            pynvml.nvmlShutdown()
    return [pytest.mark.gpu, pytest.mark.skipif(
        visible < count, reason=reason or f"needs {count} GPUs, {visible} visible")]


def assert_parameter_counts(name: str, folder: Path) -> None:
    """The memory model's closed-form parameter counts of ``name`` equal those of the model
    transformers builds from ``folder``'s config.json, on the meta device (no memory)."""
    from pytest_tokenguard.gpu.model import KNOWN_ARCHITECTURES

    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.from_pretrained(str(folder))
    with torch.device("meta"):
        model = transformers.AutoModelForImageTextToText.from_config(config)
    arch = KNOWN_ARCHITECTURES[name]
    inner = model.model
    assert sum(p.numel() for p in model.parameters()) == arch.parameters
    assert sum(p.numel() for p in inner.vision_model.parameters()) == arch.vision_parameters
    assert sum(p.numel() for p in inner.connector.parameters()) == arch.connector_parameters
    assert sum(p.numel() for p in model.lm_head.parameters()) == arch.lm_head_parameters


def budget_split(messages: list[dict[str, Any]], budget: int = 4096) -> list[Any]:
    """A user's splitter with the classic mistakes: 81 tokens per image, text as
    characters / 4. Planted in pytester files as :func:`budget_split_source`."""
    chunks: list[Any] = []
    current: list[dict[str, Any]] = []
    used = 0
    for message in messages:
        cost = sum(81 if item["type"] == "image" else len(item["text"]) // 4
                   for item in message["content"])
        if current and used + cost > budget:
            chunks.append(current)
            current, used = [], 0
        current.append(message)
        used += cost
    return chunks + ([current] if current else [])


def budget_split_source() -> str:
    """:func:`budget_split` as the text of a module (for a planted test file)."""
    import inspect

    return "from typing import Any\n\n\n" + inspect.getsource(budget_split) + "\n\n"


@cache
def embedded_processor(checkpoint: str, edge: int | None = None) -> Any:
    """The embedded default, built directly (whatever the resolver would pick here)."""
    from pytest_tokenguard.processor.embedded import build_embedded_processor

    kwargs = {"size": {"longest_edge": edge}} if edge else {}
    return build_embedded_processor(checkpoint, **kwargs)


def assert_same_processor(mine: Any, other: Any) -> None:
    """Two SmolVLM processors with the same settings, sub-processors, template and tokens."""
    assert mine.to_dict() == other.to_dict()
    assert mine.image_processor.to_dict() == other.image_processor.to_dict()
    assert mine.video_processor.to_dict() == other.video_processor.to_dict()
    assert mine.chat_template == other.chat_template
    for name in ("image_token", "image_token_id", "fake_image_token", "global_image_token",
                 "end_of_utterance_token", "video_token", "image_seq_len"):
        assert getattr(mine, name) == getattr(other, name), name


def assert_same_tokenizer(mine: Any, other: Any) -> None:
    """Two tokenizers of one class, with the same model, added and special tokens, settings."""
    assert type(mine) is type(other)
    assert mine.backend_tokenizer.to_str() == other.backend_tokenizer.to_str()
    assert mine.added_tokens_decoder == other.added_tokens_decoder
    assert mine.special_tokens_map == other.special_tokens_map
    assert mine.all_special_ids == other.all_special_ids
    assert mine.extra_special_tokens == other.extra_special_tokens
    for name in ("model_max_length", "truncation_side", "padding_side",
                 "clean_up_tokenization_spaces", "add_prefix_space"):
        assert getattr(mine, name) == getattr(other, name), name


def real_image_tokens(processor: Any, width: int, height: int, **kwargs: Any) -> tuple[int, int]:
    """(<image> tokens, total tokens) the real processor writes for one image alone."""
    from PIL import Image

    image = Image.new("RGB", (width, height), (120, 30, 200))
    ids = processor(text=["<image>"], images=[[image]], **kwargs)["input_ids"][0]
    return ids.count(processor.image_token_id), len(ids)


def loaded(checkpoint: str = "2.2B", edge: int = 384) -> LoadedProcessor:
    return _load(model_ref(checkpoint), edge)


@cache
def _counter(model: str, edge: int) -> TokenCounter:
    lp = _load(model, edge)
    return TokenCounter(lp.processor, lp.spec, lp.longest_edge)


def counter(checkpoint: str = "2.2B", edge: int = 384) -> TokenCounter:
    return _counter(model_ref(checkpoint), edge)


def gpu_model_folder(name: str) -> Path:
    """A checkpoint folder with its config.json, for the GPU tests (short folder name)."""
    return real_folder(f"HuggingFaceTB/{name}", needs="config.json")


def recorded_results() -> list[dict[str, Any]]:
    """Every measured case of every ``results-*.json`` (default allocator settings first)."""
    cases: list[dict[str, Any]] = []
    for path in sorted(GPU_RESULTS_DIR.glob("results-*.json"),
                       key=lambda p: (len(p.name), p.name)):
        report = json.loads(path.read_text(encoding="utf-8"))
        for case in report["cases"]:
            if "steady" in case:
                cases.append({**case, "results_file": path.name})
    return cases


# ------------------------------------------------------------------------------ video clips

#: (suffix, codec) pairs the video tests write: MP4 and AVI record a frame count in the
#: header, Matroska and WebM do not; H.264 reorders frames (B-frames), so pts != dts.
CLIP_FORMATS = (
    (".mp4", "mpeg4"), (".mkv", "mpeg4"), (".avi", "mpeg4"), (".webm", "libvpx-vp9"),
    (".mov", "libx264"),
)


def write_clip(path: Path, frames: int, rate: Any, codec: str = "mpeg4",
               size: tuple[int, int] = (16, 12)) -> Path:
    """Write a tiny clip with PyAV: ``frames`` frames at ``rate`` (int or Fraction) fps.

    Frames are a few pixels wide and differ in shade, so encoding takes milliseconds.
    """
    import av
    import numpy as np

    width, height = size
    with av.open(str(path), "w") as container:
        stream: Any = container.add_stream(codec, rate=rate)  # a VideoStream
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            pixels = np.full((height, width, 3), (index * 37) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class ClipCache:
    """Clips written once per test session, by (frames, rate, suffix, codec)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._clips: dict[tuple[int, Any, str, str], Path] = {}

    def __call__(self, frames: int, rate: Any, suffix: str = ".mp4",
                 codec: str = "mpeg4") -> Path:
        key = (frames, rate, suffix, codec)
        path = self._clips.get(key)
        if path is None:
            name = f"clip_{frames}f_{str(rate).replace('/', '-')}fps_{codec}{suffix}"
            path = write_clip(self.folder / name, frames, rate, codec)
            self._clips[key] = path
        return path


def torchcodec_missing() -> str | None:
    """Why transformers cannot decode a video path here (None when it can).

    transformers 5.x decodes paths with torchcodec only (the torchvision fallback is
    gone from torchvision 0.26), and torchcodec needs FFmpeg's shared libraries.
    """
    import transformers.utils.import_utils as import_utils

    usable = getattr(import_utils, "is_torchcodec_usable", None)  # 5.24; 5.17 has no such check
    ok = usable(decode="video") if usable else import_utils.is_torchcodec_available()
    if not ok:
        return ("transformers cannot decode video paths here: install torchcodec and FFmpeg's "
                "shared libraries (e.g. apt-get install libavcodec59 libavformat59 libavutil57 "
                "libswscale6 libswresample4 libavfilter8 libavdevice59)")
    return None


def plugin_args() -> list[str]:
    """``-p pytest_tokenguard.plugin`` where the plugin is not installed (the GPU machine
    runs the suite from a copy of the package, without its entry point)."""
    from importlib.metadata import entry_points

    installed = any("tokenguard" in ep.name for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "pytest_tokenguard.plugin"]


@cache
def _light_counter(model: str, edge: int) -> TokenCounter:
    from pytest_tokenguard.processor.light import light_processor
    from pytest_tokenguard.processor.source import resolve_source

    source = resolve_source(model, network_timeout=None)
    processor = light_processor(source)
    assert processor is not None, f"{model}: no tokenizer-only processor"
    spec = replace(source.spec(), default_longest_edge=edge)
    return TokenCounter(processor, spec, edge)


def light_counter(checkpoint: str = "2.2B", edge: int = 384, *, folder: bool = False
                  ) -> TokenCounter:
    """The tokenizer-only counter ``tokenguard split`` uses (no torch): of the model as
    tests name it (``model_ref``), or of a checkpoint folder (``folder=True``,
    :func:`checkpoint_folder`)."""
    return _light_counter(
        str(checkpoint_folder(checkpoint)) if folder else model_ref(checkpoint), edge)


def write_oriented_image(path: Path, width: int, height: int, orientation: int,
                         fmt: str = "JPEG") -> Path:
    """Write a ``width``×``height`` (stored) image whose EXIF says ``orientation`` (1-8),
    as a phone camera does; PIL writes the EXIF block for JPEG, PNG (eXIf before the
    image data), WebP and TIFF."""
    from PIL import Image

    image = Image.new("RGB", (width, height), (90, 160, 40))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, exif=exif)
    return path


@cache
def pil_backend_processor(name: str) -> Any:
    """The real processor with transformers' PIL image backend (``load_image``,
    ``ImageOps.exif_transpose``) instead of the default torchvision one.
    ``AutoProcessor.from_pretrained(..., backend="pil")`` cannot build SmolVLM's video
    processor, so the image processor is swapped in, as a user would."""
    from transformers import AutoImageProcessor, AutoProcessor

    folder = str(checkpoint_folder(name))
    processor = AutoProcessor.from_pretrained(folder)
    processor.image_processor = AutoImageProcessor.from_pretrained(folder, backend="pil")
    return processor


def real_tokens_of(processor: Any, image: Any, **kwargs: Any) -> tuple[int, int]:
    """(<image> tokens, total tokens) the real processor writes for one image given as
    the processor takes it: a path (str), which it opens itself, or a PIL image."""
    ids = processor(text=["<image>"], images=[[image]], **kwargs)["input_ids"][0]
    return ids.count(processor.image_token_id), len(ids)


# ------------------------------------------------------------------ planted wrong splitters


class PlantedSplitter:
    """A greedy splitter over chat-template dicts that makes one classic mistake.

    Every planted splitter is this project's exact calculator with one thing wrong, so
    each isolates one bug class: what the checker must catch, and how fast, is measured
    by tests/benchmarks/test_bench_split.py. ``check_kwargs`` are the settings the
    checker runs it with (the generation prompt or leading context the mistake is about).
    """

    def __init__(self, name: str, c: TokenCounter, max_tokens: int, mistake: str,
                 leading: list[dict[str, Any]] | None = None) -> None:
        self.name = name
        self.c = c
        self.max_tokens = max_tokens
        self.mistake = mistake
        self.leading = leading or []
        self.check_kwargs: dict[str, Any] = {}
        if mistake == "no generation prompt":
            self.check_kwargs["add_generation_prompt"] = True
        if self.leading:
            self.check_kwargs["leading"] = self.leading

    def __repr__(self) -> str:
        return f"PlantedSplitter({self.name!r})"

    def cost(self, message: dict[str, Any]) -> int:
        from pytest_tokenguard.conversation import parse_message
        from pytest_tokenguard.sequence import message_cost

        parsed = parse_message(message)
        exact = message_cost(parsed, self.c)
        if self.mistake == "81 per image":  # image_seq_len, without the block's wrapper tokens
            return exact.template + exact.text + exact.image_tokens
        if self.mistake == "84 per image, no template":
            return exact.text + 84 * exact.images
        if self.mistake == "text as characters / 4":
            words = sum(len(item.get("text", "")) for item in message["content"]
                        if item["type"] == "text")
            return exact.template + exact.blocks + words // 4
        if self.mistake == "inclusive frame end":
            return exact.tokens - self.c.image(*_frame_size(message)).block_tokens * _runs(message)
        return exact.tokens

    def base(self) -> int:
        from pytest_tokenguard.sequence import base_tokens

        lead = sum(self.cost(m) for m in self.leading)
        if self.mistake == "84 per image, no template":
            return lead
        return base_tokens(self.c) + lead

    def __call__(self, messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        from pytest_tokenguard.splitting import SplitError

        room = self.max_tokens - self.base()
        if self.mistake == "leading context counted once":
            lead = sum(self.cost(m) for m in self.leading)
            first_room, room = room, room + lead
        else:
            first_room = room
        chunks: list[list[dict[str, Any]]] = []
        run: list[dict[str, Any]] = []
        used = 0
        for message in messages:
            cost = self.cost(message)
            limit = first_room if not chunks else room
            if cost > limit:
                if self.mistake == "drops the frame at a cut" and _images(message) > 1:
                    for part in self._cut(message, limit):
                        if run:
                            chunks.append(run)
                        run, used = [part], self.cost(part)
                    continue
                raise SplitError(f"message too large: {cost} tokens")
            if run and used + cost > limit:
                chunks.append(run)
                run, used = [], 0
                limit = room
            run.append(message)
            used += cost
        if run:
            chunks.append(run)
        return [[*self.leading, *chunk] for chunk in chunks]

    def _cut(self, message: dict[str, Any], room: int) -> list[dict[str, Any]]:
        """Cut between images, but start each next part one image too late."""
        content = message["content"]
        parts: list[dict[str, Any]] = []
        start = 0
        while start < len(content):
            lo, hi = start + 1, len(content)  # the longest part that fits: binary search
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self.cost({"role": message["role"], "content": content[start:mid]}) <= room:
                    lo = mid
                else:
                    hi = mid - 1
            parts.append({"role": message["role"], "content": content[start:lo]})
            start = lo + 1  # the off-by-one: the image at `lo` is lost
        return parts


def _images(message: dict[str, Any]) -> int:
    return sum(item["type"] == "image" for item in message["content"])


def _frame_size(message: dict[str, Any]) -> tuple[int, int]:
    for item in message["content"]:
        if item["type"] == "image" and "frame" in item:
            return int(item["width"]), int(item["height"])
    return 1, 1


def _runs(message: dict[str, Any]) -> int:
    """Frames runs in the message: consecutive image items with consecutive frame numbers."""
    runs = 0
    previous: int | None = None
    for item in message["content"]:
        frame = item.get("frame") if item["type"] == "image" else None
        if frame is not None and (previous is None or frame != previous + 1):
            runs += 1
        previous = frame
    return runs


#: The planted mistakes, in the order the benchmark reports them.
MISTAKES = ("81 per image", "84 per image, no template", "inclusive frame end",
            "no generation prompt", "text as characters / 4", "leading context counted once",
            "drops the frame at a cut")
LEADING_SYSTEM = [{"role": "system", "content": [
    {"type": "text", "text": "You describe surgical video frames, step by step."}]}]


def planted(mistake: str, c: TokenCounter, max_tokens: int = 4096) -> PlantedSplitter:
    lead = LEADING_SYSTEM if mistake == "leading context counted once" else None
    return PlantedSplitter(mistake, c, max_tokens, mistake, lead)


# ------------------------------------------------------------------ written checkpoint folders

#: ``tokenizer_config.json`` keys of the three checkpoints that are not tokenizer settings
#: (:data:`~pytest_tokenguard.processor.embedded.TOKENIZER_SETTINGS`): which classes
#: transformers builds, and the vocabulary size. ``tests/oracle/test_real_files.py`` checks
#: the written file against the real one.
TOKENIZER_CONFIG_EXTRA: dict[str, Any] = {
    "processor_class": "SmolVLMProcessor",
    "tokenizer_class": "GPT2Tokenizer",
    "vocab_size": 49280,
}
#: the keys of ``special_tokens_map.json`` that name the processor's tokens (the same
#: strings as ``SmolVLMProcessor``'s defaults)
PROCESSOR_TOKENS = {
    "end_of_utterance_token": "<end_of_utterance>",
    "fake_image_token": "<fake_token_around_image>",
    "global_image_token": "<global-img>",
    "image_token": "<image>",
}


def checkpoint_files(name: str) -> dict[str, Any]:
    """The JSON files of a SmolVLM2 checkpoint folder (hub id or short name), by file
    name, written from tokenguard's built-in copies of the published values: the embedded
    default's tokenizer and settings, ``KNOWN_SPECS`` and ``KNOWN_ARCHITECTURES``.
    ``tokenizer.json`` is the shipped file's text (a str); the others are parsed JSON."""
    from pytest_tokenguard.gpu.model import KNOWN_ARCHITECTURES
    from pytest_tokenguard.processor.embedded import (
        CHAT_TEMPLATE,
        TOKENIZER_SETTINGS,
        preprocessor_settings,
        tokenizer_json,
    )
    from pytest_tokenguard.specs import KNOWN_SPECS

    model = model_ref(name)
    spec, arch = KNOWN_SPECS[model], KNOWN_ARCHITECTURES[model]
    text = tokenizer_json()
    added = json.loads(text)["added_tokens"]
    settings = dict(TOKENIZER_SETTINGS)
    extra = settings.pop("extra_special_tokens")  # transformers 4's name in the files
    tokenizer_config = {
        **settings, **TOKENIZER_CONFIG_EXTRA, "additional_special_tokens": extra,
        "added_tokens_decoder": {
            str(token["id"]): {key: token[key] for key in
                               ("content", "lstrip", "normalized", "rstrip", "single_word",
                                "special")}
            for token in added
        },
    }
    special_tokens_map = {
        "additional_special_tokens": extra,
        **{key: settings[key] for key in ("bos_token", "eos_token", "pad_token", "unk_token")},
        **PROCESSOR_TOKENS,
    }
    image_token_id = next(t["id"] for t in added if t["content"] == PROCESSOR_TOKENS["image_token"])
    config = {
        "architectures": ["SmolVLMForConditionalGeneration"],
        "model_type": "smolvlm",
        "image_token_id": image_token_id,
        "scale_factor": arch.scale_factor,
        "torch_dtype": "bfloat16",
        "tie_word_embeddings": arch.tie_word_embeddings,
        "use_cache": True,
        "text_config": {
            "model_type": "llama",
            "vocab_size": arch.vocab_size,
            "rms_norm_eps": 1e-05,
            "tie_word_embeddings": arch.tie_word_embeddings,
            "hidden_size": arch.text_hidden,
            "num_hidden_layers": arch.text_layers,
            "num_attention_heads": arch.text_heads,
            "num_key_value_heads": arch.text_kv_heads,
            "intermediate_size": arch.text_intermediate,
            "head_dim": arch.head_dim,
        },
        "vision_config": {
            "model_type": "smolvlm_vision",
            "hidden_size": arch.vision_hidden,
            "num_hidden_layers": arch.vision_layers,
            "num_attention_heads": arch.vision_heads,
            "intermediate_size": arch.vision_intermediate,
            "patch_size": arch.patch_size,
            "image_size": arch.image_size,
        },
    }
    return {
        "chat_template.json": {"chat_template": CHAT_TEMPLATE},
        "config.json": config,
        "preprocessor_config.json": {
            **preprocessor_settings(model), "image_processor_type": "SmolVLMImageProcessor",
            "processor_class": "SmolVLMProcessor",
        },
        "processor_config.json": {"image_seq_len": spec.image_seq_len,
                                  "processor_class": "SmolVLMProcessor"},
        "special_tokens_map.json": special_tokens_map,
        "tokenizer.json": text,
        "tokenizer_config.json": tokenizer_config,
    }


@cache
def _written_root() -> Path:
    import atexit
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="tokenguard-checkpoints-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def checkpoint_folder(name: str = "2.2B") -> Path:
    """A complete SmolVLM2 checkpoint folder (hub id or short name) without weights,
    written from tokenguard's built-in copies (:func:`checkpoint_files`) into a
    temporary folder once per process, at ``<tmp>/HuggingFaceTB/<name>`` as in the hub
    cache and ``../shared/models``.

    For the tests that need *a* checkpoint folder (loading from a folder, an edited or
    broken copy, ``--model FOLDER``): transformers' own loading code runs on it on every
    machine, no real files needed. Copy it before editing it. The real files are only
    for ``tests/oracle/test_real_files.py``, which also checks that this folder loads
    into the same processor as they do.
    """
    return _written_folder(model_ref(name))


@cache
def _written_folder(model: str) -> Path:
    folder = _written_root() / model
    folder.mkdir(parents=True)
    for file, content in checkpoint_files(model).items():
        text = content if isinstance(content, str) else json.dumps(content, indent=2) + "\n"
        (folder / file).write_text(text, encoding="utf-8")
    return folder
