"""pytest-tokenguard: guard the image-token budget and GPU memory of SmolVLM2 training.

Importing this package is cheap: torch, transformers and PIL load only when a feature
that needs them is used.
"""

from __future__ import annotations

from .counting import CountingError, ImageCost, ImageCounter, count_image
from .specs import DEFAULT_MODEL, KNOWN_SPECS, ModelSpec

__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_SPECS",
    "CountingError",
    "ImageCost",
    "ImageCounter",
    "ModelSpec",
    "count_image",
]
__version__ = "0.1.0"
