"""A user's suite gates on "the training set fits": ``@pytest.mark.training_set_fits`` and
the ``tokenguard_audit`` fixture, through pytester, with the embedded SmolVLM2 default.

At ``longest_edge=384`` a 384×384 image is one 81-token block; SmolVLM2's tokenizer cuts
on the left, so a sample over ``max_length`` by more than the few tokens before its
image loses image tokens, which TRL's collator refuses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"
BASELINE = ".tokenguard/baseline.json"


def _row(words: int, ident: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"messages": [
        {"role": "user", "content": [{"type": "image", "width": 384, "height": 384},
                                     {"type": "text", "text": "What is in this frame?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a cat " * words}]}]}
    if ident is not None:
        row["id"] = ident
    return row


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


SUITE = """
import pytest

@pytest.mark.training_set_fits("data/{name}.jsonl", max_length=300, longest_edge=384)
def test_training_set():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\ntokenguard_resolutions = 384\n")
    (pytester.path / "data").mkdir()
    _write(pytester.path / "data" / "fits.jsonl", [_row(5, "short-0"), _row(40), _row(60)])
    _write(pytester.path / "data" / "cut.jsonl",
           [_row(5, "short-0"), _row(400, "long-1"), _row(20), _row(500, "long-3")])
    return pytester


def _run(pytester: pytest.Pytester, *extra: str) -> pytest.RunResult:
    return pytester.runpytest("--tokenguard", f"--tokenguard-model={MODEL}", "-p",
                              "no:randomly", *extra)


def test_a_sample_cut_inside_an_image_fails_with_its_id_and_the_fix(
        suite: pytest.Pytester) -> None:
    suite.makepyfile(test_train=SUITE.format(name="cut"))
    result = _run(suite)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*training set data/cut.jsonl: 2 of 4 samples are cut inside an image at "
        "max_length=300 (TRL's collator raises 'Mismatch in `image` token count'; the "
        "tokenizer cuts the start): long-1, long-3. Settings that fit: keep longest_edge "
        "384, raise max_length (100.0% fit): processor = AutoProcessor.from_pretrained("
        f'"{MODEL}", size={{"longest_edge": 384}}); SFTConfig(max_length=*)*',
    ])
    result.stdout.fnmatch_lines(["*tokenguard audit: 4 samples*longest_edge=384; "
                                 "max_length=300, truncation_side='left'*"])


def test_a_fitting_set_passes_and_its_figures_reach_the_summary_and_baseline(
        suite: pytest.Pytester) -> None:
    suite.makepyfile(test_train=SUITE.format(name="fits"))
    result = _run(suite, "--tokenguard-update")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "training sets (training_set_fits):",
        "  test_train.py::test_training_set: data/fits.jsonl: 3 samples at longest_edge "
        "384, tokens p50 * p99 * max *; max_length 300: 0 over, 0 cut inside media",
    ])
    entry = json.loads((suite.path / BASELINE).read_text())["tests"][
        "test_train.py::test_training_set"]
    audit = entry["audit"]
    assert audit["data"] == "data/fits.jsonl"
    assert audit["samples"] == 3
    assert (audit["max_length"], audit["longest_edge"]) == (300, 384)
    assert audit["over_max_length"] == audit["cut_inside_media"] == 0
    assert audit["p50"] <= audit["p90"] <= audit["p99"] <= audit["max"] <= 300
    assert _run(suite).ret == pytest.ExitCode.OK  # the same figures: unchanged

    # the set grew: its figures changed, and the gate says which
    rows = [json.loads(line) for line in
            (suite.path / "data" / "fits.jsonl").read_text().splitlines()]
    _write(suite.path / "data" / "fits.jsonl", [*rows, _row(80)])
    changed = _run(suite)
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(["*training set samples changed: 3 -> 4*"])


def test_the_fixture_returns_the_typed_report(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_fixture="""
def test_report(tokenguard_audit):
    report = tokenguard_audit("data/cut.jsonl", max_length=300, longest_edge=384)
    assert report.summary.samples == 4
    assert list(report.summary.cut_inside_media) == ["long-1", "long-3"]
    assert report.failed
    assert report.to_json()["over_max_length"] == ["long-1", "long-3"]
    assert tokenguard_audit("data/cut.jsonl", max_length=300, longest_edge=384) is report
""")
    _run(suite).assert_outcomes(passed=1)


def test_bad_marker_arguments_stop_the_run_at_collection(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_bad="""
import pytest

@pytest.mark.training_set_fits("data/fits.jsonl", longest_edge=384)
def test_no_limit():
    pass

@pytest.mark.training_set_fits("data/fits.jsonl", max_length=300, keep=2)
def test_bad_keep():
    pass
""")
    result = _run(suite)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*test_no_limit: @pytest.mark.training_set_fits: give max_length=N "
        "(SFTConfig.max_length) or trainer='trl'*",
        "*test_bad_keep: @pytest.mark.training_set_fits: keep must be a share above 0 and at "
        "most 1, got 2",
    ])


def test_a_missing_data_file_fails_the_test_naming_it(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_missing=SUITE.format(name="nowhere"))
    result = _run(suite)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*training set data/nowhere.jsonl: data/nowhere.jsonl: no such "
                                 "file or folder*"])


def test_the_readme_quotes_the_markers_message(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_tokenguard.audit.gate import check_training_set, gate_from_marker
    from tests.helpers import ROOT

    section = ROOT.joinpath("README.md").read_text(encoding="utf-8").split(
        "**In pytest**")[1].split("**Past one machine**")[0]
    quoted = section.split("```text\n")[1].split("```")[0].strip()
    (tmp_path / "data").mkdir()
    _write(tmp_path / "data" / "train.jsonl",
           [_row(5, "short-0"), _row(400, "long-1"), _row(20), _row(500, "long-3")])
    monkeypatch.chdir(tmp_path)
    verdict = check_training_set(gate_from_marker(MODEL, "data/train.jsonl", max_length=300,
                                                  longest_edge=384))
    assert not verdict.passed
    assert verdict.message == quoted


def test_figures_travel_from_xdist_workers(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_train=SUITE.format(name="fits") + """

@pytest.mark.training_set_fits("data/fits.jsonl", max_length=1000, longest_edge=384)
def test_again():
    pass
""")
    result = suite.runpytest_subprocess("-n", "2", "--tokenguard", f"--tokenguard-model={MODEL}",
                                        "--tokenguard-update", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    tests = json.loads((suite.path / BASELINE).read_text())["tests"]
    assert tests["test_train.py::test_training_set"]["audit"]["max_length"] == 300
    assert tests["test_train.py::test_again"]["audit"]["max_length"] == 1000
