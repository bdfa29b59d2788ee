"""The conversation model: one frame-range definition, pinned at its edges, and
validation errors that name the message and the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_tokenguard.conversation import (
    ConversationError,
    FrameRange,
    FrameRangeError,
    FramesItem,
    ImageItem,
    Message,
    TextItem,
    atoms,
    image_sizes,
    parse_conversation,
    to_chat_template,
    to_dicts,
)
from pytest_tokenguard.testing import strategies as tgst

# ------------------------------------------------------------------ FrameRange edges


def test_empty_range() -> None:
    r = FrameRange(5, 5)
    assert len(r) == 0
    assert list(r) == []
    assert 5 not in r
    assert not r


def test_single_frame() -> None:
    r = FrameRange(7, 8)
    assert len(r) == 1
    assert list(r) == [7]
    assert 7 in r
    assert 8 not in r  # end is exclusive
    assert 6 not in r


def test_end_is_exclusive_like_range() -> None:
    # regression: an inclusive end would make this 11 frames and contain 10
    r = FrameRange(0, 10)
    assert len(r) == 10
    assert list(r) == list(range(10))
    assert 10 not in r
    assert 9 in r


def test_from_inclusive() -> None:
    assert FrameRange.from_inclusive(3, 3) == FrameRange(3, 4)
    assert list(FrameRange.from_inclusive(0, 9)) == list(range(10))


def test_start_after_end_names_the_fix() -> None:
    with pytest.raises(FrameRangeError, match=r"start > end; end is exclusive"):
        FrameRange(4, 3)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None])
def test_bad_bounds(bad: object) -> None:
    with pytest.raises(FrameRangeError, match="frame start"):
        FrameRange(bad, 10)  # type: ignore[arg-type]


def test_split_at_both_ends() -> None:
    r = FrameRange(2, 6)
    assert r.split_at(2) == (FrameRange(2, 2), FrameRange(2, 6))
    assert r.split_at(6) == (FrameRange(2, 6), FrameRange(6, 6))
    assert r.split_at(3) == (FrameRange(2, 3), FrameRange(3, 6))
    with pytest.raises(FrameRangeError, match=r"must lie in 2\.\.6"):
        r.split_at(7)
    with pytest.raises(FrameRangeError, match=r"must lie in 2\.\.6"):
        r.split_at(1)


@given(tgst.frame_ranges(max_frames=50), st.data())
def test_split_at_partitions(r: FrameRange, data: st.DataObject) -> None:
    at = data.draw(st.integers(r.start, r.end))
    head, tail = r.split_at(at)
    assert head.end == tail.start == at
    assert len(head) + len(tail) == len(r)
    assert [*head, *tail] == list(r)
    assert all((f in head) != (f in tail) for f in r)


# ------------------------------------------------------------------ parsing and errors


def test_parse_all_item_kinds(tmp_path: Path) -> None:
    from PIL import Image

    file = tmp_path / "a.png"
    Image.new("RGB", (30, 20)).save(file)
    pil = Image.new("RGB", (7, 9))
    conv = parse_conversation([
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [
            {"type": "image", "path": str(file)},
            {"type": "image", "image": pil},
            {"type": "image", "width": 640, "height": 480},
            {"type": "frames", "start": 10, "end": 13, "width": 64, "height": 32, "video": "v"},
            {"type": "text", "text": "what changes?"},
        ]},
    ])
    assert conv[0] == Message("system", (TextItem("be brief"),), string_content=True)
    items = conv[1].content
    assert items[0] == ImageItem(30, 20, str(file))
    assert items[1] == ImageItem(7, 9)
    assert items[3] == FramesItem(FrameRange(10, 13), 64, 32, "v")
    assert image_sizes(conv) == [(30, 20), (7, 9), (640, 480)] + [(64, 32)] * 3
    assert conv[1].images == 6
    # the JSON form round-trips; the template form has one image per frame
    assert parse_conversation(to_dicts(conv)) == conv
    template = to_chat_template(conv)[1]["content"]
    assert [i.get("frame") for i in template if i["type"] == "image"] == [
        None, None, None, 10, 11, 12
    ]


@pytest.mark.parametrize(
    ("message", "pattern"),
    [
        ({"role": "user", "content": [{"type": "audio"}]},
         r"message 1, item 0: unknown content type 'audio'; use one of text, image, frames"),
        ({"role": "user", "content": [{"type": "text"}]},
         r"message 1, item 0: text item has no 'text'"),
        ({"role": "user", "content": [{"type": "text", "text": 3}]},
         r"message 1, item 0: 'text' must be a string"),
        ({"role": "user", "content": [{"type": "text", "text": "a <image> b"}]},
         r"image placeholder"),
        ({"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image"}]},
         r"message 1, item 1: image has no size: give 'width' and 'height'"),
        ({"role": "user", "content": [{"type": "image", "width": 5}]},
         r"image has no 'height'"),
        ({"role": "user", "content": [{"type": "image", "width": 0, "height": 5}]},
         r"width must be a positive integer"),
        ({"role": "user", "content": [{"type": "image", "url": "https://x.org/a.png"}]},
         r"remote URL, which is never fetched"),
        ({"role": "user", "content": [{"type": "video", "path": "a.mp4"}]},
         r"message 1, item 0: video a.mp4 does not exist; fix the path, or give "
         r"'total_frames', 'fps' and 'duration'"),
        ({"role": "user", "content": [{"type": "video", "total_frames": 10, "fps": 5,
                                       "max_frames": 4}]},
         r"message 1, item 0: video item has unknown key 'max_frames'; the most frames to "
         r"sample is 'num_frames'"),
        ({"role": "user", "content": [{"type": "frames", "start": 3, "end": 3, "width": 4,
                                       "height": 4}]},
         r"message 1, item 0: frames \[3, 3\) is empty \(end is exclusive\)"),
        ({"role": "user", "content": [{"type": "frames", "start": 4, "end": 3, "width": 4,
                                       "height": 4}]},
         r"message 1, item 0: frame range \[4, 3\) has start > end"),
        ({"role": "user", "content": [{"type": "frames", "start": 0, "width": 4,
                                       "height": 4}]},
         r"frames item has no 'end'"),
        ({"role": "user", "content": []}, r"message 1: 'content' is empty"),
        ({"role": "user"}, r"message 1: no 'content'"),
        ({"role": " user", "content": "x"}, r"message 1: role must be a word"),
        ({"content": "x"}, r"message 1: role must be a word"),
        ("hello", r"message 1: a message is an object"),
    ],
)
def test_errors_name_message_and_fix(message: object, pattern: str) -> None:
    with pytest.raises(ConversationError, match=pattern):
        parse_conversation([{"role": "user", "content": "ok"}, message])  # type: ignore[list-item]


def test_unreadable_image_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ConversationError, match=r"message 0, item 0: image .*broken.png is not an"):
        parse_conversation([{"role": "user", "content": [{"type": "image", "path": str(bad)}]}])
    with pytest.raises(ConversationError, match=r"missing.png no such file"):
        parse_conversation(
            [{"role": "user",
              "content": [{"type": "image", "path": str(tmp_path / "missing.png")}]}]
        )


def test_relative_paths_resolve_against_base_dir(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (11, 12)).save(tmp_path / "f.png")
    conv = parse_conversation(
        [{"role": "user", "content": [{"type": "image", "path": "f.png"}]}], base_dir=tmp_path
    )
    assert conv[0].content[0] == ImageItem(11, 12, "f.png")


def test_conversation_must_be_a_list() -> None:
    with pytest.raises(ConversationError, match="pass its 'messages' list"):
        parse_conversation({"messages": []})  # type: ignore[arg-type]


def test_atoms_ignore_where_frames_were_cut() -> None:
    whole = Message("user", (FramesItem(FrameRange(0, 4), 8, 8),))
    halves = Message("user", (FramesItem(FrameRange(0, 1), 8, 8),
                              FramesItem(FrameRange(1, 4), 8, 8)))
    assert atoms(whole) == atoms(halves)
    assert atoms(whole) != atoms(Message("user", (FramesItem(FrameRange(0, 5), 8, 8),)))
    assert atoms(whole) != atoms(Message("user", (FramesItem(FrameRange(1, 5), 8, 8),)))


# ------------------------------------------------------------------ hostile and odd input


def test_string_content_is_kept_as_given() -> None:
    conv = parse_conversation([{"role": "user", "content": "Hello there"}])
    assert conv == (Message("user", (TextItem("Hello there"),), string_content=True),)
    assert to_dicts(conv) == [{"role": "user", "content": "Hello there"}]
    assert to_chat_template(conv) == [{"role": "user", "content": "Hello there"}]
    assert parse_conversation(to_dicts(conv)) == conv
    assert conv != parse_conversation(
        [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}])


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("", r"message 0: 'content' is an empty string"),
        ("a <image> b", r"message 0: the text contains '<image>'"),
        ([{"type": "text", "text": "a <video> b"}],
         r"message 0, item 0: the text contains '<video>', which the processor takes for a video"),
        ([{"type": "text", "text": "ok \U0001f600 \udfff"}],
         r"message 0, item 0: the text holds a lone surrogate \(U\+DFFF\) at character 5"),
        ("\ud800", r"message 0: the text holds a lone surrogate \(U\+D800\)"),
        ([{"type": "image", "path": "a\udc80.png", "width": 3, "height": 3}],
         r"'path' holds a lone surrogate"),
        ([{"type": "image", "path": ["a.png"]}], r"'path' must be a file path \(a string\)"),
        ([{"type": "image", "url": 7, "width": 3, "height": 3}], r"'url' must be a file path"),
        ([{"type": "frames", "start": 0, "end": 3, "width": 4, "height": 4, "video": "\ud800"}],
         r"'video' holds a lone surrogate"),
        ([{"type": "frames", "start": 0, "end": 10**20, "width": 4, "height": 4}],
         r"frame end 100000000000000000000 is out of range: frame numbers are below 2\*\*31"),
        ([{"type": "frames", "start": 2**31, "end": 2**31 + 1, "width": 4, "height": 4}],
         r"frame start 2147483648 is out of range"),
        ([{"type": "frames", "start": 0, "end": 10**5000, "width": 4, "height": 4}],
         r"frame end an integer of about 5001 digits is out of range"),
        ([{"type": ["text"], "text": "x"}], r"unknown content type \['text'\]"),
    ],
)
def test_hostile_content_is_a_named_error(content: object, pattern: str) -> None:
    with pytest.raises(ConversationError, match=pattern):
        parse_conversation([{"role": "user", "content": content}])


@pytest.mark.parametrize("token", ["<fake_token_around_image>", "<global-img>", "<row_1_col_1>",
                                   "<end_of_utterance>", "<|im_start|>", "<image", "image>"])
def test_other_special_tokens_are_text(token: str) -> None:
    """The processor tokenizes them as the special tokens they are and does not raise
    (checked against it in tests/oracle/test_sequence.py), so they are counted."""
    (message,) = parse_conversation([{"role": "user", "content": f"a {token} b"}])
    assert message.content == (TextItem(f"a {token} b"),)


def test_frame_numbers_up_to_the_bound() -> None:
    top = FrameRange(2**31 - 2, 2**31)
    assert len(top) == 2
    assert FrameRange.from_inclusive(2**31 - 1, 2**31 - 1) == FrameRange(2**31 - 1, 2**31)
    with pytest.raises(FrameRangeError, match="out of range"):
        FrameRange(0, 2**31 + 1)


def test_declared_size_is_checked_against_the_file(tmp_path: Path) -> None:
    from PIL import Image

    from pytest_tokenguard.errors import ImageItemError, ImageReadError

    Image.new("RGB", (30, 20)).save(tmp_path / "a.png")
    ok = parse_conversation([{"role": "user", "content": [
        {"type": "image", "path": "a.png", "width": 30, "height": 20}]}], base_dir=tmp_path)
    assert ok[0].content[0] == ImageItem(30, 20, "a.png")
    with pytest.raises(ConversationError,
                       match=r"message 0, item 0: image declares 20×30 but its file .*a.png is "
                             r"30×20 as the processor reads it"):
        parse_conversation([{"role": "user", "content": [
            {"type": "image", "path": "a.png", "width": 20, "height": 30}]}], base_dir=tmp_path)
    # no file there: the declared size is all there is
    missing = parse_conversation([{"role": "user", "content": [
        {"type": "image", "path": "gone.png", "width": 5, "height": 6}]}], base_dir=tmp_path)
    assert missing[0].content[0] == ImageItem(5, 6, "gone.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    bad = r"message 0, item 0: image .*bad.png is not an"
    with pytest.raises(ImageItemError, match=bad) as info:
        parse_conversation([{"role": "user", "content": [
            {"type": "image", "path": "bad.png", "width": 5, "height": 6}]}], base_dir=tmp_path)
    assert isinstance(info.value, ImageReadError)
    assert info.value.path == str(tmp_path / "bad.png")


def test_image_paths_can_be_rewritten_for_another_folder(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "data").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "a.png")
    conv = parse_conversation([{"role": "user", "content": [
        {"type": "image", "path": "a.png"},
        {"type": "image", "url": "https://example.org/b.png", "width": 4, "height": 4}]}],
        base_dir=tmp_path / "data")
    written = to_dicts(conv, image_paths=lambda file: os.path.relpath(file, tmp_path / "out"))
    assert [item["path"] for item in written[0]["content"]] == [
        os.path.join("..", "data", "a.png"), "https://example.org/b.png"]
    assert [item["path"] for item in to_dicts(conv)[0]["content"]] == [
        "a.png", "https://example.org/b.png"]


# ------------------------------------------------------------------ video items


def video_message(**item: object) -> list[dict[str, object]]:
    return [{"role": "user", "content": [{"type": "video", **item},
                                         {"type": "text", "text": "What happens?"}]}]


def test_video_by_metadata_keeps_the_video_path() -> None:
    """A video item is a video (the processor samples it), never frames sent as images."""
    from pytest_tokenguard.conversation import VideoItem, videos_of

    (message,) = parse_conversation(video_message(total_frames=1800, fps=30, num_frames=8))
    video = message.content[0]
    assert video == VideoItem(1800, 30.0, 60.0, num_frames=8)  # duration = frames / fps
    assert message.images == 0
    assert message.videos == 1
    assert image_sizes((message,)) == []
    assert videos_of((message,)) == [video]
    template = to_chat_template((message,))
    assert template[0]["content"][0] == {"type": "video", "total_frames": 1800, "fps": 30.0,
                                         "duration": 60.0, "num_frames": 8}
    assert parse_conversation(to_dicts((message,)))[0] == message


def test_video_by_path_reads_the_file_as_the_processor_loader_does(tmp_path: Path) -> None:
    from pytest_tokenguard.video import read_video_info
    from tests.helpers import write_clip

    clip = write_clip(tmp_path / "clip.mp4", 12, 4)
    info = read_video_info(clip)
    (message,) = parse_conversation(video_message(path="clip.mp4", sample_fps=2),
                                    base_dir=tmp_path)
    video = message.content[0]
    assert (video.total_frames, video.fps, video.duration) == (  # type: ignore[union-attr]
        info.total_frames, info.fps, info.duration)
    assert video.file == str(clip)  # type: ignore[union-attr]
    assert video.sample_fps == 2.0  # type: ignore[union-attr]
    written = to_dicts((message,), image_paths=lambda file: f"moved/{Path(file).name}")
    assert written[0]["content"][0]["path"] == "moved/clip.mp4"
    # the file wins: metadata that disagrees with it is refused, naming both
    with pytest.raises(ConversationError, match=r"video declares fps 30 but its file .*clip\.mp4 "
                       r"has 4\.0 as the processor's loader reads it \(it is the video's own "
                       r"frame rate; the sampling rate is 'sample_fps'\)"):
        parse_conversation(video_message(path=str(clip), fps=30))
    # the same numbers are accepted
    same = parse_conversation(video_message(path=str(clip), total_frames=12, fps=4.0))
    assert same[0].content[0].info() == video.info()  # type: ignore[union-attr]


@pytest.mark.parametrize(("item", "pattern"), [
    ({"total_frames": 10}, r"video has no 'fps': give a file under 'path', or its metadata"),
    ({"fps": 10}, r"video has no 'total_frames'"),
    ({"total_frames": 0, "fps": 5}, r"video 'total_frames' must be a positive integer, got 0"),
    ({"total_frames": 10, "fps": "30"}, r"video 'fps' must be a positive number, got '30'"),
    ({"total_frames": 10, "fps": True}, r"video 'fps' must be a positive number, got True"),
    ({"total_frames": 10, "fps": 5, "duration": -1}, r"'duration' must be a number >= 0"),
    ({"total_frames": 10, "fps": 5, "num_frames": 2.5}, r"'num_frames' must be a positive "
     "integer"),
    ({"total_frames": 2**40, "fps": 5}, r"out of range"),
    ({"total_frames": 10, "fps": 5, "start": 2}, r"video clip has no 'end'"),
    ({"total_frames": 10, "fps": 5, "start": 2, "end": 11}, r"video clip \[2, 11\) ends past "
     r"the video's 10 frames; give 0 <= start < end <= 10"),
    ({"total_frames": 10, "fps": 5, "start": 4, "end": 4}, r"is empty"),
    ({"total_frames": 10, "fps": 5, "fps_sample": 1}, r"unknown key 'fps_sample'; the sampling "
     "rate is 'sample_fps'"),
    ({"url": "https://x.org/v.mp4"}, r"remote URL, which is never fetched; download it, or "
     "give 'total_frames', 'fps' and 'duration'"),
])
def test_bad_video_items_name_the_item_and_the_fix(item: dict[str, object], pattern: str
                                                   ) -> None:
    with pytest.raises(ConversationError, match=r"message 0, item 0: .*" + pattern):
        parse_conversation(video_message(**item))


def test_remote_video_with_metadata_is_counted_without_fetching() -> None:
    (message,) = parse_conversation(video_message(url="https://x.org/v.mp4", total_frames=300,
                                                  fps=30, duration=10.0))
    assert message.content[0].path == "https://x.org/v.mp4"  # type: ignore[union-attr]


def test_clip_is_a_video_of_its_own() -> None:
    """A clip is sent to the processor as frames start..end-1 with metadata of its own."""
    (message,) = parse_conversation(video_message(total_frames=900, fps=30, start=300,
                                                  end=750))
    from pytest_tokenguard.conversation import VideoItem

    clip = message.content[0]
    assert isinstance(clip, VideoItem)
    assert clip.processor_metadata() == {"total_num_frames": 450, "fps": 30.0,
                                         "duration": 15.0}
    head, tail = clip.split_at(400)
    assert (head.clip, tail.clip) == (FrameRange(300, 400), FrameRange(400, 750))
    assert head.info().total_frames == 100
    whole = parse_conversation(video_message(total_frames=900, fps=30))[0].content[0]
    assert isinstance(whole, VideoItem)
    first, rest = whole.split_at(0)
    assert first.clip == FrameRange(0, 0)
    assert rest.info() == whole.info()


def test_string_content_next_to_a_video_is_refused() -> None:
    """transformers renders a conversation holding a video with its own template, which
    (5.24) writes plain-string content that the checkpoint's template drops."""
    with pytest.raises(ConversationError, match=r"message 0: plain-string content in a "
                       r"conversation that holds a video.*write the content as"):
        parse_conversation([{"role": "system", "content": "Be brief."},
                            *video_message(total_frames=10, fps=5)])
    assert parse_conversation([{"role": "system", "content": "Be brief."}])[0].string_content


def test_video_placeholder_in_text_points_at_video_items() -> None:
    with pytest.raises(ConversationError, match=r"videos in \{'type': 'video'\} items"):
        parse_conversation([{"role": "user", "content": [{"type": "text", "text": "<video>"}]}])


@pytest.mark.parametrize("fmt", ["TIFF", "BMP", "PPM"])
def test_image_paths_the_processor_cannot_load_are_refused_by_name(tmp_path: Path,
                                                                    fmt: str) -> None:
    """transformers' default backend cannot load a TIFF, BMP or PPM by path (the real
    processor: tests/oracle/test_image_formats.py), so a conversation holding one is
    refused, even with a declared size (the processor still opens the file); the PIL
    backend's loader takes it."""
    from PIL import Image

    from pytest_tokenguard.errors import ImageItemError

    path = tmp_path / "scan.img"
    Image.new("RGB", (1000, 300)).save(path, fmt)
    for item in ({"type": "image", "path": str(path)},
                 {"type": "image", "path": str(path), "width": 1000, "height": 300}):
        messages = [{"role": "user", "content": [{"type": "text", "text": "Look:"}, item]}]
        with pytest.raises(ImageItemError) as caught:
            parse_conversation(messages)
        from pytest_tokenguard.images import default_path_loader

        decoded = ("JPEG, PNG, WebP, GIF and AVIF" if default_path_loader() == "torchcodec"
                   else "JPEG, PNG, WebP and GIF")
        assert str(caught.value) == (
            f"message 0, item 1: image {path} is in {fmt} format, which the processor cannot "
            f"load from a path (transformers' default image loading decodes {decoded} only: "
            "\"Unsupported or unrecognized image format\"); convert it to PNG or JPEG, or open "
            "it with PIL and pass the image")
        assert caught.value.path == str(path)
        for loader in ("torchvision", "torchcodec"):
            with pytest.raises(ImageItemError):
                parse_conversation(messages, image_loader=loader)
        parsed = parse_conversation(messages, image_loader="pil")
        assert image_sizes(parsed) == [(1000, 300)]
