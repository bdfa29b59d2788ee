"""Load the real SmolVLM processor at a given resolution, and never hang on the network.

Users call ``AutoProcessor.from_pretrained(model, size={"longest_edge": N})``; so does
this module. ``model`` is a local checkpoint folder or a hub id. A hub id is taken from
the local Hugging Face cache first (no network at all). Only when it is not cached, and
``HF_HUB_OFFLINE`` is not set, is the hub asked, after a short connect probe, so an
unreachable hub is known in seconds rather than after transformers' retries.

When none of that works and the model is one of the known SmolVLM2 checkpoints, an
*embedded default* is built from the real transformers SmolVLM classes and this
package's own copy of the checkpoint's published processor settings. Its image and
special tokens are exact. Its vocabulary is not the real one: text is tokenized one
token per UTF-8 byte, except that two newlines in a row are one token as in SmolLM2.
SmolLM2's byte-level BPE never spends more than one token per byte and merges the
same newline pair, so the embedded count is never lower than the real one (a property
test in the suite checks it against the real tokenizer).

torch, transformers and PIL are imported inside the functions only.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import ProcessorLoadError as ProcessorLoadError
from ..specs import DEFAULT_MODEL, ModelSpec, SpecError, known_spec, spec_from_processor

ENV_MODEL = "TOKENGUARD_MODEL"
DEFAULT_NETWORK_TIMEOUT = 3.0


@dataclass(frozen=True)
class ModelSource:
    """Where a processor for ``model`` will come from, decided without importing transformers."""

    model: str
    kind: str  # "folder", "hub-cache", "hub", "embedded"
    location: str
    reason: str = ""

    @property
    def exact(self) -> bool:
        """Whether every token (text included) is counted exactly."""
        return self.kind != "embedded"

    def describe(self) -> str:
        """One line for the session header: which processor is in use and what is exact."""
        if self.kind == "embedded":
            return (
                f"embedded default for {self.model} ({self.reason}): image and special tokens "
                "exact, text tokens an upper bound (1 per UTF-8 byte, newline pairs merged)"
            )
        where = {"folder": "local folder", "hub-cache": "hub cache", "hub": "hub"}[self.kind]
        return f"{self.model} from {where} {self.location}: all tokens exact"


@dataclass(frozen=True)
class LoadedProcessor:
    """A processor at one resolution, with the spec read from it and where it came from."""

    processor: Any
    spec: ModelSpec
    longest_edge: int
    source: ModelSource

    @property
    def id(self) -> str:
        return f"le{self.longest_edge}"


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
    if not snapshots.is_dir():
        return None
    for snapshot in sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        if (snapshot / "preprocessor_config.json").exists():
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


def resolve_source(model: str, network_timeout: float = DEFAULT_NETWORK_TIMEOUT) -> ModelSource:
    """Decide where ``model``'s processor comes from, cheaply (no transformers import)."""
    expanded = Path(os.path.expanduser(model))
    if expanded.is_dir():
        if not (expanded / "preprocessor_config.json").exists():
            raise ProcessorLoadError(
                f"model folder {model!r} has no preprocessor_config.json: point "
                "--tokenguard-model (or TOKENGUARD_MODEL) at a SmolVLM checkpoint folder"
            )
        return ModelSource(model, "folder", str(expanded.resolve()))
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ProcessorLoadError(
            f"model folder {model!r} does not exist: fix the path given to --tokenguard-model "
            f"(or {ENV_MODEL}, or the tokenguard_model ini value)"
        )
    snapshot = cached_snapshot(model)
    if snapshot is not None:
        return ModelSource(model, "hub-cache", str(snapshot))
    if hub_offline():
        reason = "HF_HUB_OFFLINE is set and the model is not in the local cache"
    elif hub_reachable(network_timeout):
        return ModelSource(model, "hub", os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    else:
        reason = "the hub is unreachable and the model is not in the local cache"
    if known_spec(model) is None:
        raise ProcessorLoadError(
            f"unknown model {model!r}: {reason}, and no embedded default exists for it. "
            "Download it once (huggingface-cli download), point --tokenguard-model at a local "
            "checkpoint folder, or use one of the SmolVLM2 checkpoints"
        )
    return ModelSource(model, "embedded", "pytest_tokenguard.embedded", reason)


def load_processor(
    model: str = DEFAULT_MODEL,
    longest_edge: int | None = None,
    *,
    network_timeout: float = DEFAULT_NETWORK_TIMEOUT,
    source: ModelSource | None = None,
) -> LoadedProcessor:
    """``AutoProcessor.from_pretrained(model, size={"longest_edge": longest_edge})``, safely.

    ``longest_edge=None`` keeps the checkpoint's default. Raises
    :class:`ProcessorLoadError` with a message that names the model and the fix.
    """
    if longest_edge is not None and (
        isinstance(longest_edge, bool) or not isinstance(longest_edge, int) or longest_edge < 1
    ):
        raise ProcessorLoadError(
            f"longest_edge must be a positive integer, got {longest_edge!r}: use e.g. "
            "--tokenguard-resolutions=384,512,1536"
        )
    source = source or resolve_source(model, network_timeout)
    kwargs: dict[str, Any] = {}
    if longest_edge is not None:
        kwargs["size"] = {"longest_edge": longest_edge}
    if source.kind == "embedded":
        from .embedded import build_embedded_processor

        processor = build_embedded_processor(model, **kwargs)
    else:
        processor = _from_pretrained(source, kwargs, network_timeout)
    try:
        spec = spec_from_processor(processor, name=model)
    except SpecError as exc:
        raise ProcessorLoadError(f"{model!r}: {exc}") from None
    return LoadedProcessor(processor, spec, spec.default_longest_edge, source)


def _from_pretrained(source: ModelSource, kwargs: dict[str, Any], timeout: float) -> Any:
    try:
        from transformers import AutoProcessor
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ProcessorLoadError(
            f"transformers cannot be imported ({exc}); pip install 'transformers>=5' torchvision"
        ) from None
    target = source.location if source.kind in ("folder", "hub-cache") else source.model
    local_only = source.kind != "hub"
    for var in ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
        os.environ.setdefault(var, str(int(max(timeout, 1))))
    try:
        return AutoProcessor.from_pretrained(target, local_files_only=local_only, **kwargs)
    except ImportError as exc:
        raise ProcessorLoadError(
            f"loading {source.model!r} needs a package that is missing: {exc}. SmolVLM2's "
            "processor needs torchvision (video processor) and num2words"
        ) from None
    except (OSError, ValueError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ProcessorLoadError(
            f"could not load the processor of {source.model!r} from {target}: {first_line}. "
            "Check --tokenguard-model names a SmolVLM checkpoint (hub id or folder)"
        ) from None
