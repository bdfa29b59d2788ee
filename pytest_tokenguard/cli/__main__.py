"""``python -m pytest_tokenguard.cli``: the same as the ``tokenguard`` command."""

from . import main

__all__: list[str] = []

raise SystemExit(main())
