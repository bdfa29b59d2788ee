"""The suite's settings: an offline hub, and the tokenguard-ci hypothesis profile by default.

Helpers (processor files, real processors) live in ``tests/helpers.py``.
"""

from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # never wait on the network in this suite
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pytest_tokenguard.testing import profiles
from tests.helpers import MODEL_IDS, MODELS_DIR

# The suite's own tokenguard runs use the real 2.2B processor files where they are, so its
# committed baseline (.tokenguard/baseline.json) holds exact counts. This conftest is loaded
# before the plugin reads its configuration; an explicit TOKENGUARD_MODEL still wins.
if (MODELS_DIR / MODEL_IDS[0] / "preprocessor_config.json").is_file():
    os.environ.setdefault("TOKENGUARD_MODEL", str(MODELS_DIR / MODEL_IDS[0]))


def pytest_configure(config: pytest.Config) -> None:
    # --hypothesis-profile wins; otherwise CI settings (derandomized, bounded)
    if not config.getoption("hypothesis_profile", None):
        from hypothesis import settings

        settings.load_profile(profiles.CI)
