"""The notes the checker leaves for the baseline gate, and the gate's exclusion rule."""

from __future__ import annotations

import subprocess
import sys

from pytest_tokenguard.testing import generated


def test_notes_are_taken_once() -> None:
    generated.take()
    generated.note("check_splitter", "longest_edge 384, max_tokens 4096")
    generated.note("check_splitter", "done")
    notes = generated.take()
    assert [str(n) for n in notes] == ["check_splitter (longest_edge 384, max_tokens 4096)",
                                       "check_splitter (done)"]
    assert generated.take() == ()


def test_exclusion_rule() -> None:
    note = generated.Note("check_splitter", "longest_edge 384")
    assert generated.exclusion_reason(["tmp_path"], False, ()) is None
    assert "hypothesis test" in (generated.exclusion_reason([], True, ()) or "")
    assert "uses tokenguard_check_splitter" in (
        generated.exclusion_reason(["tokenguard_check_splitter"], False, ()) or "")
    assert "ran check_splitter (longest_edge 384)" in (
        generated.exclusion_reason(["tokenguard_counter"], False, [note]) or "")


def test_importing_it_is_cheap() -> None:
    """The plugin imports it on every run: no hypothesis, no torch, no transformers."""
    code = ("import sys; import pytest_tokenguard.testing.generated; "
            "print(sorted(m for m in ('hypothesis', 'torch', 'transformers', 'PIL') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
