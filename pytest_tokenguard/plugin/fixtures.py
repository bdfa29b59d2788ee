"""The fixtures: the real processor at each configured resolution, and what is built on it.

They work with or without ``--tokenguard``. Every fixture that hands out a processor,
a counter or the splitter checker is **session-scoped**: one object per resolution for
the whole run (a processor load takes seconds), and safe to use inside ``@given``
tests, where hypothesis refuses function-scoped fixtures. A test that asks for any of
them is parametrized over the configured resolutions (ids ``le384``, ``le512``...) by
``pytest_generate_tests`` in :mod:`pytest_tokenguard.plugin`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from ..errors import ProcessorLoadError
from .options import DEFAULT_RESOLUTIONS

if TYPE_CHECKING:
    from ..processor.loading import LoadedProcessor
    from ..processor.source import ModelSource
    from ..testing.splitcheck import SplitterChecker
    from ..tokens import TokenCounter

__all__ = [
    "PARAMETRIZED",
    "ProcessorCache",
    "tokenguard_audit",
    "tokenguard_check_splitter",
    "tokenguard_counter",
    "tokenguard_loaded",
    "tokenguard_longest_edge",
    "tokenguard_model",
    "tokenguard_processor",
    "tokenguard_source",
]

#: a test that uses any of these runs once per configured resolution
PARAMETRIZED = frozenset({"tokenguard_processor", "tokenguard_counter", "tokenguard_loaded",
                          "tokenguard_longest_edge"})


class ProcessorCache:
    """One processor per ``longest_edge`` for the whole run, from one resolved source."""

    def __init__(self, model: str, timeout: float) -> None:
        self.model = model
        self.timeout = timeout
        self._source: ModelSource | None = None
        self._loaded: dict[int, LoadedProcessor] = {}
        self._counters: dict[int, TokenCounter] = {}

    def source(self) -> ModelSource:
        if self._source is None:
            from ..processor.source import resolve_source

            self._source = resolve_source(self.model, self.timeout)
        return self._source

    def get(self, longest_edge: int) -> LoadedProcessor:
        if longest_edge not in self._loaded:
            from ..processor.loading import load_processor

            self._loaded[longest_edge] = load_processor(
                self.model, longest_edge, network_timeout=self.timeout, source=self.source()
            )
        return self._loaded[longest_edge]

    def counter(self, longest_edge: int) -> TokenCounter:
        if longest_edge not in self._counters:
            from ..tokens import TokenCounter

            loaded = self.get(longest_edge)
            self._counters[longest_edge] = TokenCounter(loaded.processor, loaded.spec,
                                                        loaded.longest_edge)
        return self._counters[longest_edge]


def _cache(request: pytest.FixtureRequest) -> ProcessorCache:
    from .session import session_of

    return session_of(request.config).processors


def _fail(exc: ProcessorLoadError) -> BaseException:
    return pytest.fail.Exception(f"tokenguard: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def tokenguard_model(request: pytest.FixtureRequest) -> str:
    """The configured model: hub id or checkpoint folder."""
    return _cache(request).model


@pytest.fixture(scope="session")
def tokenguard_source(request: pytest.FixtureRequest) -> ModelSource:
    """Where the processor comes from (folder, hub cache, hub or embedded default)."""
    try:
        return _cache(request).source()
    except ProcessorLoadError as exc:
        raise _fail(exc) from None


@pytest.fixture(scope="session")
def tokenguard_longest_edge() -> int:
    """The ``longest_edge`` of this test instance (parametrized over the configured
    resolutions; parametrize it yourself to choose per test)."""
    return DEFAULT_RESOLUTIONS[-1]  # pragma: no cover - always parametrized


@pytest.fixture(scope="session")
def tokenguard_loaded(request: pytest.FixtureRequest,
                      tokenguard_longest_edge: int) -> LoadedProcessor:
    """The loaded processor with its spec and source, at this test's ``longest_edge``."""
    try:
        return _cache(request).get(tokenguard_longest_edge)
    except ProcessorLoadError as exc:
        raise _fail(exc) from None


@pytest.fixture(scope="session")
def tokenguard_processor(tokenguard_loaded: LoadedProcessor) -> Any:
    """The real processor, ``AutoProcessor.from_pretrained(model, size={"longest_edge": N})``,
    once per session and resolution; ids ``le384``, ``le512``..."""
    return tokenguard_loaded.processor


@pytest.fixture(scope="session")
def tokenguard_counter(request: pytest.FixtureRequest,
                       tokenguard_loaded: LoadedProcessor) -> TokenCounter:
    """Exact counts of images, prompts and conversations at this test's ``longest_edge``
    (one shared counter per resolution)."""
    return _cache(request).counter(tokenguard_loaded.longest_edge)


@pytest.fixture(scope="session")
def tokenguard_check_splitter(request: pytest.FixtureRequest) -> SplitterChecker:
    """Prove your own splitter never overflows: ``tokenguard_check_splitter(my_split,
    max_tokens=4096)`` checks ``my_split(messages)`` (chat message dicts in, chunks out)
    at every configured resolution, or at ``resolutions=[384]``; it is not parametrized.

    ::

        def test_my_splitter(tokenguard_check_splitter):
            tokenguard_check_splitter(my_split, max_tokens=4096, resolutions=[384])

    Hypothesis generates conversations at the limit (a run of messages within a few tokens
    of ``max_tokens``); each chunk ``my_split`` returns is priced exactly and must fit,
    and the chunks must hold every message once, in order. It runs at every configured
    resolution, or at ``resolutions=[...]``. Cost: about ``examples x (your splitter +
    ~5 ms) + ~2 s`` per resolution (the real processor counts only a failing chunk and
    the fullest chunks of a pass). A splitter may refuse a conversation by raising
    ``SplitError`` (``refuses=``); refusals are reported, not failures, unless the
    conversation could have been split. Tests that use it are kept out of the tokenguard
    baseline (their figures come from generated examples).

    A Qwen-VL splitter: pass the Qwen processor your code calls, ``processor=...``, and the
    settings to check, ``max_pixels=[200704, ...]`` (one run each).
    """
    from ..testing.splitcheck import SplitterChecker

    cache = _cache(request)
    from .session import session_of

    return SplitterChecker(cache.get, resolutions=session_of(request.config).settings.resolutions)


@pytest.fixture(scope="session")
def tokenguard_audit(tokenguard_model: str) -> Callable[..., Any]:
    """Audit a training set as ``tokenguard audit`` does, with the configured model::

        def test_training_set(tokenguard_audit):
            report = tokenguard_audit("data/train.jsonl", max_length=2048, longest_edge=768)
            assert not report.summary.cut_inside_media, report.lines()

    Returns the typed ``AuditReport`` (``report.summary``: samples, ``tokens()``
    percentiles, ``over_max_length`` and ``cut_inside_media`` ids; ``report.fits``: the
    settings that fit; ``report.to_json()``), computed once per process for the same
    file and settings. Takes ``@pytest.mark.training_set_fits``' arguments; that marker
    is the gate whose figures go into the baseline.
    """
    def audit(data: Any, **settings: Any) -> Any:
        from ..audit.gate import audit_training_set, gate_from_marker

        model = settings.pop("model", tokenguard_model)
        return audit_training_set(gate_from_marker(model, data, **settings))

    return audit
