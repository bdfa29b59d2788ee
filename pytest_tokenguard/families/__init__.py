"""The registry of model families: which family a model, a ``model_type`` or a processor
class belongs to, found lazily (as transformers' auto mappings find classes).

Built in: ``smolvlm`` (SmolVLM2 / Idefics3) and ``qwen-vl`` (Qwen2-VL, Qwen2.5-VL,
Qwen3-VL). A third party adds one through the entry point group
``pytest_tokenguard.families``, whose value is an object implementing
:class:`~pytest_tokenguard.families.base.Family`::

    [project.entry-points."pytest_tokenguard.families"]
    mymodel = "my_package.tokenguard_family:FAMILY"

Adding a family means one module and one line here (or an entry point): the lookup
tables below are keyed by name, and a family module is imported only when asked for.

Only the standard library is imported here.
"""

from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SpecError

if TYPE_CHECKING:
    from .base import Family

__all__ = [
    "BUILTIN_FAMILIES",
    "ENTRY_POINT_GROUP",
    "MODEL_TYPES",
    "PROCESSOR_CLASSES",
    "ResolvedFamily",
    "all_families",
    "family_for_model_type",
    "family_for_processor_class",
    "family_named",
    "resolve_family",
]

ENTRY_POINT_GROUP = "pytest_tokenguard.families"

#: name -> "module:attribute" of the built-in families (imported on first use)
BUILTIN_FAMILIES: dict[str, str] = {
    "smolvlm": "pytest_tokenguard.families.smolvlm:FAMILY",
    "qwen-vl": "pytest_tokenguard.families.qwen:FAMILY",
}
#: ``config.json`` ``model_type`` -> family name
MODEL_TYPES: dict[str, str] = {
    "smolvlm": "smolvlm", "idefics3": "smolvlm",
    "qwen2_vl": "qwen-vl", "qwen2_5_vl": "qwen-vl", "qwen3_vl": "qwen-vl",
}
#: transformers processor class name -> family name
PROCESSOR_CLASSES: dict[str, str] = {
    "SmolVLMProcessor": "smolvlm", "Idefics3Processor": "smolvlm",
    "Qwen2VLProcessor": "qwen-vl", "Qwen2_5_VLProcessor": "qwen-vl",
    "Qwen3VLProcessor": "qwen-vl",
}

_loaded: dict[str, Family] = {}
_plugins: dict[str, Family] | None = None
_lock = threading.Lock()


def _load(target: str) -> Family:
    module, _, attribute = target.partition(":")
    family: Family = getattr(importlib.import_module(module), attribute)
    return family


def _entry_point_families() -> dict[str, Family]:
    """The families third parties registered, loaded once; a broken one is an error naming
    its entry point."""
    global _plugins
    with _lock:
        if _plugins is None:
            from importlib.metadata import entry_points

            found: dict[str, Family] = {}
            for point in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    family = point.load()
                except Exception as exc:
                    raise SpecError(f"entry point {point.name} = {point.value!r} in group "
                                    f"{ENTRY_POINT_GROUP} cannot be loaded ({exc}); fix or "
                                    "uninstall the package that declares it") from None
                found[str(getattr(family, "name", point.name))] = family
            _plugins = found
        return _plugins


def family_named(name: str) -> Family:
    """The family called ``name`` (built in, or registered through the entry point)."""
    if name in _loaded:
        return _loaded[name]
    target = BUILTIN_FAMILIES.get(name)
    family = _load(target) if target else _entry_point_families().get(name)
    if family is None:
        known = ", ".join(sorted({*BUILTIN_FAMILIES, *_entry_point_families()}))
        raise SpecError(f"no model family named {name!r}; known: {known}")
    _loaded[name] = family
    return family


def all_families() -> list[Family]:
    """Every family: the built-in ones, then the registered ones."""
    names = [*BUILTIN_FAMILIES, *(n for n in _entry_point_families() if n not in
                                  BUILTIN_FAMILIES)]
    return [family_named(n) for n in names]


def family_for_model_type(model_type: str) -> Family | None:
    name = MODEL_TYPES.get(model_type)
    if name is not None:
        return family_named(name)
    return next((f for f in _entry_point_families().values()
                 if model_type in f.model_types), None)


def family_for_processor_class(class_name: str) -> Family | None:
    name = PROCESSOR_CLASSES.get(class_name)
    if name is not None:
        return family_named(name)
    return next((f for f in _entry_point_families().values()
                 if class_name in f.processor_classes), None)


@dataclass(frozen=True)
class ResolvedFamily:
    """A model's family and where its files are: ``folder`` is a local checkpoint or a hub
    cache snapshot, None for a hub id served from the family's published settings."""

    model: str
    family: Family
    folder: Path | None

    def spec(self) -> Any:
        return self.family.spec(self.model, self.folder)


def _family_of_folder(folder: Path) -> Family | None:
    from ..specs import read_json_object

    keys: list[str] = []
    for name in ("config.json", "processor_config.json", "preprocessor_config.json"):
        path = folder / name
        if path.is_file():
            data = read_json_object(path)
            keys += [str(data.get(k)) for k in ("model_type", "processor_class")
                     if data.get(k) is not None]
    for key in keys:
        family = family_for_model_type(key) or family_for_processor_class(key)
        if family is not None:
            return family
    return None


def resolve_family(model: str) -> ResolvedFamily | None:
    """The family of ``model`` without the network: a folder by its JSON files, a hub id by
    its cached snapshot, else by the families' known ids. None when nothing says (the
    caller's SmolVLM2 resolver then answers, with its own messages)."""
    from ..processor.source import cached_snapshot

    expanded = Path(os.path.expanduser(model))
    if expanded.is_dir():
        family = _family_of_folder(expanded)
        return None if family is None else ResolvedFamily(model, family, expanded.resolve())
    snapshot = cached_snapshot(model) if model.count("/") == 1 else None
    if snapshot is not None:
        family = _family_of_folder(snapshot)
        if family is not None:
            return ResolvedFamily(model, family, snapshot)
    for family in all_families():
        if model in family.known_models():
            return ResolvedFamily(model, family, None)
    return None
