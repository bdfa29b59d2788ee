"""The header reader: EXIF orientation, huge headers, broken files and folders.

The sizes here are checked against the real processor in tests/oracle/test_exif.py;
these tests pin the reader's own rules on generated files, fast and without model files.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from pytest_tokenguard.images import (
    ImageFormatError,
    ImageReadError,
    PathLoader,
    _torchvision_orientation,
    default_path_loader,
    display_path,
    iter_image_paths,
    path_format_problem,
    path_loader_of,
    read_image_info,
    read_image_size,
    verify_image,
    walk_image_paths,
)
from tests.helpers import FIXTURES, write_oriented_image

ORIENTATIONS = range(1, 9)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def png_bytes(width: int = 1000, height: int = 300, **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (1, 2, 3)).save(buffer, "PNG", **save)
    return buffer.getvalue()


def huge_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A valid PNG header claiming ``width``×``height`` (far past PIL's bomb limit)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
                     + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_orientations_5_to_8_swap_width_and_height(tmp_path: Path, fmt: str,
                                                    orientation: int) -> None:
    path = write_oriented_image(tmp_path / f"photo.{fmt.lower()}", 1000, 300, orientation, fmt)
    info = read_image_info(path)
    expected = (300, 1000) if orientation >= 5 else (1000, 300)
    assert read_image_size(path) == expected == (info.width, info.height)
    assert (info.orientation, info.stored_width, info.stored_height) == (orientation, 1000, 300)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_tiff_is_upright_at_open(tmp_path: Path, orientation: int) -> None:
    """PIL reports a TIFF's upright size itself (and only the PIL backend opens TIFF)."""
    path = write_oriented_image(tmp_path / "scan.tif", 1000, 300, orientation, "TIFF")
    expected = (300, 1000) if orientation >= 5 else (1000, 300)
    assert read_image_size(path, loader="pil") == expected
    assert verify_image(path, loader="pil")[:3] == read_image_info(path, loader="pil")[:3]


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_webp_orientation_depends_on_the_backend_and_is_refused(tmp_path: Path,
                                                                orientation: int) -> None:
    path = write_oriented_image(tmp_path / "photo.webp", 1000, 300, orientation, "WEBP")
    with pytest.raises(ImageReadError, match="depending on the backend") as info:
        read_image_size(path)
    assert str(path) in str(info.value)
    assert "exif_transpose" in str(info.value)


@pytest.mark.parametrize("orientation", [1, 2, 3, 4])
def test_webp_orientation_that_keeps_the_sides_is_counted(tmp_path: Path,
                                                          orientation: int) -> None:
    path = write_oriented_image(tmp_path / "photo.webp", 1000, 300, orientation, "WEBP")
    assert read_image_size(path) == (1000, 300)


def test_png_exif_after_the_image_data_is_refused(tmp_path: Path) -> None:
    """Only a decode makes PIL read it, and torchvision never does: the backends differ."""
    data = png_bytes()
    end = data.index(b"IEND") - 4
    path = tmp_path / "late.png"
    path.write_bytes(data[:end] + png_chunk(b"eXIf", exif_bytes(6)) + data[end:])
    with pytest.raises(ImageReadError, match="depending on the backend"):
        read_image_size(path)


def test_png_late_text_chunk_without_orientation_is_counted(tmp_path: Path) -> None:
    """ImageMagick writes date tEXt chunks after the image data; they change nothing."""
    data = png_bytes()
    end = data.index(b"IEND") - 4
    path = tmp_path / "magick.png"
    path.write_bytes(data[:end] + png_chunk(b"tEXt", b"date:create\x002024-01-01")
                     + data[end:])
    assert read_image_size(path) == (1000, 300)


def test_png_raw_profile_exif_is_refused(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    data = exif_bytes(6)
    info.add_text("Raw profile type exif", f"\nexif\n{len(data):8}\n{data.hex()}\n")
    path = tmp_path / "raw.png"
    path.write_bytes(png_bytes(pnginfo=info))
    with pytest.raises(ImageReadError, match="depending on the backend"):
        read_image_size(path)


def test_jpeg_xmp_orientation_is_refused(tmp_path: Path) -> None:
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
           b'02/22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/"'
           b' tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    path = tmp_path / "xmp.jpg"
    Image.new("RGB", (1000, 300)).save(path, "JPEG", xmp=xmp)
    with pytest.raises(ImageReadError, match="orientation 6"):
        read_image_size(path)


def jpeg_with_xmp_first(path: Path, orientation: int) -> Path:
    """A JPEG whose first APP1 segment is XMP and whose second holds the EXIF."""
    buffer = io.BytesIO()
    Image.new("RGB", (1000, 300)).save(buffer, "JPEG", exif=exif_bytes(orientation))
    data = buffer.getvalue()
    payload = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    path.write_bytes(data[:2] + segment + data[2:])
    return path


def test_torchvision_reads_only_the_first_app1(tmp_path: Path) -> None:
    """torchvision parses the first APP1 as EXIF; here it is XMP, so it sees no
    orientation while PIL turns the image: the file is refused."""
    with pytest.raises(ImageReadError, match="depending on the backend"):
        read_image_size(jpeg_with_xmp_first(tmp_path / "xmp_first.jpg", 8))
    assert read_image_size(jpeg_with_xmp_first(tmp_path / "xmp_first_3.jpg", 3)) == (1000, 300)


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_out_of_range_orientation_is_ignored(tmp_path: Path, orientation: int) -> None:
    path = write_oriented_image(tmp_path / "odd.jpg", 1000, 300, orientation)
    info = read_image_info(path)
    assert (info.width, info.height, info.orientation) == (1000, 300, 1)


@pytest.mark.parametrize("order", ["<", ">"])
def test_torchvision_orientation_parser(order: str) -> None:
    mark = b"II" if order == "<" else b"MM"
    ifd = struct.pack(f"{order}H", 2) + struct.pack(f"{order}HHI", 0x0100, 3, 1) + b"\0\0\0\0"
    ifd += struct.pack(f"{order}HHIH", 0x0112, 3, 1, 6) + b"\0\0"
    data = mark + struct.pack(f"{order}HI", 0x2A, 8) + ifd
    assert _torchvision_orientation(data) == 6
    assert _torchvision_orientation(data[:20]) == -1  # cut before the tag: not found
    assert _torchvision_orientation(b"") == -1
    assert _torchvision_orientation(b"XX\0*\0\0\0\x08") == -1


def test_huge_header_is_counted_from_the_header(tmp_path: Path) -> None:
    """A 100000×100000 PNG is past PIL's decompression-bomb limit; its header is legal."""
    path = huge_png(tmp_path / "huge.png")
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    assert read_image_size(path) == (100_000, 100_000)


def test_verify_reports_huge_image_on_one_line(tmp_path: Path) -> None:
    path = huge_png(tmp_path / "huge.png")
    with pytest.raises(ImageReadError) as info:
        verify_image(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: is 100000×100000")
    assert "decompression-bomb limit" in message


def truncations(data: bytes) -> dict[str, bytes]:
    half = len(data) // 2
    return {
        "cut in half": data[:half],
        "cut at 90%": data[: len(data) * 9 // 10],
        "tail zeroed": data[:half] + bytes(len(data) - half),
    }


def noisy(fmt: str) -> bytes:
    """A 400×300 image of noise: its compressed data spans the whole file."""
    image = Image.frombytes("RGB", (400, 300), os.urandom(400 * 300 * 3))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF"])
def test_verify_catches_what_the_header_does_not(tmp_path: Path, fmt: str) -> None:
    for name, data in truncations(noisy(fmt)).items():
        path = tmp_path / f"{name.replace(' ', '_')}.{fmt.lower()}"
        path.write_bytes(data)
        assert read_image_size(path) == (400, 300), name  # the header is intact
        with pytest.raises(ImageReadError) as info:
            verify_image(path)
        assert "\n" not in str(info.value)
        assert str(path) in str(info.value)


def test_verify_passes_good_files() -> None:
    for path in sorted(FIXTURES.glob("*.png")):
        assert verify_image(path) == read_image_info(path)


def test_verify_does_not_flag_what_the_processors_accept(tmp_path: Path) -> None:
    """A PNG without its IEND chunk fails PIL's verify() but decodes in PIL and in
    torchvision (tests/oracle/test_exif.py); --verify decodes, so it is not flagged."""
    data = noisy("PNG")
    path = tmp_path / "no_iend.png"
    path.write_bytes(data[:-12])
    with Image.open(path) as image, pytest.raises(OSError):
        image.verify()
    assert verify_image(path)[:2] == (400, 300)


def test_missing_empty_folder_and_loop(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "gone.png")
    cases = {
        tmp_path / "missing.png": "no such file",
        empty: "is empty (0 bytes)",
        tmp_path: "is a folder",
        loop: "is a symbolic link loop",
        dangling: "is a dangling symbolic link (to ",
    }
    for path, reason in cases.items():
        with pytest.raises(ImageReadError, match=re.escape(reason)):
            read_image_size(path)


def test_unreadable_file_is_an_image_read_error(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """PermissionError (simulated: the suite may run as root, which reads any file)."""
    import pytest_tokenguard.images as images

    path = tmp_path / "locked.png"
    path.write_bytes((FIXTURES / "frame_384x384.png").read_bytes())

    def denied(*args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(images, "open", denied, raising=False)
    with pytest.raises(ImageReadError, match="permission denied"):
        read_image_size(path)


def test_walk_reports_what_it_skips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = (FIXTURES / "frame_384x384.png").read_bytes()
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "a" / "one.png").write_bytes(frame)
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()
    (root / "locked").mkdir()
    (root / "locked" / "two.png").write_bytes(frame)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "three.png").write_bytes(frame)
    (root / "linked").symlink_to(outside)
    (root / "dangling.png").symlink_to(tmp_path / "gone.png")

    real_scandir = os.scandir

    def scandir(path: object = ".") -> object:
        if os.fspath(path).endswith("locked"):  # type: ignore[call-overload]
            raise PermissionError(13, "Permission denied", os.fspath(path))  # type: ignore[call-overload]
        return real_scandir(path)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "scandir", scandir)
    events = [(e.kind, e.path.relative_to(root).as_posix()) for e in walk_image_paths([root])]
    assert events == [
        ("skipped", "linked"),
        ("image", "dangling.png"),
        ("image", "a/one.png"),
        ("unreadable", "locked"),
    ]
    assert list(iter_image_paths([root])) == [root / "dangling.png", root / "a" / "one.png"]
    assert [e.kind for e in walk_image_paths([root / "empty"])] == ["skipped"]
    # a symbolic link named directly is followed, as grep -r does
    assert [e.path.name for e in walk_image_paths([root / "linked"])] == ["three.png"]


def test_display_path_keeps_every_byte() -> None:
    name = os.fsdecode(b"frame_\xff\xfe.png")
    assert display_path(name) == "frame_\\xff\\xfe.png"
    assert display_path("café.png") == "café.png"


# ------------------------------------------------- what the processor's loader cannot load


def save(path: Path, fmt: str, frames: int = 1, mode: str = "RGB") -> Path:
    images = [Image.new(mode, (1000, 300), (9 * n, 0, 0) if mode == "RGB" else 0)
              for n in range(frames)]
    images[0].save(path, fmt, save_all=frames > 1, append_images=images[1:])
    return path


@pytest.mark.parametrize(("fmt", "suffix", "mode"), [
    ("TIFF", ".tif", "RGB"), ("BMP", ".bmp", "RGB"), ("PPM", ".ppm", "RGB"),
    ("PPM", ".pgm", "L"), ("PCX", ".pcx", "RGB"), ("TGA", ".tga", "RGB"),
    ("JPEG2000", ".jp2", "RGB"), ("ICO", ".ico", "RGB")])
@pytest.mark.parametrize("loader", ["torchvision", "torchcodec"])
def test_formats_the_default_backend_cannot_load_are_refused(
        tmp_path: Path, fmt: str, suffix: str, mode: str, loader: PathLoader) -> None:
    """What the real processor refuses by path (tests/oracle/test_image_formats.py),
    header read or decoded; the PIL backend's loader counts it."""
    path = save(tmp_path / f"image{suffix}", fmt, mode=mode)
    shown = fmt.replace("2000", " 2000")
    for read in (read_image_info, verify_image):
        with pytest.raises(ImageFormatError, match=rf"image{suffix}: is in {shown} format, "
                r"which the processor cannot load from a path \("
                r"transformers' default image loading decodes JPEG, PNG, WebP.*: \"Unsupported "
                r"or unrecognized image format\"\); convert it to PNG or JPEG, or open it with "
                r"PIL and pass the image$"):
            read(path, loader=loader)
        with Image.open(path) as image:  # an ICO keeps a 256-pixel side at most
            assert read(path, loader="pil")[:2] == image.size


def test_the_format_comes_from_the_header_not_the_suffix(tmp_path: Path) -> None:
    tiff = save(tmp_path / "photo.png", "TIFF")
    png = save(tmp_path / "scan.tif", "PNG")
    with pytest.raises(ImageFormatError, match=r"photo\.png: is in TIFF format"):
        read_image_info(tiff, loader="torchvision")
    assert read_image_info(png, loader="torchvision").format == "PNG"


@pytest.mark.parametrize("loader", ["torchvision", "torchcodec"])
def test_what_the_default_backend_loads_is_counted(tmp_path: Path, loader: PathLoader) -> None:
    """Single-frame JPEG, PNG, WebP and GIF; an animated PNG (decoded to its default image)
    and a multi-picture MPO (its first picture)."""
    for fmt, frames in (("JPEG", 1), ("PNG", 1), ("WEBP", 1), ("GIF", 1), ("PNG", 3),
                        ("MPO", 2)):
        path = save(tmp_path / f"{fmt}{frames}", fmt, frames)
        assert read_image_size(path, loader=loader) == (1000, 300)
        assert verify_image(path, loader=loader)[:2] == (1000, 300)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "AVIF"])
@pytest.mark.parametrize("loader", ["torchvision", "torchcodec"])
def test_animations_the_decoder_stacks_are_refused(tmp_path: Path, fmt: str,
                                                   loader: PathLoader) -> None:
    try:
        path = save(tmp_path / "clip", fmt, frames=3)
    except (KeyError, OSError):
        pytest.skip(f"this Pillow writes no {fmt}")
    for read in (read_image_info, verify_image):
        with pytest.raises(ImageFormatError, match=r"clip: (is an animated \w+ \(3 frames\)"
                                                   r", which the processor cannot load from a "
                                                   r"path|is in AVIF format)"):
            read(path, loader=loader)
        assert read(path, loader="pil")[:2] == (1000, 300)


def test_avif_only_with_torchcodec(tmp_path: Path) -> None:
    try:
        path = save(tmp_path / "photo.avif", "AVIF")
    except (KeyError, OSError):
        pytest.skip("this Pillow writes no AVIF")
    assert read_image_size(path, loader="torchcodec") == (1000, 300)
    with pytest.raises(ImageFormatError, match=r"photo.avif: is in AVIF format, which the "
                                               r"processor decodes from a path only with "
                                               r"torchcodec >= 0.16 installed .*; install "
                                               r"torchcodec, or convert it to PNG or JPEG"):
        read_image_size(path, loader="torchvision")


def test_eps_is_counted_by_the_pil_loader_only_with_ghostscript(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import EpsImagePlugin

    path = save(tmp_path / "figure.eps", "EPS")
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: False)
    with pytest.raises(ImageFormatError, match=r"figure\.eps: is in EPS format, which PIL "
                                               r"decodes only through Ghostscript"):
        read_image_info(path, loader="pil")
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: True)
    assert read_image_size(path, loader="pil") == (1000, 300)


def test_path_format_problem_is_the_one_rule() -> None:
    assert path_format_problem("PNG", loader="torchvision") is None
    assert path_format_problem("TIFF", loader="pil") is None
    assert path_format_problem("GIF", 2, loader="pil") is None
    assert path_format_problem("PNG", 5, loader="torchvision") is None
    assert (path_format_problem("BMP", loader="torchcodec") or "").startswith("is in BMP")
    assert (path_format_problem("GIF", 2, loader="torchcodec") or "").startswith(
        "is an animated GIF (2 frames)")
    assert path_format_problem("AVIF", loader="torchcodec") is None
    assert path_format_problem("AVIF", loader="torchvision") is not None


@pytest.mark.parametrize(("installed", "expected"), [
    ("0.17.0+cu130", "torchcodec"), ("0.16.0", "torchcodec"), ("1.0", "torchcodec"),
    ("0.15.2", "torchvision"), ("nightly", "torchvision"), (None, "torchvision")])
def test_default_path_loader_reads_the_installed_torchcodec(
        monkeypatch: pytest.MonkeyPatch, installed: str | None, expected: str) -> None:
    import importlib.metadata

    def version(name: str) -> str:
        assert name == "torchcodec"
        if installed is None:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed

    monkeypatch.setattr(importlib.metadata, "version", version)
    default_path_loader.cache_clear()
    try:
        assert default_path_loader() == expected
    finally:
        default_path_loader.cache_clear()


def test_path_loader_of_a_processor() -> None:
    class ImageProcessor:
        def __init__(self, backend: str) -> None:
            self.backend = backend

    class Processor:
        def __init__(self, backend: str) -> None:
            self.image_processor = ImageProcessor(backend)

    class Holder:
        def __init__(self, processor: object) -> None:
            self.processor = processor

    assert path_loader_of(Processor("pil")) == "pil"
    assert path_loader_of(ImageProcessor("pil")) == "pil"
    assert path_loader_of(Holder(Holder(Processor("pil")))) == "pil"
    assert path_loader_of(Processor("torchvision")) == default_path_loader()
    assert path_loader_of(object()) == default_path_loader()
