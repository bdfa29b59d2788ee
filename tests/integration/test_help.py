"""``pytest --help``, ``--markers`` and ``--fixtures`` in a project that has the plugin
installed: each exits 0 and lists everything tokenguard adds. Run in a subprocess, as
a user runs them; built from the plugin's own definitions, so a new option, marker or
fixture is checked as soon as it exists."""

from __future__ import annotations

import pytest

from pytest_tokenguard.plugin import fixtures
from pytest_tokenguard.plugin.markers import MARKERS
from pytest_tokenguard.plugin.options import OPTIONS


def test_help_lists_every_option_and_ini_value(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    assert result.ret == 0, result.stderr.str()
    text = result.stdout.str()
    for option in OPTIONS:
        assert option.flag in text
        if option.ini is not None:
            assert f"{option.ini} " in text
    # help texts with a literal percent sign go through argparse's % formatting
    assert "(10%)" in text


def test_markers_lists_every_marker_with_its_signature(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--markers")
    assert result.ret == 0, result.stderr.str()
    for marker in MARKERS.values():
        result.stdout.fnmatch_lines([f"@pytest.mark.{marker.name}{marker.signature}: *"])


def test_fixtures_lists_every_fixture(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures")
    assert result.ret == 0, result.stderr.str()
    names = [name for name in fixtures.__all__ if name.startswith("tokenguard_")]
    assert len(names) == 9  # tokenguard_max_pixels (Qwen-VL) is the ninth
    for name in names:
        result.stdout.fnmatch_lines([f"{name} [[]session scope[]] -- *"])
