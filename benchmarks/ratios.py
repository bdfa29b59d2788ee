"""The processor / counter table, from a pytest-benchmark JSON file or from its summary.

    pytest tests/benchmarks --benchmark-enable --benchmark-json=benchmarks/raw/cpu.json
    python benchmarks/ratios.py benchmarks/raw/cpu.json --summary benchmarks/summary-cpu.json
    python benchmarks/ratios.py benchmarks/summary-cpu.json      # the table again
    pytest tests/benchmarks/test_bench_audit.py --benchmark-enable \
        --benchmark-json=benchmarks/raw/audit.json
    python benchmarks/ratios.py benchmarks/raw/audit.json --summary benchmarks/summary-cpu.json \
        --merge                                         # one file's benchmarks rerun

pytest-benchmark's JSON keeps every timing sample (tens of MB for these benchmarks), so
it is written under ``benchmarks/raw/``, which git ignores. ``--summary`` reduces it to
what the README reports (the machine, each benchmark's median and spread, the ratios) in
a few KB, and that summary is what the repository keeps; the table is printed from
either file. Ratios are of medians measured in the same run, on the same machine.
``--merge`` replaces, in an existing summary, only the benchmarks of the new run (its
date, commit and machine are kept under ``merged`` beside them), so one benchmark file
can be rerun without the hour of the others.
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
                        **{key: bench["stats"][key] for key in KEPT_STATS},
                        **({"extra_info": bench["extra_info"]} if bench.get("extra_info")
                           else {})}
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
        **({"audit": audit} if (audit := audit_figures(benchmarks)) else {}),
    }


def audit_figures(benchmarks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``tokenguard audit``'s samples per second against the bare loop, and the speed-up
    of 2 workers over 1 (medians of the same run), when those benchmarks ran."""
    bare = benchmarks.get("test_bench_audit_bare_loop")
    runs = {w: benchmarks[name] for w in (1, 2)
            if (name := f"test_bench_audit_workers[{w}]") in benchmarks}
    if bare is None or len(runs) < 2:
        return {}
    info = {w: run.get("extra_info", {}) for w, run in runs.items()}
    samples = info[1].get("samples")
    if not samples:
        return {}
    return {
        "input_mb": info[1].get("input_mb"),
        "samples": samples,
        "bare_loop_samples_per_s": round(samples / bare["median"]),
        **{f"workers_{w}_samples_per_s": round(samples / runs[w]["median"]) for w in (1, 2)},
        "speedup_2_over_1": round(runs[1]["median"] / runs[2]["median"], 2),
        **{f"workers_{w}_peak_tree_bound_mb": info[w].get("peak_tree_bound_mb") for w in (1, 2)},
        **{f"workers_{w}_cpu_s": [info[w].get("cpu_parent_s"), info[w].get("cpu_workers_s")]
           for w in (1, 2)},
        **{f"workers_{w}_load": info[w].get("load_1min_before") for w in (1, 2)},
    }


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old`` with the benchmarks of ``new`` in place of its own of the same name."""
    benchmarks = {**old["benchmarks"], **new["benchmarks"]}
    merged = [entry for entry in old.get("merged", [])
              if set(entry["benchmarks"]) - set(new["benchmarks"])]
    merged.append({"datetime": new["datetime"], "commit": new["commit"],
                   "machine": new["machine"], "benchmarks": sorted(new["benchmarks"])})
    out = {**old, "benchmarks": benchmarks, "ratios": ratios(benchmarks), "merged": merged}
    audit = audit_figures(benchmarks)
    if audit:
        out["audit"] = audit
    return out


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
    audit = summary.get("audit")
    if audit:
        lines += ["", f"tokenguard audit, {audit['input_mb']} MB of JSON Lines "
                      f"({audit['samples']:,} samples):",
                  "| | samples/s | peak memory (process tree, bound) | CPU s (command + workers) "
                  "| load before |", "| --- | --- | --- | --- | --- |",
                  f"| bare loop (read + json.loads) | {audit['bare_loop_samples_per_s']:,} | | | |"]
        for w in (1, 2):
            cpu = audit.get(f"workers_{w}_cpu_s") or [None, None]
            lines.append(f"| --workers {w} | {audit[f'workers_{w}_samples_per_s']:,} | "
                         f"{audit[f'workers_{w}_peak_tree_bound_mb']} MB | {cpu[0]} + {cpu[1]} | "
                         f"{audit.get(f'workers_{w}_load')} |")
        lines.append(f"--workers 2 over 1: {audit['speedup_2_over_1']}×")
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
    parser.add_argument("--merge", action="store_true", help="replace only this run's "
                        "benchmarks in the existing --summary file")
    args = parser.parse_args(argv)
    summary = load_summary(args.path)
    if args.merge:
        if args.summary is None or not args.summary.is_file():
            raise SystemExit("ratios.py: --merge needs an existing --summary file")
        summary = merge(load_summary(args.summary), summary)
    if args.summary is not None:
        write_atomic(args.summary, json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    print(table(summary))


if __name__ == "__main__":
    main(sys.argv[1:])
