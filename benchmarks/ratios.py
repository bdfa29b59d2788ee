"""Print the processor / counter time ratios from a pytest-benchmark JSON file.

    python benchmarks/ratios.py benchmarks/cpu.json

Ratios are of medians measured in the same run, on the same machine.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict


def main(path: str) -> None:
    with open(path, encoding="utf-8") as file:
        data = json.load(file)
    medians: dict[int, dict[str, float]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        match = re.match(r"test_(\w+)\[(\d+)\]", bench["name"])
        if match:
            medians[int(match.group(2))][match.group(1)] = bench["stats"]["median"]
    print(f"machine: {data['machine_info'].get('cpu', {}).get('brand_raw', '?')}, "
          f"python {data['machine_info']['python_version']}")
    print("| longest_edge | processor | counter | memoised counter | ratio | memoised ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for edge in sorted(medians):
        m = medians[edge]
        proc, counter, memo = m["processor"], m["counter"], m["counter_memoised"]
        print(f"| {edge} | {proc * 1e3:.2f} ms | {counter * 1e6:.2f} µs | {memo * 1e9:.0f} ns "
              f"| {proc / counter:,.0f}× | {proc / memo:,.0f}× |")
    for bench in data["benchmarks"]:
        if bench["name"].startswith("test_count_cli"):
            median_ms = bench["stats"]["median"] * 1e3
            print(f"\ntokenguard count, 1000 frames: median {median_ms:.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1])
