"""Where the GPU tests find the model folders and the recorded measurements.

The checkpoints' config and processor files live in ``../shared/models`` beside the
checkout, or wherever ``TOKENGUARD_MODELS_DIR`` points; the tests skip with that
reason when they are missing, and skip with torch's own reason without a CUDA device.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "benchmarks" / "gpu"


def models_dir() -> Path:
    return Path(os.environ.get("TOKENGUARD_MODELS_DIR", ROOT.parent / "shared" / "models"))


def model_folder(name: str) -> Path:
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
    for path in sorted(RESULTS_DIR.glob("results-*.json"), key=lambda p: (len(p.name), p.name)):
        report = json.loads(path.read_text(encoding="utf-8"))
        for case in report["cases"]:
            if "steady" in case:
                cases.append({**case, "results_file": path.name})
    return cases
