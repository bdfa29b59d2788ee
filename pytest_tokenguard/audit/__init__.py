"""``tokenguard audit``: will this training set, with this trainer's settings, train?

* :mod:`.readers`: JSON Lines, JSON, Parquet and ``datasets`` folders, streamed in parts;
* :mod:`.media`: image cells sized as the trainer's processor will see them;
* :mod:`.trainer`: the trainer's length rules (TRL's collator, exactly);
* :mod:`.measure`: the pure per-sample function (:class:`~.measure.Auditor`);
* :mod:`.summary`: results folded into one mergeable summary, and what fits;
* :mod:`.report`: the terminal summary, JSON, Markdown and the histogram;
* :mod:`.run`: the streaming run over worker processes.

Importing this package imports nothing heavy.
"""

from __future__ import annotations

__all__: list[str] = []
