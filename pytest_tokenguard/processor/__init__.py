"""The transformers boundary: where a model's processor files come from (:mod:`.source`,
the one model resolver), loading the real processor (:mod:`.loading`), the exact offline
default (:mod:`.embedded`), counting with the tokenizer alone (:mod:`.light`), rendering
chat templates (:mod:`.chat`) and recording real processor calls (:mod:`.recording`).
Importing this package imports no transformers; import from the submodules."""

__all__: list[str] = []
