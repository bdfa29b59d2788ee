"""The pytest hooks of tokenguard: options, fixtures, markers, report header and summary.

Loading this module (every pytest run where the package is installed) imports nothing
heavy. ``--tokenguard`` turns the markers on and records every SmolVLM processor call
a test makes; without it the markers are inert, as pytest-memray's are without
``--memray``. The fixtures work either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from ..baseline import gate as gating
from ..errors import ProcessorLoadError
from ..processor.source import DEFAULT_NETWORK_TIMEOUT, ENV_MODEL
from ..specs import DEFAULT_MODEL
from .markers import (
    MarkerResult,
    check_image_tokens,
    check_max_sequence,
    validate_expected_tokens,
    validate_gpu_limit,
    validate_predicted_limit,
)
from .summary import USER_PROPERTY, ResolutionFigures, figures_from_recording, format_table

if TYPE_CHECKING:
    from ..gpu.measure import GpuPeak
    from ..processor.loading import LoadedProcessor
    from ..processor.recording import Recorder, Recording
    from ..processor.source import ModelSource
    from ..tokens import TokenCounter
    from ..verdict import LimitResult

DEFAULT_RESOLUTIONS = (384, 512, 768, 1024, 1536)

MARKERS = {
    "image_tokens": (
        "image_tokens(n): under --tokenguard, fail if any image a SmolVLM processor "
        "expanded during the test cost other than n <image> tokens"
    ),
    "max_sequence_tokens": (
        "max_sequence_tokens(n): under --tokenguard, fail if any sequence a SmolVLM "
        "processor returned during the test is longer than n tokens"
    ),
    "limit_gpu_memory": (
        'limit_gpu_memory(size, measure="max"): under --tokenguard, measure the test\'s GPU '
        "peak (torch allocated and reserved, NVML device memory) and fail over size "
        '("24 GiB", "800MB" or bytes); skips without CUDA unless --tokenguard-require-gpu'
    ),
    "limit_predicted_gpu_memory": (
        "limit_predicted_gpu_memory(size, longest_edge=None, images=4, text_tokens=64, "
        "batch=1, gradient_checkpointing=False, margin=0.0): under --tokenguard, fail if the "
        "memory model predicts a training step of the configured model over size; runs on CPU"
    ),
}
TOKEN_MARKERS = ("image_tokens", "max_sequence_tokens")

_recording_key = pytest.StashKey["Recording"]()
_cache_key = pytest.StashKey["ProcessorCache"]()
_session_key = pytest.StashKey["TokenguardSession"]()
_gpu_peak_key: pytest.StashKey[GpuPeak] = pytest.StashKey()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tokenguard", "token budget and GPU memory guards (tokenguard)")
    group.addoption(
        "--tokenguard",
        action="store_true",
        default=None,
        help="activate the tokenguard markers, record processor calls, print the summary",
    )
    parser.addini("tokenguard", type="bool", default=False, help="same as --tokenguard")
    group.addoption(
        "--tokenguard-model",
        default=None,
        help=f"hub id or checkpoint folder of the processor (env {ENV_MODEL}; "
        f"default {DEFAULT_MODEL})",
    )
    parser.addini("tokenguard_model", default="", help="same as --tokenguard-model")
    group.addoption(
        "--tokenguard-resolutions",
        default=None,
        help="comma-separated longest_edge values for the tokenguard_processor fixture "
        f"(default {','.join(map(str, DEFAULT_RESOLUTIONS))})",
    )
    parser.addini("tokenguard_resolutions", default="", help="same as --tokenguard-resolutions")
    group.addoption(
        "--tokenguard-network-timeout",
        type=float,
        default=None,
        help=f"seconds to wait for the hub before using the embedded default "
        f"(default {DEFAULT_NETWORK_TIMEOUT:g})",
    )
    parser.addini("tokenguard_network_timeout", default="", help="same as "
                  "--tokenguard-network-timeout")
    group.addoption(
        "--tokenguard-require-gpu",
        action="store_true",
        default=None,
        help="fail, instead of skip, limit_gpu_memory tests when no CUDA device is usable "
        "(for GPU CI jobs, which must not go green by skipping)",
    )
    parser.addini("tokenguard_require_gpu", type="bool", default=False,
                  help="same as --tokenguard-require-gpu")
    gating.add_options(parser, group)  # issue 4: baseline gating options


def is_enabled(config: pytest.Config) -> bool:
    value = config.getoption("tokenguard")
    return bool(value if value is not None else config.getini("tokenguard"))


def configured_model(config: pytest.Config) -> str:
    """CLI option, then environment, then ini (relative to the ini file), then default."""
    cli = config.getoption("tokenguard_model")
    if cli:
        return str(cli)
    env = os.environ.get(ENV_MODEL)
    if env:
        return env
    ini = str(config.getini("tokenguard_model") or "")
    if ini:
        if ini.startswith(".") and config.inipath is not None:
            return str((config.inipath.parent / ini).resolve())
        return ini
    return DEFAULT_MODEL


def parse_resolutions(raw: str, origin: str) -> tuple[int, ...]:
    values = []
    for part in raw.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            value = 0
        if value < 1:
            raise pytest.UsageError(
                f"{origin}: {part!r} is not a valid longest_edge; give positive integers such "
                "as 384,512,1536"
            )
        values.append(value)
    if not values:
        raise pytest.UsageError(f"{origin}: no resolutions given; e.g. 384,512,1536")
    return tuple(dict.fromkeys(values))


def configured_resolutions(config: pytest.Config) -> tuple[int, ...]:
    cli = config.getoption("tokenguard_resolutions")
    if cli is not None:
        return parse_resolutions(cli, "--tokenguard-resolutions")
    ini = config.getini("tokenguard_resolutions")
    if ini:
        return parse_resolutions(str(ini), "tokenguard_resolutions (ini)")
    return DEFAULT_RESOLUTIONS


def configured_timeout(config: pytest.Config) -> float:
    cli = config.getoption("tokenguard_network_timeout")
    if cli is not None:
        return float(cli)
    ini = config.getini("tokenguard_network_timeout")
    return float(ini) if ini else DEFAULT_NETWORK_TIMEOUT


class ProcessorCache:
    """One processor per (model, longest_edge) for the whole session."""

    def __init__(self, model: str, timeout: float) -> None:
        self.model = model
        self.timeout = timeout
        self._source: ModelSource | None = None
        self._loaded: dict[int, LoadedProcessor] = {}

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


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    profile = config.getoption("hypothesis_profile", None)
    if isinstance(profile, str) and profile.startswith("tokenguard-"):
        # registered before hypothesis's own configure loads the named profile; imported
        # only when asked for, so plain runs do not pay for hypothesis here
        from ..testing import profiles  # noqa: F401
    for name, help_text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {help_text}")
    config.stash[_cache_key] = ProcessorCache(configured_model(config), configured_timeout(config))
    configured_resolutions(config)  # bad values fail now, not in the middle of collection
    if is_enabled(config):
        session = TokenguardSession(config)
        config.stash[_session_key] = session
        config.pluginmanager.register(session, "tokenguard-session")
    gating.configure(config, is_enabled(config))  # issue 4: registers the baseline gate


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize tests that use the processor fixtures over the configured resolutions."""
    wanted = {"tokenguard_processor", "tokenguard_counter", "tokenguard_longest_edge"}
    if not wanted.intersection(metafunc.fixturenames):
        return
    if any("tokenguard_longest_edge" in m.args[0] for m in metafunc.definition.iter_markers(
            "parametrize") if m.args):
        return  # the test chose its own resolutions
    resolutions = configured_resolutions(metafunc.config)
    metafunc.parametrize(
        "tokenguard_longest_edge", resolutions, ids=[f"le{r}" for r in resolutions],
        scope="session",
    )


def _load(request: pytest.FixtureRequest, longest_edge: int) -> LoadedProcessor:
    __tracebackhide__ = True
    try:
        return request.config.stash[_cache_key].get(longest_edge)
    except ProcessorLoadError as exc:
        pytest.fail(f"tokenguard: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def tokenguard_model(request: pytest.FixtureRequest) -> str:
    """The configured model: hub id or checkpoint folder."""
    return request.config.stash[_cache_key].model


@pytest.fixture(scope="session")
def tokenguard_source(request: pytest.FixtureRequest) -> ModelSource:
    """Where the processor comes from (folder, hub cache, hub or embedded default)."""
    __tracebackhide__ = True
    try:
        return request.config.stash[_cache_key].source()
    except ProcessorLoadError as exc:
        pytest.fail(f"tokenguard: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def tokenguard_longest_edge() -> int:
    """Overridden by parametrization: the ``longest_edge`` of this test instance."""
    return DEFAULT_RESOLUTIONS[-1]  # pragma: no cover - always parametrized


@pytest.fixture
def tokenguard_loaded(
    request: pytest.FixtureRequest, tokenguard_longest_edge: int
) -> LoadedProcessor:
    """The loaded processor with its spec and source, at this test's ``longest_edge``."""
    return _load(request, tokenguard_longest_edge)


@pytest.fixture
def tokenguard_processor(tokenguard_loaded: LoadedProcessor) -> Any:
    """The real processor, ``AutoProcessor.from_pretrained(model, size={"longest_edge": N})``,
    once per session and resolution; ids ``le384``, ``le512``..."""
    return tokenguard_loaded.processor


@pytest.fixture
def tokenguard_counter(tokenguard_loaded: LoadedProcessor) -> TokenCounter:
    """Exact counts of images, prompts and conversations at this test's ``longest_edge``."""
    from ..tokens import TokenCounter

    return TokenCounter(tokenguard_loaded.processor, tokenguard_loaded.spec,
                        tokenguard_loaded.longest_edge)


@pytest.fixture
def tokenguard_check_splitter(tokenguard_counter: TokenCounter) -> Callable[..., None]:
    """Prove your own splitter never overflows, in one line::

        def test_my_splitter(tokenguard_check_splitter):
            tokenguard_check_splitter(my_split, max_tokens=4096)

    Hypothesis generates conversations, every chunk ``my_split`` returns is rendered and
    counted by the real processor at this test's resolution, and coverage and order are
    checked; a failure shows the shrunk conversation and the overflowing chunk's count.
    The callable takes ``(split_fn, max_tokens=4096, *, conversations=None,
    max_examples=None, leading=())``.
    """
    from ..testing.splitcheck import splitter_checker

    return splitter_checker(tokenguard_counter)


class TokenguardSession:
    """The hooks that only run under ``--tokenguard``."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._recorder: Recorder | None = None
        self.rows: list[ResolutionFigures] = []
        self.gpu_rows: list[tuple[str, str, int, int]] = []  # nodeid, measure, peak, limit

    @property
    def recorder(self) -> Recorder:
        if self._recorder is None:
            from ..processor.recording import Recorder

            self._recorder = Recorder()
            self._recorder.install()
        return self._recorder

    def pytest_report_header(self, config: pytest.Config) -> str:
        cache = config.stash[_cache_key]
        try:
            described = cache.source().describe()
        except ProcessorLoadError as exc:
            described = f"ERROR {exc}"
        resolutions = ", ".join(map(str, configured_resolutions(config)))
        return f"tokenguard: {described}; resolutions {resolutions}"

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        problems = []
        for item in items:
            for marker in item.iter_markers():
                try:
                    if marker.name in TOKEN_MARKERS:
                        validate_expected_tokens(marker.name,
                                                 marker.args[0] if marker.args else None)
                    elif marker.name == "limit_gpu_memory":
                        validate_gpu_limit(marker.args, marker.kwargs)
                    elif marker.name == "limit_predicted_gpu_memory":
                        validate_predicted_limit(marker.args, marker.kwargs)
                except ValueError as exc:
                    problems.append(f"{item.nodeid}: {exc}")
        if problems:
            raise pytest.UsageError("tokenguard markers:\n" + "\n".join(problems))

    @property
    def require_gpu(self) -> bool:
        value = self.config.getoption("tokenguard_require_gpu")
        return bool(value if value is not None else self.config.getini("tokenguard_require_gpu"))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if item.get_closest_marker("limit_gpu_memory") is None:
            return
        from ..gpu.measure import cuda_status

        status = cuda_status()
        if status.available:
            return
        if self.require_gpu:
            pytest.fail(f"tokenguard: limit_gpu_memory needs a CUDA device: {status.reason} "
                        "(--tokenguard-require-gpu turns this skip into a failure)", pytrace=False)
        pytest.skip(f"tokenguard: limit_gpu_memory needs a CUDA device: {status.reason}")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        with self.recorder.record(item.nodeid) as recording:
            item.stash[_recording_key] = recording
            if item.get_closest_marker("limit_gpu_memory") is None:
                return (yield)
            from ..gpu.measure import GpuMeasure

            with GpuMeasure() as measure:
                outcome = yield
            item.stash[_gpu_peak_key] = measure.peak
            return outcome

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.when != "call":
            return report
        recording = item.stash.get(_recording_key, None)
        if recording is None:
            return report
        figures = figures_from_recording(item.nodeid, recording)
        if figures:
            report.user_properties.append(
                (USER_PROPERTY, {"figures": [f.to_json() for f in figures]})
            )
        for result in self._limit_results(item):
            report.user_properties.append((USER_PROPERTY, {
                "gpu_peak_bytes": result.peak_bytes,
                "gpu_measure": result.measure.replace(" ", "_"),
                "gpu_limit_bytes": result.limit_bytes,
            }))
            if report.passed and not result.passed:
                report.outcome = "failed"
                report.longrepr = f"{result.message}\n\n{result.detail}"
        if report.passed:
            failures = [r for r in self._marker_results(item, recording) if not r.passed]
            if failures:
                report.outcome = "failed"
                report.longrepr = "\n\n".join(r.longrepr() for r in failures)
        return report

    def _limit_results(self, item: pytest.Item) -> Iterator[LimitResult]:
        """The GPU ceilings: the measured peak, and the memory model's prediction."""
        peak = item.stash.get(_gpu_peak_key, None)
        marker = item.get_closest_marker("limit_gpu_memory")
        if peak is not None and marker is not None:
            from ..gpu.measure import check_gpu_limit

            limit = validate_gpu_limit(marker.args, marker.kwargs)
            yield check_gpu_limit(peak, limit.limit_bytes, limit.measure)
        for marker in item.iter_markers("limit_predicted_gpu_memory"):
            from ..gpu.model import check_predicted_for_model

            kwargs = dict(marker.kwargs)
            callspec = getattr(item, "callspec", None)
            if "longest_edge" not in kwargs and callspec is not None:
                kwargs["longest_edge"] = callspec.params.get("tokenguard_longest_edge")
            yield check_predicted_for_model(
                marker.args[0], self.config.stash[_cache_key].model, **kwargs
            )

    def _marker_results(self, item: pytest.Item, recording: Recording) -> Iterator[MarkerResult]:
        for marker in item.iter_markers("image_tokens"):
            yield check_image_tokens(recording.images, marker.args[0])
        for marker in item.iter_markers("max_sequence_tokens"):
            yield check_max_sequence(recording.sequences, marker.args[0])

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == USER_PROPERTY and isinstance(value, dict):
                # .get: the same channel carries other figures (GPU peak, gate verdicts)
                self.rows.extend(ResolutionFigures.from_json(report.nodeid, data)
                                 for data in value.get("figures", ()))
                if "gpu_limit_bytes" in value:
                    self.gpu_rows.append((report.nodeid, str(value["gpu_measure"]),
                                          int(value["gpu_peak_bytes"]),
                                          int(value["gpu_limit_bytes"])))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_sep("=", "tokenguard")
        if self.gpu_rows:
            from ..units import format_bytes

            terminalreporter.write_line("GPU peaks (measured, or predicted by the memory model):")
            for nodeid, measure, peak, limit in sorted(self.gpu_rows):
                flag = "OVER " if peak > limit else ""
                terminalreporter.write_line(
                    f"  {flag}{nodeid}: {format_bytes(peak)} ({measure.replace('_', ' ')}) "
                    f"of {format_bytes(limit)}"
                )
        if not self.rows:
            terminalreporter.write_line(
                "no SmolVLM processor call was recorded (call the processor inside tests, "
                "e.g. through the tokenguard_processor fixture)"
            )
            return
        rows = sorted(self.rows, key=lambda r: (r.nodeid.split("[")[0], r.longest_edge is None,
                                                r.longest_edge or 0, r.nodeid))
        gate = self.config.stash.get(gating.GATE_KEY, None)  # issue 4: mark changed rows
        marks = gate.table_marks(rows) if gate is not None else None
        for line in format_table(rows, marks):
            terminalreporter.write_line(line)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._recorder is not None:
            self._recorder.uninstall()

