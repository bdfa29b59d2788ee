"""What the plugin writes besides the baseline, and the settings that decide it: the JSON
report never takes the baseline's place, an ini switch that is not true or false is
named whatever the command line says, and the record in ``--junitxml`` is JSON."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

BASELINE = ".tokenguard/baseline.json"
SUITE = "def test_step():\n    pass\n"


@pytest.fixture
def baseline(pytester: pytest.Pytester) -> Path:
    """A suite with an accepted baseline (no processor call: nothing heavy is imported)."""
    pytester.makepyfile(SUITE)
    pytester.runpytest("--tokenguard", "--tokenguard-update").assert_outcomes(passed=1)
    path = pytester.path / BASELINE
    assert json.loads(path.read_text())["format"] == "pytest-tokenguard baseline"
    return path


@pytest.mark.parametrize("given", [BASELINE, "./.tokenguard/../.tokenguard/baseline.json",
                                   "link.json", "hard.json"])
def test_a_report_path_that_is_the_baseline_is_refused(pytester: pytest.Pytester,
                                                       baseline: Path, given: str) -> None:
    """``--tokenguard-json=.tokenguard/baseline.json`` overwrote the baseline with the
    report (rc 0), and the next run failed "not a tokenguard baseline"."""
    (pytester.path / "link.json").symlink_to(baseline)
    os.link(baseline, pytester.path / "hard.json")
    before = baseline.read_bytes()
    result = pytester.runpytest("--tokenguard", f"--tokenguard-json={given}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"ERROR: --tokenguard-json={given} is the baseline {BASELINE} (the same file): the "
        "report would overwrite it; write the report elsewhere*"])
    assert baseline.read_bytes() == before


def test_the_report_from_the_ini_file_is_refused_too(pytester: pytest.Pytester,
                                                     baseline: Path) -> None:
    pytester.makeini("[pytest]\ntokenguard_json = .tokenguard/baseline.json\n")
    result = pytester.runpytest("--tokenguard")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"ERROR: tokenguard_json = .tokenguard/baseline.json (ini) is the baseline {BASELINE}*"])


@pytest.mark.parametrize("args", [[], ["--tokenguard"]])
def test_an_ini_switch_that_is_not_a_boolean_is_named(pytester: pytest.Pytester,
                                                      args: list[str]) -> None:
    """``tokenguard = maybe`` failed without naming the key, and was accepted when
    --tokenguard was also given."""
    pytester.makepyfile(SUITE)
    pytester.makeini("[pytest]\ntokenguard = maybe\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"ERROR: tokenguard (ini) in {pytester.path / 'tox.ini'}: invalid truth value 'maybe'; "
        "write tokenguard = true or tokenguard = false"])


def test_junitxml_property_is_json(pytester: pytest.Pytester) -> None:
    """The ``tokenguard`` property was a Python repr of a dict (``{'figures': ...}``)."""
    pytester.makepyfile(SUITE)
    result = pytester.runpytest("--tokenguard", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    tree = ET.parse(pytester.path / "junit.xml")
    values = [p.get("value") for p in tree.iter("property") if p.get("name") == "tokenguard"]
    assert len(values) == 1
    assert values[0] is not None
    record = json.loads(values[0])
    assert record == {"excluded": None, "figures": {"resolutions": []}, "gpu_checks": []}
