"""Model families: one protocol per kind of checkpoint, found by a registry (being built).

See :mod:`pytest_tokenguard.families.base`.
"""

from __future__ import annotations

__all__: list[str] = []
