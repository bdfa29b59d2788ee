"""The marker checks as pure functions (the recorder that feeds them: test_recording.py)."""

from __future__ import annotations

import re

import pytest

from pytest_tokenguard.plugin.markers import (
    MARKERS,
    Where,
    check_image_tokens,
    check_max_sequence,
    check_video_tokens,
    suggest_longest_edge,
)
from pytest_tokenguard.processor.recording import ImageRecord, SequenceRecord, VideoRecord


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
    assert "no SmolVLM or Qwen-VL processor call processed an image" in empty.message


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


# ------------------------------------------------------------------ video_tokens


def video_record(total: int = 1800, fps: float = 30.0, duration: float = 60.0, *,
                 sampled: bool = True, name: str = "/data/clips/minute.mp4") -> VideoRecord:
    """A video as the recorder writes it, its costs counted with SmolVLM2's tokenizer."""
    from tokenizers import Tokenizer

    from pytest_tokenguard.processor.embedded import tokenizer_json
    from pytest_tokenguard.specs import KNOWN_SPECS
    from pytest_tokenguard.video import (
        VideoCounter,
        plan_frames,
        tokenizer_text_counter,
        video_info,
    )

    counter = VideoCounter(KNOWN_SPECS["HuggingFaceTB/SmolVLM2-2.2B-Instruct"],
                           tokenizer_text_counter(Tokenizer.from_str(tokenizer_json())))
    info = video_info(total, fps, duration)
    # unsampled, the processor keeps every frame its loader decoded, with their indices
    cost = counter(info) if sampled else counter(plan_frames(indices=range(total), fps=fps,
                                                             duration=duration))
    return VideoRecord(name, cost.frames, cost.image_tokens, cost.block_tokens, cost.tokens,
                       total, fps, duration, sampled, None, None, 64, "SmolVLMProcessor",
                       384, counter.tokens_by_num_frames(info), counter.tokens_by_fps(info))


def test_video_tokens_names_the_video_its_frames_and_the_sampling_that_fits() -> None:
    video = video_record()
    result = check_video_tokens([video], 4096)
    assert not result.passed
    cap = next(n for n in range(64, 0, -1) if video.by_num_frames[n - 1] <= 4096)
    assert video.by_num_frames[cap] > 4096  # the next one does not fit
    assert result.message.startswith(
        f"Video 'minute.mp4' (60 of 1800 frames sampled, 60 s at 30 fps) cost {video.tokens} "
        f"tokens, over the declared 4096 by {video.tokens - 4096}; num_frames={cap} fits "
        f"({video.by_num_frames[cap - 1]} tokens; processor(..., num_frames={cap}, "
        "do_sample_frames=True)")
    rate, tokens = max((r, t) for r, t in video.by_fps if t <= 4096)
    assert f"; or fps={rate:g} ({tokens} tokens)" in result.message
    assert "1 of 1 videos are over the declared cost" in result.detail
    assert check_video_tokens([video], video.tokens).passed


def test_video_tokens_on_an_unsampled_call_says_sampling_is_off() -> None:
    video = video_record(90, 30.0, 3.0, sampled=False)
    assert video.frames == 90
    result = check_video_tokens([video], 2000)
    assert "this call kept every frame (do_sample_frames is off by default in a direct " \
        "processor call): pass do_sample_frames=True" in result.message


def test_video_tokens_when_no_sampling_fits_or_nothing_was_seen() -> None:
    video = video_record()
    result = check_video_tokens([video], 50)
    assert f"even one sampled frame costs {video.by_num_frames[0]} tokens" in result.message
    empty = check_video_tokens([], 4096)
    assert not empty.passed
    assert "no SmolVLM or Qwen-VL processor call processed a video" in empty.message


def test_video_tokens_per_frame() -> None:
    video = video_record(300, 30.0, 10.0)
    assert check_video_tokens([video], 10_000, per_frame=84).passed
    result = check_video_tokens([video], 10_000, per_frame=67)
    assert not result.passed
    assert "costs 84 tokens a frame (its image block), over the declared per_frame=67" in \
        result.message


def test_video_tokens_marker_signature_and_arguments() -> None:
    definition = MARKERS["video_tokens"]
    assert definition.help.startswith("video_tokens(max, *, per_frame=None): under --tokenguard")
    parsed = definition.parse((4096,), {"per_frame": 84}, WHERE)
    assert (parsed.limit, parsed.per_frame) == (4096, 84)
    with pytest.raises(ValueError, match=r"max must be a positive number of tokens, got 0"):
        definition.parse((0,), {}, WHERE)
    with pytest.raises(ValueError, match=r"per_frame must be a positive number of tokens"):
        definition.parse((4096,), {"per_frame": "84"}, WHERE)
    with pytest.raises(ValueError, match=r"too many positional arguments"):
        definition.parse((4096, 84), {}, WHERE)


def test_a_qwen_image_is_described_and_fixed_by_its_family() -> None:
    image = ImageRecord(1024, 768, None, 0, 54, 74, 999, 1001, "Qwen2_5_VLProcessor",
                        do_image_splitting=False, family="qwen-vl", min_pixels=3136,
                        max_pixels=1003520, patch_size=14, merge_size=2)
    result = check_image_tokens([image], 234)
    assert result.message == (
        "Image 1024×768 cost 999 <|image_pad|> tokens (54×74 patch grid at min_pixels=3136, "
        "max_pixels=1003520) but the test declared 234; max_pixels=204885 gives 26×36 "
        "patches (234 tokens): pass max_pixels=204885 to the processor call (or size="
        '{"shortest_edge": 3136, "longest_edge": 204885})')
    assert "1 of 1 images cost other than 234 <|image_pad|> tokens:" in result.detail
    assert "1024×768             -  54×74     3996      999    1001" in result.detail


def test_a_qwen_video_over_its_limit_names_what_lowers_it() -> None:
    video = VideoRecord(name="", frames=8, image_tokens=400, block_tokens=402, tokens=402,
                        total_frames=8, fps=4.0, duration=2.0, sampled=False, num_frames=None,
                        sample_fps=None, max_frames=768, processor="Qwen2_5_VLProcessor",
                        family="qwen-vl")
    result = check_video_tokens([video], 300)
    assert not result.passed
    assert "cost 402 tokens, over the declared 300 by 102; sample fewer frames" in result.message


def test_a_qwen_video_names_the_largest_num_frames_that_fits() -> None:
    from pytest_tokenguard.processor.recording.qwen import REFUSED

    video = VideoRecord(name="clip.mp4", frames=8, image_tokens=400, block_tokens=402,
                        tokens=402, total_frames=8, fps=4.0, duration=2.0, sampled=False,
                        num_frames=None, sample_fps=None, max_frames=768,
                        processor="Qwen3VLProcessor", family="qwen-vl",
                        by_num_frames=(REFUSED, 110, 110, 210, 210, 310, 310, 402))
    result = check_video_tokens([video], 300)
    assert result.message.endswith(
        "num_frames=5 fits (210 tokens; processor(..., videos=..., do_sample_frames=True, "
        "num_frames=5, fps=None))")
    assert check_video_tokens([video], 100).message.endswith(
        "even the fewest frames cost 110 tokens: lower the video processor's max_pixels "
        '(size "longest_edge"), or raise the limit')
