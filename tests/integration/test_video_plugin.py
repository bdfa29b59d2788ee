"""Videos under the plugin: the recorder records them, ``video_tokens`` guards them.

The planted suites load the processor by its hub id offline (the embedded default), as
on a user's machine without a model cache, and feed it a real clip file through
``apply_chat_template`` with a video item, as training code does. transformers decodes
a video path only with torchcodec: where it cannot, these tests skip with the reason.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers.models.smolvlm.processing_smolvlm")
pytest.importorskip("PIL.Image")
pytest.importorskip("av")

# pytester's in-process runs drop the modules first imported inside them: the video
# counter is imported here, once, so the counters cached across tests keep one class
from pytest_tokenguard.figures import figures_from_recording
from pytest_tokenguard.processor.recording import Recorder, VideoRecord
from pytest_tokenguard.video import video_info
from tests.helpers import counter, write_clip

MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"
ARGS = ("--tokenguard", f"--tokenguard-model={MODEL}")

PLANTED = """
import pytest

MODEL = {model!r}
CLIP = {clip!r}

def build():
    # the code under test builds its own processor, with the checkpoint's defaults
    from pytest_tokenguard.processor.loading import load_processor
    return load_processor(MODEL).processor

def sample(**kwargs):
    messages = [{{"role": "user", "content": [
        {{"type": "video", "path": CLIP}}, {{"type": "text", "text": "Describe the video."}}]}}]
    return build().apply_chat_template(messages, tokenize=True, return_dict=True,
                                       return_tensors="pt", **kwargs)

@pytest.mark.video_tokens(4096)
@pytest.mark.max_sequence_tokens(4096)
def test_a_minute_at_the_defaults():
    sample()

@pytest.mark.video_tokens(4096)
@pytest.mark.max_sequence_tokens(4096)
def test_a_minute_at_{frames}_frames():
    sample(num_frames={frames})
"""


@pytest.fixture(scope="module")
def minute_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One minute at 30 frames a second (1,800 frames, a few pixels each)."""
    return write_clip(tmp_path_factory.mktemp("clips") / "minute.mp4", 1800, 30)


@pytest.mark.usefixtures("decodes_paths")
def test_a_minute_at_the_defaults_fails_with_the_fix_and_fewer_frames_pass(
    pytester: pytest.Pytester, minute_clip: Path
) -> None:
    c = counter("2.2B")
    info = c.video_counter.plan(minute_clip)
    cap = c.video_counter.max_frames_within(minute_clip, 4096)
    assert cap is not None
    fits = c.video(minute_clip, num_frames=cap).tokens
    full = c.video(minute_clip)
    assert (info.frames, full.frames) == (60, 60)
    # a sample of 4,096 holds the video alone at `cap` frames, and the prompt around it
    # at fewer: the passing test asks for 32
    pytester.makepyfile(PLANTED.format(model=MODEL, clip=str(minute_clip), frames=32))
    result = pytester.runpytest(*ARGS, "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "Sequence '*::test_a_minute_at_the_defaults call 1 sample 0' is 5680 tokens, over "
        "the limit of 4096 by 1584",
        "*sample fewer video frames (num_frames=...*",
        f"Video 'minute.mp4' (60 of 1800 frames sampled, 60 s at 30 fps) cost {full.tokens} "
        f"tokens, over the declared 4096 by {full.tokens - 4096}; num_frames={cap} fits "
        f"({fits} tokens*apply_chat_template(..., num_frames={cap})*",
        "*minute.mp4      60    1800     4860    5040    5670",
    ])
    result.stdout.fnmatch_lines(["*= tokenguard =*", "*videos*frames*video tokens*",
                                 f"*test_a_minute_at_the_defaults*1*60*{full.tokens}*5680*"])


# ------------------------------------------------------------------ the recorder


def run_recorded(fn: Any) -> Any:
    recorder = Recorder()
    recorder.install()
    try:
        with recorder.record("t") as recording, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
        return recording
    finally:
        recorder.uninstall()


def test_videos_are_recorded_apart_from_images() -> None:
    """A call with an image and a video: the image is an image (image_tokens keeps its
    meaning), the video a video, each as the processor wrote it."""
    import numpy as np
    from PIL import Image

    c = counter("2.2B")
    processor = c.processor
    frames = np.zeros((300, 8, 10, 3), np.uint8)

    def call() -> None:
        processor(text=["<image> and <video>"], images=[[Image.new("RGB", (384, 384))]],
                  videos=[[frames]], video_metadata=[{"total_num_frames": 300, "fps": 30.0,
                                                      "duration": 10.0}],
                  do_sample_frames=True, num_frames=8, return_tensors="pt")

    recording = run_recorded(call)
    assert len(recording.images) == 1
    (video,) = recording.videos
    cost = c.video(video_info(300, 30.0, 10.0), num_frames=8)
    assert (video.frames, video.image_tokens, video.block_tokens, video.tokens) == (
        cost.frames, cost.image_tokens, cost.block_tokens, cost.tokens)
    assert (video.name, video.total_frames, video.fps, video.duration) == ("", 300, 30.0, 10.0)
    assert (video.sampled, video.num_frames, video.max_frames) == (True, 8, 64)
    assert video.by_num_frames == c.video_counter.tokens_by_num_frames(video_info(300, 30.0,
                                                                                  10.0))
    assert video.longest_edge == recording.sequences[0].longest_edge
    (figures,) = figures_from_recording(recording)
    assert (figures.images, figures.videos, figures.video_frames) == (1, 1, 8)
    assert VideoRecord.from_json(video.to_json()) == video  # what a child process writes


def test_a_direct_call_keeps_every_frame_and_is_recorded_so(minute_clip: Path) -> None:
    """transformers' trap: processor(text, videos=...) samples nothing by default."""
    import numpy as np

    processor = counter("2.2B").processor
    frames = np.zeros((90, 8, 10, 3), np.uint8)
    recording = run_recorded(lambda: processor(
        text=["<video>"], videos=[[frames]], return_tensors="pt",
        video_metadata=[{"total_num_frames": 90, "fps": 30.0, "duration": 3.0,
                         "frames_indices": list(range(90))}]))
    (video,) = recording.videos
    assert (video.frames, video.sampled) == (90, False)
    assert recording.sequences[0].length == video.tokens


@pytest.mark.usefixtures("decodes_paths")
def test_a_chat_template_video_is_recorded_with_its_file_name(minute_clip: Path) -> None:
    processor = counter("2.2B").processor
    messages = [{"role": "user", "content": [{"type": "video", "path": str(minute_clip)}]}]
    recording = run_recorded(lambda: processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_tensors="pt", num_frames=5))
    (video,) = recording.videos
    assert (video.name, video.label, video.frames, video.num_frames) == (
        str(minute_clip), "minute.mp4", 5, 5)
    assert (video.total_frames, video.fps, video.duration) == (1800, 30.0, 60.0)
