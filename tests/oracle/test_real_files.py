"""tokenguard's built-in copies of the published files, against the real files.

Everything tokenguard knows about the three checkpoints without their files is checked
here against the real ones (``../shared/models`` beside the checkout, or
``TOKENGUARD_MODELS_DIR``): the embedded default's shipped tokenizer, its settings, the
processor objects it builds and the ``input_ids`` they give on generated conversations;
``KNOWN_SPECS``, ``KNOWN_VIDEO_SAMPLING`` and ``KNOWN_ARCHITECTURES`` (with the parameter
count of the model transformers builds from the real ``config.json``); and the checkpoint
folder the rest of the suite loads (``tests.helpers.checkpoint_folder``), written from
those copies. Where the real files are absent (a user's machine, a fresh clone) this
whole module skips with one reason: it is the one comparison the suite cannot make
there, and every other test runs on the built-in copies it proves.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_tokenguard.conversation import Conversation
from pytest_tokenguard.gpu.model import KNOWN_ARCHITECTURES, architecture_from_config
from pytest_tokenguard.processor.embedded import (
    CHAT_TEMPLATE,
    TOKENIZER_SETTINGS,
    TOKENIZER_SHA256,
    embedded_tokenizer,
    preprocessor_settings,
    tokenizer_json,
)
from pytest_tokenguard.sequence import processor_input_ids
from pytest_tokenguard.specs import KNOWN_SPECS, spec_from_folder, spec_from_processor
from pytest_tokenguard.testing import strategies as tgst
from pytest_tokenguard.testing.profiles import processor_examples
from pytest_tokenguard.video import KNOWN_VIDEO_SAMPLING, video_sampling_from_folder
from tests.helpers import (
    CHECKPOINT_FILES,
    MODEL_IDS,
    REAL_FILES_MISSING,
    assert_parameter_counts,
    assert_same_processor,
    assert_same_tokenizer,
    checkpoint_files,
    embedded_processor,
    real_files_present,
    real_folder,
    real_folder_processor,
    real_image_tokens,
)

if not real_files_present():
    pytest.skip(REAL_FILES_MISSING, allow_module_level=True)

MODEL = MODEL_IDS[0]
#: the checkpoint's default resolution (None) and a few that users set
EDGES = (None, 384, 1024)
#: small conversations: both processors decode every image of every example
CONVERSATIONS = tgst.conversations(
    max_turns=4, max_images_per_turn=2, max_frames_per_run=3, max_text=80,
    sizes=tgst.image_sizes(max_side=2000),
)
#: the keys of the real config.json that the written one leaves to transformers'
#: defaults: nothing tokenguard counts or predicts reads them
UNWRITTEN_CONFIG_KEYS = ("max_position_embeddings", "rope_theta")


def read_json(checkpoint: str, name: str) -> Any:
    return json.loads((real_folder(checkpoint) / name).read_text(encoding="utf-8"))


# --- the shipped file and the published values, against the checkpoints' files ----------


@pytest.mark.parametrize("checkpoint", MODEL_IDS)
def test_shipped_tokenizer_is_the_checkpoints_file(checkpoint: str) -> None:
    raw = (real_folder(checkpoint) / "tokenizer.json").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == TOKENIZER_SHA256
    assert tokenizer_json() == raw.decode("utf-8")


@pytest.mark.parametrize("checkpoint", MODEL_IDS)
def test_settings_are_the_published_files(checkpoint: str) -> None:
    pre = read_json(checkpoint, "preprocessor_config.json")
    for key in ("image_processor_type", "processor_class"):
        pre.pop(key)
    assert preprocessor_settings(checkpoint) == pre
    assert read_json(checkpoint, "processor_config.json")["image_seq_len"] == (
        KNOWN_SPECS[checkpoint].image_seq_len)
    assert read_json(checkpoint, "chat_template.json") == {"chat_template": CHAT_TEMPLATE}
    config = read_json(checkpoint, "tokenizer_config.json")
    published = {key: config[key] for key in TOKENIZER_SETTINGS if key in config}
    published["extra_special_tokens"] = config["additional_special_tokens"]
    assert published == TOKENIZER_SETTINGS
    special = read_json(checkpoint, "special_tokens_map.json")
    assert special["additional_special_tokens"] == TOKENIZER_SETTINGS["extra_special_tokens"]
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        assert special[key] == TOKENIZER_SETTINGS[key], key


@pytest.mark.parametrize("checkpoint", MODEL_IDS)
def test_written_folder_is_the_real_files(checkpoint: str) -> None:
    """The folder the rest of the suite loads is the real one: every file equal (parsed),
    the config.json but for the keys it leaves to transformers' defaults."""
    written = checkpoint_files(checkpoint)
    assert sorted(written) == sorted(CHECKPOINT_FILES)
    for name in CHECKPOINT_FILES:
        text = (real_folder(checkpoint, needs=name) / name).read_text(encoding="utf-8")
        if name == "tokenizer.json":
            assert written[name] == text
            continue
        real = json.loads(text)
        if name == "config.json":
            for key in UNWRITTEN_CONFIG_KEYS:
                real["text_config"].pop(key)
        assert written[name] == real, name


# --- the built-in specs and architectures ------------------------------------------------


@pytest.mark.parametrize("checkpoint", MODEL_IDS)
def test_known_spec_equals_folder_and_processor(checkpoint: str) -> None:
    from_folder = spec_from_folder(real_folder(checkpoint), name=checkpoint)
    from_processor = spec_from_processor(real_folder_processor(checkpoint), name=checkpoint)
    assert KNOWN_SPECS[checkpoint] == from_folder == from_processor


@pytest.mark.parametrize("checkpoint", MODEL_IDS)
def test_known_video_sampling_equals_folder(checkpoint: str) -> None:
    assert KNOWN_VIDEO_SAMPLING[checkpoint] == video_sampling_from_folder(
        real_folder(checkpoint))


@pytest.mark.parametrize("name", sorted(KNOWN_ARCHITECTURES))
def test_known_architectures_match_config_json(name: str) -> None:
    config = read_json(name, "config.json")
    assert architecture_from_config(config, name=name) == KNOWN_ARCHITECTURES[name]


@pytest.mark.parametrize("name", sorted(KNOWN_ARCHITECTURES))
def test_parameter_count_matches_transformers(name: str) -> None:
    """The closed-form count equals the real model's, built on the meta device (no memory)."""
    assert_parameter_counts(name, real_folder(name, needs="config.json"))


def test_memory_of_the_real_folder_is_the_hub_ids(capsys: pytest.CaptureFixture[str]) -> None:
    """``tokenguard memory --model FOLDER`` on the real files answers as the hub id does
    (the built-in values)."""
    from pytest_tokenguard.cli import main

    answers = []
    for model in (str(real_folder("500M", needs="config.json")), MODEL_IDS[1]):
        assert main(["memory", "--model", model, "--json"]) == 0
        answer = json.loads(capsys.readouterr().out)
        answer.pop("model")
        answers.append(answer)
    assert answers[0] == answers[1]


# --- the built objects, against the processor loaded from the files -----------------------


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("checkpoint", MODEL_IDS)
def test_processor_objects_equal_the_real_ones(checkpoint: str, edge: int | None) -> None:
    assert_same_processor(embedded_processor(checkpoint, edge),
                          real_folder_processor(checkpoint, edge))


@pytest.mark.parametrize("checkpoint", MODEL_IDS)
def test_special_tokens_equal_the_real_ones(checkpoint: str) -> None:
    real = real_folder_processor(checkpoint).tokenizer
    mine = embedded_processor(checkpoint).tokenizer
    assert_same_tokenizer(mine, real)
    assert len(mine) == len(real) == 49280


# --- input_ids: generated text, images and conversations -------------------------------


@given(text=st.text(st.characters(codec="utf-8"), max_size=300)
       | st.text(alphabet=" \n\t\r\u00a0ab1é<>|_imagerow", max_size=80))
def test_text_ids_equal_the_real_tokenizer(text: str) -> None:
    real = real_folder_processor(MODEL).tokenizer
    for special in (False, True):
        assert embedded_tokenizer()(text, add_special_tokens=special)["input_ids"] == real(
            text, add_special_tokens=special)["input_ids"]


@settings(max_examples=processor_examples(20))
@given(width=st.integers(1, 3000), height=st.integers(1, 3000),
       longest_edge=st.sampled_from([384, 512, 768, 1024, 1536, 2048, 4096]))
def test_image_block_equals_the_real_one(width: int, height: int, longest_edge: int) -> None:
    """Past 6×6 tiles (longest_edge over 2304) the <row_r_col_c> markers are plain text."""
    kwargs = {"size": {"longest_edge": longest_edge}, "resample": 0}
    assert real_image_tokens(embedded_processor(MODEL), width, height, **kwargs) == (
        real_image_tokens(real_folder_processor(MODEL), width, height, **kwargs))


@pytest.mark.slow
@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("checkpoint", MODEL_IDS)
@settings(max_examples=processor_examples())
@given(conversation=CONVERSATIONS, generation=st.booleans())
def test_input_ids_equal_the_real_files(checkpoint: str, edge: int | None,
                                        conversation: Conversation, generation: bool) -> None:
    real = processor_input_ids(real_folder_processor(checkpoint, edge), conversation,
                               add_generation_prompt=generation)
    mine = processor_input_ids(embedded_processor(checkpoint, edge), conversation,
                               add_generation_prompt=generation)
    assert mine == real
