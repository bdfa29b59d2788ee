"""Repository hygiene: no large file in git, and the benchmark summary that replaced one."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from benchmarks.ratios import SUMMARY_FORMAT, load_summary, main, merge, summarise, table
from tests.helpers import REPO

MiB = 1024 * 1024


def test_no_file_in_git_is_over_1_mib() -> None:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                                check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout here ({exc})")
    sizes = {name: (REPO / name).stat().st_size for name in listed
             if name and (REPO / name).is_file()}
    assert sizes, "git ls-files listed nothing"
    assert {name: size for name, size in sizes.items() if size > MiB} == {}


def _raw_report() -> dict[str, object]:
    """A pytest-benchmark report in its real shape, with its samples."""
    def bench(name: str, median: float) -> dict[str, object]:
        stats = {"median": median, "min": median * 0.9, "max": median * 1.5,
                 "mean": median * 1.1, "stddev": median / 10, "iqr": median / 20,
                 "rounds": 1000, "data": [median] * 1000, "ops": 1 / median}
        return {"name": name, "group": "g", "stats": stats}

    return {
        "machine_info": {"python_version": "3.11.7", "system": "Linux", "release": "6",
                         "node": "private-host", "cpu": {"brand_raw": "Xeon", "count": 2}},
        "commit_info": {"id": "abc"},
        "datetime": "2026-11-26T12:26:34",
        "version": "5.3.1",
        "benchmarks": [bench("test_processor[384]", 3e-3), bench("test_counter[384]", 2e-6),
                       bench("test_counter_memoised[384]", 3e-7),
                       bench("test_count_cli_1000_frames[headers]", 0.238),
                       bench("test_count_cli_1000_frames[verify]", 2.4)],
    }


def test_summary_keeps_medians_and_ratios_not_samples(tmp_path: Path) -> None:
    raw = _raw_report()
    summary = summarise(raw)
    assert summary["format"] == SUMMARY_FORMAT
    assert summary["benchmarks"]["test_processor[384]"]["median"] == 3e-3
    assert summary["ratios"]["384"]["ratio"] == pytest.approx(1500)
    assert summary["ratios"]["384"]["memoised_ratio"] == pytest.approx(10000)
    text = json.dumps(summary)
    assert "data" not in summary["benchmarks"]["test_processor[384]"]
    assert "private-host" not in text
    assert len(text) < len(json.dumps(raw)) / 10
    # the table reads the same from the raw report and from the summary it wrote
    (tmp_path / "raw.json").write_text(json.dumps(raw), encoding="utf-8")
    main([str(tmp_path / "raw.json"), "--summary", str(tmp_path / "summary.json")])
    assert load_summary(tmp_path / "summary.json") == summary
    assert table(load_summary(tmp_path / "raw.json")) == table(summary)
    assert "| 384 | 3.00 ms | 2.00 µs | 300 ns | 1,500× | 10,000× |" in table(summary)
    assert table(summary).endswith("tokenguard count, 1000 frames, headers: median 238.0 ms\n"
                                   "tokenguard count, 1000 frames, verify: median 2400.0 ms")


def test_committed_summary_is_small_and_complete() -> None:
    path = REPO / "benchmarks" / "summary-cpu.json"
    assert path.stat().st_size < 24 * 1024
    summary = load_summary(path)
    assert set(summary["ratios"]) == {"384", "512", "768", "1024", "1536"}
    assert summary["machine"]["cores"] == 2


def test_audit_figures_and_a_merged_rerun(tmp_path: Path) -> None:
    """The audit's samples per second and speed-up come from its benchmarks' medians, and
    ``--merge`` replaces only the rerun file's benchmarks."""
    old = summarise(_raw_report())
    raw = _raw_report()
    info: dict[str, object] = {"input_mb": 60, "samples": 48000, "peak_tree_bound_mb": 90.0,
            "cpu_parent_s": 6.0, "cpu_workers_s": 0.0}

    def bench(name: str, median: float, extra: Mapping[str, object]) -> dict[str, object]:
        return {"name": name, "group": "audit", "extra_info": extra,
                "stats": {"median": median, "min": median, "max": median, "mean": median,
                          "stddev": 0.0, "iqr": 0.0, "rounds": 3}}

    raw["benchmarks"] = [bench("test_bench_audit_bare_loop", 1.0, {"samples": 48000}),
                         bench("test_bench_audit_workers[1]", 8.0, info),
                         bench("test_bench_audit_workers[2]", 4.5,
                               {**info, "peak_tree_bound_mb": 230.0})]
    raw["datetime"] = "2026-12-06T12:00:00"
    new = summarise(raw)
    assert new["audit"]["workers_1_samples_per_s"] == 6000
    assert new["audit"]["speedup_2_over_1"] == pytest.approx(1.78)
    merged = merge(old, new)
    assert merged["benchmarks"]["test_processor[384]"] == old["benchmarks"]["test_processor[384]"]
    assert merged["ratios"] == old["ratios"]
    assert merged["merged"][-1]["datetime"] == "2026-12-06T12:00:00"
    (tmp_path / "summary.json").write_text(json.dumps(old), encoding="utf-8")
    (tmp_path / "raw.json").write_text(json.dumps(raw), encoding="utf-8")
    main([str(tmp_path / "raw.json"), "--summary", str(tmp_path / "summary.json"), "--merge"])
    written = load_summary(tmp_path / "summary.json")
    assert written["audit"] == new["audit"]
    text = table(written)
    assert "| bare loop (read + json.loads) | 48,000 | |" in text
    assert "| --workers 2 | 10,667 | 230.0 MB | 6.0 + 0.0 | None |" in text
    assert text.endswith("--workers 2 over 1: 1.78×")
