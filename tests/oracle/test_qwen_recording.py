"""What the recorder reads off real Qwen-VL processor calls equals what they wrote.

The real transformers Qwen2-VL, Qwen2.5-VL and Qwen3-VL processors are built offline from
the published settings (tests/qwen_helpers.py) and called as user code calls them, with
per-call settings, while a :class:`Recorder` is installed. Each recorded image's
``<|image_pad|>`` tokens equal those in the returned ``input_ids``, its grid equals
``image_grid_thw``, its pixel bounds are the ones the arithmetic prices it with; each
sequence's length equals the returned one; each video's pads, wrappers and (Qwen3-VL)
timestamp text equal what the processor wrote in place of its placeholder.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from pytest_tokenguard.families.qwen import (
    IMAGE_PAD,
    VIDEO_PAD,
    VISION_END,
    VISION_START,
    QwenSettings,
    count_qwen_image,
    count_qwen_video,
    qwen_settings_from_kwargs,
)
from pytest_tokenguard.processor.recording import Recorder, Recording
from pytest_tokenguard.processor.recording.qwen import REFUSED
from pytest_tokenguard.testing.profiles import processor_examples
from pytest_tokenguard.video import video_info
from tests.qwen_helpers import GENERATIONS, model_spec, processor

MODELS = list(GENERATIONS.values())
IMAGE_BLOCK = VISION_START + IMAGE_PAD + VISION_END
VIDEO_BLOCK = VISION_START + VIDEO_PAD + VISION_END

SIDES = st.integers(8, 2400) | st.sampled_from([28, 29, 32, 56, 4032])
CALL_SETTINGS = st.sampled_from([
    {}, {"max_pixels": 50176}, {"max_pixels": 1003520}, {"min_pixels": 200704},
    {"size": {"shortest_edge": 3136, "longest_edge": 401408}},
    {"images_kwargs": {"max_pixels": 230400}},
    {"images_kwargs": {"size": {"shortest_edge": 65536, "longest_edge": 65536}}},
])


@contextmanager
def recording_of(name: str) -> Iterator[Recording]:
    """A recorder of its own for one block, installed and removed inside it: recorders
    must be removed in the reverse order of their installation (the suite's own, under
    --tokenguard, outlives it), which a fixture shared across tests cannot promise."""
    recorder = Recorder()
    recorder.install()
    try:
        with recorder.record(name) as recording:
            yield recording
    finally:
        recorder.uninstall()


def _call(proc: Any, **kwargs: Any) -> tuple[Recording, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with recording_of("t") as recording:
            out = proc(return_tensors="pt", **kwargs)
    return recording, out


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
@settings(max_examples=processor_examples(25), deadline=None)
@given(sizes=st.lists(st.tuples(SIDES, SIDES), min_size=1, max_size=3), call=CALL_SETTINGS)
@example(sizes=[(4032, 3024)], call={})  # a phone photo at the defaults
@example(sizes=[(1024, 768), (20, 20)], call={"max_pixels": 1003520})
def test_recorded_images_and_sequences_equal_the_processor(
        model: str, sizes: list[tuple[int, int]],
        call: dict[str, Any]) -> None:
    from PIL import Image

    assume(all(max(size) / min(size) <= 200 for size in sizes))  # else the processor raises
    proc = processor(model)
    images = [Image.new("RGB", size, (90, 120, 30)) for size in sizes]
    texts = [f"sample {i} {IMAGE_BLOCK} end" for i in range(len(sizes))]
    recording, out = _call(proc, text=texts, images=[[i] for i in images],
                           padding=True, **call)
    assert recording.unseen == []
    grids = out["image_grid_thw"].tolist()
    assert len(recording.images) == len(sizes)
    for index, (record, (width, height)) in enumerate(zip(recording.images, sizes, strict=True)):
        ids = [int(i) for i in out["input_ids"][index]]
        written = ids.count(proc.image_token_id)
        assert (record.width, record.height) == (width, height)
        assert record.image_tokens == written
        assert [1, record.rows, record.cols] == grids[index]
        assert record.patches == record.rows * record.cols
        assert record.block_tokens == written + 2
        assert record.longest_edge is None
        assert record.family == "qwen-vl"
        ours = count_qwen_image(width, height, model_spec(model), qwen_settings_from_kwargs(call))
        assert (record.min_pixels, record.max_pixels) == (ours.min_pixels, ours.max_pixels)
        assert ours.image_tokens == written
    lengths = out["attention_mask"].sum(-1).tolist()
    assert [s.length for s in recording.sequences] == lengths
    assert all(s.longest_edge is None and s.note == "" for s in recording.sequences)


@pytest.mark.parametrize("model", MODELS)
def test_a_refused_setting_is_named_never_priced(model: str) -> None:
    """``do_resize=False`` patches the image at its own size, which tokenguard does not
    count: the call goes on, and is named as unrecorded."""
    from PIL import Image

    proc = processor(model)
    recording, out = _call(proc, text=[IMAGE_BLOCK],
                           images=[Image.new("RGB", (224, 224))], do_resize=False)
    assert "input_ids" in out
    assert recording.images == []
    assert len(recording.unseen) == 1
    assert "do_resize=False" in recording.unseen[0]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("total", "rate", "kwargs"), [
    (48, 24.0, {"do_sample_frames": True, "fps": 2}),
    (30, 10.0, {"do_sample_frames": True, "num_frames": 6}),
    (8, 4.0, {}),
])
def test_recorded_videos_equal_the_processor(model: str, total: int, rate: float,
                                             kwargs: dict[str, Any]) -> None:
    import numpy as np

    proc = processor(model)
    spec = model_spec(model)
    if spec.timestamps and "num_frames" in kwargs:
        pytest.skip("Qwen3-VL's own fps=2 clashes with a call's num_frames: the processor "
                    "raises (tests/oracle/test_qwen.py)")
    frames = np.zeros((total, 60, 80, 3), np.uint8)
    metadata: dict[str, Any] = {"total_num_frames": total, "fps": rate, "duration": total / rate}
    if spec.timestamps and not kwargs.get("do_sample_frames", True):
        metadata["frames_indices"] = list(range(total))
    recording, out = _call(proc, text=[f"x{VIDEO_BLOCK}y"], videos=[frames],
                           video_metadata=[metadata], **kwargs)
    assert recording.unseen == []
    [video] = recording.videos
    ids = [int(i) for i in out["input_ids"][0]]
    written = "".join(proc.tokenizer.convert_ids_to_tokens(ids))
    assert video.image_tokens == ids.count(proc.video_token_id)
    # everything written for the video: all but the text around its placeholder
    assert video.tokens == len(ids) - 2
    assert written.startswith("x")
    assert written.endswith("y")
    assert video.block_tokens == written.count(VISION_START) + written.count(VISION_END) + \
        video.image_tokens
    ours = count_qwen_video(video_info(total, rate, width=80, height=60), spec,
                            num_frames=kwargs.get("num_frames"), fps=kwargs.get("fps"),
                            do_sample_frames=kwargs.get("do_sample_frames"),
                            settings=QwenSettings(), text=len)
    assert (video.image_tokens, video.block_tokens, video.tokens) == (
        ours.video_tokens, ours.block_tokens, ours.tokens)
    assert video.frames == ours.frames
    assert video.family == "qwen-vl"

    # the cost at every num_frames, which a failing video_tokens marker reads its fix from,
    # is what the processor writes at that num_frames (or refuses)
    assert len(video.by_num_frames) == min(total, spec.sampling.max_frames)
    for n in sorted({1, 2, 3, total // 2, total}):
        kwargs_n: dict[str, Any] = {"do_sample_frames": True, "num_frames": n}
        if spec.timestamps:
            kwargs_n["fps"] = None  # the processor's own fps=2 would clash
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                real = proc(text=[f"x{VIDEO_BLOCK}y"], videos=[frames],
                            video_metadata=[metadata], **kwargs_n)
        except (ValueError, ZeroDivisionError, TypeError):
            assert video.by_num_frames[n - 1] == REFUSED, n
            continue
        assert video.by_num_frames[n - 1] == len(real["input_ids"][0]) - 2, n



class Samples:
    """A map-style dataset of sample indices (module level: workers must pickle it)."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        return index


def collate(batch: list[int], model: str) -> Any:
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return processor(model)(text=[f"{IMAGE_BLOCK} sample {i}" for i in batch],
                                images=[[Image.new("RGB", (1024, 768))] for _ in batch],
                                images_kwargs={"max_pixels": 200704}, padding=True,
                                return_tensors="pt")["input_ids"]


def test_forked_dataloader_workers_record_qwen_calls() -> None:
    """A worker's Qwen records travel back whole (their family, bounds and grid)."""
    torch_data = pytest.importorskip("torch.utils.data")
    model = GENERATIONS["qwen2_5_vl"]
    with recording_of("in process") as here:
        collate([0], model)
    with recording_of("t") as recording:
        loader = torch_data.DataLoader(Samples(), batch_size=2, num_workers=2,
                                       collate_fn=functools.partial(collate, model=model),
                                       multiprocessing_context="fork")
        assert len(list(loader)) == 2
    assert recording.unseen == []
    assert recording.calls == 2
    assert recording.images == here.images * 4
    assert all(" process " in s.name for s in recording.sequences)


def test_qwen_sequences_carry_their_calls_pixel_budget_across_processes() -> None:
    """A Qwen call's sequences are grouped with its images under its pixel budget
    (min_pixels, max_pixels), in the process and from a forked DataLoader worker alike."""
    from pytest_tokenguard.figures import PixelBounds, figures_from_recording

    torch_data = pytest.importorskip("torch.utils.data")
    model = GENERATIONS["qwen2_5_vl"]
    with recording_of("t") as recording:
        collate([0], model)
        loader = torch_data.DataLoader(Samples(), batch_size=2, num_workers=1,
                                       collate_fn=functools.partial(collate, model=model),
                                       multiprocessing_context="fork")
        assert len(list(loader)) == 2
    budget = PixelBounds(3136, 200704)
    assert len(recording.sequences) == 5
    assert {s.pixels for s in recording.sequences} == {budget}
    [figures] = figures_from_recording(recording)
    assert (figures.longest_edge, figures.pixels, figures.images) == (None, budget, 5)


def _video_tokens(proc: Any, frames: Any, metadata: dict[str, Any], **kwargs: Any) -> int:
    """What the real processor writes in place of the video's placeholder."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = proc(text=[f"x{VIDEO_BLOCK}y"], videos=[frames], video_metadata=[metadata],
                   **kwargs)
    return len(out["input_ids"][0]) - 2


@pytest.mark.parametrize("model", MODELS)
def test_a_video_tokens_failure_names_the_num_frames_and_fps_that_fit(model: str) -> None:
    """The fix a failing ``video_tokens`` marker names on a Qwen video (the largest
    ``num_frames`` and the largest ``fps`` whose cost fits) is what the real processor
    writes at that setting, within the limit; the next rate tried does not fit."""
    import re

    import numpy as np

    from pytest_tokenguard.plugin.markers import check_video_tokens

    proc = processor(model)
    total, rate = 120, 10.0
    frames = np.zeros((total, 60, 80, 3), np.uint8)
    metadata: dict[str, Any] = {"total_num_frames": total, "fps": rate, "duration": total / rate}
    recording, _ = _call(proc, text=[f"x{VIDEO_BLOCK}y"], videos=[frames],
                         video_metadata=[metadata], do_sample_frames=True, fps=4)
    [video] = recording.videos
    limit = video.tokens // 3
    result = check_video_tokens([video], limit)
    assert not result.passed
    found = re.search(r"num_frames=(\d+) fits \((\d+) tokens;.*; or fps=([\d.]+) \((\d+) "
                      r"tokens; processor\(\.\.\., videos=\.\.\., do_sample_frames=True, "
                      r"fps=\3\)\)", result.message)
    assert found, result.message
    cap, cap_tokens, fps, fps_tokens = (int(found[1]), int(found[2]), float(found[3]),
                                        int(found[4]))
    extra = {"fps": None} if model_spec(model).timestamps else {}
    assert _video_tokens(proc, frames, metadata, do_sample_frames=True, num_frames=cap,
                         **extra) == cap_tokens <= limit
    assert _video_tokens(proc, frames, metadata, do_sample_frames=True, fps=fps) \
        == fps_tokens <= limit
    rates = [r for r, _ in video.by_fps]
    higher = rates[rates.index(fps) + 1]
    assert _video_tokens(proc, frames, metadata, do_sample_frames=True, fps=higher) > limit
    # a sample of the listed rates, each as the processor writes it
    for listed, tokens in video.by_fps[::17]:
        assert _video_tokens(proc, frames, metadata, do_sample_frames=True,
                             fps=listed) == tokens, listed


@pytest.mark.parametrize("model", MODELS)
def test_a_per_frame_failure_explains_a_qwen_frames_cost(model: str) -> None:
    import numpy as np

    from pytest_tokenguard.plugin.markers import check_video_tokens

    proc = processor(model)
    frames = np.zeros((8, 60, 80, 3), np.uint8)
    metadata: dict[str, Any] = {"total_num_frames": 8, "fps": 4.0, "duration": 2.0,
                                "frames_indices": list(range(8))}
    recording, _ = _call(proc, text=[f"x{VIDEO_BLOCK}y"], videos=[frames],
                         video_metadata=[metadata], do_sample_frames=False)
    [video] = recording.videos
    per = -(-video.block_tokens // video.frames)
    assert per * video.frames > video.block_tokens or model_spec(model).timestamps
    assert check_video_tokens([video], 10_000, per_frame=per).passed
    result = check_video_tokens([video], 10_000, per_frame=per - 1)
    assert not result.passed
    assert (f"costs {per} tokens a frame ({video.image_tokens} <|video_pad|> and "
            f"{video.block_tokens - video.image_tokens} wrapper tokens over 8 sampled frames, "
            f"rounded up), over the declared per_frame={per - 1}: a frame's cost follows the "
            "size the video processor resizes it to") in result.message
    assert "84 on the 2.2B" not in result.message
