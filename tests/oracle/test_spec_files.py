"""``spec_from_folder`` reads a checkpoint's files as transformers does.

Each case copies a real checkpoint folder, edits its JSON, loads the real processor from
it and compares: image_seq_len from processor_config.json only (class default when
absent), the image settings from an ``image_processor`` object in processor_config.json
first, class defaults for absent keys.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pytest_tokenguard.counting import count_image
from pytest_tokenguard.specs import spec_from_folder
from tests.helpers import checkpoint_folder, real_tokens_of

MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"


def edited_folder(tmp_path: Path, edits: dict[str, dict[str, Any] | None]) -> Path:
    """A copy of the 2.2B folder; ``None`` deletes a file, a dict replaces its keys
    (a value of ``...`` deletes the key)."""
    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoint_folder(MODEL), folder)
    for name, changes in edits.items():
        path = folder / name
        if changes is None:
            path.unlink()
            continue
        data = json.loads(path.read_text()) if path.exists() else {}
        for key, value in changes.items():
            if value is ...:
                data.pop(key, None)
            else:
                data[key] = value
        path.write_text(json.dumps(data))
    return folder


def assert_counts_like_the_processor(folder: Path) -> Any:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(folder))
    spec = spec_from_folder(folder)
    assert spec.image_seq_len == processor.image_seq_len
    for width, height in ((384, 384), (300, 1200)):
        cost = count_image(width, height, spec=spec)
        from PIL import Image

        image = Image.new("RGB", (width, height))
        assert (cost.image_tokens, cost.block_tokens) == real_tokens_of(processor, image)
    return spec


def test_processor_config_wins_over_preprocessor_config(tmp_path: Path) -> None:
    """The issue's folder: 64 in preprocessor_config.json, 81 in processor_config.json."""
    folder = edited_folder(tmp_path, {"preprocessor_config.json": {"image_seq_len": 64},
                                      "processor_config.json": {"image_seq_len": 81}})
    spec = assert_counts_like_the_processor(folder)
    assert spec.image_seq_len == 81


def test_without_processor_config_the_class_default_applies(tmp_path: Path) -> None:
    folder = edited_folder(tmp_path, {"preprocessor_config.json": {"image_seq_len": 64},
                                      "processor_config.json": None})
    spec = assert_counts_like_the_processor(folder)
    assert spec.image_seq_len != 64


def test_processor_config_without_the_key(tmp_path: Path) -> None:
    folder = edited_folder(tmp_path, {"processor_config.json": {"image_seq_len": ...}})
    assert_counts_like_the_processor(folder)


def test_image_processor_inside_processor_config_wins(tmp_path: Path) -> None:
    nested = json.loads((checkpoint_folder(MODEL) / "preprocessor_config.json").read_text())
    nested["size"] = {"longest_edge": 768}
    nested["max_image_size"] = {"longest_edge": 256}
    folder = edited_folder(tmp_path, {"processor_config.json": {"image_processor": nested}})
    spec = assert_counts_like_the_processor(folder)
    assert (spec.default_longest_edge, spec.tile_size) == (768, 256)


@pytest.mark.parametrize("key", ["size", "max_image_size", "do_image_splitting"])
def test_absent_image_keys_take_the_class_defaults(tmp_path: Path, key: str) -> None:
    folder = edited_folder(tmp_path, {"preprocessor_config.json": {key: ...}})
    assert_counts_like_the_processor(folder)


def test_image_splitting_off_in_the_config(tmp_path: Path) -> None:
    folder = edited_folder(tmp_path,
                           {"preprocessor_config.json": {"do_image_splitting": False}})
    assert not assert_counts_like_the_processor(folder).do_image_splitting
