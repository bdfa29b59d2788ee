"""The hypothesis boundary: strategies for conversations (:mod:`.strategies`), the check
of a user's splitter (:mod:`.splitcheck`) and the CI and long profiles (:mod:`.profiles`).
Import from the submodules."""

__all__: list[str] = []
