"""EXIF orientation: tokenguard counts the size the real processor sees, everywhere.

transformers 5 opens an image given by path itself: the default torchvision backend
through ``torchvision.io.decode_image(..., apply_exif_orientation=True)``, the PIL
backend through ``load_image`` (``ImageOps.exif_transpose``). A PIL image passed directly
is never turned. Every expectation here comes from running those processors.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pytest_tokenguard.cli import main
from pytest_tokenguard.conversation import parse_conversation
from pytest_tokenguard.counting import count_image
from pytest_tokenguard.images import ImageReadError, path_loader_of, read_image_size
from pytest_tokenguard.specs import spec_from_folder
from pytest_tokenguard.splitting import split
from pytest_tokenguard.tokens import TokenCounter
from tests.helpers import (
    checkpoint_folder,
    counter,
    pil_backend_processor,
    real_processor,
    real_tokens_of,
    write_oriented_image,
)

MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"
ORIENTATIONS = range(1, 9)


@pytest.fixture(scope="module")
def spec() -> Any:
    return spec_from_folder(checkpoint_folder(MODEL))


def counted(path: Path, spec: Any) -> tuple[int, int]:
    cost = count_image(*read_image_size(path), spec=spec)
    return cost.image_tokens, cost.block_tokens


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_path_is_counted_as_both_backends_see_it(tmp_path: Path, spec: Any, fmt: str,
                                                 orientation: int) -> None:
    path = write_oriented_image(tmp_path / f"photo.{fmt.lower()}", 1000, 300, orientation, fmt)
    expected = counted(path, spec)
    assert real_tokens_of(real_processor(MODEL), str(path)) == expected
    assert real_tokens_of(pil_backend_processor(MODEL), str(path)) == expected


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_pil_image_passed_directly_is_not_turned(tmp_path: Path, spec: Any,
                                                 orientation: int) -> None:
    path = write_oriented_image(tmp_path / "photo.jpg", 1000, 300, orientation)
    with Image.open(path) as image:
        cost = count_image(*image.size, spec=spec)
        for processor in (real_processor(MODEL), pil_backend_processor(MODEL)):
            assert real_tokens_of(processor, image) == (cost.image_tokens, cost.block_tokens)


def test_the_issue_example(tmp_path: Path, spec: Any) -> None:
    """A phone photo stored 1000×300 with orientation 8 is processed as 300×1000."""
    path = write_oriented_image(tmp_path / "phone.jpg", 1000, 300, 8)
    processor = real_processor(MODEL)
    grid = processor.image_processor(images=str(path), return_row_col_info=True)
    cost = count_image(*read_image_size(path), spec=spec)
    assert (cost.rows, cost.cols) == (grid["rows"][0][0], grid["cols"][0][0])
    assert (cost.image_tokens, cost.block_tokens) == real_tokens_of(processor, str(path))
    stored = count_image(1000, 300, spec=spec)
    assert stored.block_tokens < cost.block_tokens  # what main counted: too low


def chat(paths: list[Path]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for index, path in enumerate(paths):
        messages.append({"role": "user", "content": [
            {"type": "image", "path": str(path)},
            {"type": "text", "text": f"What happens in photo {index}?"}]})
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": "The instrument moves to the left."}]})
    return messages


def real_chat_tokens(processor: Any, messages: list[dict[str, Any]]) -> int:
    """What training code gets: the processor renders the chat and opens the paths."""
    out = processor.apply_chat_template(messages, tokenize=True, return_dict=True)
    return len(out["input_ids"][0])


def test_token_counter_conversation_with_paths(tmp_path: Path) -> None:
    paths = [write_oriented_image(tmp_path / f"p{o}.jpg", 1000, 300, o) for o in ORIENTATIONS]
    messages = chat(paths)
    c = counter("2.2B", 1536)
    assert c.conversation(messages).total == real_chat_tokens(real_processor(MODEL), messages)


def test_the_oracle_opens_paths_as_the_processor_does(tmp_path: Path) -> None:
    """``processor_input_ids``, the oracle the checker and these tests use, hands the
    processor the path (main opened it with PIL, unturned: 2 tokens short per photo)."""
    from pytest_tokenguard.sequence import processor_input_ids

    paths = [write_oriented_image(tmp_path / f"p{o}.jpg", 1000, 300, o) for o in (1, 6, 8)]
    messages = chat(paths)
    processor = real_processor(MODEL)
    assert len(processor_input_ids(processor, messages)) == real_chat_tokens(processor,
                                                                             messages)


def test_split_never_writes_a_chunk_over_the_limit(tmp_path: Path) -> None:
    """At a limit one under the real length of the first messages, the splitter must
    not put them in one chunk (main did: it priced each photo 2 tokens low)."""
    paths = [write_oriented_image(tmp_path / f"phone{i}.jpg", 1000, 300, 8) for i in range(3)]
    messages = chat(paths)
    processor = real_processor(MODEL)
    limit = real_chat_tokens(processor, messages[:4]) - 1
    chunks = split(parse_conversation(messages), limit, counter=counter("2.2B", 1536))
    for chunk in chunks:
        rendered = [
            {"role": m.role, "content": [
                {"type": "image", "path": item.file} if hasattr(item, "file") and item.file
                else {"type": "text", "text": item.text}  # type: ignore[union-attr]
                for item in m.content]}
            for m in chunk.messages
        ]
        real = real_chat_tokens(processor, rendered)
        assert chunk.tokens == real
        assert real <= limit


def test_count_cli_counts_the_upright_size(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import json

    path = write_oriented_image(tmp_path / "phone.jpg", 1000, 300, 8)
    assert main(["count", "--json", "--model", str(checkpoint_folder(MODEL)), str(path)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["width"], row["height"], row["orientation"]) == (300, 1000, 8)
    assert (row["image_tokens"], row["block_tokens"]) == real_tokens_of(
        real_processor(MODEL), str(path))


# ------------------------------------------------------- where the two backends differ


def webp(path: Path, orientation: int) -> Path:
    return write_oriented_image(path, 1000, 300, orientation, "WEBP")


def jpeg_xmp_first(path: Path, orientation: int) -> Path:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.new("RGB", (1000, 300)).save(buffer, "JPEG", exif=exif)
    data = buffer.getvalue()
    payload = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
                     + data[2:])
    return path


@pytest.mark.parametrize("make", [webp, jpeg_xmp_first], ids=["webp", "jpeg-xmp-first"])
@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_refused_where_the_backends_disagree(tmp_path: Path, spec: Any, make: Any,
                                             orientation: int,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal is not caution: the backends really give different counts. Which one
    the processor uses depends on what is installed: transformers 5.24 decodes a path
    with torchcodec (>= 0.16, when it loads) and with torchvision otherwise."""
    import transformers.image_utils as image_utils

    path = make(tmp_path / f"photo{orientation}", orientation)
    default = real_tokens_of(real_processor(MODEL), str(path))  # torchcodec if installed
    with monkeypatch.context() as patch:
        patch.setattr(image_utils, "is_torchcodec_usable", lambda decode: False)
        torchvision = real_tokens_of(real_processor(MODEL), str(path))
    pil = real_tokens_of(pil_backend_processor(MODEL), str(path))
    assert torchvision != pil
    assert default in (torchvision, pil)
    with pytest.raises(ImageReadError, match="depending on the backend"):
        read_image_size(path)
    stored, upright = count_image(1000, 300, spec=spec), count_image(300, 1000, spec=spec)
    assert {torchvision, pil} == {(stored.image_tokens, stored.block_tokens),
                                  (upright.image_tokens, upright.block_tokens)}


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_tiff_follows_the_pil_backend(tmp_path: Path, spec: Any, orientation: int) -> None:
    """torchvision cannot decode TIFF; the PIL backend turns it, and so does the reader
    told that the processor's loader is PIL's."""
    path = write_oriented_image(tmp_path / "scan.tif", 1000, 300, orientation, "TIFF")
    processor = pil_backend_processor(MODEL)
    cost = count_image(*read_image_size(path, loader=path_loader_of(processor)), spec=spec)
    assert real_tokens_of(processor, str(path)) == (cost.image_tokens, cost.block_tokens)


def test_counter_with_settings_matches_per_call_arguments(tmp_path: Path) -> None:
    """TokenCounter's per-call settings, on a conversation with an oriented photo."""
    path = write_oriented_image(tmp_path / "phone.jpg", 1000, 300, 6)
    messages = chat([path])
    processor = real_processor(MODEL)
    base: TokenCounter = counter("2.2B", 1536)
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"do_image_splitting": False}, {"do_image_splitting": False}),
        ({"tile_size": 512}, {"max_image_size": {"longest_edge": 512}}),
        ({"longest_edge": 768, "tile_size": 256},
         {"size": {"longest_edge": 768}, "max_image_size": {"longest_edge": 256}}),
    ]
    for settings, kwargs in cases:
        real = processor.apply_chat_template(messages, tokenize=True, return_dict=True,
                                             processor_kwargs=kwargs)
        assert base.with_settings(**settings).conversation(messages).total == len(
            real["input_ids"][0]), settings
        edge = settings.pop("longest_edge", 1536)
        built = TokenCounter(base.processor, base.spec, edge, **settings)
        assert built.conversation(messages).total == len(real["input_ids"][0]), settings
