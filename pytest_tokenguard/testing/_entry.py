"""The ``hypothesis`` entry point (see pyproject.toml): hypothesis calls :func:`setup` when it
is imported, and it registers tokenguard's profiles, so ``settings.load_profile(
"tokenguard-ci")`` works in any suite, pytest or not.

A module of its own because hypothesis runs its entry points while it is being
imported: :mod:`.profiles` imports hypothesis, so pointing hypothesis at it directly
would load it half-initialised.
"""

from __future__ import annotations

__all__ = ["setup"]


def setup() -> None:
    from . import profiles  # noqa: F401  (importing it registers the profiles)
