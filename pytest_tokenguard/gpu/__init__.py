"""The torch and NVML boundary: measuring a GPU peak (:mod:`.measure`) and predicting one
from a checkpoint's shapes (:mod:`.model`). Importing this package imports neither torch
nor pynvml; import from the submodules."""

__all__: list[str] = []
