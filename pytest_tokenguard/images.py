"""Image sizes from file headers: no pixel is decoded.

PIL's ``Image.open`` is lazy: it parses the header and stops, which is all the
counter needs. Reading a folder of 1,000 frames this way takes milliseconds, not
the seconds a decode would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .errors import ImageReadError as ImageReadError

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) of the image at ``path``, from its header only."""
    file = Path(path)
    if not file.exists():
        raise ImageReadError(path, "no such file; check the path")
    if file.is_dir():
        raise ImageReadError(
            path, "is a folder; pass image files, or the folder to `tokenguard count`"
        )
    if file.stat().st_size == 0:
        raise ImageReadError(path, "is empty (0 bytes); re-export or remove it")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            width, height = image.size
    except UnidentifiedImageError:
        raise ImageReadError(
            path, "is not an image PIL can read (corrupt, truncated or another format)"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(path, f"cannot be read as an image ({exc})") from None
    if width < 1 or height < 1:
        raise ImageReadError(path, f"has an invalid size {width}×{height}")
    return int(width), int(height)


def iter_image_paths(paths: list[str]) -> Iterator[Path]:
    """Files named directly, and image files inside folders (sorted, recursive).

    A named file is yielded whatever its suffix, so a mis-named file still gets a
    clear error instead of being skipped silently.
    """
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            yield path
