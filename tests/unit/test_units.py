"""Sizes in markers and on the command line: parsed strictly, printed like pytest-memray."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_tokenguard.units import UNITS, format_bytes, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24 GiB", 24 * 1024**3),
        ("800MB", 800 * 1000**2),
        ("1.5 GB", 1_500_000_000),
        ("1.5GiB", 3 * 1024**3 // 2),
        ("  2 kib ", 2048),
        (".5 KiB", 512),
        ("1024", 1024),
        ("7 B", 7),
        ("1 TB", 1000**4),
        (4096, 4096),
    ],
)
def test_parse_size_accepts(text: object, expected: int) -> None:
    assert parse_size(text) == expected


def test_fractions_round_up_never_loosening_a_limit() -> None:
    assert parse_size("1.0001 KB") == 1001


@pytest.mark.parametrize("text", ["24 GiBs", "24 gigs", "3 Gb/s", "12 kb2"])
def test_unknown_unit_names_input_and_accepted_units(text: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_size(text)
    message = str(excinfo.value)
    assert repr(text) in message
    for unit in UNITS:
        assert unit in message


@pytest.mark.parametrize("bad", ["", "GiB", "abc", "-1 GB", "1e3 MB", "1,5 GB", "0", "0 GiB"])
def test_unreadable_or_non_positive_strings_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match=repr(bad).replace("+", r"\+")):
        parse_size(bad)


@pytest.mark.parametrize("bad", [0, -5, True, 1.5, None, [24], b"24 GiB"])
def test_non_string_non_int_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0.0B"),
        (1023, "1023.0B"),
        (1024, "1.0KiB"),
        (120_000, "117.2KiB"),
        (24 * 1024**3, "24.0GiB"),
        (int(25.3 * 1024**3), "25.3GiB"),
        (-2048, "-2.0KiB"),
        (3 * 1024**6, "3072.0PiB"),
    ],
)
def test_format_bytes(size: int, text: str) -> None:
    assert format_bytes(size) == text


@given(st.integers(min_value=1, max_value=2**50))
def test_format_then_parse_is_within_rounding(size: int) -> None:
    back = parse_size(format_bytes(size))
    assert abs(back - size) <= max(0.05 * size, 0.05 * 1024) + 1
