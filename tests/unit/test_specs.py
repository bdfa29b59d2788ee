"""Specs from checkpoint folders and processors, and the errors of broken folders (the
built-in specs against the real files: tests/oracle/test_real_files.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pytest_tokenguard.specs import (
    CLASS_DEFAULT_IMAGE_SEQ_LEN,
    KNOWN_SPECS,
    SpecError,
    spec_from_folder,
    spec_from_processor,
)
from tests.helpers import MODEL_IDS, checkpoint_folder, folder_processor


@pytest.mark.parametrize("checkpoint", MODEL_IDS)
def test_known_spec_equals_folder_and_processor(checkpoint: str) -> None:
    """A checkpoint folder and the processor transformers loads from it give the built-in
    spec (the real files: tests/oracle/test_real_files.py)."""
    from_folder = spec_from_folder(checkpoint_folder(checkpoint), name=checkpoint)
    from_processor = spec_from_processor(folder_processor(checkpoint), name=checkpoint)
    assert KNOWN_SPECS[checkpoint] == from_folder == from_processor


def test_folder_without_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"no preprocessor_config\.json"):
        spec_from_folder(tmp_path)


def test_broken_json_names_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path
    (folder / "preprocessor_config.json").write_text('{"size": {"longest_edge": 1536},\n oops}')
    with pytest.raises(SpecError, match=r"preprocessor_config.json: not valid JSON \(line 2"):
        spec_from_folder(folder)


def test_image_seq_len_is_read_from_processor_config_only(tmp_path: Path) -> None:
    """transformers passes processor_config.json's image_seq_len to the processor and
    nothing else; preprocessor_config.json's is ignored (the real processor agrees:
    tests/oracle/test_spec_files.py)."""
    folder = tmp_path
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"size": {"longest_edge": 1536}, "max_image_size": {"longest_edge": 384},
         "image_seq_len": 64}))
    assert spec_from_folder(folder).image_seq_len == CLASS_DEFAULT_IMAGE_SEQ_LEN
    (folder / "processor_config.json").write_text(json.dumps({"image_seq_len": 81}))
    assert spec_from_folder(folder).image_seq_len == 81


BROKEN = {
    "not UTF-8": (b"{\"image_seq_len\": \"\xe9\"}", "not UTF-8"),
    "a list": (b"[1, 2]", "expected a JSON object, got list"),
    "null": (b"null", "expected a JSON object, got null"),
    "truncated": (b'{"image_seq_len": ', "not valid JSON"),
}


@pytest.mark.parametrize("name", ["preprocessor_config.json", "processor_config.json"])
@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_config_file_is_named(tmp_path: Path, name: str, case: str) -> None:
    shutil.copytree(checkpoint_folder(MODEL_IDS[0]), tmp_path / "ckpt")
    data, message = BROKEN[case]
    (tmp_path / "ckpt" / name).write_bytes(data)
    with pytest.raises(SpecError) as info:
        spec_from_folder(tmp_path / "ckpt")
    assert str(info.value).startswith(str(tmp_path / "ckpt" / name) + ": " + message)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("data", [b"\xff\xfe", b"[]", b"null", b'{"version": "1.0"}'])
def test_corrupt_tokenizer_json_is_named(tmp_path: Path, data: bytes) -> None:
    shutil.copytree(checkpoint_folder(MODEL_IDS[0]), tmp_path / "ckpt")
    (tmp_path / "ckpt" / "tokenizer.json").write_bytes(data)
    with pytest.raises(SpecError, match=r"tokenizer\.json: not a tokenizer file"):
        spec_from_folder(tmp_path / "ckpt")


def test_do_resize_false_is_refused(tmp_path: Path) -> None:
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"do_resize": False}))
    with pytest.raises(SpecError, match="do_resize is false"):
        spec_from_folder(tmp_path)


def test_settings_override_the_spec() -> None:
    spec = KNOWN_SPECS[MODEL_IDS[0]]
    assert spec.with_settings() is spec
    changed = spec.with_settings(longest_edge=768, do_image_splitting=False, tile_size=512)
    assert (changed.default_longest_edge, changed.do_image_splitting, changed.tile_size) == (
        768, False, 512)
