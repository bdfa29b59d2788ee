"""TokenCounter inputs: image items by size, PIL image or path, and the errors for bad ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pytest_tokenguard.images import ImageReadError
from pytest_tokenguard.processor.loading import load_processor
from pytest_tokenguard.tokens import TokenCounter, image_item_size
from tests.helpers import FIXTURES, model_ref
from tests.helpers import counter as loaded_counter

MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return loaded_counter(MODEL, 512)


def test_image_item_forms_agree(counter: TokenCounter) -> None:
    path = FIXTURES / "frame_1920x1080.png"
    with Image.open(path) as image:
        forms: list[dict[str, Any]] = [
            {"type": "image", "path": str(path)}, {"type": "image", "image": image},
            {"type": "image", "width": 1920, "height": 1080},
        ]
        assert {image_item_size(item) for item in forms} == {(1920, 1080)}


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [("corrupt.png", b"\x89PNG\r\n\x1a\nbroken", "not an image PIL can read"),
     ("text.png", b"hello", "not an image PIL can read"),
     ("empty.png", b"", "is empty (0 bytes)")],
)
def test_bad_image_files_name_the_file(counter: TokenCounter, tmp_path: Path, name: str,
                                       content: bytes, reason: str) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    messages = [{"role": "user", "content": [{"type": "image", "path": str(bad)}]}]
    with pytest.raises(ImageReadError) as info:
        counter.conversation(messages)
    assert str(bad) in str(info.value)
    assert reason in str(info.value)


def test_missing_image_file(counter: TokenCounter, tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        image_item_size({"type": "image", "path": str(tmp_path / "gone.png")})


def test_image_without_size_says_how_to_give_one() -> None:
    with pytest.raises(ValueError, match="give 'width' and 'height'"):
        image_item_size({"type": "image"})


def test_placeholder_count_must_match_sizes(counter: TokenCounter) -> None:
    with pytest.raises(ValueError, match="2 <image> placeholders but 1 image sizes"):
        counter.prompt("<image><image>", [(10, 10)])


@pytest.mark.parametrize("edge", [0, -1])
def test_bad_longest_edge_in_loader(edge: int) -> None:
    from pytest_tokenguard.processor.loading import ProcessorLoadError

    with pytest.raises(ProcessorLoadError, match=f"got {edge}"):
        load_processor(model_ref(MODEL), edge)
