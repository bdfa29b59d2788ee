"""The README's comparison with transformers' and vLLM's token-count helpers is the
recorded one (``benchmarks/comparison/results.json``, written by ``compare_helpers.py``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks.comparison.compare_helpers import (
    FIXED_SIZES,
    RESULTS,
    RESULTS_FORMAT,
    compare,
    image_configs,
    readme_table,
    reservation_table,
    video_configs,
)
from tests.helpers import REPO


def _results() -> dict[str, Any]:
    results: dict[str, Any] = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert results["format"] == RESULTS_FORMAT
    return results


def _models_section() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    return readme.split("\n## Models\n", 1)[1].split("\n## ", 1)[0]


def test_readme_tables_are_the_recorded_results() -> None:
    results = _results()
    section = _models_section()
    assert readme_table(results) in section
    assert reservation_table(results) in section
    assert "vLLM was not measured" not in section
    for label in results["versions"]["vllm"]:
        assert f"vLLM {label}" in section


def test_recorded_results_are_complete_and_tokenguard_exact() -> None:
    """tokenguard equals the processor on every case it ran; every helper answered every
    case of every configuration; the examples are cases of the seeded configurations."""
    results = _results()
    settings = results["settings"]
    assert results["tokenguard"]
    assert all(row["wrong"] == 0 for row in results["tokenguard"])
    assert {"vLLM 0.34.0", "vLLM 0.19.1", "transformers"} <= {
        row["version"] for row in results["helpers"]}
    images = {c["name"]: c for c in image_configs(settings["cases"])}
    videos = {c["name"]: c for c in video_configs(settings["video_cases"])}
    for row in results["helpers"]:
        config = images.get(row["config"]) or videos[row["config"]]
        inputs = [list(x) for x in config.get("sizes") or config["clips"]]
        assert row["cases"] == len(inputs)
        assert row["wrong"] == (row["under"] + row["over"] + row["refused_what_processor_takes"]
                                + row["priced_what_processor_refuses"])
        assert all(example["input"] in inputs for example in row["examples"])
    for row in results["reservations"]:
        assert row["processor_writes"] == row["tokenguard"]


def test_seeded_configurations_are_reproducible() -> None:
    first, again = image_configs(5), image_configs(5)
    assert first == again
    assert [tuple(s) for s in first[0]["sizes"][:len(FIXED_SIZES)]] == list(FIXED_SIZES)
    assert first[0]["sizes"] != first[1]["sizes"]  # each configuration has its own seed
    assert video_configs(3) == video_configs(3)


@pytest.mark.parametrize(("helper", "want"), [
    ([5, 5, 5], {"wrong": 0}),
    ([4, 5, 5], {"wrong": 1, "under": 1, "wrong_in_processor_sample": 1}),
    ([5, 6, 5], {"wrong": 1, "over": 1, "wrong_in_processor_sample": 0}),
    ([5, 5, None], {"wrong": 1, "refused_what_processor_takes": 1}),
])
def test_compare_sorts_each_difference(helper: list[int | None], want: dict[str, int]) -> None:
    row = compare("h", helper, [5, 5, 5], [(1, 1), (2, 2), (3, 3)], sample=1)
    assert {k: row[k] for k in want} == want
    assert row["cases"] == 3
    assert row["processor_checked"] == 1
    assert len(row["examples"]) == row["wrong"]


def test_compare_counts_a_refused_case_priced() -> None:
    row = compare("h", [7], [None], [(201, 1)], sample=1)
    assert row["priced_what_processor_refuses"] == 1
    assert row["examples"] == [{"input": [201, 1], "helper": 7, "truth": None, "under": False,
                                "processor_checked": True}]
