"""The one model resolver: where a model's processor files come from, decided cheaply.

Every entry point (the pytest plugin, ``tokenguard count``, ``split`` and ``memory``,
and :func:`~pytest_tokenguard.processor.loading.load_processor`) resolves a model here
and nowhere else, with the same order and the same messages:

1. a local checkpoint folder is used as it is;
2. a hub id is looked up in the local Hugging Face cache (no network at all);
3. only if it is not cached, the network is allowed by the caller and ``HF_HUB_OFFLINE``
   is not set, the hub is probed with a TCP connect of at most ``network_timeout``
   seconds, so an unreachable hub is known in seconds rather than after retries;
4. otherwise one of the known SmolVLM2 checkpoints resolves to the *embedded default*
   (:mod:`pytest_tokenguard.processor.embedded`);
5. anything else is a :class:`~pytest_tokenguard.errors.ProcessorLoadError` naming the
   model and what to do.

A :class:`ModelSource` also answers what the commands need without transformers: the
counting spec (:meth:`ModelSource.spec`) and the checkpoint's ``config.json``
(:meth:`ModelSource.read_json`). Only the standard library is imported here.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from ..errors import ProcessorLoadError, SpecError
from ..specs import (
    DEFAULT_MODEL,
    NO_PROCESSOR_CONFIG,
    ModelSpec,
    has_processor_config,
    known_spec,
    spec_from_folder,
)

__all__ = [
    "DEFAULT_NETWORK_TIMEOUT",
    "ENV_MODEL",
    "ModelSource",
    "cached_snapshot",
    "hub_offline",
    "model_or_default",
    "resolve_source",
    "transformers_version",
]

ENV_MODEL = "TOKENGUARD_MODEL"
DEFAULT_NETWORK_TIMEOUT = 3.0

SourceKind = Literal["folder", "hub-cache", "hub", "embedded"]


@dataclass(frozen=True)
class ModelSource:
    """Where a processor for ``model`` comes from, decided without importing transformers.

    ``location`` is the folder (``folder``), the cached snapshot (``hub-cache``), the hub
    endpoint (``hub``) or the embedded module (``embedded``); ``reason`` says why the
    embedded default is in use.
    """

    model: str
    kind: SourceKind
    location: str
    reason: str = ""

    @property
    def folder(self) -> Path | None:
        """The folder holding the checkpoint's files, when they are on this machine."""
        return Path(self.location) if self.kind in ("folder", "hub-cache") else None

    @property
    def known(self) -> str | None:
        """The known SmolVLM2 checkpoint this model is (by id, or by a folder named like
        one), or None."""
        spec = known_spec(self.model)
        return spec.name if spec is not None else None

    def describe(self) -> str:
        """One line for the session header: which processor is in use, and that its counts
        are exact (the embedded default ships the checkpoints' own tokenizer)."""
        if self.kind == "embedded":
            return (
                f"embedded default for {self.model} ({self.reason}): SmolVLM2's tokenizer "
                "shipped with tokenguard, all tokens exact"
            )
        where = {"folder": "local folder", "hub-cache": "hub cache", "hub": "hub"}[self.kind]
        return f"{self.model} from {where} {self.location}: all tokens exact"

    def digest(self) -> str:
        """``sha256:...`` of what decides the counts: the checkpoint's processor files
        (JSON and templates, no weights), or the embedded default's tokenizer and
        settings; ``unknown`` for a hub model not yet downloaded."""
        digest = hashlib.sha256()
        folder = self.folder
        if folder is not None:
            for path in sorted(folder.iterdir()):
                if path.is_file() and path.suffix in (".json", ".jinja", ".txt"):
                    digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        elif self.kind == "embedded":
            from .embedded import fingerprint

            digest.update(fingerprint(self.model))
        else:
            return "unknown"
        return "sha256:" + digest.hexdigest()

    def spec(self) -> ModelSpec:
        """The counting spec, read from the files where they are here, else the built-in
        table (the embedded default and the hub use the published values)."""
        folder = self.folder
        if folder is not None:
            return spec_from_folder(folder, name=self.model)
        spec = known_spec(self.model)
        if spec is None:  # pragma: no cover - resolve_source never returns such a source
            raise SpecError(f"no spec is known for {self.model!r}")
        return spec

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A JSON object file of the checkpoint folder (``config.json``...), or None when
        the source has no folder or the file is absent. A file that is not a JSON object
        is a :class:`SpecError` naming it."""
        folder = self.folder
        if folder is None or not (folder / name).is_file():
            return None
        path = folder / name
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"{path}: cannot be read ({exc}); restore the file from the "
                            "checkpoint") from None
        except json.JSONDecodeError as exc:
            raise SpecError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                            f"{exc.msg}); restore the file from the checkpoint") from None
        if not isinstance(data, dict):
            raise SpecError(f"{path}: expected a JSON object, got {type(data).__name__}; "
                            "restore the file from the checkpoint")
        return data


def model_or_default(model: str | None = None) -> str:
    """The model a command uses: the one given, else ``$TOKENGUARD_MODEL``, else SmolVLM2-2.2B."""
    return model or os.environ.get(ENV_MODEL) or DEFAULT_MODEL


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(
        os.environ.get("TRANSFORMERS_OFFLINE")
    )


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home) / "hub"


def cached_snapshot(model_id: str) -> Path | None:
    """The cached snapshot folder of a hub id that holds a processor config, if any."""
    snapshots = hub_cache_dir() / f"models--{model_id.replace('/', '--')}" / "snapshots"
    try:
        candidates = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return None
    for snapshot in candidates:
        if has_processor_config(snapshot):
            return snapshot
    return None


_reachable: dict[str, bool] = {}
_reachable_lock = threading.Lock()


def hub_reachable(timeout: float = DEFAULT_NETWORK_TIMEOUT) -> bool:
    """A TCP connect to the hub endpoint within ``timeout`` seconds; remembered per process."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    with _reachable_lock:
        if endpoint not in _reachable:
            parsed = urlparse(endpoint)
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            try:
                with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
                    _reachable[endpoint] = True
            except OSError:
                _reachable[endpoint] = False
        return _reachable[endpoint]


def resolve_source(
    model: str, network_timeout: float | None = DEFAULT_NETWORK_TIMEOUT
) -> ModelSource:
    """Decide where ``model``'s processor comes from (see the module docstring).

    ``network_timeout=None`` never touches the network: commands that only read
    headers or configs (``count``, ``memory``) pass it.
    """
    expanded = Path(os.path.expanduser(model))
    if expanded.is_dir():
        if not has_processor_config(expanded):
            raise ProcessorLoadError.phrased(
                f"model folder {model!r} has {NO_PROCESSOR_CONFIG}: point {{model}} at a "
                "SmolVLM checkpoint folder"
            )
        return ModelSource(model, "folder", str(expanded.resolve()))
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or expanded.exists():
        raise ProcessorLoadError.phrased(
            f"model folder {model!r} does not exist: fix the path given to {{model}}"
        )
    snapshot = cached_snapshot(model)
    if snapshot is not None:
        return ModelSource(model, "hub-cache", str(snapshot))
    if hub_offline():
        reason = "HF_HUB_OFFLINE is set and the model is not in the local cache"
    elif network_timeout is None:
        reason = "the model is not in the local cache (this command never uses the network)"
    elif hub_reachable(network_timeout):
        return ModelSource(model, "hub", os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    else:
        reason = "the hub is unreachable and the model is not in the local cache"
    if known_spec(model) is None:
        raise ProcessorLoadError.phrased(
            f"unknown model {model!r}: {reason}, and no embedded default exists for it. "
            "Download it once (hf download), point {model} at a local checkpoint folder, or "
            "use one of the SmolVLM2 checkpoints"
        )
    return ModelSource(model, "embedded", "pytest_tokenguard.processor.embedded", reason)


def transformers_version() -> str:
    """The installed transformers version, read from its metadata (no import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformers")
    except PackageNotFoundError:
        return "not installed"
