"""Image sizes of a training set's image cells, as the trainer's processor will see them.

A cell of an ``images`` (or ``image``) column reaches the processor in one of two ways,
and the way decides which EXIF orientation is applied:

* **a path** (a string in JSON Lines, or a string column): TRL's collator hands the
  string to ``apply_chat_template``, and the processor opens the file itself, turned
  upright where transformers turns it; :func:`pytest_tokenguard.images.read_image_size`
  models that exactly (and refuses a file whose orientation depends on the backend);
* **a ``datasets.Image`` cell** (``{"bytes": ..., "path": ...}`` in Parquet or a
  ``save_to_disk`` folder): ``datasets`` decodes it with PIL and, when the EXIF holds an
  orientation, applies ``PIL.ImageOps.exif_transpose``; the processor then gets a PIL
  image, which it never turns. :func:`pil_upright_size` reads that size from the bytes'
  header, no decode (only a PNG whose orientation metadata comes after the image data
  is decoded, as PIL needs a decode to see it).

A PIL image (what ``Dataset.map`` hands a function when the column decodes) counts at its
own size; ``{"width": W, "height": H}`` is a declared size. Only the standard library is
imported at module level; PIL loads on first use.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from ..errors import ImageReadError

__all__ = ["ImageSizer", "pil_upright_size"]

_SWAPS = frozenset({5, 6, 7, 8})
_LATE_PNG_KEYS = (b"eXIf", b"Raw profile type exif", b"XML:com.adobe.xmp")


def _late_png_metadata(head: bytes) -> bool:
    """Whether a PNG may carry orientation metadata after its first IDAT chunk."""
    idat = head.find(b"IDAT")
    return idat >= 0 and any(head.find(key, idat) >= 0 for key in _LATE_PNG_KEYS)


def pil_upright_size(fp: IO[bytes], name: str) -> tuple[int, int]:
    """(width, height) of the image in ``fp`` after ``datasets``' decode: PIL's size,
    turned by ``exif_transpose`` when the EXIF holds an orientation of 5 to 8."""
    from PIL import Image

    try:
        image = Image.open(fp)
        if image.format == "PNG":
            fp.seek(0)
            if _late_png_metadata(fp.read()):
                fp.seek(0)
                image = Image.open(fp)
                image.load()
        width, height = (int(side) for side in image.size)
        orientation = image.getexif().get(0x0112)
    except Exception as exc:  # PIL raises many types on bad data
        raise ImageReadError(name, f"cannot be read as an image ({type(exc).__name__}: "
                                   f"{' '.join(str(exc).split())[:120]}); re-export it") from None
    if orientation in _SWAPS:
        return height, width
    return width, height


class ImageSizer:
    """Sizes of image cells (see the module docstring), relative paths resolved against
    ``base_dir``; a path's size is cached (a data set repeats its files)."""

    def __init__(self, base_dir: str | os.PathLike[str] | None = None) -> None:
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self._paths: dict[str, tuple[int, int]] = {}

    def _file(self, path: str) -> Path:
        file = Path(path.removeprefix("file://"))
        if self.base_dir is not None and not file.is_absolute():
            file = self.base_dir / file
        return file

    def path_size(self, path: str) -> tuple[int, int]:
        """A path as the processor opens it (transformers' own EXIF rules)."""
        size = self._paths.get(path)
        if size is None:
            if "://" in path and not path.startswith("file://"):
                raise ImageReadError(path, "is a remote URL, which is never fetched; download "
                                           "it and give its path")
            from ..images import read_image_size

            size = read_image_size(self._file(path))
            if len(self._paths) >= 65536:
                self._paths.clear()
            self._paths[path] = size
        return size

    def __call__(self, cell: Any) -> tuple[int, int]:
        """The size the processor sees for one image cell."""
        if isinstance(cell, str | os.PathLike):
            return self.path_size(os.fspath(cell))
        if isinstance(cell, Mapping):
            data = cell.get("bytes")
            if data is not None:
                if not isinstance(data, bytes | bytearray | memoryview):
                    raise ImageReadError(str(cell.get("path") or "image"),
                                         "'bytes' is not bytes; re-export the column")
                return pil_upright_size(io.BytesIO(bytes(data)), str(cell.get("path") or
                                                                      "image bytes"))
            if cell.get("width") is not None and cell.get("height") is not None:
                width, height = cell["width"], cell["height"]
                if (isinstance(width, bool) or isinstance(height, bool)
                        or not isinstance(width, int) or not isinstance(height, int)
                        or width < 1 or height < 1):
                    raise ImageReadError(f"{width!r}×{height!r}", "width and height must be "
                                                                   "positive integers")
                return width, height
            path = cell.get("path")
            if isinstance(path, str) and path:
                # a datasets.Image cell without bytes: datasets opens the file with PIL
                file = self._file(path)
                try:
                    with open(file, "rb") as fp:
                        return pil_upright_size(fp, path)
                except OSError as exc:
                    raise ImageReadError(path, f"cannot be read ({exc.strerror or exc})") from None
            raise ImageReadError("image", "has neither 'bytes', 'path' nor 'width'/'height'; "
                                          "give one")
        size = getattr(cell, "size", None)
        if isinstance(size, tuple) and len(size) == 2:
            return int(size[0]), int(size[1])
        raise ImageReadError(repr(cell)[:60], "is not an image path, a datasets image or a PIL "
                                              "image")
