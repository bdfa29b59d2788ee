"""Hypothesis profiles for the token-budget property tests.

``tokenguard-ci`` is derandomized (the same examples on every run, so CI never
flakes on a fresh seed) and small enough that the suite finishes in minutes on two
cores; ``tokenguard-long`` is for fuzzing overnight or before a release::

    pytest --hypothesis-profile tokenguard-long

Tests that call the real processor for every example (tens to hundreds of
milliseconds each) take :func:`processor_examples` instead of the profile's full
``max_examples``, so the long profile stays hours, not days.

Importing this module registers the profiles; it loads none.
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings

__all__ = ["CI", "LONG", "PROCESSOR_FRACTION", "processor_examples"]

CI = "tokenguard-ci"
LONG = "tokenguard-long"

#: Examples per processor-backed test, as a fraction of the profile's max_examples.
PROCESSOR_FRACTION = 0.05

settings.register_profile(
    CI,
    derandomize=True,
    max_examples=60,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # "explain" replays a failure many times; with the real processor that is minutes
    phases=[p for p in Phase if p != Phase.explain],
)
settings.register_profile(
    LONG,
    max_examples=3000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # "explain" replays a failure many times; with the real processor that is minutes
    phases=[p for p in Phase if p != Phase.explain],
)


def processor_examples(minimum: int = 10) -> int:
    """max_examples for a test that runs the real processor on every example."""
    current = settings.default
    total = current.max_examples if current is not None else 100
    return max(minimum, int(total * PROCESSOR_FRACTION))

