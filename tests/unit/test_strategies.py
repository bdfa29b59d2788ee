"""The public strategies: typed values, arguments checked at once, small counterexamples."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import find, given, settings
from hypothesis.errors import InvalidArgument

from pytest_tokenguard.conversation import (
    Conversation,
    FrameRange,
    FramesItem,
    ImageItem,
    Message,
    TextItem,
    parse_conversation,
)
from pytest_tokenguard.specs import IMAGE_TOKEN
from pytest_tokenguard.testing import strategies as tgst

SHAPE: dict[str, Any] = {
    "min_turns": 2, "max_turns": 5, "min_images_per_turn": 1, "max_images_per_turn": 3,
    "max_frames_per_run": 6, "max_texts_per_turn": 1, "max_text": 30,
}


@given(tgst.conversations(**SHAPE, sizes=tgst.image_sizes(min_side=10, max_side=900,
                                                          max_aspect=4)))
def test_conversations_have_the_requested_shape(conversation: Conversation) -> None:
    assert 2 <= len(conversation) <= 5
    assert [m.role for m in conversation] == ["user", "assistant", "user", "assistant",
                                              "user"][:len(conversation)]
    for message in conversation:
        visuals = [i for i in message.content if isinstance(i, ImageItem | FramesItem)]
        assert 1 <= len(visuals) <= 3
        assert sum(isinstance(i, TextItem) for i in message.content) <= 1
        for item in visuals:
            assert min(item.width, item.height) >= 10
            assert max(item.width, item.height) <= 900
            assert max(item.width, item.height) <= 4 * min(item.width, item.height)
            if isinstance(item, FramesItem):
                assert 1 <= len(item) <= 6
        for content in message.content:
            if isinstance(content, TextItem):
                assert len(content.text) <= 30
                assert IMAGE_TOKEN not in content.text
    # what the strategies make, the parser accepts unchanged
    assert parse_conversation(conversation) == conversation


@given(tgst.conversation_dicts(max_turns=3, max_frames_per_run=3))
def test_dicts_are_chat_template_messages(messages: list[dict[str, Any]]) -> None:
    for message in messages:
        assert {item["type"] for item in message["content"]} <= {"text", "image"}
    assert parse_conversation(messages)


@given(tgst.frame_ranges(min_frames=0, max_frames=3, max_start=5))
def test_frame_ranges_include_the_edges(r: FrameRange) -> None:
    assert 0 <= len(r) <= 3
    assert r.start <= 5


def test_edges_are_generated() -> None:
    quick = settings(database=None, max_examples=500)
    assert len(find(tgst.frame_ranges(), lambda r: len(r) == 0, settings=quick)) == 0
    assert len(find(tgst.frame_ranges(), lambda r: len(r) == 1, settings=quick)) == 1


def test_shrinks_to_a_small_readable_example() -> None:
    # "some message has two images" shrinks to one message: a two-frame 1x1 run
    example = find(
        tgst.conversations(),
        lambda c: any(m.images >= 2 for m in c),
        settings=settings(database=None, max_examples=2000, derandomize=True),
    )
    assert example == (Message("user", (FramesItem(FrameRange(0, 2), 1, 1),)),)
    text = find(tgst.texts(), lambda s: len(s) >= 3, settings=settings(database=None))
    assert text == "000"


@pytest.mark.parametrize(
    ("build", "pattern"),
    [
        (lambda: tgst.conversations(min_turns=5, max_turns=2),
         "min_turns=5 is greater than max_turns=2"),
        (lambda: tgst.conversations(max_turns=-1), "max_turns must be >= 0"),
        (lambda: tgst.conversations(min_images_per_turn=3, max_images_per_turn=1),
         "min_images=3 is greater than max_images=1"),
        (lambda: tgst.conversations(max_frames_per_run=0), "max_frames must be >= 1"),
        (lambda: tgst.conversations(roles=[]), "roles must be a non-empty list"),
        (lambda: tgst.conversations(roles="user"), "roles must be a non-empty list"),
        (lambda: tgst.messages(roles=["user", " bot"]), "role ' bot' is not a word"),
        (lambda: tgst.messages(max_texts=0, max_images=0), "leave a message with no content"),
        (lambda: tgst.messages(sizes=[(1, 2)]), "sizes must be a strategy"),  # type: ignore[arg-type]
        (lambda: tgst.image_sizes(min_side=0), "min_side must be >= 1"),
        (lambda: tgst.image_sizes(max_aspect=0.5), "max_aspect must be a number >= 1"),
        (lambda: tgst.image_sizes(max_side=2.5), "max_side must be an integer"),  # type: ignore[arg-type]
        (lambda: tgst.frame_ranges(min_frames=4, max_frames=3), "min_frames=4 is greater"),
        (lambda: tgst.texts(min_size=-1), "min_size must be >= 0"),
    ],
)
def test_bad_arguments_fail_at_once(build: Any, pattern: str) -> None:
    with pytest.raises(InvalidArgument, match=pattern):
        build()  # raised when the strategy is built, before any example is drawn


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"max_tokens": 0}, "max_tokens must be >= 1"),
        ({"max_turns": -1}, "max_turns must be >= 0"),
        ({"max_frames_per_run": 0}, "max_frames_per_run must be >= 1"),
        ({"deltas": []}, "deltas must be a non-empty list of integers"),
        ({"deltas": [1.5]}, "deltas must be a non-empty list of integers"),
        ({"sizes": [(1, 2)]}, "sizes must be a strategy"),
    ],
)
def test_boundary_arguments_fail_at_once(kwargs: dict[str, Any], pattern: str) -> None:
    # checked before the counter is touched: no processor needed to see the mistake
    arguments: dict[str, Any] = {"max_tokens": 4096, **kwargs}
    with pytest.raises(InvalidArgument, match=pattern):
        tgst.boundary_conversations(object(), **arguments)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="frames_as must be 'images' or 'ranges'"):
        tgst.boundary_conversation_dicts(object(), frames_as="video")  # type: ignore[arg-type]


def test_deltas_shrink_to_one_token_over() -> None:
    """The simplest example is the one an under-count of one token overflows."""
    assert tgst.DELTAS[0] == 1
    assert {1, 2, 3, 0, -1} <= set(tgst.DELTAS[:5])


# ------------------------------------------------------------------ videos


@given(tgst.conversations(max_turns=3, videos=tgst.video_items(max_frames=500, max_fps=30)))
def test_video_items_are_valid_videos_that_round_trip(conversation: Conversation) -> None:
    from pytest_tokenguard.conversation import VideoItem, to_dicts

    for item in (i for m in conversation for i in m.content if isinstance(i, VideoItem)):
        assert 1 <= item.total_frames <= 500
        assert 0.5 <= item.fps <= 30
        if item.clip is not None:
            assert 0 <= item.clip.start < item.clip.end <= item.total_frames
    assert parse_conversation(to_dicts(conversation)) == conversation


def test_video_items_shrink_to_a_short_video_at_the_default_sampling() -> None:
    from pytest_tokenguard.conversation import VideoItem

    found = find(tgst.video_items(), lambda item: True)
    assert found == VideoItem(1, 1.0, 1.0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"min_frames": 0}, "min_frames must be >= 1"),
    ({"min_frames": 10, "max_frames": 5}, "min_frames=10 is greater than max_frames=5"),
    ({"min_fps": 0}, "min_fps must be a positive number"),
    ({"min_fps": 30, "max_fps": 10}, "min_fps=30.0 is greater than max_fps=10.0"),
    ({"max_num_frames": 0}, "max_num_frames must be >= 1"),
])
def test_video_items_arguments_are_checked_at_once(kwargs: dict[str, Any], message: str
                                                   ) -> None:
    with pytest.raises(InvalidArgument, match=message):
        tgst.video_items(**kwargs)
    with pytest.raises(InvalidArgument, match="videos must be a strategy of video items"):
        tgst.conversations(videos=[1, 2])  # type: ignore[arg-type]
