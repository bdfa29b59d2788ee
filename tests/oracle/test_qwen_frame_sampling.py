"""Qwen2/2.5-VL's frame sampler, index for index, and the clips it crashes on.

``Qwen2VLVideoProcessor.sample_frames`` picks ``torch.arange(0, total, total / n).int()``:
torch's default dtype is float32, so an index computed as 184.99999999999997 in double is
stored as 185.0 and, as the last index of a 185-frame clip, makes the processor raise
``IndexError`` (found by ``benchmarks/comparison/compare_helpers.py`` on a 185-frame clip
at 2 fps sampled at ``fps=2``). Such a clip must be refused, never priced.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from pytest_tokenguard.families.qwen import QwenRefusal, count_qwen_video, sample_qwen_frames
from pytest_tokenguard.video import video_info
from tests.qwen_helpers import GENERATIONS, expand, model_spec, processor, video_processor

QWEN2 = [GENERATIONS["qwen2_vl"], GENERATIONS["qwen2_5_vl"]]
VIDEO_BLOCK = "<|vision_start|><|video_pad|><|vision_end|>"


@pytest.mark.parametrize("model", QWEN2)
def test_sampled_indices_are_the_processors(model: str) -> None:
    """Every clip of 1 to 300 frames at 2, 24, 30 and 60 fps sampled at ``fps=2`` and at
    ``num_frames`` 2 to 64: the same indices as the processor's ``sample_frames``, or a
    refusal exactly where they run past the clip."""
    from transformers.video_utils import VideoMetadata

    spec, vp = model_spec(model), video_processor(model)
    calls: list[dict[str, Any]] = [{"fps": 2.0}]
    calls += [{"num_frames": n} for n in range(2, 65, 3)]
    refused = 0
    for total in range(1, 301):
        for rate in (2.0, 24.0, 30.0, 60.0):
            metadata = VideoMetadata(total_num_frames=total, fps=rate, duration=total / rate)
            for call in calls:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        theirs = [int(i) for i in vp.sample_frames(metadata, **call)]
                except (ValueError, ZeroDivisionError):
                    continue
                if max(theirs) >= total:  # the processor's IndexError
                    with pytest.raises(QwenRefusal, match="out of bounds"):
                        sample_qwen_frames(spec, total, rate, do_sample_frames=True,
                                           **call)
                    refused += 1
                    continue
                ours = sample_qwen_frames(spec, total, rate, do_sample_frames=True,
                                          **call)
                assert ours == theirs, (total, rate, call)
    assert refused > 0  # the crash is common: the sweep must meet it


@pytest.mark.parametrize("model", QWEN2)
def test_a_clip_the_processor_crashes_on_is_refused(model: str) -> None:
    import numpy as np

    frames = np.zeros((185, 36, 64, 3), np.uint8)
    metadata = {"total_num_frames": 185, "fps": 2.0, "duration": 92.5}
    proc = processor(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(IndexError, match="out of bounds"):
            expand(proc, "x" + VIDEO_BLOCK + "y", videos=[frames], video_metadata=[metadata],
                   do_sample_frames=True, fps=2.0)
    with pytest.raises(QwenRefusal, match=r"index 185 is out of bounds .* 185-frame clip"):
        count_qwen_video(video_info(185, 2.0, width=64, height=36), model_spec(model),
                         fps=2.0, do_sample_frames=True)
