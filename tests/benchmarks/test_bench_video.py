"""Benchmarks: reading and counting a folder of video clips, against the decoders and the
real processor, side by side in one run.

    pytest tests/benchmarks/test_bench_video.py --benchmark-enable

The folder holds 20 clips of 10 s at 30 fps (300 frames each, 64×48 px). Every benchmark
checks its result: the counts equal the real processor's, the metadata torchcodec's.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from pytest_tokenguard.video import VideoCounter, VideoInfo, iter_video_paths, read_video_info
from tests.helpers import checkpoint_folder, counter, torchcodec_missing, write_clip

CLIPS = 20
GROUP = f"metadata of a folder of {CLIPS} clips (10 s, 30 fps)"


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("video_clips")
    for index in range(CLIPS):
        write_clip(folder / f"clip_{index:02d}.mp4", 300, 30, size=(64, 48))
    return folder


def read_folder(folder: Path, backend: Any = "torchcodec") -> list[VideoInfo]:
    return [read_video_info(path, backend) for path in iter_video_paths([str(folder)])]


def test_read_video_info(benchmark: Any, clip_folder: Path) -> None:
    """Every packet scanned, no frame decoded: torchcodec's exact numbers."""
    benchmark.group = GROUP
    infos = benchmark(read_folder, clip_folder)
    assert [(i.total_frames, i.fps, i.duration) for i in infos] == [(300, 30.0, 10.0)] * CLIPS


def test_read_video_header(benchmark: Any, clip_folder: Path) -> None:
    """The container header only (load_video(backend="pyav")'s numbers)."""
    benchmark.group = GROUP
    infos = benchmark(read_folder, clip_folder, "pyav")
    assert [(i.total_frames, i.fps, i.duration) for i in infos] == [(300, 30.0, 10.0)] * CLIPS


def test_torchcodec_metadata(benchmark: Any, clip_folder: Path) -> None:
    """torchcodec's own scan (seek_mode="exact"), as transformers opens a path."""
    missing = torchcodec_missing()
    if missing:
        pytest.skip(missing)
    import importlib

    # optional, and absent from CI's type-check environment: looked up at run time
    video_decoder = importlib.import_module("torchcodec.decoders").VideoDecoder
    benchmark.group = GROUP
    paths = list(iter_video_paths([str(clip_folder)]))

    def scan() -> list[tuple[int, float, float]]:
        out = []
        for path in paths:
            m = video_decoder(str(path), seek_mode="exact").metadata
            out.append((m.num_frames, m.average_fps, m.duration_seconds))
        return out

    assert benchmark(scan) == [(i.total_frames, i.fps, i.duration)
                               for i in read_folder(clip_folder)]


def test_count_folder(benchmark: Any, clip_folder: Path) -> None:
    """Metadata and exact tokens of every clip, tokenizer.json only (``tokenguard count``)."""
    benchmark.group = f"tokens of a folder of {CLIPS} clips (10 s, 30 fps)"
    video_counter = VideoCounter.from_folder(checkpoint_folder("2.2B"))
    paths = list(iter_video_paths([str(clip_folder)]))
    costs = benchmark(lambda: [video_counter(path) for path in paths])
    assert {cost.tokens for cost in costs} == {counter("2.2B").video(paths[0]).tokens}


def test_processor_folder(benchmark: Any, clip_folder: Path) -> None:
    """The real processor on the same folder (decodes and resizes the sampled frames)."""
    missing = torchcodec_missing()
    if missing:
        pytest.skip(missing)
    benchmark.group = f"tokens of a folder of {CLIPS} clips (10 s, 30 fps)"
    c = counter("2.2B")
    paths = [str(p) for p in iter_video_paths([str(clip_folder)])]

    def process() -> list[int]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [len(c.processor(text=["<video>"], videos=[[path]], do_sample_frames=True,
                                    return_tensors="pt")["input_ids"][0]) for path in paths]

    lengths = benchmark.pedantic(process, rounds=3, iterations=1)
    assert lengths == [c.video(path).tokens for path in paths]


def test_count_command_folder(benchmark: Any, clip_folder: Path) -> None:
    """``tokenguard count --json`` on the folder, in process, through the embedded default
    (what a user without the model files runs): walking, metadata, tokens, JSON."""
    import contextlib
    import io
    import json

    from pytest_tokenguard.cli import main

    benchmark.group = f"tokens of a folder of {CLIPS} clips (10 s, 30 fps)"

    def run() -> list[dict[str, Any]]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["count", "--json", "--model", "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
                         str(clip_folder)]) == 0
        return [json.loads(line) for line in out.getvalue().splitlines()]

    rows = benchmark(run)
    paths = list(iter_video_paths([str(clip_folder)]))
    assert [row["tokens"] for row in rows] == [counter("2.2B").video(p).tokens for p in paths]
