"""Benchmark: ``tokenguard audit`` against a bare loop that reads the same JSON Lines, with
``--workers`` 1 and 2, and the whole process tree's memory.

    pytest tests/benchmarks/test_bench_audit.py -p no:xdist -p no:randomly --benchmark-enable

The input is generated from a fixed seed: TRL-shaped rows of one phone-photo-sized image
(as ``width``/``height``) and an answer of 5 to 300 words, about 1.2 kB a row; 60 MB
(about 48,000 samples) with benchmarks enabled, 0.5 MB in the untimed run. Each audit is
a fresh ``tokenguard audit`` process (start-up, imports and the tokenizer's load
included, as a user runs it), which reports its own and its workers' peak resident
memory and CPU times (``getrusage``, read after the run) into ``extra_info``; the tree's
peak is bounded by the command's peak plus ``workers`` times the largest worker's (an
upper bound: forked workers share the parent's pages, counted here once per worker).

On Linux the CPU is shared between *sessions*: on a machine busy with other sessions'
work, two workers of one command get about one process's share, and the speed-up does
not show; measure on idle cores. ``cpu_parent_s`` and ``cpu_workers_s`` say what idle
cores would do whatever the load: with 2 workers the measuring moves to the workers,
split by parts, with little work added.
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

#: the size the issue names
AUDIT_MB = 60
UNTIMED_MB = 0.5
#: the bound the issue sets for the whole process tree on 60 MB
TREE_LIMIT_MB = 300
PHOTOS = [(4032, 3024), (3024, 4032), (4000, 2250), (1920, 1080), (1080, 1920), (384, 384),
          (2048, 1536), (640, 480), (1200, 300), (1080, 1080)]
WORDS = ["the", "photo", "shows", "a", "quiet", "street", "with", "parked", "cars", "trees",
         "and", "red", "door", "window", "light", "evening", "people", "walking", "near"]

#: the command's own figures: run inside it, after the audit, by ``-c``
WRAPPED = """
import json, resource, sys
from pytest_tokenguard.cli import main
code = main(sys.argv[1:])
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stderr.write("\\nFIGURES " + json.dumps({
    "cpu_parent_s": me.ru_utime + me.ru_stime, "cpu_workers_s": kids.ru_utime + kids.ru_stime,
    "peak_parent_kb": me.ru_maxrss, "peak_worker_kb": kids.ru_maxrss}) + "\\n")
sys.exit(code)
"""


def generate(path: Path, megabytes: float, seed: int = 17) -> int:
    """Write about ``megabytes`` MB of rows to ``path``; the number of rows."""
    rng = random.Random(seed)
    target, size, rows = int(megabytes * 1_000_000), 0, 0
    with path.open("w", encoding="utf-8") as handle:
        while size < target:
            width, height = rng.choice(PHOTOS)
            answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 300)))
            row: dict[str, Any] = {"messages": [
                {"role": "user", "content": [{"type": "image", "width": width, "height": height},
                                             {"type": "text", "text": "Describe."}]},
                {"role": "assistant", "content": [{"type": "text", "text": answer + "."}]}]}
            if rows % 4 == 0:
                row["id"] = f"p{rows}"
            line = json.dumps(row) + "\n"
            handle.write(line)
            size += len(line)
            rows += 1
    return rows


@pytest.fixture(scope="module")
def data(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[Path, int, float]:
    """(file, rows, MB): the benchmark's input."""
    enabled = not getattr(request.config.option, "benchmark_disable", True)
    megabytes = AUDIT_MB if enabled else UNTIMED_MB
    path = tmp_path_factory.mktemp("audit") / "train.jsonl"
    return path, generate(path, megabytes), megabytes


def bare_loop(path: Path) -> int:
    """What the audit is compared with: every line read and parsed, nothing else."""
    count = 0
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                json.loads(line)
                count += 1
    return count


def test_bench_audit_bare_loop(benchmark: Any, data: tuple[Path, int, float]) -> None:
    path, rows, megabytes = data
    count = benchmark.pedantic(bare_loop, args=(path,), rounds=3, iterations=1)
    assert count == rows
    if not benchmark.disabled:
        benchmark.extra_info.update(input_mb=megabytes, samples=rows,
                                    samples_per_s=round(rows / benchmark.stats["median"]))


def audit(path: Path, workers: int, out: Path) -> dict[str, Any]:
    """One ``tokenguard audit`` process; its exit status, stderr and figures."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", WRAPPED, "audit", str(path), "--model", model_ref("2.2B"),
         "--max-length", "1100", "--json", "--workers", str(workers), "--per-sample",
         str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        timeout=900, check=False)
    figures: dict[str, Any] = json.loads(done.stderr.rpartition("FIGURES ")[2])
    figures.update(code=done.returncode, stderr=done.stderr)
    return figures


#: each run's per-sample file, to compare workers 1 and 2
_OUTPUTS: dict[int, bytes] = {}


@pytest.mark.parametrize("workers", [1, 2])
def test_bench_audit_workers(benchmark: Any, data: tuple[Path, int, float], tmp_path: Path,
                             workers: int) -> None:
    path, rows, megabytes = data
    out = tmp_path / "per-sample.jsonl"
    load = os.getloadavg()[0]
    figures = benchmark.pedantic(audit, args=(path, workers, out), rounds=3, iterations=1)
    assert figures["code"] == 1, figures["stderr"]  # --max-length 1100 cuts photos
    lines = out.read_bytes()
    assert lines.count(b"\n") == rows
    _OUTPUTS[workers] = lines
    if len(_OUTPUTS) == 2:
        assert _OUTPUTS[1] == _OUTPUTS[2]  # the same samples, figures and order
    parent = figures["peak_parent_kb"] / 1024
    worker = figures["peak_worker_kb"] / 1024 if workers > 1 else 0.0
    tree = parent + workers * worker if workers > 1 else parent
    if megabytes == AUDIT_MB:
        assert tree < TREE_LIMIT_MB
    if not benchmark.disabled:
        benchmark.extra_info.update(
            input_mb=megabytes, samples=rows, workers=workers,
            samples_per_s=round(rows / benchmark.stats["median"]),
            cpu_parent_s=round(figures["cpu_parent_s"], 2),
            cpu_workers_s=round(figures["cpu_workers_s"], 2),
            peak_parent_mb=round(parent, 1), peak_worker_mb=round(worker, 1),
            peak_tree_bound_mb=round(tree, 1), load_1min_before=round(load, 1))
