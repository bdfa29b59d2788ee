"""The built-in specs equal what the real checkpoint files and processors say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_tokenguard.specs import KNOWN_SPECS, SpecError, spec_from_folder, spec_from_processor
from tests.helpers import MODEL_IDS, folder_processor, model_folder


@pytest.mark.parametrize("checkpoint", MODEL_IDS)
def test_known_spec_equals_folder_and_processor(checkpoint: str) -> None:
    """Needs the real files: they are what the built-in values are checked against."""
    from_folder = spec_from_folder(model_folder(checkpoint), name=checkpoint)
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


def test_missing_image_seq_len(tmp_path: Path) -> None:
    folder = tmp_path
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"size": {"longest_edge": 1536}, "max_image_size": {"longest_edge": 384}})
    )
    with pytest.raises(SpecError, match="image_seq_len not found"):
        spec_from_folder(folder)
