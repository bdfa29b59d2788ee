"""A folder written by ``processor.save_pretrained()`` with the installed transformers is a
checkpoint folder for every entry point: ``count``, ``split``, ``memory`` and the
plugin's fixtures count it as the processor loaded from it counts.

From transformers 5.x on, ``save_pretrained`` writes no ``preprocessor_config.json``: the
image and video processors' settings are sections of ``processor_config.json``
(``image_processor``, ``video_processor``), which ``AutoProcessor`` reads. The folder
here is written by the installed version itself, so the test follows whatever layout it
writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_tokenguard.cli import main
from pytest_tokenguard.conversation import ImageItem, Message, TextItem, VideoItem
from pytest_tokenguard.plugin.fixtures import ProcessorCache
from pytest_tokenguard.processor.loading import load_processor
from pytest_tokenguard.sequence import count_conversation, processor_count
from pytest_tokenguard.specs import has_processor_config, spec_from_folder, spec_from_processor
from pytest_tokenguard.video import (
    VideoCounter,
    video_info,
    video_sampling_from_folder,
    video_sampling_from_processor,
)
from tests.helpers import FIXTURES, checkpoint_files, checkpoint_folder, model_ref

FRAME = FIXTURES / "frame_1920x1080.png"
CONVERSATION = (Message("user", (ImageItem(1000, 700), TextItem("What is the tool?"))),
                Message("assistant", (TextItem("A grasper."),)))


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``AutoProcessor.from_pretrained(checkpoint).save_pretrained(folder)``, with the
    model's ``config.json`` beside it as ``model.save_pretrained`` writes it."""
    from transformers import AutoProcessor

    folder = tmp_path_factory.mktemp("finetune") / "my-smolvlm2"
    AutoProcessor.from_pretrained(str(checkpoint_folder("2.2B"))).save_pretrained(str(folder))
    config = checkpoint_files(model_ref("2.2B"))["config.json"]
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def reloaded(folder: Path, edge: int | None = None) -> Any:
    from transformers import AutoProcessor

    kwargs = {} if edge is None else {"size": {"longest_edge": edge}}
    return AutoProcessor.from_pretrained(str(folder), **kwargs)


def test_the_layout_the_installed_transformers_writes(saved: Path) -> None:
    assert has_processor_config(saved)
    if not (saved / "preprocessor_config.json").is_file():
        written = json.loads((saved / "processor_config.json").read_text(encoding="utf-8"))
        assert isinstance(written["image_processor"], dict)


def test_spec_and_video_sampling_are_read_from_the_saved_folder(saved: Path) -> None:
    processor = reloaded(saved)
    spec, real = spec_from_folder(saved), spec_from_processor(processor)
    assert (spec.tile_size, spec.image_seq_len, spec.default_longest_edge,
            spec.do_image_splitting) == (real.tile_size, real.image_seq_len,
                                         real.default_longest_edge, real.do_image_splitting)
    folder, loaded = video_sampling_from_folder(saved), video_sampling_from_processor(processor)
    assert (folder.fps, folder.max_frames) == (loaded.fps, loaded.max_frames)  # what counts
    video = VideoCounter.from_folder(saved)(video_info(300, 10.0, 30.0))
    ids = processor(text=["<video>"], videos=[[_frames(300)]], do_sample_frames=True,
                    return_tensors="pt",
                    video_metadata=[{"total_num_frames": 300, "fps": 10.0, "duration": 30.0}])
    assert video.tokens == len(ids["input_ids"][0])


def _frames(count: int) -> Any:
    import numpy as np

    return np.zeros((count, 8, 10, 3), np.uint8)


def test_the_loader_and_the_plugin_s_counters_take_the_saved_folder(saved: Path) -> None:
    loaded = load_processor(str(saved), 384)
    assert loaded.source.kind == "folder"
    expected = processor_count(reloaded(saved, 384), CONVERSATION)
    counter = ProcessorCache(str(saved), 5.0).counter(384)  # the tokenguard_counter fixture's
    assert count_conversation(CONVERSATION, counter).total == expected


def test_count_split_and_memory_take_the_saved_folder(
        saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["count", "--model", str(saved), "--json", str(FRAME)]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    ids = reloaded(saved)(text=["<image>"], images=[[str(FRAME)]])["input_ids"][0]
    assert row["block_tokens"] == len(ids)

    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"messages": [
        {"role": "user", "content": [{"type": "image", "width": 1000, "height": 700},
                                     {"type": "text", "text": "What is the tool?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A grasper."}]}]}) + "\n",
        encoding="utf-8")
    out = tmp_path / "chunks.jsonl"
    assert main(["split", "--model", str(saved), "--max-tokens", "4096", str(source),
                 "-o", str(out)]) == 0
    chunk = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert chunk["tokens"] == processor_count(reloaded(saved), CONVERSATION)

    capsys.readouterr()
    assert main(["memory", "--model", str(saved)]) == 0
    assert "GiB" in capsys.readouterr().out


def test_a_folder_without_any_processor_config_is_refused_by_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tokenizer.json").write_text("{}", encoding="utf-8")
    assert main(["count", "--model", str(tmp_path), str(FRAME)]) == 2
    err = capsys.readouterr().err
    assert "no preprocessor_config.json, nor a processor_config.json with an image_processor " \
        "section" in err
    assert str(tmp_path) in err


def test_a_video_item_conversation_counts_with_the_saved_folder(saved: Path) -> None:
    import warnings

    conversation = (Message("user", (VideoItem(120, 4.0, 30.0), TextItem("Steps?"))),)
    counter = ProcessorCache(str(saved), 5.0).counter(384)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = processor_count(reloaded(saved, 384), conversation)
    assert count_conversation(conversation, counter).total == expected
