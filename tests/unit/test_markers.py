"""The marker checks as pure functions (the recorder that feeds them: test_recording.py)."""

from __future__ import annotations

import re

import pytest

from pytest_tokenguard.plugin.markers import (
    MARKERS,
    Where,
    check_image_tokens,
    check_max_sequence,
    suggest_longest_edge,
)
from pytest_tokenguard.processor.recording import ImageRecord, SequenceRecord


def record(width: int, height: int, longest_edge: int, rows: int, cols: int) -> ImageRecord:
    patches = rows * cols + 1 if rows else 1
    return ImageRecord(width, height, longest_edge, 384, rows, cols, patches * 81, 0, "P")


def test_image_tokens_message_has_size_grid_edge_counts_and_fix() -> None:
    result = check_image_tokens([record(384, 384, 1536, 4, 4)], 81)
    assert not result.passed
    assert result.message == (
        "Image 384×384 cost 1377 <image> tokens (4×4 grid, 17 patches at longest_edge=1536) "
        'but the test declared 81; size={"longest_edge": 384} gives 1 patch (81 tokens)'
    )
    assert "1 of 1 images" in result.detail


def test_suggestion_keeps_the_most_detail_that_fits() -> None:
    # 405 tokens = 5 patches: 512 and 768 both give it for a square frame; 768 keeps more
    assert suggest_longest_edge(record(384, 384, 1536, 4, 4), 405).startswith(
        'size={"longest_edge": 768} gives 5 patches')


def test_suggestion_when_no_edge_fits() -> None:
    # a split image has rows×cols + 1 >= 3 patches: 2 patches (162 tokens) never happen
    text = suggest_longest_edge(record(4000, 300, 1536, 1, 4), 81 * 2)
    assert text.startswith("no longest_edge gives exactly 162 tokens for a 4000×300 image")
    assert text.endswith('the fewest is size={"longest_edge": 384} (81 tokens, 1 patch)')


def test_image_tokens_pass_and_empty() -> None:
    assert check_image_tokens([record(384, 384, 384, 0, 0)], 81).passed
    empty = check_image_tokens([], 81)
    assert not empty.passed
    assert "no SmolVLM processor call processed an image" in empty.message


def test_max_sequence_names_the_longest_offender() -> None:
    sequences = [SequenceRecord("t call 1 sample 0", 4000, "a"),
                 SequenceRecord("t call 1 sample 1", 5666, "b"),
                 SequenceRecord("t call 2 sample 0", 4097, "c")]
    result = check_max_sequence(sequences, 4096)
    assert result.message == ("Sequence 't call 1 sample 1' is 5666 tokens, over the limit of "
                              "4096 by 1570")
    assert "2 of 3 sequences" in result.detail
    assert check_max_sequence(sequences, 5666).passed


# ------------------------------------------------------------------ the registry

WHERE = Where("HuggingFaceTB/SmolVLM2-2.2B-Instruct", None)


def test_max_sequence_fails_when_nothing_was_recorded_like_image_tokens() -> None:
    for result in (check_max_sequence([], 4096), check_image_tokens([], 81)):
        assert not result.passed
        assert "a marker that checks nothing is a bug" in result.detail


def test_help_comes_from_each_markers_signature() -> None:
    assert MARKERS["image_tokens"].help.startswith("image_tokens(n): under --tokenguard, ")
    predicted = MARKERS["limit_predicted_gpu_memory"].help
    # every keyword the memory model takes is listed, whatever it is
    from pytest_tokenguard.gpu.model import shape_fields

    keywords = [field.name for field in shape_fields()] + ["margin"]
    assert len(keywords) > 10
    for keyword in keywords:
        assert f"{keyword}=" in predicted
    assert "devices=None" in MARKERS["limit_gpu_memory"].help
    assert MARKERS["tokenguard_no_baseline"].help.startswith("tokenguard_no_baseline(reason='')")


@pytest.mark.parametrize(("name", "args", "kwargs", "expected"), [
    ("image_tokens", (81, 82), {}, "too many positional arguments; write "
     "@pytest.mark.image_tokens(n)"),
    ("image_tokens", (), {}, "missing a required argument: 'n'"),
    ("image_tokens", ("81",), {}, "n must be a positive number of tokens, got '81'"),
    ("max_sequence_tokens", (0,), {}, "n must be a positive number of tokens, got 0"),
    ("limit_gpu_memory", ("24 parsecs",), {}, "size: unknown unit"),
    ("limit_gpu_memory", ("24 GiB",), {"measure": "peak"}, "measure must be one of"),
    ("limit_gpu_memory", ("24 GiB",), {"devices": "some"}, "devices='some' is not accepted"),
    ("limit_gpu_memory", ("24 GiB",), {"devices": "all", "measure": "allocated"},
     "devices= measures every GPU through NVML"),
    ("limit_predicted_gpu_memory", ("80 GiB",), {"images": -1},
     "images=-1 is not accepted; images takes an integer, 0 or more"),
    ("limit_predicted_gpu_memory", ("80 GiB",), {"longest_edge": "abc"}, "longest_edge"),
    ("limit_predicted_gpu_memory", ("80 GiB",), {"margin": 50}, "margin"),
    ("limit_predicted_gpu_memory", ("80 GiB",), {"batch": 0}, "batch=0 is not accepted"),
    ("limit_predicted_gpu_memory", ("80 GiB",), {"dtype": "int3"}, "dtype='int3' is not accepted"),
    ("limit_predicted_gpu_memory", ("80 GiB",), {"colour": "red"},
     "got an unexpected keyword argument 'colour'"),
])
def test_bad_arguments_are_named_at_collection(name: str, args: tuple[object, ...],
                                               kwargs: dict[str, object], expected: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)) as info:
        MARKERS[name].parse(args, kwargs, WHERE)
    assert str(info.value).startswith(f"@pytest.mark.{name}")


def test_predicted_limit_is_decided_from_the_test_resolution() -> None:
    marker = MARKERS["limit_predicted_gpu_memory"]
    at_384 = marker.parse(("80 GiB",), {}, Where(WHERE.model, 384))
    at_1536 = marker.parse(("80 GiB",), {}, Where(WHERE.model, 1536))
    assert at_384.peak_bytes < at_1536.peak_bytes
    explicit = marker.parse(("80 GiB",), {"longest_edge": 384}, Where(WHERE.model, 1536))
    assert explicit.peak_bytes == at_384.peak_bytes


def test_unknown_configured_model_is_named() -> None:
    with pytest.raises(ValueError, match="unknown model 'nope/nope'"):
        MARKERS["limit_predicted_gpu_memory"].parse(("80 GiB",), {}, Where("nope/nope", None))
