"""Baseline gating seen from a user's suite, through pytester.

The planted tests call the real SmolVLM2 processor (the embedded default, by hub id,
offline) on a 384x384 frame; the "code under test" picks its ``longest_edge`` from a
module constant, which is how a change in the product (say a new default resolution)
reaches the gate. What needs only the plumbing (xdist, concurrent runs) plants GPU
peaks through the user_properties channel instead, so no subprocess imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# pytester's in-process runs drop modules first imported inside them; numpy cannot be
# imported twice in one process, so the heavy modules are imported here, once.
pytest.importorskip("transformers.models.smolvlm.processing_smolvlm")
pytest.importorskip("PIL.Image")

MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"
BASELINE = ".tokenguard/baseline.json"

PLANTED = """
import pytest
from PIL import Image

EDGE = {edge}  # what the code under test asks the processor for

def encode(processor, frames):
    return processor(text=["<image>" * len(frames)], images=[frames],
                     size={{"longest_edge": EDGE}})

def test_frame(tokenguard_processor):
    encode(tokenguard_processor, [Image.new("RGB", (384, 384))])

@pytest.mark.parametrize("frames", [1, 2])
def test_clip(tokenguard_processor, frames):
    encode(tokenguard_processor, [Image.new("RGB", (384, 384))] * frames)

def test_no_processor():
    pass
"""


class Suite:
    """A planted suite and the commands a user would type."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        # one resolution keeps the suite quick; configured in the ini file, since fewer
        # resolutions on the command line than configured is a subset run
        pytester.makeini("[pytest]\ntokenguard_resolutions = 384\n")
        self.baseline = pytester.path / BASELINE

    def plant(self, edge: int = 384, name: str = "test_planted") -> None:
        self.pytester.makepyfile(**{name: PLANTED.format(edge=edge)})

    def args(self, *extra: str) -> list[str]:
        return ["--tokenguard", f"--tokenguard-model={MODEL}", *extra]

    def run(self, *extra: str) -> pytest.RunResult:
        return self.pytester.runpytest(*self.args(*extra))

    def run_subprocess(self, *extra: str) -> pytest.RunResult:
        return self.pytester.runpytest_subprocess(*self.args(*extra))

    def tests(self) -> dict[str, object]:
        document = json.loads(self.baseline.read_text())
        return document["tests"]  # type: ignore[no-any-return]


@pytest.fixture
def suite(pytester: pytest.Pytester) -> Suite:
    return Suite(pytester)


def image_tokens(entry: object) -> list[tuple[int, int]]:
    assert isinstance(entry, dict)
    return [(r["longest_edge"], r["image_tokens"]) for r in entry["resolutions"]]


def test_changed_resolution_fails_that_test_update_accepts_it(suite: Suite) -> None:
    suite.plant(384)
    created = suite.run("--tokenguard-update")
    created.assert_outcomes(passed=4)
    created.stdout.fnmatch_lines([f"tokenguard baseline: {BASELINE} (none yet, will be created)",
                                  f"baseline {BASELINE} written (3 tests)"])
    assert image_tokens(suite.tests()["test_planted.py::test_frame[le384]"]) == [(384, 81)]
    assert "test_planted.py::test_no_processor" not in suite.tests()
    assert suite.run().ret == pytest.ExitCode.OK

    suite.plant(512)
    before = suite.baseline.read_bytes()
    result = suite.run()
    result.stdout.fnmatch_lines([f"tokenguard baseline: {BASELINE} (3 tests)"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=3, passed=1)
    result.stdout.fnmatch_lines([
        "*_ test_frame[[]le384[]] _*",
        "tokenguard baseline: test_frame[[]le384[]] image tokens changed at longest_edge=384: "
        f"81 -> 405, now at longest_edge=512 (baseline {BASELINE})",
        "*longest_edge*figure*baseline*now",
        "*384 -> 512*image tokens*81*405",
        "*384 -> 512*longest sequence*84*418",
        "Re-run pytest with --tokenguard --tokenguard-update to accept*",
    ])
    result.stdout.fnmatch_lines([
        "*! test_planted.py::test_frame[[]le384[]]*512*405*",
        f"tokenguard baseline {BASELINE}: 3 changed (*",
        "FAILED test_planted.py::test_frame[[]le384[]] - tokenguard baseline: test_frame*",
    ])
    assert suite.baseline.read_bytes() == before  # comparing never writes

    suite.run("--tokenguard-update").assert_outcomes(passed=4)
    assert image_tokens(suite.tests()["test_planted.py::test_frame[le384]"]) == [(512, 405)]
    assert image_tokens(suite.tests()["test_planted.py::test_clip[le384-2]"]) == [(512, 810)]
    again = suite.run()
    again.assert_outcomes(passed=4)
    again.stdout.fnmatch_lines([f"tokenguard baseline {BASELINE}: 3 unchanged*"])


def test_subset_update_keeps_other_entries_whole_update_removes_stale(suite: Suite) -> None:
    suite.plant(384)
    suite.run("--tokenguard-update").assert_outcomes(passed=4)
    suite.plant(512)

    subset = suite.run("--tokenguard-update", "-k", "test_frame")
    subset.assert_outcomes(passed=1, deselected=3)
    tests = suite.tests()
    assert image_tokens(tests["test_planted.py::test_frame[le384]"]) == [(512, 405)]
    assert image_tokens(tests["test_planted.py::test_clip[le384-1]"]) == [(384, 81)]
    assert image_tokens(tests["test_planted.py::test_clip[le384-2]"]) == [(384, 162)]

    # the clip tests are deleted: a path or -k run must not drop their entries...
    suite.pytester.makepyfile(test_planted=PLANTED.format(edge=512).split("@pytest.mark")[0])
    for narrowing in (["test_planted.py"], ["test_planted.py::test_frame"], ["-m", "not slow"]):
        narrowed = suite.run("--tokenguard-update", *narrowing)
        narrowed.assert_outcomes(passed=1)
        assert "test_planted.py::test_clip[le384-2]" in suite.tests(), narrowing
        narrowed.stdout.fnmatch_lines(["*: 1 unchanged, 2 not run (! changed*",
                                       "*2 entries of tests that did not run were kept*"])
    # ...a plain run reports them as stale, and a whole-suite update removes them
    stale = suite.run()
    stale.stdout.fnmatch_lines([
        "*: 1 unchanged, 2 missing (! changed*",
        "*2 baseline entries belong to tests that no longer exist: "
        "test_planted.py::test_clip[[]le384-1[]], test_planted.py::test_clip[[]le384-2[]];*",
    ])
    whole = suite.run("--tokenguard-update")
    whole.stdout.fnmatch_lines(["*removed: test_planted.py::test_clip[[]le384-1[]]"])
    assert list(suite.tests()) == ["test_planted.py::test_frame[le384]"]


def test_failing_test_keeps_its_accepted_figures(suite: Suite) -> None:
    suite.plant(384)
    suite.run("--tokenguard-update").assert_outcomes(passed=4)
    source = PLANTED.format(edge=512).replace(
        'encode(tokenguard_processor, [Image.new("RGB", (384, 384))])\n',
        'encode(tokenguard_processor, [Image.new("RGB", (384, 384))])\n'
        '    assert False, "own bug"\n',
        1)
    suite.pytester.makepyfile(test_planted=source)
    result = suite.run("--tokenguard-update")
    result.assert_outcomes(failed=1, passed=3)
    tests = suite.tests()
    assert image_tokens(tests["test_planted.py::test_frame[le384]"]) == [(384, 81)]
    assert image_tokens(tests["test_planted.py::test_clip[le384-1]"]) == [(512, 405)]
    # without --update the test's own failure comes first, the baseline diff as a section
    plain = suite.run()
    plain.stdout.fnmatch_lines(["*AssertionError: own bug*", "*- tokenguard baseline -*",
                                "tokenguard baseline: test_frame[[]le384[]] image tokens*"])


@pytest.mark.parametrize(("corruption", "expected"), [
    (lambda text: text.replace('"images": 1,', '"images": 1', 1),
     f"ERROR: tokenguard baseline {BASELINE}:*: not valid JSON: Expecting ',' delimiter. "
     f"Fix it by hand, restore it (git checkout -- {BASELINE}), or delete it and run pytest "
     "--tokenguard --tokenguard-update to write it again."),
    (lambda text: text.replace('"image_tokens": 81', '"image_tokens": "81"', 1),
     f"ERROR: tokenguard baseline {BASELINE}:*: tests[[]'test_planted.py::test_clip[[]le384-1[]]'"
     "[]].resolutions[[]0[]].image_tokens: expected a non-negative integer, got '81'.*"),
    (lambda text: "<<<<<<< HEAD\n" + text,
     f"ERROR: tokenguard baseline {BASELINE}:1: contains a git merge conflict marker*"),
], ids=["json", "schema", "conflict"])
def test_corrupt_baseline_is_a_usage_error(suite: Suite, corruption: object,
                                           expected: str) -> None:
    suite.plant(384)
    suite.run("--tokenguard-update").assert_outcomes(passed=4)
    broken = corruption(suite.baseline.read_text())  # type: ignore[operator]
    suite.baseline.write_text(broken)
    for extra in ([], ["--tokenguard-update"]):
        result = suite.run(*extra)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([expected])
        assert "Traceback" not in result.stderr.str()
        assert suite.baseline.read_text() == broken  # an update never overwrites it


def test_json_decode_error_line_is_the_broken_line(suite: Suite) -> None:
    suite.plant(384)
    suite.run("--tokenguard-update").assert_outcomes(passed=4)
    lines = suite.baseline.read_text().splitlines()
    lines[9] = lines[9] + " oops"
    suite.baseline.write_text("\n".join(lines) + "\n")
    result = suite.run()
    result.stderr.fnmatch_lines([f"ERROR: tokenguard baseline {BASELINE}:10:*"])


PEAKS_CONFTEST = """
import os
import pytest

@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        callspec = getattr(item, "callspec", None)
        n = callspec.params.get("n", 0) if callspec is not None else 0
        peak = int(os.environ.get("PEAK", "1073741824")) * (1 + n % 3)
        report.user_properties.append(
            ("tokenguard", {"gpu_peak_bytes": peak, "gpu_measure": "torch_reserved"}))
    return report
"""
PEAKS_TESTS = """
import pytest

@pytest.mark.parametrize("n", range(6))
def test_step(n):
    pass
"""


def test_xdist_compares_the_same_and_writes_identical_bytes(pytester: pytest.Pytester,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """Figures reach the xdist controller in the reports; it alone writes, the same bytes
    as a serial run. (The merge itself is unit-tested with plain objects in
    tests/unit/test_gate.py; this checks the plumbing, with planted GPU peaks.)"""
    pytest.importorskip("xdist")
    pytester.makeconftest(PEAKS_CONFTEST)
    pytester.makepyfile(test_steps=PEAKS_TESTS)
    baseline = pytester.path / BASELINE
    pytester.runpytest_subprocess("--tokenguard", "--tokenguard-update").assert_outcomes(passed=6)
    serial = baseline.read_bytes()
    baseline.unlink()
    pytester.runpytest_subprocess("-n", "2", "--tokenguard", "--tokenguard-update"
                                  ).assert_outcomes(passed=6)
    assert baseline.read_bytes() == serial
    assert sorted(p.name for p in baseline.parent.iterdir()) == ["baseline.json"]

    monkeypatch.setenv("PEAK", str(2 * 2**30))
    result = pytester.runpytest_subprocess("-n", "2", "--tokenguard")
    result.assert_outcomes(failed=6)
    result.stdout.fnmatch_lines(["*tokenguard baseline: test_step[[]0[]] gpu peak changed*",
                                 f"tokenguard baseline {BASELINE}: 6 changed (*"])
    assert baseline.read_bytes() == serial

    # deselection happens in the workers: the controller must still see a subset and keep
    # the entry of the test it never ran
    pytester.makeconftest(PEAKS_CONFTEST + """
def pytest_collection_modifyitems(config, items):
    dropped = [item for item in items if item.name == "test_step[5]"]
    items[:] = [item for item in items if item not in dropped]
    config.hook.pytest_deselected(items=dropped)
""")
    subset = pytester.runpytest_subprocess("-n", "2", "--tokenguard", "--tokenguard-update")
    subset.assert_outcomes(passed=5)
    subset.stdout.fnmatch_lines(["*1 entry of a test that did not run was kept (1 test "
                                 "deselected)*"])
    tests = json.loads(baseline.read_text())["tests"]
    assert tests["test_steps.py::test_step[5]"]["gpu"]["gpu_peak_bytes"] == 3 * 2**30
    assert tests["test_steps.py::test_step[0]"]["gpu"]["gpu_peak_bytes"] == 2 * 2**30


def test_concurrent_updates_of_different_tests_both_survive(pytester: pytest.Pytester) -> None:
    """Two `pytest --tokenguard --tokenguard-update` at once, on different tests: the
    baseline is locked and re-read under the lock, so neither update is lost."""
    import subprocess
    import sys

    pytester.makeconftest(PEAKS_CONFTEST + """
import time
def pytest_sessionfinish(session):
    time.sleep(0.5)  # both runs reach the write at about the same moment
""")
    pytester.makepyfile(test_steps=PEAKS_TESTS)
    baseline = pytester.path / BASELINE
    for trial in range(3):
        if baseline.exists():
            baseline.unlink()
        runs = [subprocess.Popen([sys.executable, "-m", "pytest", "--tokenguard",
                                  "--tokenguard-update", "-p", "no:cacheprovider", "-k", k],
                                 cwd=pytester.path, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
                for k in ("test_step and (0 or 1 or 2)", "test_step and (3 or 4 or 5)")]
        outputs = [run.communicate(timeout=300)[0] for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        tests = json.loads(baseline.read_text())["tests"]
        assert len(tests) == 6, (trial, outputs)


def test_new_test_fails_in_ci_and_is_reported(suite: Suite,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    suite.plant(384)
    suite.run("--tokenguard-update", "-k", "test_frame").assert_outcomes(passed=1, deselected=3)
    before = suite.baseline.read_bytes()

    local = suite.run()
    local.assert_outcomes(passed=4)
    local.stdout.fnmatch_lines([
        "*+ test_planted.py::test_clip[[]le384-1[]]*",
        f"tokenguard baseline {BASELINE}: 1 unchanged, 2 new*",
        "  new: test_planted.py::test_clip[[]le384-1[]]",
        "*new figures are not added by themselves: run pytest --tokenguard --tokenguard-update*",
    ])
    assert suite.baseline.read_bytes() == before  # not silently added

    monkeypatch.setenv("CI", "true")
    ci = suite.run()
    ci.assert_outcomes(passed=2, failed=2)
    ci.stdout.fnmatch_lines([
        "tokenguard baseline: test_clip[[]le384-1[]] has no baseline entry for its tokens "
        f"(baseline {BASELINE}); CI is set, so unrecorded figures fail",
        "*longest_edge 384: 1 image, 81 image tokens, 84 block tokens, longest sequence 84",
        f"Run pytest --tokenguard --tokenguard-update locally and commit {BASELINE}, or pass "
        "--tokenguard-allow-new*",
    ])
    assert suite.baseline.read_bytes() == before

    allowed = suite.run("--tokenguard-allow-new")
    allowed.assert_outcomes(passed=4)
    assert sorted(suite.tests()) == ["test_planted.py::test_clip[le384-1]",
                                     "test_planted.py::test_clip[le384-2]",
                                     "test_planted.py::test_frame[le384]"]
    suite.run().assert_outcomes(passed=4)


def test_explicit_baseline_missing_in_ci_is_an_error(suite: Suite,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    suite.pytester.makeini("[pytest]\ntokenguard_baseline = gate/tokens.json\n"
                           "tokenguard_resolutions = 384\n")
    suite.plant(384)
    monkeypatch.setenv("CI", "1")
    result = suite.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: tokenguard baseline gate/tokens.json is configured but "
                                 "does not exist, and CI is set*"])
    suite.run("--tokenguard-update").assert_outcomes(passed=4)
    assert (suite.pytester.path / "gate" / "tokens.json").is_file()
    assert not suite.baseline.exists()


def test_no_baseline_file_gates_nothing_locally_and_fails_in_ci(
        suite: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    """Locally a suite that only turned on --tokenguard is not gated; in CI a missing
    baseline is every test being new: they fail, unless new entries may be added."""
    suite.plant(384)
    local = suite.run()
    local.assert_outcomes(passed=4)
    local.stdout.fnmatch_lines([f"tokenguard baseline: none at {BASELINE}; create it with "
                                "pytest --tokenguard --tokenguard-update*"])
    monkeypatch.setenv("CI", "true")
    ci = suite.run()
    ci.assert_outcomes(passed=1, failed=3)
    ci.stdout.fnmatch_lines([f"*has no baseline entry (there is no baseline file at {BASELINE})*"])
    suite.run("--tokenguard-allow-new").assert_outcomes(passed=4)
    assert len(suite.tests()) == 3


def test_json_report(suite: Suite) -> None:
    suite.plant(384)
    suite.run("--tokenguard-update", "-k", "test_frame or le384-2").assert_outcomes(
        passed=2, deselected=2)
    document = json.loads(suite.baseline.read_text())
    document["tests"]["test_planted.py::test_gone"] = document["tests"][
        "test_planted.py::test_frame[le384]"]
    suite.baseline.write_text(json.dumps(document))
    suite.plant(512)
    result = suite.run("--tokenguard-json=out/report.json")
    result.assert_outcomes(failed=2, passed=2)
    report = json.loads((suite.pytester.path / "out" / "report.json").read_text())
    assert (report["format"], report["version"]) == ("pytest-tokenguard report", 1)
    assert report["baseline"] == {"path": BASELINE, "exists": True, "note": None,
                                  "source": report["run"]["source"]}
    assert report["run"]["source"]["model"] == MODEL
    assert (report["run"]["whole_suite"], report["run"]["exitstatus"]) == (True, 1)
    assert report["counts"] == {"unchanged": 0, "changed": 2, "new": 1, "missing": 1,
                                "removed": 0, "excluded": 0}
    tests = report["tests"]
    assert {nodeid: test["status"] for nodeid, test in tests.items()} == {
        "test_planted.py::test_clip[le384-1]": "new",
        "test_planted.py::test_clip[le384-2]": "changed",
        "test_planted.py::test_frame[le384]": "changed",
        "test_planted.py::test_gone": "missing",
    }
    frame = tests["test_planted.py::test_frame[le384]"]
    assert frame["fails"] is True
    assert image_tokens(frame["now"]) == [(512, 405)]
    assert image_tokens(frame["baseline"]) == [(384, 81)]
    assert {"longest_edge": 384, "figure": "image tokens", "baseline": "81", "now": "405",
            "fails": True} in frame["changes"]
    assert tests["test_planted.py::test_clip[le384-1]"]["baseline"] is None
    assert tests["test_planted.py::test_clip[le384-1]"]["new_figures"] == ["tokens"]
    assert tests["test_planted.py::test_gone"]["now"] is None
    assert tests["test_planted.py::test_gone"]["ran"] is False
    assert tests["test_planted.py::test_frame[le384]"]["ran"] is True
    assert not any(test["accepted"] for test in tests.values())

    suite.run("--tokenguard-update", "--tokenguard-json=out/report.json")
    accepted = json.loads((suite.pytester.path / "out" / "report.json").read_text())
    assert {nodeid: (test["status"], test["accepted"])
            for nodeid, test in accepted["tests"].items()} == {
        "test_planted.py::test_clip[le384-1]": ("new", True),
        "test_planted.py::test_clip[le384-2]": ("changed", True),
        "test_planted.py::test_frame[le384]": ("changed", True),
        "test_planted.py::test_gone": ("removed", False),
    }
    assert accepted["baseline"]["note"] == f"baseline {BASELINE} written (3 tests)"


def test_skipped_test_keeps_its_entry_and_is_not_stale(suite: Suite) -> None:
    suite.plant(384)
    suite.run("--tokenguard-update").assert_outcomes(passed=4)
    before = suite.baseline.read_bytes()
    suite.pytester.makepyfile(test_planted=PLANTED.format(edge=384).replace(
        "def test_frame(", "@pytest.mark.skip(reason='no GPU here')\ndef test_frame("))
    result = suite.run("--tokenguard-update")
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.no_fnmatch_line("*no longer exist*")
    result.stdout.no_fnmatch_line("*removed:*")
    assert suite.baseline.read_bytes() == before


def test_interrupted_update_leaves_the_baseline_untouched(suite: Suite) -> None:
    suite.plant(384)
    suite.run("--tokenguard-update").assert_outcomes(passed=4)
    before = suite.baseline.read_bytes()
    suite.pytester.makepyfile(test_planted=PLANTED.format(edge=512) + """
def test_zz_interrupt():
    raise KeyboardInterrupt
""")
    result = suite.run_subprocess("--tokenguard-update")  # in-process would stop this run too
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([f"baseline {BASELINE} not written: the run was interrupted*"])
    assert suite.baseline.read_bytes() == before
    assert [p.name for p in suite.baseline.parent.iterdir()] == ["baseline.json"]

    suite.pytester.makepyfile(test_planted=PLANTED.format(edge=512).replace(
        "def test_frame(", "def test_a_fail():\n    assert False\n\ndef test_frame("))
    stopped = suite.run("--tokenguard-update", "-x")
    stopped.assert_outcomes(failed=1)
    stopped.stdout.fnmatch_lines([f"baseline {BASELINE} not written: the run stopped early*"])
    assert suite.baseline.read_bytes() == before


GPU_CONFTEST = """
import os
import pytest

@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        report.user_properties.append(
            ("tokenguard", {"gpu_peak_bytes": int(os.environ["PEAK"]),
                            "gpu_measure": "torch_reserved"}))
    return report
"""


def test_gpu_peak_fails_only_beyond_tolerance(pytester: pytest.Pytester,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The channel the GPU figures will use: a user_properties entry per test."""
    pytester.makeconftest(GPU_CONFTEST)
    pytester.makepyfile("def test_step():\n    pass\n")
    monkeypatch.setenv("PEAK", str(4 * 2**30))
    pytester.runpytest("--tokenguard", "--tokenguard-update").assert_outcomes(passed=1)
    tests = json.loads((pytester.path / BASELINE).read_text())["tests"]
    entry = tests["test_gpu_peak_fails_only_beyond_tolerance.py::test_step"]
    assert entry == {"gpu": {"gpu_measure": "torch_reserved", "gpu_peak_bytes": 4 * 2**30},
                     "resolutions": []}

    monkeypatch.setenv("PEAK", str(int(4.3 * 2**30)))
    pytester.runpytest("--tokenguard").assert_outcomes(passed=1)  # +7.5% < default 10%
    over = pytester.runpytest("--tokenguard", "--tokenguard-gpu-tolerance=5%")
    over.assert_outcomes(failed=1)
    over.stdout.fnmatch_lines([
        "tokenguard baseline: test_step gpu peak changed: 4.0GiB -> 4.3GiB (+7.5%, "
        f"tolerance 5%) (baseline {BASELINE})",
    ])
    pytester.runpytest("--tokenguard", "--tokenguard-gpu-tolerance=512MiB").assert_outcomes(
        passed=1)
    pytester.makeini("[pytest]\ntokenguard_gpu_tolerance = 100MiB\n")
    pytester.runpytest("--tokenguard").assert_outcomes(failed=1)

    monkeypatch.setenv("PEAK", str(2 * 2**30))  # lower: reported, passes
    lower = pytester.runpytest("--tokenguard")
    lower.assert_outcomes(passed=1)
    lower.stdout.fnmatch_lines(["*1 changed*", "*changed: *test_step gpu peak changed: "
                                "4.0GiB -> 2.0GiB (-50.0%, tolerance 100.0MiB)"])


@pytest.mark.tokenguard_no_baseline("records the inner run's generated images")
def test_hypothesis_and_marked_tests_stay_out_of_the_baseline(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest
        from hypothesis import HealthCheck, given, settings, strategies as st
        from PIL import Image

        @settings(max_examples=3, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(side=st.integers(300, 900))
        def test_generated(tokenguard_processor, side):
            tokenguard_processor(text=["<image>"], images=[[Image.new("RGB", (side, side))]])

        @pytest.mark.tokenguard_no_baseline("random crops")
        def test_marked(tokenguard_processor):
            tokenguard_processor(text=["<image>"], images=[[Image.new("RGB", (500, 300))]])

        def test_kept(tokenguard_processor):
            tokenguard_processor(text=["<image>"], images=[[Image.new("RGB", (384, 384))]])
    """)
    args = ("--tokenguard", f"--tokenguard-model={MODEL}", "--tokenguard-resolutions=384")
    pytester.runpytest(*args, "--tokenguard-update").assert_outcomes(passed=3)
    tests = json.loads((pytester.path / BASELINE).read_text())["tests"]
    assert list(tests) == ["test_hypothesis_and_marked_tests_stay_out_of_the_baseline.py::"
                           "test_kept[le384]"]
    result = pytester.runpytest(*args, "--tokenguard-json=r.json")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*1 unchanged, 2 excluded*"])
    report = json.loads((pytester.path / "r.json").read_text())
    excluded = {k.split("::")[1]: v["excluded"] for k, v in report["tests"].items()
                if v["status"] == "excluded"}
    assert excluded == {"test_generated[le384]": "hypothesis test: generated inputs differ "
                        "between runs", "test_marked[le384]": "random crops"}


@pytest.mark.parametrize(("args", "expected"), [
    (["--tokenguard-update"], "ERROR: --tokenguard-update needs --tokenguard (or ini *"),
    (["--tokenguard-json=x.json", "--tokenguard-allow-new"],
     "ERROR: --tokenguard-allow-new, --tokenguard-json need --tokenguard*"),
    (["--tokenguard", "--tokenguard-gpu-tolerance=lots"],
     "ERROR: --tokenguard-gpu-tolerance: 'lots' is not a tolerance; give a percentage*"),
    (["--tokenguard-require-gpu"], "ERROR: --tokenguard-require-gpu needs --tokenguard (or ini *"),
], ids=["update", "json-and-allow-new", "tolerance", "require-gpu"])
def test_option_errors(pytester: pytest.Pytester, args: list[str], expected: str) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])


def test_cli_baseline_path_is_relative_to_invocation_dir(suite: Suite) -> None:
    suite.plant(384)
    sub = suite.pytester.mkdir("sub")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(sub)
        result = suite.pytester.runpytest(*suite.args("--tokenguard-update",
                                                      "--tokenguard-baseline=mine.json",
                                                      str(suite.pytester.path)))
    result.assert_outcomes(passed=4)
    assert (Path(sub) / "mine.json").is_file()
    assert not suite.baseline.exists()


def test_pytester_and_splitter_check_tests_stay_out_automatically(
        pytester: pytest.Pytester) -> None:
    """A test that drives pytest itself, or that runs the splitter checker, records what
    its inner run or its generated examples cost: never its own figures."""
    pytester.makeconftest(PEAKS_CONFTEST)
    pytester.makepyfile("""
        pytest_plugins = ["pytester"]

        def test_inner(pytester):
            pass

        def test_checker(tokenguard_check_splitter):
            pass

        def test_kept():
            pass
    """)
    args = ("--tokenguard", f"--tokenguard-model={MODEL}", "--tokenguard-resolutions=384")
    pytester.runpytest_subprocess(*args, "--tokenguard-update").assert_outcomes(passed=3)
    tests = json.loads((pytester.path / BASELINE).read_text())["tests"]
    assert [nodeid.split("::")[1] for nodeid in tests] == ["test_kept"]
    result = pytester.runpytest_subprocess(*args, "--tokenguard-json=r.json")
    result.assert_outcomes(passed=3)
    report = json.loads((pytester.path / "r.json").read_text())
    excluded = {k.split("::")[1]: v["excluded"] for k, v in report["tests"].items()
                if v["status"] == "excluded"}
    assert excluded == {
        "test_inner": "pytester run: its figures are those of the run inside the test",
        "test_checker": "uses tokenguard_check_splitter: its examples are generated and differ "
                        "between runs"}


def test_an_update_of_fewer_resolutions_keeps_the_others(suite: Suite) -> None:
    suite.pytester.makepyfile(test_res="""
        from PIL import Image
        def test_frame(tokenguard_processor):
            tokenguard_processor(text=["<image>"], images=[[Image.new("RGB", (384, 384))]])
    """)
    args = ("--tokenguard", f"--tokenguard-model={MODEL}")
    suite.pytester.makeini("[pytest]\ntokenguard_resolutions = 384,512\n")
    suite.pytester.runpytest(*args, "--tokenguard-update").assert_outcomes(passed=2)
    assert sorted(suite.tests()) == ["test_res.py::test_frame[le384]",
                                     "test_res.py::test_frame[le512]"]
    narrowed = suite.pytester.runpytest(*args, "--tokenguard-update",
                                        "--tokenguard-resolutions=512")
    narrowed.assert_outcomes(passed=1)
    narrowed.stdout.fnmatch_lines(["*1 entry of a test that did not run was kept "
                                   "(--tokenguard-resolutions=512 runs fewer resolutions than "
                                   "configured (384,512))*"])
    assert sorted(suite.tests()) == ["test_res.py::test_frame[le384]",
                                     "test_res.py::test_frame[le512]"]


def test_a_fresh_update_then_a_ci_run_is_green_with_the_splitter_checker(
        suite: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that run the checker (through the fixture, or by calling check_splitter in a
    test that never names the fixture) stay out of the baseline: CI passes right after a
    fresh update, whatever examples hypothesis draws."""
    suite.pytester.makepyfile(test_checked="""
        from PIL import Image
        from pytest_tokenguard.splitting import split
        from pytest_tokenguard.testing.splitcheck import check_splitter
        from pytest_tokenguard.testing.strategies import conversation_dicts

        SMALL = conversation_dicts(max_turns=3, max_images_per_turn=2, frames=False,
                                   max_text=20)

        def test_fixture(tokenguard_check_splitter, tokenguard_counter):
            tokenguard_check_splitter(lambda m: split(m, 4096, counter=tokenguard_counter),
                                      4096, conversations=SMALL, max_examples=3)

        def test_direct(tokenguard_counter):
            check_splitter(lambda m: split(m, 4096, counter=tokenguard_counter),
                           tokenguard_counter, 4096, conversations=SMALL, max_examples=3)

        def test_plain(tokenguard_processor):
            tokenguard_processor(text=["<image>"], images=[[Image.new("RGB", (384, 384))]])
    """)
    suite.run("--tokenguard-update").assert_outcomes(passed=3)
    assert list(suite.tests()) == ["test_checked.py::test_plain[le384]"]
    monkeypatch.setenv("CI", "true")
    result = suite.run()
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([f"tokenguard baseline {BASELINE}: 1 unchanged, 2 excluded*"])
