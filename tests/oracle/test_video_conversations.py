"""Conversations with videos, and ``tokenguard count`` on video files, equal the real processor.

The oracles are the processor's own ``input_ids``:

* conversations (video items by metadata, with text, images and frames items around
  them, default sampling and per-item ``num_frames``/``sample_fps``, clips): counted by
  :func:`count_conversation` (the processor's tokenizer, and the tokenizer-only counter
  of ``tokenguard split``) against :func:`processor_input_ids`, which renders with the
  processor's chat template and hands the videos to ``processor(videos=...)``;
* conversations with videos by path, and ``apply_chat_template(tokenize=True)`` with a
  video item, as training code calls it (torchcodec decodes the file);
* ``tokenguard count --json`` on generated clips of many durations and frame rates
  against ``processor(text="<video>", videos=[[path]], do_sample_frames=True, ...)``.

Every checkpoint, offline, through the models as users name them (the embedded default
where the files are not cached).
"""

from __future__ import annotations

import json
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pytest_tokenguard.conversation import (
    Conversation,
    FrameRange,
    FramesItem,
    ImageItem,
    Message,
    TextItem,
    VideoItem,
    to_dicts,
)
from pytest_tokenguard.sequence import (
    base_tokens,
    count_conversation,
    intro_frames,
    message_cost,
    processor_input_ids,
)
from pytest_tokenguard.specs import IMAGE_TOKEN
from pytest_tokenguard.testing.profiles import processor_examples
from tests.helpers import (
    CHECKPOINTS,
    CLIP_FORMATS,
    ClipCache,
    counter,
    light_counter,
    model_ref,
)


def assert_exact(checkpoint: str, conversation: Conversation, *,
                 generation: bool = False) -> int:
    """The calculator (both counters) equals the processor, <image> tokens included."""
    c = counter(checkpoint)
    ids = processor_input_ids(c.processor, conversation, add_generation_prompt=generation)
    count = count_conversation(conversation, c, add_generation_prompt=generation)
    assert count.total == len(ids)
    image_id = c.processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert count.image_tokens == ids.count(image_id)
    light = count_conversation(conversation, light_counter(checkpoint),
                               add_generation_prompt=generation)
    assert light == count
    if not generation:  # additive: the base, plus each message at the call's intro count
        intro = intro_frames(conversation, c)
        assert base_tokens(c) + sum(message_cost(m, c, intro_frames=intro).tokens
                                    for m in conversation) == len(ids)
    return count.total


# ------------------------------------------------------------------ generated conversations

RATES = st.sampled_from([1.0, 2.0, 7.5, 24000 / 1001, 25.0, 30000 / 1001, 30.0, 60.0]) | \
    st.floats(0.5, 60)
SAMPLING = st.tuples(st.none() | st.integers(1, 70),
                     st.none() | st.sampled_from([0.5, 1.0, 2.0]) | st.floats(0.1, 4))


@st.composite
def videos(draw: Any, sampling: tuple[int | None, float | None] | None) -> VideoItem:
    total = draw(st.integers(1, 400))
    fps = draw(RATES)
    stretch = draw(st.sampled_from([1.0, 1.0, 0.8]) | st.floats(0.05, 2.0))
    num_frames, sample_fps = sampling if sampling is not None else draw(SAMPLING)
    clip = None
    if total > 1 and draw(st.booleans()):
        start = draw(st.integers(0, total - 1))
        clip = FrameRange(start, draw(st.integers(start + 1, total)))
    return VideoItem(total, fps, total / fps * stretch, num_frames, sample_fps, clip)


TEXT = st.sampled_from(["", "Describe the video.", "\n", " 12", "What happens at 00:01?",
                        "two", "\n\nThen:", "ok "]) | st.text(
    st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from("\n\t"), max_size=20)


@st.composite
def conversations(draw: Any) -> Conversation:
    """1 to 3 messages of text, videos, images and frames items in any order; the
    videos of a conversation share one sampling most of the time, as one call does."""
    shared = draw(st.none() | SAMPLING)
    messages = []
    for index in range(draw(st.integers(1, 3))):
        items: list[Any] = []
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["text", "text", "video", "video", "image", "frames"]))
            if kind == "text":
                items.append(TextItem(draw(TEXT)))
            elif kind == "video":
                items.append(draw(videos(shared)))
            elif kind == "image":
                items.append(ImageItem(draw(st.integers(8, 900)), draw(st.integers(8, 900))))
            else:
                start = draw(st.integers(0, 50))
                items.append(FramesItem(FrameRange(start, start + draw(st.integers(1, 2))),
                                        64, 48))
        messages.append(Message("user" if index % 2 == 0 else "assistant", tuple(items)))
    return tuple(messages)


def minute(*, start: int | None = None, end: int | None = None, **changes: Any) -> VideoItem:
    """A one-minute 30 fps video (``start``/``end``: a clip of it)."""
    clip = FrameRange(start, end) if start is not None and end is not None else None
    return VideoItem(**{"total_frames": 1800, "fps": 30.0, "duration": 60.0, "clip": clip,
                        **changes})


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
@settings(max_examples=processor_examples())
@given(conversation=conversations(), generation=st.booleans())
@example(conversation=(Message("user", (minute(), TextItem("Describe the video."))),),
         generation=True)
@example(conversation=(Message("user", (TextItem("a"), minute(num_frames=4), TextItem("b"),
                                        minute(sample_fps=0.5, start=0, end=900))),),
         generation=False)  # two samplings in one call: the frames are sampled here
def test_conversations_with_videos_equal_the_processor(
    checkpoint: str, conversation: Conversation, generation: bool
) -> None:
    assert_exact(checkpoint, conversation, generation=generation)


@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
@pytest.mark.parametrize("conversation", [
    # a video first gets "User: " (with the space), which merges with the intro
    (Message("user", (minute(), TextItem("Describe the video."))),),
    # the smaller video's intro spells the larger one's frame count ("ten frames")
    (Message("user", (TextItem("Look: "), VideoItem(40, 10.0, 4.0), TextItem("and"),
                      VideoItem(300, 10.0, 30.0, num_frames=10))),
     Message("assistant", (TextItem("Fine."),)),
     Message("user", (VideoItem(90, 3.0, 30.0, num_frames=10),))),
    # a clip of a video, next to an image and frames sent as images
    (Message("user", (ImageItem(640, 480), minute(start=300, end=750),
                      FramesItem(FrameRange(0, 2), 384, 384))),),
    # two videos back to back: outro and intro meet ("\n\nYou are...")
    (Message("user", (minute(num_frames=3), minute(num_frames=3, start=1, end=91))),),
], ids=["video-first", "shared-intro", "clip-image-frames", "back-to-back"])
def test_known_video_conversations(checkpoint: str, conversation: Conversation) -> None:
    assert_exact(checkpoint, conversation)


def test_one_minute_clip_in_a_chat_turn() -> None:
    """The README's numbers: a one-minute clip at the defaults in a chat turn."""
    totals = {ckpt: assert_exact(ckpt, (Message("user", (minute(), TextItem(
        "Describe the video."))),)) for ckpt in CHECKPOINTS}
    assert totals["2.2B"] > 4096
    assert totals["256M"] > 4096


# ------------------------------------------------------------------ videos by path


@pytest.mark.usefixtures("decodes_paths")
@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
def test_videos_by_path_and_their_clips(checkpoint: str, clips: ClipCache, tmp_path: Path
                                        ) -> None:
    from pytest_tokenguard.conversation import parse_conversation

    path = clips(70, 2)
    conversation = parse_conversation([
        {"role": "user", "content": [{"type": "video", "path": str(path)},
                                     {"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A clip."}]},
        {"role": "user", "content": [{"type": "video", "path": str(path), "start": 3,
                                      "end": 40}]},
    ])
    assert_exact(checkpoint, conversation)
    # all by path, no clip: the processor decodes the files itself
    assert_exact(checkpoint, parse_conversation([
        {"role": "user", "content": [{"type": "video", "path": str(path), "num_frames": 7},
                                     {"type": "video", "path": str(clips(23, 24)),
                                      "num_frames": 7}]}]))


@pytest.mark.slow
@pytest.mark.usefixtures("decodes_paths")
@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
@settings(max_examples=processor_examples())
@given(fmt=st.sampled_from(CLIP_FORMATS), rate=st.sampled_from(
    [1, 2, 5, Fraction(15, 2), 24, Fraction(30000, 1001)]), frames=st.integers(1, 90),
    num_frames=st.none() | st.integers(1, 12), fps=st.none() | st.sampled_from([0.5, 2, 4]),
    text=st.sampled_from(["", "Describe the video.", " 12 frames"]))
def test_apply_chat_template_with_a_video_item_equals_the_count(
    checkpoint: str, clips: ClipCache, fmt: tuple[str, str], rate: Any, frames: int,
    num_frames: int | None, fps: float | None, text: str,
) -> None:
    """What training code runs: apply_chat_template(tokenize=True) with a video item and
    per-call num_frames/fps, against the item with the same sampling."""
    path = clips(frames, rate, *fmt)
    item: dict[str, Any] = {"type": "video", "path": str(path)}
    kwargs: dict[str, Any] = {}
    if num_frames is not None:
        item["num_frames"] = kwargs["num_frames"] = num_frames
    if fps is not None:
        item["sample_fps"] = kwargs["fps"] = fps
    content: list[dict[str, Any]] = [item] + ([{"type": "text", "text": text}] if text else [])
    messages = [{"role": "user", "content": content}]
    c = counter(checkpoint)
    hf = [{"role": "user", "content": [
        {"type": "video", "path": str(path)}, *content[1:]]}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = c.processor.apply_chat_template(hf, tokenize=True, return_dict=True,
                                              return_tensors="pt", **kwargs)
    assert count_conversation(messages, c).total == out["input_ids"].shape[1]
    assert count_conversation(messages, light_counter(checkpoint)).total == \
        out["input_ids"].shape[1]


# ------------------------------------------------------------------ tokenguard count


def count_json(checkpoint: str, paths: list[Path], *flags: str) -> list[dict[str, Any]]:
    """``tokenguard count --json`` rows (standard output captured here: hypothesis
    re-runs the test, so no function-scoped capture fixture)."""
    import contextlib
    import io

    from pytest_tokenguard.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["count", "--json", "--model", model_ref(checkpoint), *flags,
                     *map(str, paths)])
    assert code == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def processor_video_tokens(checkpoint: str, path: Path, **kwargs: Any) -> tuple[int, int]:
    """(tokens, <image> tokens) the processor writes for one ``<video>`` of ``path``."""
    processor = counter(checkpoint).processor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = processor(text=["<video>"], videos=[[str(path)]], return_tensors="pt",
                        do_sample_frames=True, **kwargs)
    ids = out["input_ids"][0].tolist()
    return len(ids), ids.count(processor.image_token_id)


@pytest.mark.usefixtures("decodes_paths")
@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
@settings(max_examples=processor_examples(4), deadline=None)
@given(fmt=st.sampled_from(CLIP_FORMATS), rate=st.sampled_from(
    [1, 3, 12, 25, Fraction(30000, 1001)]), frames=st.integers(1, 120),
    num_frames=st.none() | st.integers(1, 10), fps=st.none() | st.sampled_from([0.5, 3]))
@example(fmt=(".mp4", "mpeg4"), rate=1, frames=70, num_frames=None, fps=None)  # centre skip
def test_count_equals_the_processor_on_clips(
    checkpoint: str, clips: ClipCache,
    fmt: tuple[str, str], rate: Any, frames: int, num_frames: int | None, fps: float | None,
) -> None:
    path = clips(frames, rate, *fmt)
    flags: list[str] = []
    kwargs: dict[str, Any] = {}
    if num_frames is not None:
        flags += ["--num-frames", str(num_frames)]
        kwargs["num_frames"] = num_frames
    if fps is not None:
        flags += ["--fps", str(fps)]
        kwargs["fps"] = fps
    (row,) = count_json(checkpoint, [path], *flags)
    assert list(row) == ["path", "kind", "duration", "fps", "total_frames", "frames",
                         "image_tokens", "block_tokens", "tokens"]
    assert (row["path"], row["kind"], row["total_frames"]) == (str(path), "video", frames)
    tokens, image_tokens = processor_video_tokens(checkpoint, path, **kwargs)
    assert (row["tokens"], row["image_tokens"]) == (tokens, image_tokens)
    assert row["block_tokens"] == row["frames"] * (counter(checkpoint).spec.image_seq_len + 3)


def test_split_output_of_a_video_conversation_counts_again(tmp_path: Path, clips: ClipCache
                                                           ) -> None:
    """to_dicts writes path and metadata: the chunk re-parses to the same count."""
    from pytest_tokenguard.conversation import parse_conversation

    path = clips(30, 5)
    conversation = parse_conversation([{"role": "user", "content": [
        {"type": "video", "path": str(path), "num_frames": 4}]}])
    again = parse_conversation(to_dicts(conversation))
    assert again == conversation
    assert count_conversation(again, counter()).total == \
        count_conversation(conversation, counter()).total
