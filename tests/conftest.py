"""Shared test helpers: where the real SmolVLM2 processor files are, and how to load them;
offline hub, and the tokenguard-ci hypothesis profile by default.

The processor files are not in the repo: they live in ``../shared/models`` beside the
checkout (or wherever ``TOKENGUARD_MODELS_DIR`` points). Tests that need them skip
with the reason when they are missing.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # never wait on the network in this suite
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest_tokenguard.hypothesis_profiles as profiles

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = Path(os.environ.get("TOKENGUARD_MODELS_DIR", ROOT.parent / "shared" / "models"))
FIXTURES = ROOT / "fixtures"
CHECKPOINTS = (
    "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
    "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
    "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
)
RESOLUTIONS = (384, 512, 768, 1024, 1536)

# The suite's own tokenguard runs use the real 2.2B processor files where they are, so its
# committed baseline (.tokenguard/baseline.json) holds exact counts. This conftest is loaded
# before the plugin reads its configuration; an explicit TOKENGUARD_MODEL still wins.
if (MODELS_DIR / CHECKPOINTS[0] / "preprocessor_config.json").is_file():
    os.environ.setdefault("TOKENGUARD_MODEL", str(MODELS_DIR / CHECKPOINTS[0]))


def model_folder(name: str) -> Path:
    folder = MODELS_DIR / name
    if not (folder / "preprocessor_config.json").is_file():
        pytest.skip(f"real processor files for {name} not found in {MODELS_DIR}; set "
                    "TOKENGUARD_MODELS_DIR to the shared models folder")
    return folder


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


def pytest_configure(config: pytest.Config) -> None:
    # --hypothesis-profile wins; otherwise CI settings (derandomized, bounded)
    if not config.getoption("hypothesis_profile", None):
        from hypothesis import settings

        settings.load_profile(profiles.CI)
