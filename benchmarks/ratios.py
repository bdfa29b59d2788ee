"""The processor / counter table, from a pytest-benchmark JSON file or from its summary.

    pytest tests/benchmarks --benchmark-enable --benchmark-json=benchmarks/raw/cpu.json
    python benchmarks/ratios.py benchmarks/raw/cpu.json --summary benchmarks/summary-cpu.json
    python benchmarks/ratios.py benchmarks/summary-cpu.json      # the table again

pytest-benchmark's JSON keeps every timing sample (tens of MB for these benchmarks), so
it is written under ``benchmarks/raw/``, which git ignores. ``--summary`` reduces it to
what the README reports (the machine, each benchmark's median and spread, the ratios) in
a few KB, and that summary is what the repository keeps; the table is printed from
either file. Ratios are of medians measured in the same run, on the same machine.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from pytest_tokenguard.files import write_atomic

SUMMARY_FORMAT = "tokenguard-benchmark-summary-1"
#: the statistics of each benchmark kept in the summary (seconds, except rounds)
KEPT_STATS = ("median", "min", "max", "mean", "stddev", "iqr", "rounds")
_PER_EDGE = re.compile(r"test_(processor|counter|counter_memoised)\[(\d+)\]$")


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    """The summary of a pytest-benchmark JSON report: no samples, nothing machine-private."""
    machine = raw.get("machine_info", {})
    cpu = machine.get("cpu", {})
    benchmarks = {
        bench["name"]: {"group": bench.get("group"),
                        **{key: bench["stats"][key] for key in KEPT_STATS}}
        for bench in raw["benchmarks"]
    }
    return {
        "format": SUMMARY_FORMAT,
        "datetime": raw.get("datetime"),
        "commit": (raw.get("commit_info") or {}).get("id"),
        "pytest_benchmark": raw.get("version"),
        "machine": {
            "cpu": cpu.get("brand_raw", "?"),
            "cores": cpu.get("count"),
            "python": machine.get("python_version"),
            "system": f"{machine.get('system', '?')} {machine.get('release', '')}".strip(),
        },
        "benchmarks": benchmarks,
        "ratios": ratios(benchmarks),
    }


def ratios(benchmarks: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per longest_edge: the three medians and processor / counter ratios."""
    medians: dict[int, dict[str, float]] = {}
    for name, stats in benchmarks.items():
        match = _PER_EDGE.match(name)
        if match:
            medians.setdefault(int(match.group(2)), {})[match.group(1)] = stats["median"]
    table: dict[str, dict[str, float]] = {}
    for edge in sorted(medians):
        m = medians[edge]
        if {"processor", "counter", "counter_memoised"} <= m.keys():
            table[str(edge)] = {
                "processor": m["processor"],
                "counter": m["counter"],
                "counter_memoised": m["counter_memoised"],
                "ratio": m["processor"] / m["counter"],
                "memoised_ratio": m["processor"] / m["counter_memoised"],
            }
    return table


def table(summary: dict[str, Any]) -> str:
    """The README's table (and the count figure) from a summary."""
    machine = summary["machine"]
    lines = [
        f"machine: {machine['cpu']}, {machine['cores']} cores, python {machine['python']}",
        "| longest_edge | processor | counter | memoised counter | ratio | memoised ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for edge, row in summary["ratios"].items():
        lines.append(
            f"| {edge} | {row['processor'] * 1e3:.2f} ms | {row['counter'] * 1e6:.2f} µs "
            f"| {row['counter_memoised'] * 1e9:.0f} ns | {row['ratio']:,.0f}× "
            f"| {row['memoised_ratio']:,.0f}× |"
        )
    counts = [(name.partition("[")[2].rstrip("]") or "headers", stats["median"])
              for name, stats in summary["benchmarks"].items()
              if name.startswith("test_count_cli")]
    if counts:
        lines.append("")
    lines.extend(f"tokenguard count, 1000 frames, {mode}: median {median * 1e3:.1f} ms"
                 for mode, median in counts)
    return "\n".join(lines)


def load_summary(path: Path) -> dict[str, Any]:
    """A summary from either kind of file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise SystemExit(f"ratios.py: {path}: not a pytest-benchmark report or summary")
    if data.get("format") == SUMMARY_FORMAT:
        return data
    if "benchmarks" not in data:
        raise SystemExit(f"ratios.py: {path}: not a pytest-benchmark report or summary")
    return summarise(data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="benchmarks/ratios.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, help="pytest-benchmark JSON, or a summary")
    parser.add_argument("--summary", type=Path, help="write the compact summary here")
    args = parser.parse_args(argv)
    summary = load_summary(args.path)
    if args.summary is not None:
        write_atomic(args.summary, json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    print(table(summary))


if __name__ == "__main__":
    main(sys.argv[1:])
