"""The video counter's pure parts: frame sampling, the text, metadata reading, bad input.

The sampling rule and the text are checked against transformers' own code, called
without pixels or model files: ``SmolVLMVideoProcessor.sample_frames`` (numpy only) and
``SmolVLMProcessor.replace_video_token`` (string building only). The whole counter
against the real processor is tests/oracle/test_video.py.
"""

from __future__ import annotations

import sys
import types
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pytest_tokenguard.errors import CountingError, InputError, SpecError, VideoReadError
from pytest_tokenguard.specs import KNOWN_SPECS
from pytest_tokenguard.video import (
    KNOWN_VIDEO_SAMPLING,
    VideoCost,
    VideoCounter,
    VideoPlan,
    VideoSampling,
    intros_spell_the_largest,
    is_video_path,
    iter_video_paths,
    plan_frames,
    plan_video,
    read_video_info,
    splice_videos,
    video_info,
    video_pieces,
    video_sampling_from_config,
    video_sampling_from_folder,
    video_sampling_from_processor,
)
from tests.helpers import MODEL_IDS, checkpoint_folder, real_processor, write_clip

DEFAULT = VideoSampling(fps=1, max_frames=64, video_size=384)


def real_sampler() -> Any:
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    return SmolVLMVideoProcessor(
        video_sampling={"fps": 1, "max_frames": 64, "video_size": {"longest_edge": 384}}
    )


def real_indices(total: int, video_fps: float, duration: float, num_frames: int | None,
                 fps: float | None) -> tuple[int, ...]:
    """What transformers' ``sample_frames`` returns for this metadata (no pixels)."""
    from transformers.video_utils import VideoMetadata

    metadata = VideoMetadata(total_num_frames=total, fps=video_fps, duration=duration)
    return tuple(int(i) for i in _SAMPLER.sample_frames(metadata, num_frames=num_frames,
                                                        fps=fps))


_SAMPLER = real_sampler()


def ours(total: int, video_fps: float, duration: float, num_frames: int | None,
         fps: float | None) -> tuple[int, ...]:
    plan = plan_video(video_info(total, video_fps, duration), DEFAULT, num_frames=num_frames,
                      fps=fps)
    assert plan.indices is not None
    return plan.indices


# ------------------------------------------------------------------------- sampling edges


@pytest.mark.parametrize(
    ("total", "video_fps", "duration", "num_frames", "fps", "frames"),
    [
        (10, 24.0, 10 / 24, None, None, 1),  # shorter than 1 s: round(0.42) = 0 -> one frame
        (12, 24.0, 0.5, None, None, 1),  # exactly half a second: round half to even -> 0
        (36, 24.0, 1.5, None, None, 2),  # 1.5 s rounds to 2 frames
        (1, 30.0, 1 / 30, None, None, 1),  # a single frame
        (64, 1.0, 64.0, None, None, 64),  # exactly max_frames, no skip
        (66, 1.0, 66.0, None, None, 64),  # 66 - 2 = 64 is not > 64: no centre skip
        (67, 1.0, 67.0, None, None, 64),  # 67 - 2 > 64: the first and last second skipped
        (10, 2.0, 5.0, None, 10, 10),  # fps above the video's: 50 asked, 10 distinct
        (1800, 30.0, 60.0, None, None, 60),  # a one-minute 30 fps clip: 60 frames
        (1800, 30.0, 60.0, 8, None, 8),  # num_frames caps, fps stays the default
        (1800, 30.0, 60.0, None, 0.5, 30),  # fps alone: 30 frames
        (1800, 30.0, 60.0, 100, 2.0, 100),  # num_frames above the checkpoint's 64
    ],
)
def test_sampling_edges_match_transformers(
    total: int, video_fps: float, duration: float, num_frames: int | None, fps: float | None,
    frames: int,
) -> None:
    indices = ours(total, video_fps, duration, num_frames, fps)
    assert indices == real_indices(total, video_fps, duration, num_frames, fps)
    assert len(indices) == frames


def test_centre_skip_drops_the_first_second() -> None:
    # 67 s at 1 fps: skip applies, so frame 0 is not sampled; at 66 s it is
    assert ours(67, 1.0, 67.0, None, None)[0] == 1
    assert ours(66, 1.0, 66.0, None, None)[0] == 0


RATES = st.one_of(
    st.sampled_from([1.0, 2.0, 5.0, 7.5, 12.0, 15.0, 24.0, 24000 / 1001, 25.0, 30000 / 1001,
                     30.0, 50.0, 60.0]),
    st.floats(0.05, 240, allow_nan=False),
)


@given(
    total=st.integers(1, 20_000), video_fps=RATES, stretch=st.floats(0.0, 3.0),
    num_frames=st.none() | st.integers(1, 200),
    fps=st.none() | st.sampled_from([0.25, 0.5, 1, 2, 3, 30]) | st.floats(0.01, 50),
)
@example(total=7, video_fps=1.0, stretch=1.0, num_frames=None, fps=None)
def test_sampling_equals_transformers(
    total: int, video_fps: float, stretch: float, num_frames: int | None, fps: float | None
) -> None:
    duration = total / video_fps * stretch  # metadata may disagree with itself
    assert ours(total, video_fps, duration, num_frames, fps) == real_indices(
        total, video_fps, duration, num_frames, fps)


@given(start=st.integers(0, 10_000), length=st.integers(0, 10_000), num=st.integers(1, 400))
def test_linspace_floor_equals_numpy(start: int, length: int, num: int) -> None:
    import numpy as np

    from pytest_tokenguard.video import _linspace_floor

    expected = np.linspace(start, start + length, num, dtype=int).tolist()
    assert _linspace_floor(start, start + length, num) == expected


def test_no_sampling_keeps_every_frame_of_a_file() -> None:
    info = video_info(90, 30.0)._replace(path="clip.mp4", backend="torchcodec")
    plan = plan_video(info, DEFAULT, num_frames=8, do_sample_frames=False)
    assert plan.indices == tuple(range(90))  # num_frames is ignored, as transformers does
    assert plan.timestamps[30] == 1.0


def test_no_sampling_of_metadata_without_indices_is_refused() -> None:
    """The processor raises on video_metadata without frames_indices when it does not
    sample (tests/oracle/test_video.py proves it); a count would describe a call that
    cannot run. The error names the video and the two ways out."""
    with pytest.raises(CountingError) as caught:
        plan_video(video_info(90, 30.0), DEFAULT, do_sample_frames=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("the video (90 frames at 30.0 fps): do_sample_frames=False")
    assert "plan_frames(indices=" in message
    assert "do_sample_frames=True" in message
    counter = VideoCounter(KNOWN_SPECS[MODEL_IDS[0]], len)
    with pytest.raises(CountingError, match="no frame indices"):
        counter(video_info(90, 30.0), do_sample_frames=False)
    # the frames the caller passes, with their indices, are counted
    assert counter(plan_frames(indices=range(90), fps=30.0, duration=3.0)).frames == 90


@pytest.mark.parametrize(("version", "shared"), [
    ("5.0.0", True), ("5.13.0", True), ("5.24.0", True), ("5.24.9.dev0", True),
    ("5.25.0", False), ("5.25.0.dev0", False), ("5.26.0rc1", False), ("6.0.0", False),
    ("10.1", False),
])
def test_the_intro_rule_follows_the_transformers_version(version: str, shared: bool) -> None:
    """5.25 changed ``replace_video_token`` from the padded batch's frame count
    (``pixel_values.shape[1]``) to the video's own (``len(timestamps)``)."""
    assert intros_spell_the_largest(version) is shared


def test_the_intro_rule_of_the_installed_transformers() -> None:
    from importlib.metadata import version

    installed = version("transformers")
    assert intros_spell_the_largest() is intros_spell_the_largest(installed)
    counter = VideoCounter(KNOWN_SPECS[MODEL_IDS[0]], len)
    assert counter.shared_intro is intros_spell_the_largest(installed)
    with pytest.raises(CountingError, match=r"'main' is not of the form MAJOR\.MINOR"):
        intros_spell_the_largest("main")


# ------------------------------------------------------------------------------ the text


def real_text(plan: VideoPlan, seq: int, intro_frames: int) -> str:
    """``SmolVLMProcessor.replace_video_token`` itself, on a stand-in processor."""
    import numpy as np
    from transformers.models.smolvlm.processing_smolvlm import SmolVLMProcessor
    from transformers.video_utils import VideoMetadata

    fps = plan.fps
    indices: tuple[float, ...] = plan.indices if plan.indices is not None else plan.timestamps
    if plan.indices is None:  # timestamps given: fps 1 makes index == timestamp
        fps = 1.0
    metadata = VideoMetadata(total_num_frames=len(indices), fps=fps,
                             duration=plan.duration, frames_indices=list(indices))
    processor = types.SimpleNamespace(
        image_seq_len=seq, image_token="<image>", fake_image_token="<fake_token_around_image>",
        global_image_token="<global-img>")
    inputs = {"pixel_values": np.zeros((1, intro_frames, 1, 1, 1)), "video_metadata": [metadata]}
    return str(SmolVLMProcessor.replace_video_token(processor, inputs, 0))


def joined(pieces: tuple[str, ...], seq: int) -> str:
    block = "<fake_token_around_image><global-img>" + "<image>" * seq + "<fake_token_around_image>"
    return block.join(pieces)


@given(
    total=st.integers(1, 400_000), video_fps=RATES, stretch=st.floats(0.0, 2.0),
    num_frames=st.none() | st.integers(1, 120), extra=st.integers(0, 3000),
)
@example(total=86_400 * 2 + 5, video_fps=1.0, stretch=1.0, num_frames=None, extra=0)  # days
def test_text_equals_replace_video_token(
    total: int, video_fps: float, stretch: float, num_frames: int | None, extra: int
) -> None:
    plan = plan_video(video_info(total, video_fps, total / video_fps * stretch), DEFAULT,
                      num_frames=num_frames)
    intro = plan.frames + extra  # a longer video in the same call
    # the installed transformers' rule: the call's largest count, or the video's own
    cost = VideoCounter(KNOWN_SPECS[MODEL_IDS[0]], len, DEFAULT).cost(plan, intro)
    assert joined(cost.pieces, 2) == real_text(plan, 2, intro)


@given(timestamps=st.lists(st.floats(0, 50_000), min_size=1, max_size=40),
       duration=st.none() | st.floats(0, 100_000))
def test_text_of_user_sampled_frames(timestamps: list[float], duration: float | None) -> None:
    plan = plan_frames(timestamps, duration=duration)
    assert joined(video_pieces(plan), 1) == real_text(plan, 1, plan.frames)


def test_frames_without_metadata_are_24_fps() -> None:
    plan = plan_frames(indices=range(30))
    assert plan.timestamps[24] == 1.0
    assert video_pieces(plan)[0].startswith(
        "You are provided the following series of thirty frames from a 0:00:01 [H:MM:SS]")


def test_splice_glues_intro_and_outro_to_their_neighbours() -> None:
    cost = VideoCost(frames=2, timestamps=(0.0, 1.0), indices=(0, 1), total_frames=2, fps=1.0,
                     duration=2.0, intro_frames=2, image_tokens=2, block_tokens=8,
                     text_tokens=5, tokens=13, pieces=("intro-0", "line-1", "outro"))
    spliced = splice_videos("User: <video>Describe.", [cost])
    assert spliced.pieces == ("User: intro-0", "line-1", "outroDescribe.")
    assert (spliced.frames, spliced.block_tokens) == (2, 8)
    with pytest.raises(CountingError, match=r"1 <video> placeholders but 2 videos"):
        splice_videos("<video>", [cost, cost])


def test_json_fields() -> None:
    counter = VideoCounter(KNOWN_SPECS[MODEL_IDS[0]], len)  # text counted as characters
    cost = counter(video_info(1800, 30.0, 60.0))
    fields = cost.json_fields()
    assert list(fields) == ["path", "kind", "duration", "fps", "total_frames", "frames",
                            "image_tokens", "block_tokens", "tokens"]
    assert (fields["kind"], fields["frames"], fields["block_tokens"]) == ("video", 60, 60 * 84)
    assert fields["tokens"] == cost.text_tokens + cost.block_tokens


@pytest.mark.parametrize(("shared", "intro", "words"),
                         [(True, 10, "ten"), (False, 4, "four")])
def test_many_spells_the_call_s_largest_count_or_each_own(shared: bool, intro: int,
                                                          words: str) -> None:
    """transformers <= 5.24 spells the largest count of the call in every intro, 5.25 on
    each video's own (which rule is installed: the oracle tests)."""
    counter = VideoCounter(KNOWN_SPECS[MODEL_IDS[0]], len, shared_intro=shared)
    short, long = counter.many([video_info(40, 10.0), video_info(100, 10.0)])
    assert (short.frames, short.intro_frames, long.intro_frames) == (4, intro, 10)
    assert f"series of {words} frames" in short.pieces[0]
    assert counter.cost(counter.plan(video_info(40, 10.0)), 10) == short


def test_max_frames_within() -> None:
    counter = VideoCounter(KNOWN_SPECS[MODEL_IDS[0]], len)
    info = video_info(1800, 30.0, 60.0)
    limit = 2000
    cap = counter.max_frames_within(info, limit)
    assert cap is not None
    assert counter(info, num_frames=cap).tokens <= limit < counter(info, num_frames=cap + 1).tokens
    assert counter.max_frames_within(info, 10) is None


# ------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("checkpoint", MODEL_IDS)
def test_known_sampling_equals_folder_and_processor(checkpoint: str) -> None:
    from_folder = video_sampling_from_folder(checkpoint_folder(checkpoint))
    assert KNOWN_VIDEO_SAMPLING[checkpoint] == from_folder
    from_processor = video_sampling_from_processor(real_processor(checkpoint))
    # the processor's own fps and max_frames; its size is the image size (a transformers
    # quirk), which no count depends on
    assert (from_processor.fps, from_processor.max_frames) == (from_folder.fps,
                                                               from_folder.max_frames)


@pytest.mark.parametrize(
    ("config", "message"),
    [({}, "no 'video_sampling' object"),
     ({"video_sampling": {"fps": 0, "max_frames": 64, "video_size": {"longest_edge": 384}}},
      "video_sampling.fps must be greater than 0"),
     ({"video_sampling": {"fps": 1, "max_frames": 6.5, "video_size": 384}},
      "video_sampling.max_frames must be an integer"),
     ({"video_sampling": {"fps": 1, "max_frames": 64}}, "video_sampling.video_size must be")],
)
def test_bad_sampling_config(config: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        video_sampling_from_config(config, "pre.json")
    assert str(info.value).startswith("pre.json: ")
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "message"),
    [(lambda: video_info(0, 30.0), "total_frames must be at least 1, got 0"),
     (lambda: video_info(True, 30.0), "total_frames must be an integer, got True"),
     (lambda: video_info(10, 0.0), "fps must be greater than 0"),
     (lambda: video_info(10, float("nan")), "fps must be greater than 0, got nan"),
     (lambda: video_info(10, 30.0, -1.0), "duration must be at least 0"),
     (lambda: plan_video(video_info(10, 30.0), DEFAULT, num_frames=0), "num_frames must be at"),
     (lambda: plan_video(video_info(10, 30.0), DEFAULT, fps=-2), "fps must be greater than 0"),
     (lambda: plan_video(video_info(10, None), DEFAULT), "needs the video's fps"),
     (lambda: plan_frames(), "timestamps or their indices"),
     (lambda: plan_frames([]), "at least one frame"),
     (lambda: plan_frames([-1.0]), "timestamp must be at least 0"),
     (lambda: plan_frames(indices=[0.5]), "frame index must be an integer")],  # type: ignore[list-item]
)
def test_bad_numbers_are_one_line_errors(call: Any, message: str) -> None:
    with pytest.raises(CountingError, match=message) as info:
        call()
    assert isinstance(info.value, InputError)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import av

    folder = tmp_path_factory.mktemp("bad_videos")
    good = write_clip(folder / "good.mp4", 10, 5)
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("not a video at all\n" * 20)
    (folder / "sub").mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(folder / "image.png")
    with av.open(str(folder / "audio.wav"), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        import numpy as np

        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                           layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    write_clip(folder / "noheader.mkv", 10, 5)
    return {p.name: p for p in folder.iterdir()} | {"missing.mp4": folder / "missing.mp4"}


@pytest.mark.parametrize(
    ("name", "backend", "message"),
    [("missing.mp4", "torchcodec", "no such file"),
     ("sub", "torchcodec", "is a folder"),
     ("empty.mp4", "torchcodec", r"is empty \(0 bytes\)"),
     ("text.mp4", "torchcodec", "is not a video FFmpeg can read"),
     ("truncated.mp4", "torchcodec", "has no video stream"),
     ("image.png", "torchcodec", r"is an image \(.*\), not a video"),
     ("audio.wav", "torchcodec", "has no video stream"),
     ("noheader.mkv", "pyav", "records no frame count")],
)
def test_bad_files_name_the_file(bad_files: dict[str, Path], name: str, backend: Any,
                                 message: str) -> None:
    path = bad_files[name]
    with pytest.raises(VideoReadError, match=message) as info:
        read_video_info(path, backend)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)
    assert isinstance(info.value, InputError)


def test_missing_pyav_says_how_to_install(bad_files: dict[str, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    hint = r"needs PyAV: pip install 'pytest-tokenguard\[video\]'"
    with pytest.raises(VideoReadError, match=hint):
        read_video_info(bad_files["good.mp4"])


def test_matroska_is_read_by_scanning(bad_files: dict[str, Path]) -> None:
    info = read_video_info(bad_files["noheader.mkv"])
    assert (info.total_frames, info.fps, info.duration) == (10, 5.0, 2.0)


def test_clip_rates_survive_the_scan(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "ntsc.mp4", 30, Fraction(30000, 1001))
    info = read_video_info(path)
    header = read_video_info(path, "pyav")
    assert info.total_frames == header.total_frames == 30
    assert info.fps == pytest.approx(30000 / 1001)
    assert header.fps == 30000 / 1001


def test_video_paths(tmp_path: Path) -> None:
    for name in ("a.MP4", "b.webm", "c.png", "d.gif", "e.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in iter_video_paths([str(tmp_path)])] == ["a.MP4", "b.webm"]
    assert is_video_path("x.mkv")
    assert not is_video_path("x.gif")
    assert list(iter_video_paths(["named.txt"])) == [Path("named.txt")]  # named: kept


# ------------------------------------------------------------------------ fixes offered


def test_costs_by_num_frames_and_fps_are_each_counted_exactly() -> None:
    """What a failing video_tokens marker reads its fix from: every entry is the count."""
    from pytest_tokenguard.video import largest_within

    counter = VideoCounter(KNOWN_SPECS[MODEL_IDS[0]], len)
    info = video_info(1800, 30.0, 60.0)
    by_num = counter.tokens_by_num_frames(info)
    assert len(by_num) == 64
    assert by_num[7] == counter(info, num_frames=8).tokens
    assert by_num[63] == counter(info).tokens  # the default: 60 frames, capped at 64
    assert largest_within(by_num, by_num[20]) == counter.max_frames_within(info, by_num[20])
    assert largest_within(by_num, by_num[0] - 1) is None
    by_fps = counter.tokens_by_fps(info)
    assert [rate for rate, _ in by_fps] == sorted({rate for rate, _ in by_fps})
    for rate, tokens in by_fps:
        assert tokens == counter(info, fps=rate).tokens
        assert rate == int(rate * 1000) / 1000  # three decimals, as a person writes it
    assert counter.tokens_by_fps(video_info(10, 5.0, 0.0)) == ()


def test_light_processor_sampling_is_the_checkpoint_s() -> None:
    """`tokenguard split` counts with the tokenizer-only processor: its videos are sampled
    with the checkpoint's video_sampling (the folder's, or the known checkpoint's)."""
    from pytest_tokenguard.processor.light import light_processor
    from pytest_tokenguard.processor.source import resolve_source
    from pytest_tokenguard.video import video_sampling_from_processor

    for model in MODEL_IDS:
        source = resolve_source(model, network_timeout=None)
        processor = light_processor(source)
        if source.folder is None:
            assert video_sampling_from_processor(processor) == KNOWN_VIDEO_SAMPLING[model]
    with pytest.raises(SpecError, match="has no video_processor"):
        video_sampling_from_processor(types.SimpleNamespace(name_or_path="elsewhere/model"))
