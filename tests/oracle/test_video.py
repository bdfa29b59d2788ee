"""The video counter equals the real SmolVLMProcessor's ``input_ids``, on all three checkpoints.

Three oracles:

* metadata: ``processor(text=["<video>"], videos=[[frames]], video_metadata=[...])`` over
  durations, frame rates, frame counts, per-call ``num_frames``/``fps``/``size`` and
  both sampling modes (frames a few pixels wide: only the sampled ones are processed);
* files: clips written with PyAV in several containers, given to the processor by path,
  directly and through ``apply_chat_template`` with a ``{"type": "video", "path": ...}``
  item (needs torchcodec, transformers' only path decoder; skipped with the reason
  otherwise);
* metadata reading: :func:`read_video_info` equals what transformers' loaders report.

The expected ids are the processor's; the counter's text is also re-tokenized and
compared id for id, so a wrong word would fail even where the count happened to agree.
"""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pytest_tokenguard.counting import count_image
from pytest_tokenguard.testing.profiles import processor_examples
from pytest_tokenguard.tokens import TokenCounter
from pytest_tokenguard.video import (
    VideoCost,
    VideoCounter,
    intros_spell_the_largest,
    plan_frames,
    read_video_info,
    splice_videos,
    video_info,
)
from tests.helpers import (
    CHECKPOINTS,
    CLIP_FORMATS,
    RESOLUTIONS,
    ClipCache,
    checkpoint_folder,
    counter,
    torchcodec_missing,
)

BLOCK = "<fake_token_around_image><global-img>{}<fake_token_around_image>"


def expected_text(cost: VideoCost, seq: int) -> str:
    """The counter's idea of what replaces ``<video>``, as one string."""
    return BLOCK.format("<image>" * seq).join(cost.pieces)


def video_ids(processor: Any, **kwargs: Any) -> list[int]:
    """The ids of one ``<video>`` prompt; ``videos`` nested per sample, as transformers
    5.17 requires and 5.24 accepts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = processor(text=["<video>"], return_tensors="pt", **kwargs)
    return [int(i) for i in out["input_ids"][0]]


def assert_exact(c: TokenCounter, cost: VideoCost, ids: list[int]) -> None:
    processor = c.processor
    assert len(ids) == cost.tokens
    assert ids.count(processor.image_token_id) == cost.image_tokens
    text = expected_text(cost, c.spec.image_seq_len)
    assert processor.tokenizer(text, add_special_tokens=False)["input_ids"] == ids


@pytest.fixture(scope="session")
def folder_counters() -> dict[str, VideoCounter]:
    """Counters built from the folders alone (tokenizers, no transformers)."""
    return {ckpt: VideoCounter.from_folder(checkpoint_folder(ckpt)) for ckpt in CHECKPOINTS}


# ------------------------------------------------------------------------------ metadata

VIDEO_RATES = st.sampled_from(
    [0.5, 1.0, 2.0, 5.0, 7.5, 12.0, 24000 / 1001, 24.0, 25.0, 30000 / 1001, 30.0, 60.0]
) | st.floats(0.2, 90)
SAMPLE_NUM_FRAMES = st.none() | st.integers(1, 80)
SAMPLE_FPS = st.none() | st.sampled_from([0.5, 1, 2, 3.5]) | st.floats(0.05, 8)
VIDEO_SIZE = st.none() | st.sampled_from([32, 384, 1000])


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
@settings(max_examples=processor_examples())
@given(
    total=st.integers(1, 400), video_fps=VIDEO_RATES, stretch=st.sampled_from([1.0, 1.0, 0.7])
    | st.floats(0.0, 2.5), num_frames=SAMPLE_NUM_FRAMES, fps=SAMPLE_FPS, size=VIDEO_SIZE,
    sample=st.booleans(),
)
@example(total=1800, video_fps=30.0, stretch=1.0, num_frames=None, fps=None, size=None,
         sample=True)  # a one-minute clip at the defaults: 60 frames
@example(total=100, video_fps=1.0, stretch=1.0, num_frames=None, fps=None, size=None,
         sample=True)  # long enough for the centre skip, more frames than max_frames
@example(total=10, video_fps=24.0, stretch=1.0, num_frames=None, fps=None, size=None,
         sample=True)  # under a second
@example(total=20, video_fps=2.0, stretch=1.0, num_frames=None, fps=10, size=None,
         sample=True)  # a rate above the video's own
def test_counter_equals_processor_on_metadata(
    checkpoint: str, folder_counters: dict[str, VideoCounter], total: int, video_fps: float,
    stretch: float, num_frames: int | None, fps: float | None, size: int | None, sample: bool,
) -> None:
    import numpy as np

    if not sample:
        total = min(total, 40)  # every frame is kept: keep it small
    duration = total / video_fps * stretch
    c = counter(checkpoint)
    kwargs: dict[str, Any] = {}
    if num_frames is not None:
        kwargs["num_frames"] = num_frames
    if fps is not None:
        kwargs["fps"] = fps
    if size is not None:
        kwargs["size"] = {"longest_edge": size}
    metadata: dict[str, Any] = {"total_num_frames": total, "fps": video_fps, "duration": duration}
    info: Any = video_info(total, video_fps, duration)
    if not sample:  # every frame passed, with its index, as a loader reports a whole file
        metadata["frames_indices"] = list(range(total))
        info = plan_frames(indices=range(total), fps=video_fps, duration=duration)
    frames = np.zeros((total, 8, 10, 3), np.uint8)
    ids = video_ids(c.processor, videos=[[frames]], video_metadata=[metadata],
                    do_sample_frames=sample, **kwargs)
    cost = c.video(info, num_frames=num_frames, fps=fps, video_size=size, do_sample_frames=sample)
    assert_exact(c, cost, ids)
    assert folder_counters[checkpoint](info, num_frames=num_frames, fps=fps,
                                       do_sample_frames=sample) == cost


def test_unsampled_metadata_without_indices_is_refused_as_the_processor_refuses_it() -> None:
    """``do_sample_frames=False`` with ``video_metadata`` that has no ``frames_indices``:
    the processor raises (it cannot time the frames), so the counter gives no count."""
    import numpy as np

    from pytest_tokenguard.errors import CountingError

    c = counter("2.2B")
    metadata = {"total_num_frames": 10, "fps": 5.0, "duration": 2.0}
    with pytest.raises(ValueError, match="Cannot infer video `timestamps`"):
        video_ids(c.processor, videos=[[np.zeros((10, 8, 10, 3), np.uint8)]],
                  video_metadata=[metadata], do_sample_frames=False)
    with pytest.raises(CountingError, match="no frame indices"):
        c.video(video_info(10, 5.0, 2.0), do_sample_frames=False)
    # with the indices, as the message says, both count
    ids = video_ids(c.processor, videos=[[np.zeros((10, 8, 10, 3), np.uint8)]],
                    video_metadata=[{**metadata, "frames_indices": list(range(10))}],
                    do_sample_frames=False)
    assert_exact(c, c.video(plan_frames(indices=range(10), fps=5.0, duration=2.0)), ids)


@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
def test_one_minute_clip_at_the_defaults(checkpoint: str) -> None:
    """The issue's example: 60 frames, each a single-image block, whatever the edge."""
    import numpy as np

    c = counter(checkpoint)
    metadata = {"total_num_frames": 1800, "fps": 30.0, "duration": 60.0}
    ids = video_ids(c.processor, videos=[[np.zeros((1800, 8, 10, 3), np.uint8)]],
                    video_metadata=[metadata], do_sample_frames=True)
    cost = c.video(video_info(1800, 30.0, 60.0))
    assert_exact(c, cost, ids)
    assert cost.frames == 60
    assert cost.block_tokens == 60 * (c.spec.image_seq_len + 3)


@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
def test_videos_of_one_call_are_introduced_as_the_installed_transformers_does(
        checkpoint: str) -> None:
    """transformers <= 5.24 spells the padded batch's frame count in every intro (a 4-frame
    video next to a 21-frame one is introduced as "twenty-one frames"); 5.25 on spells
    each video's own ("four"). VideoCounter.many follows the installed version."""
    import numpy as np

    c = counter(checkpoint)
    text = "Compare <video> with\n<video>"
    shapes = [(40, 10.0, 4.0), (210, 10.0, 21.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = c.processor(
            text=[text], return_tensors="pt", do_sample_frames=True,
            videos=[[np.zeros((n, 8, 10, 3), np.uint8) for n, _, _ in shapes]],
            video_metadata=[{"total_num_frames": n, "fps": f, "duration": d}
                            for n, f, d in shapes])
    ids = [int(i) for i in out["input_ids"][0]]
    costs = c.video_counter.many([video_info(n, f, d) for n, f, d in shapes])
    assert [cost.intro_frames for cost in costs] == (
        [21, 21] if intros_spell_the_largest() else [4, 21])
    spliced = splice_videos(text, costs)
    assert sum(c.text(piece) for piece in spliced.pieces) + spliced.block_tokens == len(ids)
    expanded = BLOCK.format("<image>" * c.spec.image_seq_len).join(spliced.pieces)
    assert c.processor.tokenizer(expanded, add_special_tokens=False)["input_ids"] == ids
    alone = c.video(video_info(*shapes[0]))  # "four" and "twenty-one" differ in tokens
    assert (alone.tokens != costs[0].tokens) is intros_spell_the_largest()


def test_frames_sent_as_a_video_cost_the_same_at_every_longest_edge() -> None:
    """8 frames of 384×384 through ``videos=`` (no metadata): one block each at any
    ``longest_edge``; as images they are tiled by ``longest_edge`` instead."""
    from PIL import Image

    frames = [Image.new("RGB", (384, 384), (10, 20, 30)) for _ in range(8)]
    totals = set()
    for edge in RESOLUTIONS:
        c = counter("2.2B", edge)
        ids = video_ids(c.processor, videos=[[frames]])
        cost = c.video(plan_frames(indices=range(8)))
        assert_exact(c, cost, ids)
        totals.add(cost.tokens)
        as_images = 8 * count_image(384, 384, edge, c.spec).block_tokens
        assert as_images != cost.tokens  # the two paths must never be mixed up
    assert len(totals) == 1


# --------------------------------------------------------------------------------- files

RATES = st.sampled_from([1, 2, 3, 5, Fraction(15, 2), 12, 24, Fraction(30000, 1001)])


def _chat_count(c: TokenCounter, messages: list[dict[str, Any]], cost: VideoCost) -> int:
    rendered = c.processor.apply_chat_template(messages, tokenize=False)
    spliced = splice_videos(rendered, [cost])
    specials = len(c.tokenizer("", add_special_tokens=True)["input_ids"])
    return sum(c.text(piece) for piece in spliced.pieces) + spliced.block_tokens + specials


@pytest.mark.slow
@pytest.mark.usefixtures("decodes_paths")
@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
@settings(max_examples=processor_examples())
@given(
    fmt=st.sampled_from(CLIP_FORMATS), rate=RATES, frames=st.integers(1, 100),
    mode=st.sampled_from(["defaults", "num_frames", "fps", "both", "every frame"]),
    num_frames=st.integers(1, 12), fps=st.sampled_from([0.5, 2, 4]), chat=st.booleans(),
    text=st.sampled_from(["", "Describe the video.", "\nWhat happens?", " 12 frames"]),
)
@example(fmt=(".mp4", "mpeg4"), rate=1, frames=70, mode="defaults", num_frames=1, fps=1,
         chat=True, text="Describe the video.")  # the centre skip, through the template
def test_counter_equals_processor_on_files(
    checkpoint: str, clips: ClipCache, fmt: tuple[str, str], rate: Any, frames: int, mode: str,
    num_frames: int, fps: float, chat: bool, text: str,
) -> None:
    if mode == "every frame":
        frames = min(frames, 30)
    path = clips(frames, rate, *fmt)
    c = counter(checkpoint)
    kwargs: dict[str, Any] = {}
    if mode in ("num_frames", "both"):
        kwargs["num_frames"] = num_frames
    if mode in ("fps", "both"):
        kwargs["fps"] = fps
    sample = mode != "every frame"
    cost = c.video(path, do_sample_frames=sample, **kwargs)
    if chat:
        content: list[dict[str, Any]] = [{"type": "video", "path": str(path)}]
        if text:
            content.append({"type": "text", "text": text})
        messages = [{"role": "user", "content": content}]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = c.processor.apply_chat_template(
                messages, tokenize=True, return_dict=True, return_tensors="pt",
                processor_kwargs={**kwargs, "do_sample_frames": sample})
        ids = [int(i) for i in out["input_ids"][0]]
        assert _chat_count(c, messages, cost) == len(ids)
        assert ids.count(c.processor.image_token_id) == cost.image_tokens
    else:
        assert_exact(c, cost, video_ids(c.processor, videos=[[str(path)]],
                                         do_sample_frames=sample, **kwargs))


@pytest.mark.parametrize("fmt", CLIP_FORMATS)
@pytest.mark.parametrize(("frames", "rate"), [(1, 5), (7, Fraction(30000, 1001)), (23, 24),
                                              (40, Fraction(15, 2))])
def test_metadata_equals_what_transformers_loads(
    clips: ClipCache, fmt: tuple[str, str], frames: int, rate: Any
) -> None:
    """torchcodec (the processor's path loader) and load_video(backend="pyav") report
    exactly the numbers read_video_info reads, float for float."""
    from transformers.video_utils import load_video

    path = clips(frames, rate, *fmt)

    def first(metadata: Any, **_: Any) -> list[int]:
        return [0]

    missing = torchcodec_missing()
    scanned = read_video_info(path)
    if missing is None:
        _, loaded = load_video(str(path), backend="torchcodec", sample_indices_fn=first)
        assert (scanned.total_frames, scanned.fps, scanned.duration) == (
            loaded.total_num_frames, loaded.fps, loaded.duration)
    assert scanned.total_frames == frames
    if fmt[0] in (".mp4", ".avi", ".mov"):  # containers with a frame count in the header
        _, loaded = load_video(str(path), backend="pyav", sample_indices_fn=first)
        header = read_video_info(path, "pyav")
        assert (header.total_frames, header.fps, header.duration) == (
            loaded.total_num_frames, loaded.fps, loaded.duration)
    if missing:
        pytest.skip(f"torchcodec side not checked: {missing}")


@pytest.mark.usefixtures("decodes_paths")
@pytest.mark.parametrize("fmt", CLIP_FORMATS[:4])
def test_metadata_of_damaged_files_equals_torchcodec(
    clips: ClipCache, tmp_path: Path, fmt: tuple[str, str]
) -> None:
    """200 garbage bytes a third of the way in: the demuxer resyncs and loses packets
    (Matroska, WebM) or not (MP4, AVI); the scan loses exactly the ones torchcodec loses."""
    import random

    from transformers.video_utils import load_video

    from pytest_tokenguard.errors import VideoReadError

    data = bytearray(clips(60, 5, *fmt).read_bytes())
    rng = random.Random(len(data))
    start = len(data) // 3
    data[start:start + 200] = bytes(rng.randrange(256) for _ in range(200))
    damaged = tmp_path / f"damaged{fmt[0]}"
    damaged.write_bytes(bytes(data))
    try:
        _, loaded = load_video(str(damaged), backend="torchcodec",
                               sample_indices_fn=lambda metadata, **_: [0])
    except Exception:  # torchcodec refuses the file: so must the scan
        with pytest.raises(VideoReadError):
            read_video_info(damaged)
        return
    info = read_video_info(damaged)
    assert (info.total_frames, info.fps, info.duration) == (
        loaded.total_num_frames, loaded.fps, loaded.duration)


def test_folder_counter_needs_no_transformers(tmp_path: Path) -> None:
    """VideoCounter.from_folder and read_video_info import neither torch nor transformers."""
    import subprocess
    import sys

    from tests.helpers import write_clip

    clip = write_clip(tmp_path / "clip.mp4", 12, 4)
    code = (
        "import sys\n"
        "from pytest_tokenguard.video import VideoCounter\n"
        f"cost = VideoCounter.from_folder({str(checkpoint_folder('2.2B'))!r})({str(clip)!r})\n"
        "assert 'transformers' not in sys.modules and 'torch' not in sys.modules\n"
        "print(cost.frames, cost.tokens)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    expected = counter("2.2B").video(clip)
    assert result.stdout.split() == [str(expected.frames), str(expected.tokens)]
