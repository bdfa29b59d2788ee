"""Sizes in markers and on the command line: parsed strictly, printed like pytest-memray."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_tokenguard.baseline.compare import GpuTolerance, parse_tolerance
from pytest_tokenguard.units import (
    MIN_BARE_BYTES,
    UNITS,
    accepted_units,
    format_bytes,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24 GiB", 24 * 1024**3),
        ("800MB", 800 * 1000**2),
        ("1.5 GB", 1_500_000_000),
        ("1.5GiB", 3 * 1024**3 // 2),
        ("  2 kib ", 2048),
        (".5 KiB", 512),
        ("1048576", 1024**2),
        ("7 B", 7),
        ("1 TB", 1000**4),
        (4096 * 1024, 4096 * 1024),
    ],
)
def test_parse_size_accepts(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Docker (--memory 24g), Slurm (--mem=24G), free -g: a bare letter is binary
        ("24G", 24 * 1024**3),
        ("24g", 24 * 1024**3),
        ("512M", 512 * 1024**2),
        ("512m", 512 * 1024**2),
        ("1.5T", 3 * 1024**4 // 2),
        ("64K", 64 * 1024),
        ("2P", 2 * 1024**5),
        # Kubernetes: Gi, Mi
        ("24Gi", 24 * 1024**3),
        ("512 mi", 512 * 1024**2),
        # nvidia-smi's MiB, in any case and spacing; the SI spelling stays SI
        ("81559MiB", 81559 * 1024**2),
        ("81559 MiB", 81559 * 1024**2),
        ("24 gib", 24 * 1024**3),
        ("24GB", 24 * 1000**3),
        ("24gb", 24 * 1000**3),
        ("512MB", 512 * 1000**2),
    ],
)
def test_tool_spellings_are_read_as_their_tools_mean_them(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bare", ["24", "80", " 512 ", "1048575", "0.5", "24.5"])
def test_bare_number_below_one_mib_is_a_forgotten_unit(bare: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_size(bare)
    message = str(excinfo.value)
    assert repr(bare) in message  # names the input as given
    assert "has no unit, so it means" in message
    number = bare.strip()
    assert f"write {number}G or {number}GiB" in message
    assert "at least 1048576 bytes" in message
    assert "\n" not in message


@pytest.mark.parametrize("bare", [24, 80, 1023, 1024**2 - 1])
def test_bare_int_below_one_mib_is_refused_too(bare: int) -> None:
    with pytest.raises(ValueError, match=f"size {bare} has no unit, so it means {bare} bytes; "
                                         f"write {bare}G or {bare}GiB"):
        parse_size(bare)


def test_bytes_below_the_minimum_need_the_unit_said() -> None:
    assert parse_size("24 B") == 24
    assert parse_size("1048576") == parse_size(1024**2) == MIN_BARE_BYTES


def test_accepted_units_say_the_docker_rule() -> None:
    assert "24G = 24 GiB" in accepted_units()
    with pytest.raises(ValueError, match="G/M/K as Docker writes them, powers of 1024"):
        parse_size("24 parsecs")


@pytest.mark.parametrize(("raw", "expected"), [
    ("0", GpuTolerance(bytes=0)),
    ("0 GiB", GpuTolerance(bytes=0)),
    ("10%", GpuTolerance(percent=10)),
    ("2.5 %", GpuTolerance(percent=2.5)),
    ("512M", GpuTolerance(bytes=512 * 1024**2)),
    ("200B", GpuTolerance(bytes=200)),
])
def test_gpu_tolerance_still_takes_zero_percentages_and_sizes(raw: str,
                                                              expected: GpuTolerance) -> None:
    assert parse_tolerance(raw) == expected


def test_gpu_tolerance_bare_number_says_the_unit_is_missing() -> None:
    with pytest.raises(ValueError, match=r"'512' is not a tolerance.*has no unit"):
        parse_tolerance("512")


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
