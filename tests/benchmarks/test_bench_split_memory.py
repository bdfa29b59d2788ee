"""Benchmark: ``tokenguard split`` streams, so its memory does not grow with the input.

    pytest tests/benchmarks/test_bench_split_memory.py -p no:xdist --benchmark-enable

Each run is a fresh ``tokenguard split`` process; its peak resident memory is read by a
small parent process with ``getrusage(RUSAGE_CHILDREN)`` (the parent has no other
child) and kept in the benchmark's ``extra_info``. The input is generated from a fixed
seed: multi-turn conversations over video frames, about 5 kB a line. The 50 MB case (the
issue's size: it peaked at 1.06 GB before) runs at 50 MB with benchmarks enabled, at 2 MB
in the untimed run.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, model_ref

#: the limit the issue sets for 50 MB of input
LIMIT_MB = 200
#: what streaming may add between a 1 MB input and a larger one (caches, buffers)
GROWTH_MB = 30

PEAK = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
sys.stderr.write(done.stderr.decode())
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def generate(path: Path, megabytes: float, seed: int = 7) -> int:
    """Write about ``megabytes`` MB of conversations to ``path``; the number of lines."""
    rng = random.Random(seed)
    letters = "etaoinshrdlucmfwypvbgkqjxz"
    vocabulary = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9)))
                  for _ in range(5000)]
    target, size, lines = int(megabytes * 1_000_000), 0, 0
    with path.open("w", encoding="utf-8") as handle:
        while size < target:
            messages: list[dict[str, Any]] = []
            frame = 0
            for turn in range(rng.randint(4, 12)):
                words = " ".join(vocabulary[min(int(rng.paretovariate(1.1)) - 1, 4999)]
                                 for _ in range(rng.randint(20, 120)))
                content: list[dict[str, Any]] = [{"type": "text", "text": words + "."}]
                if turn % 2 == 0:
                    n = rng.randint(1, 6)
                    content.insert(0, {"type": "frames", "start": frame, "end": frame + n,
                                       "width": 640, "height": 360, "video": "clip.mp4"})
                    frame += n
                messages.append({"role": ("user", "assistant")[turn % 2], "content": content})
            line = json.dumps({"id": f"conv-{lines}", "source": "bench",
                               "messages": messages}) + "\n"
            handle.write(line)
            size += len(line.encode("utf-8"))
            lines += 1
    return lines


def peak_rss_mb(source: Path, out: Path) -> tuple[int, float, str]:
    """(exit status, peak resident MB, stderr) of one ``tokenguard split`` process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", PEAK, sys.executable, "-m", "pytest_tokenguard.cli", "split",
         "--model", model_ref("2.2B"), "--longest-edge", "384", "--max-tokens", "4096",
         str(source), "-o", str(out)],
        capture_output=True, text=True, env=env, timeout=900, check=True,
    )
    code, kilobytes = done.stdout.split()
    return int(code), int(kilobytes) / 1024, done.stderr


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> float:
    """The peak for 1 MB of input: what the command needs whatever the input."""
    folder = tmp_path_factory.mktemp("small")
    generate(folder / "in.jsonl", 1)
    code, peak, stderr = peak_rss_mb(folder / "in.jsonl", folder / "out.jsonl")
    assert code == 0, stderr
    return peak


@pytest.mark.parametrize("megabytes", [10, 50])
def test_bench_split_memory(benchmark: Any, tmp_path: Path, small_run: float,
                            megabytes: int) -> None:
    if megabytes == 50 and benchmark.disabled:
        megabytes = 2  # untimed: the same checks at a size that takes seconds
    source = tmp_path / "in.jsonl"
    lines = generate(source, megabytes)
    code, peak, stderr = benchmark.pedantic(peak_rss_mb, args=(source, tmp_path / "out.jsonl"),
                                            rounds=1, iterations=1)
    assert code == 0, stderr
    assert f"{lines} conversations ->" in stderr
    benchmark.extra_info.update(input_mb=megabytes, lines=lines, peak_rss_mb=round(peak, 1),
                                peak_rss_mb_for_1mb=round(small_run, 1))
    print(f"\ntokenguard split, {megabytes} MB ({lines} lines): peak RSS {peak:.0f} MB "
          f"(1 MB input: {small_run:.0f} MB)")
    assert peak < LIMIT_MB
    assert peak < small_run + GROWTH_MB  # bounded: it does not grow with the input
