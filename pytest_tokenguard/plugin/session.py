"""The one object behind tokenguard's pytest hooks during a run.

:class:`TokenguardSession` is created at configure time with the resolved
:class:`~pytest_tokenguard.plugin.options.Settings` and registered as a plugin; each of
its hooks delegates to the pure parts (markers, figures, the baseline gate, the report
formatter). Without ``--tokenguard`` its hooks do nothing but say, once, that markers
in the suite are inert.

What a test is charged with (the semantics the README documents): every SmolVLM
processor call made from the start of the test's setup (its fixtures) to the end of
its call phase. Marker verdicts are decided at the end of the call phase and raised
there, so a marker failure is the test failing, for ``xfail`` as for anything else.
The baseline comparison reads the finished report, so figures other plugins add to it
are gated too.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from ..audit.gate import AuditResult
from ..errors import BaselineError, MemoryModelError, ProcessorLoadError, SpecError
from ..figures import AuditFigure, GpuFigure, TestFigures, figures_from_recording
from ..verdict import LimitResult, Verdict, longrepr
from . import wire
from .fixtures import ProcessorCache
from .markers import MARKERS, Context, GpuLimit, MarkerDef, Where
from .options import Settings, testpath_roots
from .report import Row, format_gpu_rows, format_table

if TYPE_CHECKING:
    from ..baseline.gate import Gate
    from ..processor.recording import Recorder, Recording
    from ..testing.generated import Note

__all__ = ["TokenguardSession", "session_of"]

_SESSION_KEY = pytest.StashKey["TokenguardSession"]()
_PARSED_KEY = pytest.StashKey["list[tuple[MarkerDef, Any]]"]()
_RECORDING_KEY = pytest.StashKey["Recording"]()
_GPU_FAIL_KEY = pytest.StashKey[str]()
_WORKER_DESELECTED = "tokenguard_deselected"

#: fixtures whose use means a test's figures are those of a pytest run inside it
PYTESTER_FIXTURES = frozenset({"pytester", "testdir"})
_GENERATED_KEY: pytest.StashKey[tuple[Note, ...]] = pytest.StashKey()


def session_of(config: pytest.Config) -> TokenguardSession:
    return config.stash[_SESSION_KEY]


class TokenguardSession:
    """See the module docstring. ``__test__ = False``: not a test class."""

    __test__ = False

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.enabled = settings.enabled
        self.is_worker = hasattr(config, "workerinput")
        self.processors = ProcessorCache(settings.model, settings.network_timeout)
        self.gate: Gate | None = None
        self._recorder: Recorder | None = None
        self._gpu_reasons: dict[str, str] = {}
        self.rows: list[Row] = []
        self.audits: list[tuple[str, AuditFigure]] = []  # training_set_fits
        self.gpu_checks: list[tuple[str, wire.GpuCheck]] = []
        self.deselected = 0
        self.collect_errors = 0
        self.worker_errors = 0
        config.stash[_SESSION_KEY] = self
        if self.enabled:
            self.gate = self._make_gate()

    def _make_gate(self) -> Gate:
        from ..baseline.gate import Gate

        try:
            return Gate(self.settings.gate, self._source_record(), is_worker=self.is_worker)
        except BaselineError as exc:
            raise pytest.UsageError(str(exc)) from None

    def _source_record(self) -> Any:
        """Which processor this run counts with, for the baseline (None if unknown yet)."""
        from ..baseline.store import SourceRecord
        from ..processor.source import transformers_version

        try:
            source = self.processors.source()
        except ProcessorLoadError:
            return None
        return SourceRecord(source.model, source.kind, source.digest(), transformers_version())

    @property
    def recorder(self) -> Recorder:
        """The recorder, installed on first use: it patches the processor classes the
        moment the code under test imports them, so the plugin itself never imports
        transformers (or torch), and follows the threads and processes a test starts."""
        if self._recorder is None:
            from ..processor.recording import Recorder

            self._recorder = Recorder()
            self._recorder.install()
        return self._recorder

    # ------------------------------------------------------------------ header, collection

    def pytest_report_header(self, config: pytest.Config) -> list[str] | None:
        if not self.enabled:
            return None
        from ..errors import TokenizerUnavailable

        try:
            described = self.processors.source().describe()
        except TokenizerUnavailable:
            described = (f"{self.settings.model} (its processor files are not on this "
                         "machine: tests that ask for the processor fixtures skip, saying "
                         "what to pass; the markers check the processors your code builds)")
        except ProcessorLoadError as exc:
            described = f"ERROR {exc}"
        if self.processors.pixel_family is not None:
            budgets = self.settings.max_pixels
            resolutions = ("max_pixels " + ", ".join(map(str, budgets)) if budgets
                           else "max_pixels: the checkpoint's own")
        else:
            resolutions = "resolutions " + ", ".join(map(str, self.settings.resolutions))
        lines = [f"tokenguard: {described}; {resolutions}"]
        if self.gate is not None:
            lines.extend(self.gate.header())
        return lines

    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        self._skip_other_family_resolutions(items)
        if not self.enabled:
            self._warn_inert(items)
            return
        problems = []
        for item in items:
            try:
                item.stash[_PARSED_KEY] = self._parse_markers(item)
            except ValueError as exc:
                problems.append(f"{item.nodeid}: {exc}")
        if problems:
            raise pytest.UsageError("tokenguard markers:\n" + "\n".join(problems))
        self._gpu_availability(items)

    def _skip_other_family_resolutions(self, items: list[pytest.Item]) -> None:
        """A test that parametrizes the other family's resolution itself
        (``tokenguard_longest_edge`` under a Qwen-VL model, ``tokenguard_max_pixels`` under
        SmolVLM2) is skipped, saying which to parametrize: its processor fixtures would
        load at a resolution the model does not take."""
        chosen = [(item, item.callspec.params) for item in items
                  if hasattr(item, "callspec")]
        chosen = [(item, params) for item, params in chosen
                  if "tokenguard_longest_edge" in params or "tokenguard_max_pixels" in params]
        if not chosen:
            return
        family = self.processors.pixel_family
        model = self.settings.model
        for item, params in chosen:
            if family is not None and "tokenguard_longest_edge" in params:
                reason = (f"tokenguard: tokenguard_longest_edge is a SmolVLM2 setting; {model} "
                          f"is a {family} model: parametrize tokenguard_max_pixels")
            elif family is None and "tokenguard_max_pixels" in params:
                reason = (f"tokenguard: tokenguard_max_pixels is a Qwen-VL setting; {model} is "
                          "resized by longest_edge: parametrize tokenguard_longest_edge")
            else:
                continue
            item.add_marker(pytest.mark.skip(reason=reason))

    def _parse_markers(self, item: pytest.Item) -> list[tuple[MarkerDef, Any]]:
        callspec = getattr(item, "callspec", None)
        edge = callspec.params.get("tokenguard_longest_edge") if callspec is not None else None
        where = Where(self.settings.model, edge if isinstance(edge, int) else None)
        parsed = []
        for marker in item.iter_markers():
            definition = MARKERS.get(marker.name)
            if definition is None:
                continue
            try:
                parsed.append((definition, definition.parse(marker.args, marker.kwargs, where)))
            except (MemoryModelError, SpecError) as exc:
                raise ValueError(f"@pytest.mark.{marker.name}: {exc}") from None
        return parsed

    def _warn_inert(self, items: list[pytest.Item]) -> None:
        checking = {name for name, definition in MARKERS.items() if definition.check}
        using = [item for item in items
                 if any(m.name in checking for m in item.iter_markers())]
        if using:
            names = sorted({m.name for item in using for m in item.iter_markers()
                            if m.name in checking})
            using[0].warn(pytest.PytestWarning(
                f"tokenguard markers ({', '.join(names)}) on {len(using)} "
                f"test{'s' * (len(using) != 1)} are inert without --tokenguard: those tests run "
                "unguarded (pass --tokenguard, or set tokenguard = true in the ini file)"))

    def _gpu_availability(self, items: list[pytest.Item]) -> None:
        """Skip (or, under --tokenguard-require-gpu, fail) limit_gpu_memory tests that
        cannot be measured here: no CUDA device for the current device's measure, no NVML
        for ``devices=``. The skip is a marker added here, so it points at the test."""
        for item in items:
            limit = next((p for d, p in item.stash[_PARSED_KEY] if isinstance(p, GpuLimit)),
                         None)
            if limit is None:
                continue
            reason = self._gpu_unavailable(limit)
            if reason is None:
                continue
            if self.settings.require_gpu:
                item.stash[_GPU_FAIL_KEY] = (f"{reason} (--tokenguard-require-gpu turns this "
                                             "skip into a failure)")
            else:
                item.add_marker(pytest.mark.skip(reason=reason))

    def _gpu_unavailable(self, limit: GpuLimit) -> str | None:
        """Why ``limit`` cannot be measured on this machine, or None; asked once per kind."""
        kind = "cuda" if limit.devices is None else "nvml"
        if kind not in self._gpu_reasons:
            from ..gpu.measure import cuda_status, nvml_module

            if kind == "cuda":
                status = cuda_status()
                reason = "" if status.available else status.reason
            else:
                pynvml, reason = nvml_module()
                if pynvml is not None:
                    pynvml.nvmlShutdown()
            self._gpu_reasons[kind] = reason
        reason = self._gpu_reasons[kind]
        return f"tokenguard: limit_gpu_memory needs a CUDA device: {reason}" if reason else None

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += len(items)
        if self.is_worker:
            self.config.workeroutput[_WORKER_DESELECTED] = self.deselected  # type: ignore[attr-defined]

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors += 1

    # ------------------------------------------------------------------ running a test

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Before the test's fixtures: inside every hook wrapper (so other plugins' setup
        state exists when this fails), before pytest sets the fixtures up."""
        if not self.enabled:
            return
        failure = item.stash.get(_GPU_FAIL_KEY, None)
        if failure is not None:
            pytest.fail(failure, pytrace=False)
        from ..testing import generated

        generated.take()  # notes of an earlier test are not this one's
        recording = self.recorder.open(item.nodeid)
        recording.phase = "setup"
        item.stash[_RECORDING_KEY] = recording

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        if not self.enabled:
            return (yield)
        recording = item.stash.get(_RECORDING_KEY, None)
        if recording is not None:
            recording.phase = "call"
        parsed = item.stash.get(_PARSED_KEY, [])
        limit = next((p for d, p in parsed if isinstance(p, GpuLimit)), None)
        measure: Any = None
        if limit is not None:
            from ..gpu.measure import GpuMeasure, MultiGpuMeasure

            measure = GpuMeasure() if limit.devices is None else MultiGpuMeasure(limit.devices)
            self._enter_measure(measure)
        error: BaseException | None = None
        result: object = None
        try:
            result = yield
        except BaseException as exc:
            error = exc
        peak = None
        if measure is not None:
            measure.__exit__(type(error) if error else None, error, None)
            peak = measure.peak
        if recording is not None:
            self.recorder.collect(recording)  # what the test's child processes wrote
        from ..testing import generated

        item.stash[_GENERATED_KEY] = generated.take()
        if error is not None and not isinstance(error, Exception | pytest.fail.Exception):
            raise error  # skip, xfail, exit, KeyboardInterrupt: nothing to judge
        failures = self._judge(item, parsed, recording, peak)
        if error is not None:
            if failures:
                item.add_report_section("call", "tokenguard", failures)
            raise error
        if failures:
            raise pytest.fail.Exception(failures, pytrace=False)
        return result

    def _enter_measure(self, measure: Any) -> None:
        """Start measuring; a device that cannot be measured (a GPU index that does not
        exist, NVML failing) is a skip, or a failure under --tokenguard-require-gpu, with
        its reason, never a traceback."""
        from ..errors import GpuUnavailable

        try:
            measure.__enter__()
        except GpuUnavailable as exc:
            reason = f"tokenguard: limit_gpu_memory cannot measure: {exc}"
            if self.settings.require_gpu:
                pytest.fail(reason, pytrace=False)
            pytest.skip(reason)

    def _judge(self, item: pytest.Item, parsed: list[tuple[MarkerDef, Any]],
               recording: Recording | None, peak: Any) -> str:
        """Figures published, marker verdicts and the gate decided: the failure text."""
        figures = TestFigures(figures_from_recording(recording) if recording else ())
        context = Context(recording, peak)
        verdicts: list[Verdict] = []
        checks = []
        for definition, params in parsed:
            if definition.check is None or (isinstance(params, GpuLimit) and peak is None):
                continue
            verdict = definition.check(params, context)
            verdicts.append(verdict)
            if isinstance(verdict, AuditResult) and verdict.figure is not None:
                figures = replace(figures, audit=verdict.figure)  # training_set_fits
            if isinstance(verdict, LimitResult):
                figures = figures.with_gpu(
                    GpuFigure(verdict.peak_bytes, verdict.measure.replace(" ", "_")))
                per_gpu = peak.per_gpu() if hasattr(peak, "per_gpu") else {}
                checks.append(wire.GpuCheck(verdict.measure, verdict.peak_bytes,
                                            verdict.limit_bytes,
                                            tuple(sorted(per_gpu.items()))))
        wire.publish(item.user_properties, figures, excluded=self._excluded(item),
                     gpu_checks=checks)
        return longrepr(verdicts)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]
                                  ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """The baseline gate, on the finished call report: outermost, so GPU peaks that
        other plugins append to the report (docs/ci-gating.md) are judged too."""
        report = yield
        if not self.enabled or self.gate is None or report.when != "call" or report.skipped:
            return report
        record = wire.read(report.user_properties)
        if not record.present:
            return report
        message = self.gate.judge(report.nodeid, record.figures, record.excluded)
        if message:
            if report.passed:
                report.outcome = "failed"
                report.longrepr = message
            else:
                report.sections.append(("tokenguard baseline", message))
        return report

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, object, object]:
        """The recording spans the fixtures' teardown too (their calls are recorded, not
        judged: the verdict was the call phase's); it is closed in the thread that opened
        it, after the innermost teardown."""
        recording = item.stash.get(_RECORDING_KEY, None)
        if recording is not None:
            recording.phase = "teardown"
        try:
            return (yield)
        finally:
            if recording is not None:
                del item.stash[_RECORDING_KEY]
                self.recorder.close(recording)

    @staticmethod
    def _excluded(item: pytest.Item) -> str | None:
        """Why a test's figures stay out of the baseline, or None: a marker says so, the
        test drives a pytest run of its own, or its figures come from generated examples
        (``@given``, the splitter checker: :mod:`pytest_tokenguard.testing.generated`)."""
        from ..testing import generated

        marker = item.get_closest_marker("tokenguard_no_baseline")
        if marker is not None:
            return str(marker.args[0]) if marker.args else "tokenguard_no_baseline"
        fixtures = getattr(item, "fixturenames", ())
        if PYTESTER_FIXTURES.intersection(fixtures):
            return "pytester run: its figures are those of the run inside the test"
        notes: tuple[Note, ...] = item.stash.get(_GENERATED_KEY, ())
        return generated.exclusion_reason(
            fixtures, bool(getattr(getattr(item, "obj", None), "is_hypothesis_test", False)),
            notes)

    # ------------------------------------------------------------------ the controller

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self.enabled or self.gate is None:
            return
        self.gate.seen.add(report.nodeid)
        if report.failed and report.when != "call":
            self.gate.failed_phases.add(report.nodeid)
        if report.when != "call":
            return
        record = wire.read(report.user_properties)
        if not record.present:
            return
        self.rows.extend(Row(report.nodeid, r) for r in record.figures.resolutions)
        self.gpu_checks.extend((report.nodeid, check) for check in record.gpu_checks)
        if record.figures.audit is not None:
            self.audits.append((report.nodeid, record.figures.audit))
        self.gate.record(report.nodeid, record.figures, report.passed, record.excluded)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """xdist: each worker collects the whole suite, so the deselected count is the
        largest any worker reported, not their sum."""
        output = getattr(node, "workeroutput", None) or {}
        self.deselected = max(self.deselected, int(output.get(_WORKER_DESELECTED, 0)))
        if error:
            self.worker_errors += 1

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.enabled or self.is_worker or self.gate is None:
            return
        from ..baseline.selection import RunFacts, narrowing_argument

        config = self.config
        option = config.option
        options = tuple(flag for flag, dest in (
            ("-k", "keyword"), ("-m", "markexpr"), ("--lf", "lf"), ("--sw", "stepwise"),
            ("--sw-skip", "stepwise_skip"), ("--deselect", "deselect"))
            if getattr(option, dest, None))
        narrowed = narrowing_argument(
            config.args, from_testpaths=config.args_source == pytest.Config.ArgsSource.TESTPATHS,
            rootdir=config.rootpath, testpath_roots=testpath_roots(config),
            invocation_dir=config.invocation_params.dir)
        stopped = session.shouldstop or session.shouldfail
        facts = RunFacts(
            options=options, narrowed_argument=narrowed,
            resolutions=self.settings.resolutions_narrowed, deselected=self.deselected,
            collect_errors=self.collect_errors, worker_errors=self.worker_errors,
            stopped_early=str(stopped) if stopped else None,
            collected=session.testscollected, reported=len(self.gate.seen))
        interrupted = exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR)
        self.gate.finish(facts, interrupted=interrupted)
        try:
            self.gate.write_report(exitstatus)
        except OSError as exc:
            self.gate.outcome.note += f"\ntokenguard: could not write the JSON report: {exc}"
            self.gate.outcome.failed = True
        if self.gate.outcome.failed:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.enabled or self.is_worker:
            return
        write = terminalreporter.write_line
        terminalreporter.write_sep("=", "tokenguard")
        if self.gpu_checks:
            write("GPU peaks (measured, or predicted by the memory model):")
            for line in format_gpu_rows(self.gpu_checks):
                write(line)
        if self.rows:
            gate = self.gate

            def mark(row: Row) -> str:
                return gate.table_mark(row.nodeid, row.figures) if gate is not None else ""

            for line in format_table(self.rows, mark):
                write(line)
        if self.audits:
            write("training sets (training_set_fits):")
            for nodeid, audit in sorted(self.audits, key=lambda pair: pair[0]):
                write(f"  {nodeid}: {audit.line()}")
        if not self.rows and not self.audits:
            write("no SmolVLM or Qwen-VL processor call was recorded (call the processor "
                  "inside tests, "
                  "e.g. through the tokenguard_processor fixture)")
        if self._recorder is not None:
            for stray in self._recorder.strays():
                write(f"tokenguard: {stray.describe()}")
        if self.gate is not None:
            for line in self.gate.summary_lines():
                write(line)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._recorder is not None:
            self._recorder.uninstall()
