"""The one helper module of the test suite: where the processor files are, how the real
processor is loaded (once per process), and the recorded GPU measurements.

The processor files are not in the repo: they live in ``../shared/models`` beside the
checkout (or wherever ``TOKENGUARD_MODELS_DIR`` points). Tests that need them skip with
the reason when they are missing.
"""

from __future__ import annotations

import json
import os
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


MODELS_DIR = models_dir()


def model_folder(name: str) -> Path:
    """The folder of a checkpoint's real processor files (hub id or short name)."""
    folder = models_dir() / CHECKPOINTS.get(name, name)
    if not (folder / "preprocessor_config.json").is_file():
        pytest.skip(f"real processor files for {name} not found in {models_dir()}; set "
                    "TOKENGUARD_MODELS_DIR to the shared models folder")
    return folder


def model_path(checkpoint: str = "2.2B") -> str:
    return str(model_folder(checkpoint))


@cache
def real_processor(name: str, longest_edge: int | None = None) -> Any:
    """The real transformers processor, loaded the way users load it (cached per process)."""
    from transformers import AutoProcessor

    kwargs = {"size": {"longest_edge": longest_edge}} if longest_edge else {}
    return AutoProcessor.from_pretrained(str(model_folder(name)), **kwargs)


def real_image_tokens(processor: Any, width: int, height: int, **kwargs: Any) -> tuple[int, int]:
    """(<image> tokens, total tokens) the real processor writes for one image alone."""
    from PIL import Image

    image = Image.new("RGB", (width, height), (120, 30, 200))
    ids = processor(text=["<image>"], images=[[image]], **kwargs)["input_ids"][0]
    return ids.count(processor.image_token_id), len(ids)


@cache
def _load(path: str, edge: int) -> LoadedProcessor:
    import torch

    torch.set_num_threads(1)  # one core per xdist worker; many small ops
    return load_processor(path, edge)


def loaded(checkpoint: str = "2.2B", edge: int = 384) -> LoadedProcessor:
    return _load(model_path(checkpoint), edge)


@cache
def _counter(path: str, edge: int) -> TokenCounter:
    lp = _load(path, edge)
    return TokenCounter(lp.processor, lp.spec, lp.longest_edge)


def counter(checkpoint: str = "2.2B", edge: int = 384) -> TokenCounter:
    return _counter(model_path(checkpoint), edge)


def gpu_model_folder(name: str) -> Path:
    """A checkpoint folder with its config.json, for the GPU tests (short folder name)."""
    folder = models_dir() / "HuggingFaceTB" / name
    if not (folder / "config.json").is_file():
        pytest.skip(
            f"{name}: no config.json in {folder.parent}; set TOKENGUARD_MODELS_DIR to the "
            "folder holding HuggingFaceTB/<checkpoint>/"
        )
    return folder


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

    folder = str(model_folder(name))
    processor = AutoProcessor.from_pretrained(folder)
    processor.image_processor = AutoImageProcessor.from_pretrained(folder, backend="pil")
    return processor


def real_tokens_of(processor: Any, image: Any, **kwargs: Any) -> tuple[int, int]:
    """(<image> tokens, total tokens) the real processor writes for one image given as
    the processor takes it: a path (str), which it opens itself, or a PIL image."""
    ids = processor(text=["<image>"], images=[[image]], **kwargs)["input_ids"][0]
    return ids.count(processor.image_token_id), len(ids)
