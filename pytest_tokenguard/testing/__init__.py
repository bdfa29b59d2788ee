"""The hypothesis boundary: strategies for conversations (:mod:`.strategies`; Qwen-VL's
edges in :mod:`.qwen_strategies`), the check of a user's splitter (:mod:`.splitcheck`, with
:mod:`.qwen_oracle` pricing Qwen-VL chunks) and the CI and long profiles
(:mod:`.profiles`). Import from the submodules."""

__all__: list[str] = []
