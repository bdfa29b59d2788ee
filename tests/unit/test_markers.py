"""The marker checks as pure functions (the recorder that feeds them: test_recording.py)."""

from __future__ import annotations

from pytest_tokenguard.plugin.markers import (
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
