"""The Qwen-VL strategies: their shapes, their arguments checked at once, and both sides of
every edge they aim at really drawn (found with ``hypothesis.find``, classified by the Qwen
arithmetic of :mod:`pytest_tokenguard.families.qwen`, which the oracle tier proves equal to
the real processors; tests/oracle/test_qwen_strategies.py runs the processors on them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis.errors import InvalidArgument, NoSuchExample
from hypothesis.strategies import SearchStrategy

from pytest_tokenguard.families.qwen import (
    KNOWN_QWEN_SPECS,
    QwenRefusal,
    QwenSpec,
    QwenVision,
    call_bounds,
    count_qwen_image,
    qwen_settings_from_kwargs,
)
from pytest_tokenguard.testing import qwen_strategies as qst

QWEN25 = KNOWN_QWEN_SPECS["Qwen/Qwen2.5-VL-7B-Instruct"]
QWEN3 = KNOWN_QWEN_SPECS["Qwen/Qwen3-VL-8B-Instruct"]
SPECS = {"qwen2.5": QWEN25, "qwen3": QWEN3}
SEARCH = settings(database=None, max_examples=3000, derandomize=True,
                  suppress_health_check=list(HealthCheck))


def found(strategy: SearchStrategy[Any], condition: Callable[[Any], bool]) -> Any:
    """An example of ``strategy`` meeting ``condition`` (the test fails if none is drawn)."""
    try:
        return find(strategy, condition, settings=SEARCH)
    except NoSuchExample:  # pragma: no cover - the failure being tested for
        pytest.fail("the strategy never drew such an example")


def rounded(size: tuple[int, int], factor: int) -> tuple[int, int]:
    """The grid ``smart_resize`` rounds a (width, height) to first: (round(h/f),
    round(w/f)) in blocks."""
    return round(size[1] / factor), round(size[0] / factor)


def branch(size: tuple[int, int], vision: QwenVision, low: int, high: int) -> str:
    """Which way ``smart_resize`` goes for a (width, height): refused, down (over
    max_pixels), up (under min_pixels) or kept."""
    if max(size) > qst.ASPECT_LIMIT * min(size):
        return "refused"
    f = vision.factor
    rows, cols = rounded(size, f)
    area = rows * cols * f * f
    return "down" if area > high else "up" if area < low else "kept"


def near(size: tuple[int, int], factor: int, bound: int) -> bool:
    """The rounded area of a (width, height) is within one row (or column) of blocks of
    ``bound``."""
    rows, cols = rounded(size, factor)
    area, step = rows * cols * factor * factor, max(rows, cols) * factor * factor
    return abs(area - bound) <= step


@pytest.mark.parametrize("name", SPECS)
def test_image_sizes_are_positive_pairs_within_the_aspect_limit(name: str) -> None:
    spec = SPECS[name]

    @settings(max_examples=200, database=None, derandomize=True)
    @given(qst.qwen_image_sizes(spec, max_pixels=1003520, refused=False))
    def sizes(size: tuple[int, int]) -> None:
        width, height = size
        assert all(isinstance(side, int) for side in size)
        assert min(width, height) >= 1
        assert max(size) <= 200 * min(size)
        count_qwen_image(width, height, spec, qwen_settings_from_kwargs({"max_pixels": 1003520}))

    sizes()


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize(("low", "high"), [(None, None), (3136, 200704), (65536, 1003520)])
def test_both_sides_of_max_pixels_and_min_pixels_are_drawn(
    name: str, low: int | None, high: int | None,
) -> None:
    spec = SPECS[name]
    vision = spec.image
    lo, hi = low or vision.min_pixels, high or vision.max_pixels
    f = vision.factor
    sizes = qst.qwen_image_sizes(spec, min_pixels=low, max_pixels=high)
    for side, edge in (("down", hi), ("kept", hi), ("up", lo), ("kept", lo)):
        def condition(s: tuple[int, int], side: str = side, edge: int = edge) -> bool:
            return branch(s, vision, lo, hi) == side and near(s, f, edge)

        found(sizes, condition)
    # exactly at max_pixels: kept (the processor compares with >)
    at = found(sizes, lambda s: rounded(s, f)[0] * rounded(s, f)[1] * f * f == hi
               and branch(s, vision, lo, hi) != "refused")
    assert branch(at, vision, lo, hi) == "kept"


@pytest.mark.parametrize("name", SPECS)
def test_rounding_half_points_both_ways_are_drawn(name: str) -> None:
    """A side on ``f/2 + k·f`` rounds to the even multiple (Python's round): both an even
    and an odd ``k`` are drawn, and a pixel either side of a half-point."""
    spec = SPECS[name]
    f = spec.image.factor
    sizes = qst.qwen_image_sizes(spec, max_pixels=1003520)
    for condition in (
        lambda s: s[0] % f == f // 2 and (s[0] // f) % 2 == 0 and s[0] > f,  # rounds down
        lambda s: s[0] % f == f // 2 and (s[0] // f) % 2 == 1,  # rounds up
        lambda s: s[0] % f == f // 2 + 1,
        lambda s: s[0] % f == f // 2 - 1,
        lambda s: s[0] % f == 0 and s[0] > 0,
        lambda s: s[0] % f == f - 1,
    ):
        found(sizes, condition)


@pytest.mark.parametrize("name", SPECS)
def test_sides_under_the_factor_and_the_aspect_limit_are_drawn(name: str) -> None:
    spec = SPECS[name]
    f = spec.image.factor
    sizes = qst.qwen_image_sizes(spec)
    found(sizes, lambda s: min(s) < f and round(min(s) / f) == 0)
    found(sizes, lambda s: min(s) < f and round(min(s) / f) == 1)
    at_limit = found(sizes, lambda s: max(s) == 200 * min(s))
    count_qwen_image(at_limit[0], at_limit[1], spec)  # accepted
    over = found(sizes, lambda s: 200 * min(s) < max(s) <= 200 * min(s) + 1)
    with pytest.raises(QwenRefusal, match="aspect ratio"):
        count_qwen_image(over[0], over[1], spec)
    found(sizes, lambda s: max(s) == 200 * min(s) - 1)
    # the clamp: scaled down, one side would floor to nothing and is kept at one factor
    tight = qst.qwen_image_sizes(spec, max_pixels=4 * f * f)
    clamped = found(tight, lambda s: branch(s, spec.image, spec.image.min_pixels, 4 * f * f)
                    == "down" and min(count_qwen_image(s[0], s[1], spec, qwen_settings_from_kwargs(
                        {"max_pixels": 4 * f * f}))[4:6]) == f
                    and max(s) > 8 * min(s))
    assert clamped


def test_refused_false_draws_nothing_the_processor_refuses() -> None:
    @settings(max_examples=300, database=None, derandomize=True)
    @given(qst.qwen_image_cases(QWEN25, refused=False, largest=1 << 22))
    def accepted(case: qst.QwenImageCase) -> None:
        count_qwen_image(case.width, case.height, QWEN25, qwen_settings_from_kwargs(case.call))

    accepted()


@pytest.mark.parametrize("name", SPECS)
def test_call_settings_are_what_the_processor_takes(name: str) -> None:
    spec = SPECS[name]
    calls = qst.qwen_call_settings(spec, largest=1 << 22)

    @settings(max_examples=200, database=None, derandomize=True)
    @given(calls)
    def valid(call: dict[str, Any]) -> None:
        low, high = call_bounds(spec.image, qwen_settings_from_kwargs(call))
        assert min(low, high) >= 1
        assert set(call) <= {"min_pixels", "max_pixels", "size", "images_kwargs"}

    valid()
    f2 = spec.image.factor ** 2
    for condition in (
        lambda c: c == {},
        lambda c: "size" in c and "max_pixels" in c,  # max_pixels overrides longest_edge
        lambda c: "images_kwargs" in c,
        lambda c: c.get("max_pixels", 0) % f2 == 0 and c.get("max_pixels", 0) > 0,
        lambda c: c.get("max_pixels", 0) % f2 == 1,
        lambda c: c.get("max_pixels", 0) % f2 == f2 - 1,
        lambda c: c.get("max_pixels") == f2,  # one token's area
    ):
        found(calls, condition)
    refused = qst.qwen_call_settings(spec, refused=True)
    bad = found(refused, lambda c: "size" in c and "shortest_edge" not in c["size"])
    with pytest.raises(QwenRefusal, match="shortest_edge"):
        call_bounds(spec.image, qwen_settings_from_kwargs(bad))


def test_image_cases_aim_at_the_calls_own_bounds() -> None:
    """The size is drawn at the edges of the call's settings, not the processor's."""
    cases = qst.qwen_image_cases(QWEN25, largest=1 << 22)

    def at_call_max(case: qst.QwenImageCase) -> bool:
        if "max_pixels" not in case.call:
            return False
        low, high = call_bounds(QWEN25.image, qwen_settings_from_kwargs(case.call))
        size = (case.width, case.height)
        return (high != QWEN25.image.max_pixels and branch(size, QWEN25.image, low, high)
                == "down" and near(size, 28, high))

    found(cases, at_call_max)


@pytest.mark.parametrize("name", SPECS)
def test_video_cases_hit_the_sampling_edges(name: str) -> None:
    spec = SPECS[name]
    videos = qst.qwen_video_cases(spec)

    def sampled(case: qst.QwenVideoCase) -> int | None:
        try:
            return case.cost(spec, text=len).frames
        except QwenRefusal:
            return None

    found(videos, lambda c: (sampled(c) or 0) % 2 == 1)  # padded with the last frame
    found(videos, lambda c: (sampled(c) or 1) % 2 == 0)
    found(videos, lambda c: sampled(c) is None)  # refused by the processor
    found(videos, lambda c: c.fps == 30000 / 1001)
    found(videos, lambda c: "size" in c.call)
    if spec.generation == "qwen3_vl":
        found(videos, lambda c: c.call == {} and sampled(c) == spec.sampling.min_frames
              and c.total_frames > spec.sampling.min_frames)  # clamped up to min_frames
        found(videos, lambda c: c.call.get("fps", 1) is None and "num_frames" in c.call
              and sampled(c) is not None)
        one = found(videos, lambda c: c.total_frames == 1 and c.call == {})
        with pytest.raises(QwenRefusal, match="temporal_factor"):
            one.cost(spec)
    else:
        # num_frames=5 rounds half to even: 4 frames
        five = found(videos, lambda c: c.call.get("num_frames") == 5 and sampled(c) == 4)
        assert five.total_frames >= 4

        def crossing(c: qst.QwenVideoCase, under: bool) -> bool:
            wanted = c.call.get("fps")
            if not wanted or sampled(c) is None:
                return False
            exact = c.total_frames / c.fps * wanted
            floor_even = int(exact // 2 * 2)
            return (4 <= exact < c.total_frames and abs(exact - round(exact)) < 0.05
                    and (exact < round(exact)) == under and floor_even >= 4)

        found(videos, lambda c: crossing(c, under=True))  # just under a whole count
        found(videos, lambda c: crossing(c, under=False))  # on or just over it


@pytest.mark.parametrize("bad", [
    {"min_pixels": 0}, {"max_pixels": -1}, {"max_pixels": 1.5}, {"edges": ("nope",)},
    {"edges": ()},
])
def test_bad_arguments_fail_at_once(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        qst.qwen_image_sizes(QWEN25, **bad)


def test_a_spec_is_required() -> None:
    with pytest.raises(InvalidArgument, match="QwenSpec"):
        qst.qwen_image_sizes("Qwen/Qwen2.5-VL-7B-Instruct")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="QwenSpec"):
        qst.qwen_video_cases(QWEN25.image)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="largest"):
        qst.qwen_call_settings(QWEN25, largest=0)


def test_shrinks_to_the_plainest_case() -> None:
    """The simplest image at the rounding edge is small; the simplest call is none."""
    assert find(qst.qwen_call_settings(QWEN25), lambda _: True) == {}
    video = find(qst.qwen_video_cases(QWEN3), lambda _: True)
    assert video.call == {}
    assert isinstance(QWEN3, QwenSpec)
