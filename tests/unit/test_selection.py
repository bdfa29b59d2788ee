"""Whole suite or subset, decided from plain facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_tokenguard.baseline.selection import RunFacts, narrowing_argument, subset_reason


def test_a_complete_run_is_the_whole_suite() -> None:
    assert subset_reason(RunFacts(collected=3, reported=3)) is None


@pytest.mark.parametrize(("facts", "reason"), [
    (RunFacts(options=("-k",)), "-k given"),
    (RunFacts(narrowed_argument="tests/a.py::t"), "run on tests/a.py::t"),
    (RunFacts(resolutions="--tokenguard-resolutions=512 runs fewer resolutions than "
              "configured (384,512)"), "--tokenguard-resolutions=512 runs fewer resolutions "
     "than configured (384,512)"),
    (RunFacts(deselected=1), "1 test deselected"),
    (RunFacts(deselected=2), "2 tests deselected"),
    (RunFacts(collect_errors=1), "collection errors"),
    (RunFacts(worker_errors=1), "an xdist worker crashed"),
    (RunFacts(stopped_early="Interrupted: 1 failure"),
     "the run stopped early (Interrupted: 1 failure)"),
    (RunFacts(collected=3, reported=2), "not every collected test ran"),
])
def test_anything_that_narrows_the_run_is_a_subset(facts: RunFacts, reason: str) -> None:
    assert subset_reason(facts) == reason


def test_arguments_that_cover_the_testpaths_are_the_whole_suite(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    (tests / "sub").mkdir(parents=True)

    def narrowed(*args: str, roots: tuple[Path, ...] = (tests,)) -> str | None:
        return narrowing_argument(list(args), from_testpaths=False, rootdir=tmp_path,
                                  testpath_roots=roots, invocation_dir=tmp_path)

    assert narrowed(".") is None
    assert narrowed("tests") is None
    assert narrowed("tests/sub") == "tests/sub"
    assert narrowed("tests/a.py::test_x") == "tests/a.py::test_x"
    assert narrowed("tests/sub", roots=()) == "tests/sub"  # no testpaths: the rootdir
    assert narrowing_argument(["tests/sub"], from_testpaths=True, rootdir=tmp_path,
                              testpath_roots=(), invocation_dir=tmp_path) is None
