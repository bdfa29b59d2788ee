"""Modules that moved in 0.2, when the package was laid out by what it imports.

``import pytest_tokenguard.strategies`` (a 0.1 path) fails with a message that names the
new module, rather than a bare ``ModuleNotFoundError``. Nothing is imported on behalf of
the old name: code keeps working by changing one import line, and says so plainly.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["MOVED", "install"]

#: 0.1 module -> where its contents live now
MOVED = {
    "baseline": "pytest_tokenguard.baseline.store (file), .compare (comparison), .gate",
    "cli": "pytest_tokenguard.cli (main), .cli.count",
    "embedded": "pytest_tokenguard.processor.embedded",
    "gating": "pytest_tokenguard.baseline.gate",
    "gpu": "pytest_tokenguard.gpu.measure",
    "hypothesis_profiles": "pytest_tokenguard.testing.profiles",
    "limits": "pytest_tokenguard.verdict",
    "loading": "pytest_tokenguard.processor.loading (and .processor.source)",
    "markers": "pytest_tokenguard.plugin.markers",
    "memory_cli": "pytest_tokenguard.cli.memory",
    "memory_model": "pytest_tokenguard.gpu.model",
    "recording": "pytest_tokenguard.processor.recording",
    "seqlen": "pytest_tokenguard.sequence",
    "smolvlm_step": "benchmarks/gpu/smolvlm_step.py in the repository (not installed)",
    "split_cli": "pytest_tokenguard.cli.split",
    "splitcheck": "pytest_tokenguard.testing.splitcheck",
    "strategies": "pytest_tokenguard.testing.strategies",
    "summary": "pytest_tokenguard.figures and pytest_tokenguard.plugin.report",
}


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        prefix, _, name = fullname.rpartition(".")
        if prefix == "pytest_tokenguard" and name in MOVED and name not in (
                "baseline", "cli", "gpu"):  # these names are packages again
            raise ImportError(
                f"pytest_tokenguard.{name} moved in pytest-tokenguard 0.2: import from "
                f"{MOVED[name]} instead", name=fullname)
        return None


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once); called when the package is imported."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
