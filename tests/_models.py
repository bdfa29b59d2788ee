"""The real SmolVLM2 processors, loaded once per process (a load takes seconds).

Checkpoint folders come from ``TOKENGUARD_MODELS_DIR`` (default ``<repo>/../shared/models``);
tests that need them skip with the reason when they are absent.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest

from pytest_tokenguard.loading import LoadedProcessor, load_processor
from pytest_tokenguard.tokens import TokenCounter

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = {
    "2.2B": "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
    "500M": "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
    "256M": "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
}
RESOLUTIONS = (384, 512, 768, 1024, 1536)
#: every (checkpoint, longest_edge) the property tests run at
GRID = [(ckpt, edge) for ckpt in CHECKPOINTS for edge in RESOLUTIONS]


def models_dir() -> Path:
    return Path(os.environ.get("TOKENGUARD_MODELS_DIR") or REPO.parent / "shared" / "models")


def model_path(checkpoint: str = "2.2B") -> str:
    folder = models_dir() / CHECKPOINTS[checkpoint]
    if not (folder / "preprocessor_config.json").is_file():
        pytest.skip(
            f"SmolVLM2 processor files not found at {folder}: set TOKENGUARD_MODELS_DIR to the "
            "folder holding HuggingFaceTB/<checkpoint>/"
        )
    return str(folder)


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
