"""Which image files the processor loads from a path: tokenguard prices exactly those.

transformers' default (torchvision) image backend decodes a path with torchcodec's
``decode_image`` (torchcodec >= 0.16 installed) or torchvision's, which know a few formats
and fail on the rest ("Unsupported or unrecognized image format") and on animations; the
PIL backend opens what PIL opens. Every file here is written by PIL, in every format it
writes (``Image.SAVE``, so a format PIL learns to write joins by itself), and handed to the
real processor by path with each loader: tokenguard must count exactly the files the
processor loads, with the processor's count, and refuse the others by name. A change of
torchvision, torchcodec, transformers or Pillow that loads another format (or stops
loading one) fails here, not on a user's machine.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pytest_tokenguard.cli import main
from pytest_tokenguard.counting import count_image
from pytest_tokenguard.errors import ConversationError
from pytest_tokenguard.images import (
    ImageReadError,
    PathLoader,
    default_path_loader,
    path_loader_of,
    read_image_info,
    verify_image,
)
from pytest_tokenguard.specs import spec_from_folder, spec_from_processor
from pytest_tokenguard.splitting import split
from pytest_tokenguard.tokens import TokenCounter
from tests.helpers import (
    checkpoint_folder,
    pil_backend_processor,
    real_processor,
    real_tokens_of,
    write_oriented_image,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:IM image format is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of "
                               "TorchVision:DeprecationWarning"),
]

MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"
SIZE = (1000, 300)
#: Modes tried in turn until PIL writes the format (the first one it accepts).
MODES = ("RGB", "L", "1", "RGBA", "P", "I;16", "CMYK")


def _writable_formats() -> list[str]:
    Image.init()
    return sorted(Image.SAVE)


def _single(fmt: str, mode: str | None = None) -> Callable[[Path], Path | None]:
    def write(folder: Path) -> Path | None:
        path = folder / f"{fmt}-{mode or 'any'}.img".replace(";", "")
        for candidate in (mode,) if mode else MODES:
            try:
                Image.new(candidate, SIZE).save(path, fmt)
            except Exception:  # this mode is not writable in this format
                path.unlink(missing_ok=True)
                continue
            return path
        return None

    return write


def _animated(fmt: str) -> Callable[[Path], Path | None]:
    def write(folder: Path) -> Path | None:
        path = folder / f"animated-{fmt}.img"
        frames = [Image.new("RGB", SIZE, color) for color in ("red", "green", "blue")]
        try:
            frames[0].save(path, fmt, save_all=True, append_images=frames[1:])
        except Exception:  # no multi-frame writer for it in this Pillow
            return None
        return path

    return write


def _renamed(fmt: str, name: str) -> Callable[[Path], Path | None]:
    """A ``fmt`` file under a name whose suffix says another format."""
    def write(folder: Path) -> Path | None:
        path = folder / name
        Image.new("RGB", SIZE).save(path, fmt)
        return path

    return write


def _oriented_avif(folder: Path) -> Path | None:
    try:
        return write_oriented_image(folder / "phone.avif", *SIZE, 6, "AVIF")
    except Exception:  # Pillow built without AVIF
        return None


SAMPLES: dict[str, Callable[[Path], Path | None]] = {
    **{fmt: _single(fmt) for fmt in _writable_formats()},
    **{f"PNG-{mode}": _single("PNG", mode) for mode in ("1", "L", "LA", "P", "RGBA", "I;16")},
    **{f"JPEG-{mode}": _single("JPEG", mode) for mode in ("L", "CMYK")},
    "WEBP-RGBA": _single("WEBP", "RGBA"),
    "GIF-L": _single("GIF", "L"),
    **{f"animated-{fmt}": _animated(fmt) for fmt in ("GIF", "WEBP", "AVIF", "PNG", "MPO",
                                                     "TIFF")},
    "TIFF-named-png": _renamed("TIFF", "scan.png"),
    "PNG-named-tif": _renamed("PNG", "scan.tif"),
    "BMP-named-jpg": _renamed("BMP", "photo.jpg"),
    "AVIF-orientation-6": _oriented_avif,
}


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("formats")
    written = {name: write(folder) for name, write in SAMPLES.items()}
    return {name: path for name, path in written.items() if path is not None}


@contextmanager
def torchvision_decoder() -> Iterator[None]:
    """The default backend as it decodes without torchcodec (not installed, or failing
    to load): torchvision's ``decode_image``."""
    import transformers.image_utils as image_utils

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(image_utils, "is_torchcodec_usable", lambda decode: False)
        yield


#: The processor's answers by (backend, path): each file is handed to it once per process.
_ANSWERS: dict[tuple[str, Path], tuple[int, int] | None] = {}


def _processor_tokens(backend: str, path: Path) -> tuple[int, int] | None:
    """The (image tokens, total tokens) of the processor with ``backend`` (``default``:
    as transformers loads it; ``torchvision``: the default without torchcodec; ``pil``)
    for the file given by path, or None when it cannot load it."""
    key = (backend, path)
    if key not in _ANSWERS:
        processor = pil_backend_processor(MODEL) if backend == "pil" else real_processor(MODEL)
        try:
            if backend == "torchvision":
                with torchvision_decoder():
                    _ANSWERS[key] = real_tokens_of(processor, str(path))
            else:
                _ANSWERS[key] = real_tokens_of(processor, str(path))
        except Exception:  # whatever the decoder raises: the processor refuses the file
            _ANSWERS[key] = None
    return _ANSWERS[key]


def _tokenguard_tokens(path: Path, loader: PathLoader, spec: Any,
                       read: Callable[..., Any] = read_image_info) -> tuple[int, int] | str:
    try:
        info = read(path, loader=loader)
    except ImageReadError as exc:
        return exc.reason
    cost = count_image(info.width, info.height, spec=spec)
    return cost.image_tokens, cost.block_tokens


LOADERS = ["default", "torchvision", "pil"]


@pytest.mark.parametrize("name", list(SAMPLES))
@pytest.mark.parametrize("backend", LOADERS)
def test_counts_exactly_what_the_processor_loads_by_path(samples: dict[str, Path], name: str,
                                                        backend: str) -> None:
    if name not in samples:
        pytest.skip(f"this Pillow cannot write the {name} sample")
    path = samples[name]
    spec = spec_from_folder(checkpoint_folder(MODEL))
    processor = pil_backend_processor(MODEL) if backend == "pil" else real_processor(MODEL)
    loader = path_loader_of(processor)
    if backend == "torchvision":
        if loader == "pil":
            pytest.skip("transformers loads this processor with the PIL backend here")
        loader = "torchvision"
    real = _processor_tokens(backend, path)
    for read in (read_image_info, verify_image):
        ours = _tokenguard_tokens(path, loader, spec, read)
        if real is None:
            assert isinstance(ours, str), (
                f"{name}: the processor ({loader}) cannot load it, tokenguard counted {ours}")
        else:
            assert ours == real, f"{name}: the processor ({loader}) counts {real}"


def test_the_default_loader_is_the_processors() -> None:
    """``default_path_loader`` (read from the installed distributions, nothing imported)
    names what the processor transformers loads by default decodes paths with."""
    import transformers.image_utils as image_utils

    processor = real_processor(MODEL)
    if getattr(processor.image_processor, "backend", None) == "pil":
        assert path_loader_of(processor) == "pil"
        return
    decoder = ("torchcodec" if image_utils.is_torchcodec_greater_or_equal("0.16.0")
               and image_utils.is_torchcodec_usable(decode="image") else "torchvision")
    assert path_loader_of(processor) == default_path_loader() == decoder
    assert path_loader_of(pil_backend_processor(MODEL)) == "pil"


# ------------------------------------------------------------------ every path reader


def _conversation(path: Path) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "image", "path": str(path)},
                                         {"type": "text", "text": "What is on the scan?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "A grasper."}]}]


def _real_length(processor: Any, messages: list[dict[str, Any]]) -> int:
    out = processor.apply_chat_template(messages, tokenize=True, return_dict=True)
    return len(out["input_ids"][0])


@pytest.mark.parametrize("fmt", ["TIFF", "BMP", "PPM"])
def test_conversations_follow_the_processors_backend(tmp_path: Path, fmt: str) -> None:
    """A conversation holding a TIFF (BMP, PPM) by path: the default processor cannot
    render it, so the counter and the splitter refuse it by name; with the PIL backend
    they count what the processor counts."""
    path = tmp_path / f"scan.{fmt.lower()}"
    Image.new("RGB", SIZE).save(path, fmt)
    messages = _conversation(path)
    default = real_processor(MODEL)
    if path_loader_of(default) != "pil":
        with pytest.raises(ValueError, match="Unsupported or unrecognized image format"):
            _real_length(default, messages)
        counter = TokenCounter(default, spec_from_processor(default))
        for attempt in (lambda: counter.conversation(messages),
                        lambda: split(messages, 4096, counter=counter)):
            with pytest.raises(ConversationError, match=f"is in {fmt} format") as caught:
                attempt()
            assert str(path) in str(caught.value)
            assert "convert it to PNG or JPEG" in str(caught.value)
    pil_processor = pil_backend_processor(MODEL)
    pil = TokenCounter(pil_processor, spec_from_processor(pil_processor))
    real = _real_length(pil.processor, messages)
    assert pil.conversation(messages).total == real
    (chunk,) = split(messages, 4096, counter=pil)
    assert chunk.tokens == real


@pytest.mark.tokenguard_no_baseline("which samples load by path depends on the installed "
                                     "decoder (AVIF only where torchcodec and FFmpeg load)")
def test_count_cli_counts_what_the_default_processor_loads(
        samples: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """``tokenguard count`` over every sample: a row for each file the default processor
    loads (with its count), one refusal naming each other file, exit 1; with
    ``--image-backend pil``, as the PIL backend counts."""
    processor = real_processor(MODEL)
    paths = sorted(samples.values())
    for backend in ("torchvision", "pil"):
        if backend == "torchvision" and path_loader_of(processor) == "pil":
            continue  # transformers loads this processor with the PIL backend here
        loads = {path: _processor_tokens("pil" if backend == "pil" else "default", path)
                 for path in paths}
        for verify in ([], ["--verify"]):
            code = main(["count", "--json", "--model", str(checkpoint_folder(MODEL)),
                         "--image-backend", backend, *verify, *map(str, paths)])
            out, err = capsys.readouterr()
            rows = {Path(row["path"]): (row["image_tokens"], row["block_tokens"])
                    for row in map(json.loads, out.splitlines())}
            assert rows == {p: real for p, real in loads.items() if real is not None}
            refused = [p for p, real in loads.items() if real is None]
            assert code == (1 if refused else 0)
            assert len(err.splitlines()) == len(refused)
            for path in refused:
                assert f"tokenguard count: {path}: " in err
