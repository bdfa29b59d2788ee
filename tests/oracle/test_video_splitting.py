"""The splitter on conversations with videos: every chunk is exactly what the real processor
counts (videos handed to it as videos, clips as videos of their own), nothing is lost or
reordered, a video too large for a chunk is named with the ``num_frames`` that fits, and
``check_splitter`` fuzzes a splitter with videos."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pytest_tokenguard.conversation import (
    Conversation,
    ConversationError,
    FrameRange,
    Message,
    TextItem,
    VideoItem,
    parse_conversation,
)
from pytest_tokenguard.sequence import base_tokens, count_conversation, processor_count
from pytest_tokenguard.splitting import Chunk, SplitError, split, validate_chunks
from pytest_tokenguard.testing import strategies as tgst
from pytest_tokenguard.testing.profiles import processor_examples
from pytest_tokenguard.testing.splitcheck import SplitterCheckError, check_splitter
from pytest_tokenguard.tokens import TokenCounter
from pytest_tokenguard.video import intros_spell_the_largest
from tests.helpers import CHECKPOINTS, counter, light_counter

SYSTEM = Message("system", (TextItem("You describe surgical videos."),))

#: dialogues with videos by metadata next to images and frames sent as images
DIALOGUES = tgst.conversations(
    min_turns=1, max_turns=5, max_images_per_turn=2, max_frames_per_run=3, max_text=80,
    sizes=tgst.image_sizes(max_side=900), videos=tgst.video_items(max_frames=900),
)
LIMITS = st.sampled_from([4096, 2048]) | st.integers(400, 6000)


def minute(**changes: Any) -> VideoItem:
    return replace(VideoItem(1800, 30.0, 60.0), **changes)


def check_error(error: SplitError, c: TokenCounter, conversation: Conversation,
                lead: Conversation, max_tokens: int) -> None:
    """A SplitError is true: the message it names does not fit a chunk alone, and the
    num_frames it offers fits, the next one up not."""
    if error.index is None:
        assert count_conversation(lead, c).total >= max_tokens
        return
    message = conversation[error.index]
    assert count_conversation((*lead, message), c).total > max_tokens
    text = str(error)
    if "num_frames=" in text and "fits" in text:
        cap = int(text.split("num_frames=")[1].split(" ")[0])

        def capped(n: int) -> Message:
            return Message(message.role, tuple(
                replace(i, num_frames=n) if type(i) is VideoItem else i for i in message.content))

        assert count_conversation((*lead, capped(cap)), c).total <= max_tokens
        assert count_conversation((*lead, capped(cap + 1)), c).total > max_tokens or \
            cap >= 64


def check_chunks(chunks: Sequence[Chunk], conversation: Conversation, lead: Conversation,
                 max_tokens: int, count: Any) -> None:
    validate_chunks(chunks, conversation, lead)
    for chunk in chunks:
        assert count(chunk.messages) == chunk.tokens <= max_tokens


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
@settings(max_examples=processor_examples())
@given(conversation=DIALOGUES, max_tokens=LIMITS, with_lead=st.booleans(),
       frame_split=st.booleans())
@example(conversation=(Message("user", (TextItem("Watch:"), minute(duration=62.0))),
                       Message("assistant", (TextItem("Done."),))),
         max_tokens=2048, with_lead=True, frame_split=True)
def test_every_chunk_with_videos_is_what_the_processor_counts(
    checkpoint: str, conversation: Conversation, max_tokens: int, with_lead: bool,
    frame_split: bool,
) -> None:
    c = counter(checkpoint)
    lead = (SYSTEM,) if with_lead else ()
    try:
        chunks = split(conversation, max_tokens, counter=c, leading=lead,
                       allow_frame_split=frame_split)
    except SplitError as error:
        check_error(error, c, conversation, lead, max_tokens)
        return
    check_chunks(chunks, conversation, lead, max_tokens,
                 lambda messages: processor_count(c.processor, messages))


@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
@given(conversation=tgst.conversations(
    max_turns=12, max_images_per_turn=3, max_frames_per_run=8,
    sizes=tgst.image_sizes(max_side=2048), videos=tgst.video_items()),
    max_tokens=LIMITS, with_lead=st.booleans(), frame_split=st.booleans())
def test_split_invariants_with_videos(
    checkpoint: str, conversation: Conversation, max_tokens: int, with_lead: bool,
    frame_split: bool,
) -> None:
    """Many more examples against the calculator (itself equal to the processor:
    test_video_conversations.py), and the tokenizer-only counter of `tokenguard split`
    gives the same chunks."""
    c = counter(checkpoint)
    lead = (SYSTEM,) if with_lead else ()
    try:
        chunks = split(conversation, max_tokens, counter=c, leading=lead,
                       allow_frame_split=frame_split)
    except SplitError as error:
        check_error(error, c, conversation, lead, max_tokens)
        with pytest.raises(SplitError, match="^" + re.escape(str(error))):
            split(conversation, max_tokens, counter=light_counter(checkpoint), leading=lead,
                  allow_frame_split=frame_split)
        return
    check_chunks(chunks, conversation, lead, max_tokens,
                 lambda messages: count_conversation(messages, c).total)
    assert split(conversation, max_tokens, counter=light_counter(checkpoint), leading=lead,
                 allow_frame_split=frame_split) == chunks


@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
def test_a_ten_minute_video_is_cut_into_consecutive_clips(checkpoint: str) -> None:
    c = counter(checkpoint)
    conversation = (Message("user", (TextItem("Label every step:"),
                                     VideoItem(18000, 30.0, 600.0))),
                    Message("assistant", (TextItem("Incision, then suture."),)))
    chunks = split(conversation, 4096, counter=c, allow_frame_split=True)
    check_chunks(chunks, conversation, (), 4096,
                 lambda messages: processor_count(c.processor, messages))
    videos = [item for chunk in chunks for m in chunk.messages for item in m.content
              if type(item) is VideoItem]
    clips = [video.clip for video in videos if video.clip is not None]
    assert len(clips) == len(videos)  # every piece is a clip
    # consecutive, nothing lost or repeated
    assert all(a.end == b.start for a, b in itertools.pairwise(clips))
    assert (clips[0].start, clips[-1].end) == (0, 18000)
    assert len(chunks) > 1


@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
def test_a_video_too_large_names_the_num_frames_that_fits(checkpoint: str) -> None:
    c = counter(checkpoint)
    conversation = (Message("user", (minute(), TextItem("Describe the video."))),)
    with pytest.raises(SplitError) as info:
        split(conversation, 4096, counter=c)
    check_error(info.value, c, conversation, (), 4096)
    text = str(info.value)
    assert "its video samples 60 frames, and num_frames=" in text
    assert "allow_frame_split=True lets it be cut between frames and into clips" in text
    cap = int(text.split("num_frames=")[1].split(" ")[0])
    fixed = (Message("user", (minute(num_frames=cap), TextItem("Describe the video."))),)
    (chunk,) = split(fixed, 4096, counter=c)
    assert chunk.tokens == processor_count(c.processor, fixed) <= 4096


def test_the_intro_count_is_the_chunk_s() -> None:
    """Two messages whose videos sample 4 and 21 frames: together, under transformers <=
    5.24 both intros say "twenty-one", so the chunk is not the sum of the messages priced
    apart; from 5.25 on each says its own, and it is."""
    c = counter("2.2B")
    conversation = (Message("user", (VideoItem(40, 10.0, 4.0),)),
                    Message("user", (VideoItem(210, 10.0, 21.0),)))
    (chunk,) = split(conversation, 8192, counter=c)
    apart = [split((m,), 8192, counter=c)[0].tokens for m in conversation]
    assert chunk.tokens == processor_count(c.processor, conversation)
    # each priced apart holds the conversation's base tokens once
    additive = chunk.tokens == sum(apart) - (len(apart) - 1) * base_tokens(c)
    assert additive is not intros_spell_the_largest()


def test_string_content_in_the_leading_context_of_a_video_conversation_is_refused() -> None:
    with pytest.raises(ConversationError, match="plain-string content in a conversation that "
                       "holds a video"):
        split((Message("user", (minute(num_frames=4),)),), 4096, counter=counter(),
              leading=[{"role": "system", "content": "Be brief."}])


def test_check_splitter_fuzzes_with_videos() -> None:
    """The checker takes video conversations: this splitter passes; one that keeps every
    message whole whatever it costs is caught, with the video in its evidence."""
    c = counter("2.2B")
    videos = tgst.conversation_dicts(max_turns=4, max_images_per_turn=2, max_frames_per_run=2,
                                     max_text=30, unicode=False,
                                     sizes=tgst.image_sizes(max_side=600),
                                     videos=tgst.video_items(max_frames=300))
    check_splitter(lambda m: split(m, 3000, counter=c, allow_frame_split=True), c, 3000,
                   conversations=videos, max_examples=5)

    def whole(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        return [[m] for m in messages]

    with pytest.raises(SplitterCheckError, match=r"over max_tokens 600[\s\S]*\"type\": "
                       r"\"video\""):
        check_splitter(whole, c, 600, max_examples=30, conversations=tgst.conversation_dicts(
            min_turns=1, max_turns=2, min_images_per_turn=1, max_images_per_turn=1,
            frames=False, sizes=tgst.image_sizes(max_side=8),
            videos=tgst.video_items(min_frames=300, max_frames=600, min_fps=10, max_fps=30,
                                    sampling=False)))


def test_clips_by_path_are_counted_as_the_processor_reads_them(tmp_path: Any) -> None:
    """A clip of a file: the processor gets the file's frames start..end-1 (decoded by
    its own loader) as a video of its own."""
    from tests.helpers import torchcodec_missing, write_clip

    missing = torchcodec_missing()
    if missing:
        pytest.skip(missing)
    c = counter("2.2B")
    clip = write_clip(tmp_path / "long.mp4", 240, 2)  # two minutes at 2 fps
    conversation = parse_conversation([{"role": "user", "content": [
        {"type": "text", "text": "Steps?"}, {"type": "video", "path": str(clip)}]}])
    chunks = split(conversation, 3000, counter=c, allow_frame_split=True)
    assert len(chunks) > 1
    check_chunks(chunks, conversation, (), 3000,
                 lambda messages: processor_count(c.processor, messages))
    assert isinstance(conversation[0].content[1], VideoItem)
    assert chunks[0].messages[0].content[1].clip == FrameRange(  # type: ignore[union-attr]
        0, chunks[1].messages[0].content[0].clip.start)  # type: ignore[union-attr]


def test_sft_keeps_turns_with_videos_whole() -> None:
    """SFT mode: chunks end on an assistant turn, the system message starts each, and a
    turn with a video is never cut; every chunk is the processor's count and passes the
    checker's SFT rules."""
    from pytest_tokenguard.testing.splitcheck import check_chunks as checker

    c = counter("2.2B")
    system = Message("system", (TextItem("Label the steps."),))
    turns = [m for n in (20, 30, 12) for m in (
        Message("user", (TextItem("Steps?"), VideoItem(n * 10, 10.0, float(n)))),
        Message("assistant", (TextItem("Cut, then stitch."),)))]
    conversation = (system, *turns)
    chunks = split(conversation, 3200, counter=c, sft=True)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.messages[0] == system
        assert chunk.messages[-1].role == "assistant"
        assert chunk.tokens == processor_count(c.processor, chunk.messages) <= 3200
    counts = checker(conversation, chunks, c, 3200, sft=True, processor_counts=True)
    assert counts == tuple(chunk.tokens for chunk in chunks)
    with pytest.raises(SplitError, match=r"messages 1-2 \(a turn with 1 video\) are \d+ tokens, "
                       r"more than .*; its video samples 20 frames, and num_frames=\d+ fits "
                       r".*SFT mode keeps a turn with videos whole"):
        split(conversation, 1500, counter=c, sft=True, allow_frame_split=True)
