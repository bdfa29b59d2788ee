"""The fixtures: the real processor at each configured resolution, and what is built on it.

They work with or without ``--tokenguard``. Every fixture that hands out a processor,
a counter or the splitter checker is **session-scoped**: one object per resolution for
the whole run (a processor load takes seconds), and safe to use inside ``@given``
tests, where hypothesis refuses function-scoped fixtures. A test that asks for any of
them is parametrized over the configured resolutions (ids ``le384``, ``le512``...) by
``pytest_generate_tests`` in :mod:`pytest_tokenguard.plugin`.

For a Qwen-VL model the resolution is a pixel budget: the tests are parametrized over
``tokenguard_max_pixels`` (``--tokenguard-max-pixels``, ids ``mp200704``...; the
checkpoint's own by default) and ``tokenguard_processor`` is
``AutoProcessor.from_pretrained(model, max_pixels=N)``; ``tokenguard_longest_edge`` is
then None (and ``tokenguard_max_pixels`` None for a SmolVLM2 model). The processor needs
the checkpoint's files and tokenizer: a Qwen hub id with none on this machine skips the
tests that ask for it, with the reason and what to pass
(:class:`~pytest_tokenguard.errors.TokenizerUnavailable`). On a Qwen-VL model the counter is
a ``QwenTokenCounter`` and the splitter checker runs on its processor at each max_pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from ..errors import ProcessorLoadError, TokenizerUnavailable
from .options import DEFAULT_RESOLUTIONS, pixel_family

if TYPE_CHECKING:
    from ..families.qwen_text import QwenTokenCounter
    from ..processor.loading import LoadedPixelProcessor, LoadedProcessor
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
    "tokenguard_max_pixels",
    "tokenguard_model",
    "tokenguard_processor",
    "tokenguard_source",
]

#: a test that uses any of these runs once per configured resolution
PARAMETRIZED = frozenset({"tokenguard_processor", "tokenguard_counter", "tokenguard_loaded",
                          "tokenguard_longest_edge", "tokenguard_max_pixels"})
#: the parameter a test is run over, and its ids' prefix: SmolVLM2's, a Qwen-VL model's
RESOLUTION_PARAMETERS = (("tokenguard_longest_edge", "le"), ("tokenguard_max_pixels", "mp"))


class ProcessorCache:
    """One processor per ``longest_edge`` (SmolVLM2) or ``max_pixels`` (Qwen-VL) for the
    whole run, from one resolved source."""

    def __init__(self, model: str, timeout: float) -> None:
        self.model = model
        self.timeout = timeout
        self._source: ModelSource | None = None
        self._loaded: dict[int, LoadedProcessor] = {}
        self._counters: dict[int, TokenCounter] = {}
        self._pixels: dict[int | None, LoadedPixelProcessor] = {}
        self._pixel_counters: dict[int | None, QwenTokenCounter] = {}
        self._family: tuple[str | None] | None = None

    @property
    def pixel_family(self) -> str | None:
        """The model's family when a pixel budget resizes it (``qwen-vl``), else None."""
        if self._family is None:
            self._family = (pixel_family(self.model),)
        return self._family[0]

    def source(self) -> ModelSource:
        if self._source is None:
            from ..processor.source import resolve_source

            try:
                self._source = resolve_source(self.model, self.timeout)
            except ProcessorLoadError:
                if self.pixel_family is not None:  # a known Qwen-VL id with no files here
                    raise TokenizerUnavailable.for_processor(self.model) from None
                raise
        return self._source

    def default_max_pixels(self) -> int | None:
        """The checkpoint's own ``max_pixels`` (its image processor's ``size``), None when
        its settings cannot be read (the fixture then says why)."""
        from ..errors import SpecError
        from ..families import resolve_family

        try:
            found = resolve_family(self.model)
            return None if found is None else int(found.spec().image.max_pixels)
        except (SpecError, ValueError, AttributeError, RecursionError):
            return None

    def get_pixels(self, max_pixels: int | None) -> LoadedPixelProcessor:
        """The real processor at ``max_pixels`` (None: the checkpoint's own)."""
        if max_pixels not in self._pixels:
            from ..processor.loading import load_pixel_processor

            self._pixels[max_pixels] = load_pixel_processor(
                self.model, max_pixels, network_timeout=self.timeout, source=self.source())
        return self._pixels[max_pixels]

    def get(self, longest_edge: int) -> LoadedProcessor:
        if longest_edge not in self._loaded:
            from ..processor.loading import load_processor

            self._loaded[longest_edge] = load_processor(
                self.model, longest_edge, network_timeout=self.timeout, source=self.source()
            )
        return self._loaded[longest_edge]

    def pixel_counter(self, loaded: LoadedPixelProcessor) -> QwenTokenCounter:
        """The exact Qwen-VL counter of a processor loaded at a pixel budget."""
        if loaded.max_pixels not in self._pixel_counters:
            from ..families.qwen_text import QwenTokenCounter

            self._pixel_counters[loaded.max_pixels] = QwenTokenCounter.from_processor(
                loaded.processor)
        return self._pixel_counters[loaded.max_pixels]

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
    if isinstance(exc, TokenizerUnavailable):  # nothing to fix in the test: a skip
        return pytest.skip.Exception(f"tokenguard: {exc}", _use_item_location=True)
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
def tokenguard_longest_edge(request: pytest.FixtureRequest) -> int | None:
    """The ``longest_edge`` of this test instance (parametrized over the configured
    resolutions; parametrize it yourself to choose per test); None for a Qwen-VL model,
    whose tests run over ``tokenguard_max_pixels``."""
    if _cache(request).pixel_family is not None:
        return None
    return DEFAULT_RESOLUTIONS[-1]  # pragma: no cover - always parametrized


@pytest.fixture(scope="session")
def tokenguard_max_pixels() -> int | None:
    """The ``max_pixels`` of this test instance for a Qwen-VL model (parametrized over
    ``--tokenguard-max-pixels``, else the checkpoint's own; parametrize it yourself to
    choose per test); None for a SmolVLM2 model."""
    return None


@pytest.fixture(scope="session")
def tokenguard_loaded(request: pytest.FixtureRequest, tokenguard_longest_edge: int | None,
                      tokenguard_max_pixels: int | None) -> LoadedProcessor | LoadedPixelProcessor:
    """The loaded processor with its spec and source, at this test's ``longest_edge`` (or,
    for a Qwen-VL model, its ``max_pixels``)."""
    cache = _cache(request)
    family = cache.pixel_family
    try:
        if family is None:
            if tokenguard_max_pixels is not None:
                pytest.skip(f"tokenguard: tokenguard_max_pixels is a Qwen-VL setting; "
                            f"{cache.model} is resized by longest_edge: parametrize "
                            "tokenguard_longest_edge")
            assert tokenguard_longest_edge is not None
            return cache.get(tokenguard_longest_edge)
        if tokenguard_longest_edge is not None:
            pytest.skip(f"tokenguard: tokenguard_longest_edge is a SmolVLM2 setting; "
                        f"{cache.model} is a {family} model: parametrize tokenguard_max_pixels")
        return cache.get_pixels(tokenguard_max_pixels)
    except ProcessorLoadError as exc:
        raise _fail(exc) from None


@pytest.fixture(scope="session")
def tokenguard_processor(tokenguard_loaded: LoadedProcessor | LoadedPixelProcessor) -> Any:
    """The real processor, ``AutoProcessor.from_pretrained(model, size={"longest_edge": N})``
    (a Qwen-VL model: ``max_pixels=N``), once per session and resolution; ids ``le384``,
    ``le512``... (``mp200704``...)"""
    return tokenguard_loaded.processor


@pytest.fixture(scope="session")
def tokenguard_counter(request: pytest.FixtureRequest,
                       tokenguard_loaded: LoadedProcessor | LoadedPixelProcessor
                       ) -> TokenCounter | QwenTokenCounter:
    """Exact counts of images, prompts and conversations at this test's ``longest_edge``
    (one shared counter per resolution): a ``TokenCounter``; for a Qwen-VL model, a
    ``QwenTokenCounter`` at this test's ``max_pixels`` (``.image``, ``.text``,
    ``.conversation``)."""
    cache = _cache(request)
    if tokenguard_loaded.longest_edge is None:  # a pixel-budget (Qwen-VL) processor
        return cache.pixel_counter(tokenguard_loaded)
    return cache.counter(tokenguard_loaded.longest_edge)


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

    A Qwen-VL model (``--tokenguard-model``): the checks run on its real processor at each
    ``--tokenguard-max-pixels`` value (default: the checkpoint's own), or at
    ``max_pixels=[200704, ...]``; any test may pass the Qwen processor its code calls,
    ``processor=...``, instead (one run each setting).
    """
    from ..testing.splitcheck import SplitterChecker
    from .session import session_of

    cache = _cache(request)
    settings = session_of(request.config).settings
    if cache.pixel_family is not None:
        try:
            loaded = cache.get_pixels(None)
        except ProcessorLoadError as exc:
            raise _fail(exc) from None
        return SplitterChecker(loaded.processor, max_pixels=settings.max_pixels)
    return SplitterChecker(cache.get, resolutions=settings.resolutions)


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
