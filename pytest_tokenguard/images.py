"""Image sizes as the processor sees them, from file headers: no pixel is decoded.

PIL's ``Image.open`` is lazy: it parses the header and stops, which is all the counter
needs. Reading a folder of 1,000 frames this way takes milliseconds, not the seconds a
decode would.

**EXIF orientation.** transformers opens an image given by *path* (or URL) itself and
turns it upright first, so a phone photo stored 1000×300 with orientation 6 or 8 is
processed as 300×1000. Which metadata it honours depends on the image backend:

- the default torchvision backend (``load_image_as_tensor``) decodes with
  ``torchvision.io.decode_image(..., apply_exif_orientation=True)``, which reads the
  orientation of the *first* APP1 segment of a JPEG and of an ``eXIf`` chunk placed
  before the image data of a PNG, and nothing else (no WebP EXIF, no XMP); it cannot
  decode TIFF, BMP or PPM at all;
- the PIL backend and ``transformers.image_utils.load_image`` call
  ``PIL.ImageOps.exif_transpose``, which also reads WebP EXIF, XMP ``tiff:Orientation``,
  PNG ``eXIf`` after the image data and ImageMagick's "Raw profile type exif" text.

A PIL image passed to the processor is never turned: its stored size is what counts.

**Formats.** The default (torchvision) backend decodes a path with torchcodec's
``decode_image`` (torchcodec >= 0.16 installed) or torchvision's: JPEG, PNG, WebP and GIF,
and AVIF with torchcodec only; it refuses every other format ("Unsupported or unrecognized
image format") and fails on an animated GIF, WebP or AVIF (it decodes every frame). The
PIL backend opens what PIL opens. So the reader takes the loader that opens the path
(:data:`PathLoader`, :func:`default_path_loader`, :func:`path_loader_of` a processor) and
refuses, naming the file, its format and the fix, what that loader cannot load
(:func:`path_format_problem`); the format is the one PIL reads in the header, never the
file's suffix.

:func:`read_image_info` computes both views from the header (and, for PNG, the chunk
list). Where they agree, or only PIL can open the format, that is the size; where they
disagree (orientation 5-8 in a WebP, say), the size depends on the backend, so the file
is refused with a message naming it rather than counted one way in silence.

Sizes come from headers even past PIL's decompression-bomb limit: a 100000×100000 PNG
is a legal image whose cost is exact arithmetic. :func:`verify_image` (``tokenguard
count --verify``) decodes, and so reports truncated or corrupt files whose header is
intact, and images too large for PIL to decode.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import stat
import struct
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Concatenate, Literal, NamedTuple, ParamSpec

from .errors import ImageFormatError as ImageFormatError
from .errors import ImageReadError as ImageReadError
from .errors import TokenguardWarning

__all__ = [
    "IMAGE_SUFFIXES",
    "PATH_LOADER_FORMATS",
    "ImageFormatError",
    "ImageInfo",
    "ImageReadError",
    "PathEvent",
    "PathLoader",
    "default_path_loader",
    "display_path",
    "iter_image_paths",
    "path_format_problem",
    "path_loader_of",
    "read_image_info",
    "read_image_size",
    "verify_image",
    "walk_image_paths",
]

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".avif", ".tif", ".tiff", ".ppm",
     ".pgm"}
)

#: Orientations that swap width and height (transpose, 90° and 270° rotations).
_SWAPS = {5: True, 6: True, 7: True, 8: True}
#: What opens an image given by path: ``"torchcodec"`` or ``"torchvision"`` (the
#: ``decode_image`` of transformers' default, torchvision, image backend) or ``"pil"``
#: (the PIL backend, and ``transformers.image_utils.load_image``).
PathLoader = Literal["torchcodec", "torchvision", "pil"]
#: The formats (as PIL names them from the header) each decoder of the default backend
#: loads from a path, single-frame (an MPO is a JPEG with more pictures after the first,
#: which is the one decoded; an animated PNG decodes to its default image); ``"pil"``
#: takes every format PIL opens. tests/oracle/test_image_formats.py runs the real
#: processor over every format PIL writes and checks these sets are exactly what it loads.
PATH_LOADER_FORMATS: Mapping[str, frozenset[str]] = MappingProxyType({
    "torchvision": frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF"}),
    "torchcodec": frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "AVIF"}),
})
#: Formats whose animations ``decode_image`` returns as a stack of frames, which the
#: image processor cannot take (the PNG and MPO decoders return the first picture).
_FRAME_STACK_FORMATS = frozenset({"GIF", "WEBP", "AVIF"})
#: Formats ``torchvision.io.decode_image`` can decode (its EXIF handling is mirrored).
_TORCHVISION_FORMATS = PATH_LOADER_FORMATS["torchvision"]
#: PNG chunks that can carry an orientation for ``exif_transpose`` and, when they come
#: after the image data, are only read by a full decode.
_PNG_TEXT_KEYS = (b"Raw profile type exif", b"XML:com.adobe.xmp")


class ImageInfo(NamedTuple):
    """An image file as the processor sees it when given its path.

    ``width`` and ``height`` are after the EXIF orientation is applied (what the
    processor resizes and tiles); ``stored_width``/``stored_height`` are the header's.
    ``orientation`` is the EXIF orientation the size follows (1 when none).
    """

    width: int
    height: int
    orientation: int
    format: str
    stored_width: int
    stored_height: int


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as one line of text that any output accepts, as ``ls -b`` writes names:
    bytes that are not UTF-8 become ``\\xNN``, and control and line-breaking characters
    (a newline in a file name) their escapes, so every message stays on one line."""
    raw = os.fsencode(path)
    text = raw.decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or char == " "
                   else char.encode("unicode_escape").decode("ascii") for char in text)


@functools.cache
def default_path_loader() -> PathLoader:
    """What decodes an image path for a processor with transformers' default image
    backend, torchvision's: torchcodec when torchcodec >= 0.16 is installed, torchvision
    otherwise. Read from the installed distributions, without importing them.

    transformers falls back to torchvision when an installed torchcodec fails to load (a
    broken install, which it warns about). It loads SmolVLM with the PIL backend instead
    where torchvision is missing or older than 0.27: :func:`path_loader_of` reads a
    loaded processor's backend; without one (``tokenguard count``), torchvision's rules
    apply, which refuse every file the PIL backend refuses and more, never fewer.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("torchcodec")
    except PackageNotFoundError:
        return "torchvision"
    numbers = re.match(r"(\d+)\.(\d+)", text)
    if numbers is None:
        return "torchvision"
    return "torchcodec" if (int(numbers[1]), int(numbers[2])) >= (0, 16) else "torchvision"


def path_loader_of(processor: Any) -> PathLoader:
    """What decodes an image path for ``processor`` (a transformers processor or its
    image processor, or what holds one as ``.processor``: a ``TokenCounter``, a
    ``LoadedProcessor``): ``"pil"`` for the PIL backend, else
    :func:`default_path_loader`. A processor without an image processor (tokenguard's
    light processor) is taken to be the default one."""
    for _ in range(4):  # unwrap the holders
        if hasattr(processor, "image_processor") or not hasattr(processor, "processor"):
            break
        processor = processor.processor
    image_processor = getattr(processor, "image_processor", processor)
    if getattr(image_processor, "backend", None) == "pil":
        return "pil"
    return default_path_loader()


#: Format names as the messages spell them (PIL's otherwise).
_FORMAT_NAMES = {"WEBP": "WebP", "JPEG2000": "JPEG 2000"}
_FORMAT_ORDER = ("JPEG", "PNG", "WEBP", "GIF", "AVIF")
_PATH_FIX = "convert it to PNG or JPEG, or open it with PIL and pass the image"


def path_format_problem(fmt: str, frames: int = 1,
                        loader: PathLoader | None = None) -> str | None:
    """Why the processor cannot load an image of format ``fmt`` (PIL's name, read from
    the header) with ``frames`` frames from its path with ``loader`` (default:
    :func:`default_path_loader`), as one clause naming the format and the fix; ``None``
    when it can. Shared by ``tokenguard count``, conversations and every other path
    reader, so they all refuse the same files."""
    if loader is None:
        loader = default_path_loader()
    if loader == "pil":
        return _pil_problem(fmt)
    formats = PATH_LOADER_FORMATS[loader]
    name = _FORMAT_NAMES.get(fmt, fmt)
    if fmt not in formats:
        if fmt in PATH_LOADER_FORMATS["torchcodec"]:
            return (f"is in {name} format, which the processor decodes from a path only with "
                    "torchcodec >= 0.16 installed (torchvision's decode_image cannot); "
                    f"install torchcodec, or {_PATH_FIX}")
        listed = [_FORMAT_NAMES.get(f, f) for f in _FORMAT_ORDER if f in formats]
        return (f"is in {name} format, which the processor cannot load from a path "
                f"(transformers' default image loading decodes {', '.join(listed[:-1])} "
                f"and {listed[-1]} only: \"Unsupported or unrecognized image format\"); "
                f"{_PATH_FIX}")
    if frames > 1 and fmt in _FRAME_STACK_FORMATS:
        return (f"is an animated {name} ({frames} frames), which the processor cannot load "
                f"from a path ({loader}'s decode_image returns every frame); save the frame "
                "you mean as PNG or JPEG, or open it with PIL and pass the image")
    return None


def _pil_problem(fmt: str) -> str | None:
    """PIL opens an EPS header by itself but decodes it through Ghostscript."""
    if fmt == "EPS":
        from PIL import EpsImagePlugin

        if not EpsImagePlugin.has_ghostscript():
            return ("is in EPS format, which PIL decodes only through Ghostscript, not "
                    "installed here; install Ghostscript, or convert it to PNG or JPEG")
    return None


def _frame_count(image: Any) -> int:
    """How many frames PIL sees in ``image`` (1 when it cannot tell: a truncated file is
    reported by ``--verify``, not here)."""
    try:
        return int(getattr(image, "n_frames", 1))
    except Exception:  # PIL raises many types on a broken file
        return 1


def _check_loadable(path: str | os.PathLike[str], image: Any, loader: PathLoader) -> None:
    fmt = str(image.format)
    frames = _frame_count(image) if fmt in _FRAME_STACK_FORMATS and loader != "pil" else 1
    problem = path_format_problem(fmt, frames, loader)
    if problem is not None:
        raise ImageFormatError(path, problem)


def _path_problem(file: Path) -> str | None:
    """Why ``file`` cannot be opened as an image file, checked without opening it."""
    try:
        info = file.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop; fix or remove the link"
        if exc.errno == errno.ENOENT:
            try:
                target = os.readlink(file)
            except OSError:
                return "no such file; check the path"
            return f"is a dangling symbolic link (to {display_path(target)}); fix or remove it"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "cannot be read (permission denied on a folder of its path)"
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(info.st_mode):
        return "is a folder; pass image files, or the folder to `tokenguard count`"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a device, pipe or socket)"
    if info.st_size == 0:
        return "is empty (0 bytes); re-export or remove it"
    return None


def _open_binary(file: Path, path: str | os.PathLike[str]) -> IO[bytes]:
    problem = _path_problem(file)
    if problem is not None:
        raise ImageReadError(path, problem)
    try:
        return open(file, "rb")  # closed by the caller
    except PermissionError:
        raise ImageReadError(path, "cannot be read (permission denied); check its "
                                   "permissions") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot be read ({exc.strerror or exc})") from None


def _open_lazy(fp: IO[bytes], name: str) -> Any:
    """``PIL.Image.open(fp)``, but past the decompression-bomb limit too.

    The limit guards decoding; a header claiming 100000×100000 pixels is still a legal
    image with an exact cost. When ``Image.open`` refuses, the format plugin that
    accepts the file is called directly, as ``Image.open`` itself does, without the check.
    """
    from PIL import Image

    try:
        return Image.open(fp)
    except Image.DecompressionBombError:
        pass
    fp.seek(0)
    prefix = fp.read(16)
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        accepted = not accept or accept(prefix)
        if not accepted or isinstance(accepted, str):
            continue
        fp.seek(0)
        try:
            return factory(fp, name)
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue
    from PIL import UnidentifiedImageError

    raise UnidentifiedImageError(name)  # pragma: no cover - open accepted it above


def _torchvision_orientation(exif: bytes) -> int:
    """The orientation ``torchvision.io.decode_image`` reads from raw EXIF (TIFF header
    first), mirroring its ``fetch_exif_orientation``: IFD0 only, no type checks, -1
    when absent."""
    size = len(exif)
    little = size >= 1 and not (size > 1 and exif[0] != exif[1]) and exif[0] == ord("I")

    def u16(offset: int) -> int:
        if offset + 1 >= size:
            return 0xFFFF
        low, high = (exif[offset], exif[offset + 1]) if little else (exif[offset + 1],
                                                                    exif[offset])
        return low + (high << 8)

    def u32(offset: int) -> int:
        if offset + 3 >= size:
            return 0xFFFF
        data = exif[offset:offset + 4]
        return int.from_bytes(data, "little" if little else "big")

    if u16(2) != 0x2A:
        return -1
    offset = u32(4)
    entries = u16(offset)
    offset = (offset + 2) & 0xFFFFFFFF
    for _ in range(entries):
        tag = u16(offset)
        if tag == 0xFFFF:
            break
        if tag == 0x0112:
            return u16(offset + 8)
        offset = (offset + 12) & 0xFFFFFFFF
    return -1


@dataclass
class _PngChunks:
    """What the chunk list of a PNG says about orientation, read by seeking past data."""

    first_exif: bytes | None = None  # the first eXIf before the image data (libpng's)
    late_metadata: bool = False  # metadata exif_transpose reads only after a decode


def _scan_png(fp: IO[bytes]) -> _PngChunks:
    result = _PngChunks()
    fp.seek(8)
    seen_idat = False
    while True:
        head = fp.read(8)
        if len(head) < 8:
            return result
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IEND":
            return result
        if kind in (b"IDAT", b"fdAT"):
            seen_idat = True
        elif kind == b"eXIf":
            if seen_idat:
                result.late_metadata = True
            elif result.first_exif is None:
                result.first_exif = fp.read(min(length, 1 << 16))
                fp.seek(-len(result.first_exif), os.SEEK_CUR)
        elif seen_idat and kind in (b"tEXt", b"zTXt", b"iTXt"):
            keyword = fp.read(min(length, 80)).split(b"\0", 1)[0]
            fp.seek(-min(length, 80), os.SEEK_CUR)
            if keyword in _PNG_TEXT_KEYS:
                result.late_metadata = True
        fp.seek(length + 4, os.SEEK_CUR)


def _pil_swaps(image: Any, decoded: bool) -> tuple[bool, int]:
    """(whether ``ImageOps.exif_transpose`` swaps the sides, the orientation it reads).

    ``decoded`` says the image was loaded, so late PNG chunks are in its info. Raises
    whatever PIL raises on EXIF it cannot parse.
    """
    from PIL import Image

    exif = image.getexif() if decoded else Image.Image.getexif(image)
    orientation = exif.get(0x0112, 1)
    try:
        return _SWAPS.get(orientation, False), orientation
    except TypeError:  # an unhashable value: exif_transpose's table lookup fails the same
        raise ValueError(f"EXIF orientation {orientation!r} is not a number") from None


def _torchvision_swaps(image: Any, png: _PngChunks | None) -> tuple[bool, int] | None:
    """(whether torchvision's decoder swaps the sides, the orientation it reads), or
    None for a format it cannot decode."""
    fmt = image.format
    if fmt not in _TORCHVISION_FORMATS:
        return None
    orientation = -1
    if fmt in ("JPEG", "MPO"):
        app1 = next((data for marker, data in getattr(image, "applist", [])
                     if marker == "APP1"), None)
        if app1 is not None and len(app1) > 6:
            orientation = _torchvision_orientation(app1[6:])
    elif fmt == "PNG" and png is not None and png.first_exif:
        orientation = _torchvision_orientation(png.first_exif)
    return _SWAPS.get(orientation, False), orientation


def _upright(path: str | os.PathLike[str], image: Any, fp: IO[bytes], decoded: bool,
             tiff_tag: object = None) -> ImageInfo:
    width, height = (int(side) for side in image.size)
    if width < 1 or height < 1:
        raise ImageReadError(path, f"has an invalid size {width}×{height}")
    if image.format == "TIFF":
        # PIL's TIFF plugin reports the upright size at open and turns the pixels on load;
        # torchvision cannot decode TIFF, so PIL's upright size is the only one.
        tag = image.tag_v2.get(0x0112, 1) if tiff_tag is None else tiff_tag
        orientation = tag if type(tag) is int and 1 <= tag <= 8 else 1
        stored = (height, width) if orientation >= 5 else (width, height)
        return ImageInfo(width, height, orientation, "TIFF", *stored)
    png = _scan_png(fp) if image.format == "PNG" else None
    if png is not None and png.late_metadata and not decoded:
        # orientation metadata after the image data: only a decode makes PIL read it
        # (rare: most writers put it first). Decode rather than guess.
        return verify_image(path)
    torchvision = _torchvision_swaps(image, png)
    try:
        pil: tuple[bool, int] | None = _pil_swaps(image, decoded)
    except Exception:  # any parse failure: the PIL loaders fail the same
        pil = None
    if pil is None and torchvision is None:
        raise ImageReadError(path, "has EXIF data PIL cannot parse, so transformers cannot "
                                   "load it; re-save the image")
    if pil is not None and torchvision is not None and pil[0] != torchvision[0]:
        applied, ignored = ("PIL", "torchvision") if pil[0] else ("torchvision", "PIL")
        turned = pil[1] if pil[0] else torchvision[1]
        raise ImageReadError(
            path,
            f"has EXIF orientation {turned} that transformers' {applied} image loading "
            f"applies and its {ignored} loading ignores, so the processor sees "
            f"{height}×{width} or {width}×{height} depending on the backend; save it "
            "upright (PIL.ImageOps.exif_transpose) to count it exactly",
        )
    swap, orientation = pil if pil is not None else torchvision  # type: ignore[misc]
    if not (type(orientation) is int and 1 <= orientation <= 8):
        orientation = 1
    return ImageInfo(height if swap else width, width if swap else height, orientation,
                     str(image.format), width, height)


_P = ParamSpec("_P")


def _pil_notes_in_our_words(read: Callable[Concatenate[str | os.PathLike[str], _P], ImageInfo]
                            ) -> Callable[Concatenate[str | os.PathLike[str], _P], ImageInfo]:
    """``read``, with the warnings PIL gives while parsing a damaged EXIF block ("Tag
    data larger than file", "Corrupt EXIF data", with PIL's own file and line) said once
    per image, in our words, as one :class:`~pytest_tokenguard.errors.TokenguardWarning`
    naming the image. The count stands: transformers' PIL loading reads the same rest.
    Other warnings go on as they were; an image that is refused needs no note."""

    @functools.wraps(read)
    def wrapper(path: str | os.PathLike[str], /, *args: _P.args,
                **options: _P.kwargs) -> ImageInfo:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            info = read(path, *args, **options)
        pil = [w for w in caught if w.category is UserWarning
               and os.sep + "PIL" + os.sep in w.filename]
        for other in caught:
            if other not in pil:
                warnings.warn_explicit(other.message, other.category, other.filename,
                                       other.lineno)
        if pil:
            said = "; ".join(dict.fromkeys(" ".join(str(w.message).split()) for w in pil))
            warnings.warn(TokenguardWarning(
                f"{display_path(path)}: its EXIF block is damaged (PIL: {said}); counted with "
                f"the orientation read from the rest ({info.orientation}), as transformers' "
                "PIL loading reads it; re-save the image to repair it"), stacklevel=2)
        return info

    return wrapper


@_pil_notes_in_our_words
def read_image_info(path: str | os.PathLike[str], *,
                    loader: PathLoader | None = None) -> ImageInfo:
    """The size the processor sees for the image at ``path``, from its header only.

    ``loader`` is what opens the path for the processor (default:
    :func:`default_path_loader`; :func:`path_loader_of` a processor). Raises
    :class:`ImageReadError` naming the path for a file that is missing, empty,
    unreadable, not an image, in a format the loader cannot load
    (:func:`path_format_problem`), or whose orientation depends on the image backend.
    """

    file = Path(path)
    loader = default_path_loader() if loader is None else loader
    with _open_binary(file, path) as fp:
        try:
            image = _open_lazy(fp, display_path(path))
        except Exception as exc:  # PIL raises many types on bad headers
            raise _unreadable(path, exc) from None
        try:
            _check_loadable(path, image, loader)
            return _upright(path, image, fp, decoded=False)
        except (OSError, struct.error) as exc:
            raise ImageReadError(path, f"cannot be read as an image ({_reason(exc)})") from None


def read_image_size(path: str | os.PathLike[str], *,
                    loader: PathLoader | None = None) -> tuple[int, int]:
    """(width, height) the processor sees for the image at ``path`` (EXIF orientation
    applied), from its header only. See :func:`read_image_info`."""
    info = read_image_info(path, loader=loader)
    return info.width, info.height


def _tail_problem(fmt: str, fp: IO[bytes]) -> str | None:
    """Structure torchvision's decoders need and PIL's forgive, checked after a decode.

    A JPEG whose data ends without its end-of-image marker (a download that stopped, a
    pre-allocated file left with zeros) decodes in PIL, gray-filled, but torchvision
    refuses it; so does a GIF cut before its trailer.
    """
    fp.seek(0)
    data = fp.read()
    if fmt in ("JPEG", "MPO"):
        start = data.find(b"\xff\xda")
        if start < 0 or data.rfind(b"\xff\xd9") < start:
            return ("is truncated: its JPEG data has no end-of-image marker (PIL fills the "
                    "rest with gray; torchvision refuses it); re-download or re-export it")
    if fmt == "GIF" and not _gif_complete(data):
        return ("is truncated: its GIF blocks end before the trailer (torchvision refuses "
                "it); re-download or re-export it")
    return None


def _gif_complete(data: bytes) -> bool:
    """Whether the GIF's block structure reaches its trailer byte (0x3B)."""
    if len(data) < 13:
        return False
    pos = 13
    if data[10] & 0x80:
        pos += 3 << ((data[10] & 7) + 1)

    def skip_sub_blocks(at: int) -> int:
        while at < len(data):
            size = data[at]
            at += 1 + size
            if size == 0:
                return at
        return -1

    while pos < len(data):
        kind = data[pos]
        if kind == 0x3B:
            return True
        if kind == 0x21:
            pos = skip_sub_blocks(pos + 2)
        elif kind == 0x2C:
            if pos + 10 > len(data):
                return False
            flags = data[pos + 9]
            pos += 10
            if flags & 0x80:
                pos += 3 << ((flags & 7) + 1)
            pos = skip_sub_blocks(pos + 1)
        else:
            return False
        if pos < 0:
            return False
    return False


@_pil_notes_in_our_words
def verify_image(path: str | os.PathLike[str], *,
                 loader: PathLoader | None = None) -> ImageInfo:
    """Decode the image at ``path`` fully and return what :func:`read_image_info` would
    (with the same ``loader``, whose formats it checks before decoding).

    Catches what a header read cannot: truncated or corrupt data behind an intact header,
    and images PIL refuses to decode (over its decompression-bomb limit). Raises
    :class:`ImageReadError` with a one-line reason.
    """
    from PIL import Image

    file = Path(path)
    loader = default_path_loader() if loader is None else loader
    with _open_binary(file, path) as fp:
        try:
            image = Image.open(fp)
        except Image.DecompressionBombError:
            fp.seek(0)
            width, height = _open_lazy(fp, display_path(path)).size
            limit = Image.MAX_IMAGE_PIXELS or 0
            raise ImageReadError(
                path,
                f"is {width}×{height} ({width * height:,} pixels), over PIL's "
                f"decompression-bomb limit ({2 * limit:,}): not decoded, and PIL-based "
                "loading (transformers' load_image, the PIL backend) refuses it",
            ) from None
        except Exception as exc:  # PIL raises many types on bad data
            raise _unreadable(path, exc) from None
        _check_loadable(path, image, loader)
        tiff_tag = getattr(image, "tag_v2", {}).get(0x0112, 1) if image.format == "TIFF" else 1
        try:
            image.load()
        except Exception as exc:  # a decoder can raise anything on bad data
            raise ImageReadError(path, f"cannot be decoded ({_reason(exc)}); the header is "
                                       "intact but the image data is not") from None
        problem = _tail_problem(str(image.format), fp)
        if problem is not None:
            raise ImageReadError(path, problem)
        return _upright(path, image, fp, decoded=True, tiff_tag=tiff_tag)


def _unreadable(path: str | os.PathLike[str], exc: Exception) -> ImageReadError:
    """The one-line error for a file PIL cannot open or decode."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return ImageReadError(
            path, "is not an image PIL can read (corrupt, truncated or another format)")
    return ImageReadError(path, f"cannot be read as an image ({_reason(exc)})")


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class PathEvent(NamedTuple):
    """One thing :func:`walk_image_paths` found.

    ``kind`` is ``"image"`` (count it), ``"unreadable"`` (an error: a folder or file
    that cannot be read, a dangling link with an image suffix, a link loop) or
    ``"skipped"`` (a note: an empty folder, a symbolic link to a folder inside a
    folder). ``reason`` says why for the last two.
    """

    kind: Literal["image", "unreadable", "skipped"]
    path: Path
    reason: str = ""


def walk_image_paths(
    paths: Sequence[str | os.PathLike[str]], *, suffixes: frozenset[str] = IMAGE_SUFFIXES,
    what: str = "image",
) -> Iterator[PathEvent]:
    """Files named directly, and image files inside folders (sorted, recursive).

    ``suffixes`` are the file suffixes taken from folders (``tokenguard count`` adds the
    video ones) and ``what`` names them in the note on a folder with none.

    A named file is yielded whatever its suffix (or its state), so a mis-named or broken
    file gets a clear error instead of being skipped. Inside folders, as ``grep -r``
    does, symbolic links to folders are not followed (each is reported as skipped: pass
    it directly to count it); links to files are followed. Nothing is skipped silently
    except files without an image suffix.
    """
    for raw in paths:
        path = Path(raw)
        try:
            is_dir = path.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            yield from _walk_folder(path, suffixes, what)
        else:
            yield PathEvent("image", path)


def _walk_folder(root: Path, suffixes: frozenset[str] = IMAGE_SUFFIXES,
                 what: str = "image") -> Iterator[PathEvent]:
    errors: list[OSError] = []
    found = False
    plural = "images" if what == "image" else f"{what} files"

    def unreadable() -> Iterator[PathEvent]:
        while errors:
            exc = errors.pop(0)
            where = Path(exc.filename) if exc.filename else root
            yield PathEvent("unreadable", where, f"is a folder that cannot be read "
                                                 f"({exc.strerror or exc}); its "
                                                 f"{plural} are not counted")

    for folder, dirnames, filenames in os.walk(root, onerror=errors.append):
        for event in unreadable():
            found = True
            yield event
        base = Path(folder)
        dirnames.sort()
        for name in list(dirnames):
            sub = base / name
            if sub.is_symlink():
                dirnames.remove(name)
                yield PathEvent("skipped", sub, "is a symbolic link to a folder, not "
                                                "followed; pass it directly to count it")
        for name in sorted(filenames):
            file = base / name
            if file.suffix.lower() not in suffixes:
                continue
            found = True
            yield PathEvent("image", file)
    for event in unreadable():
        found = True
        yield event
    if not found:
        yield PathEvent("skipped", root, f"has no {what} files "
                                         f"({', '.join(sorted(suffixes))})")


def iter_image_paths(paths: Sequence[str | os.PathLike[str]]) -> Iterator[Path]:
    """The image paths of :func:`walk_image_paths`, without its notes and errors."""
    for event in walk_image_paths(paths):
        if event.kind == "image":
            yield event.path
