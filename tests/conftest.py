"""Suite-wide setup: offline hub, and the tokenguard-ci hypothesis profile by default."""

from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # never hit the network from the suite
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest_tokenguard.hypothesis_profiles as profiles


def pytest_configure(config: pytest.Config) -> None:
    # --hypothesis-profile wins; otherwise CI settings (derandomized, bounded)
    if not config.getoption("hypothesis_profile", None):
        from hypothesis import settings

        settings.load_profile(profiles.CI)
