"""The committed baseline: its file format (:mod:`.store`), the comparison
(:mod:`.compare`), whole suite or subset (:mod:`.selection`) and the gate the plugin calls
(:mod:`.gate`). No pytest import; import from the submodules."""

__all__: list[str] = []
