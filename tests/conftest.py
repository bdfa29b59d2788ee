"""The suite's settings: an offline hub, the tokenguard-ci hypothesis profile by default, and
pytest-benchmark (a development dependency) timing only when asked.

Nothing here points the suite at the real processor files: the plugin and the tests load
the checkpoints by hub id, which offline resolves to the embedded default on every machine,
as on a user's (see ``tests/helpers.py``). Helpers live in ``tests/helpers.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # never wait on the network in this suite
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pytest_tokenguard.testing import profiles

if TYPE_CHECKING:
    from pytest_tokenguard.processor.recording import Recorder
    from tests.helpers import ClipCache


def pytest_configure(config: pytest.Config) -> None:
    # --hypothesis-profile wins; otherwise CI settings (derandomized, bounded)
    if not config.getoption("hypothesis_profile", None):
        from hypothesis import settings

        settings.load_profile(profiles.CI)
    # The benchmarks run once, untimed, as ordinary tests unless --benchmark-enable is given.
    # Set here rather than as `--benchmark-disable` in addopts, which would be an unknown
    # option wherever pytest-benchmark is not installed (`pip install .` without [dev]) or
    # is switched off (-p no:benchmark). pytest-benchmark reads it in its own (trylast)
    # pytest_configure, after this one.
    if config.pluginmanager.hasplugin("benchmark") and not config.getoption("benchmark_enable"):
        config.option.benchmark_disable = True
    # `-n 2` hands tests out in fixed batches ("load"); this suite's tests last from
    # milliseconds to 20 s, so an idle worker steals queued ones instead ("worksteal":
    # 274 s against 310 s for the whole suite on the 2-core development machine). An
    # explicit --dist wins. Set here, not in addopts, for the same reason as above.
    explicit = any(arg == "-d" or arg.startswith("--dist")
                   for arg in config.invocation_params.args)
    if getattr(config.option, "dist", "no") == "load" and not explicit:
        config.option.dist = "worksteal"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.pluginmanager.hasplugin("benchmark"):
        return
    skip = pytest.mark.skip(reason="pytest-benchmark is not installed or is disabled "
                                   "(pip install -e '.[dev]')")
    for item in items:
        if "benchmark" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> ClipCache:
    """Generated video files, written once per session and reused by every test."""
    from tests.helpers import ClipCache

    return ClipCache(tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="session")
def decodes_paths() -> None:
    """Skip (before hypothesis starts) where transformers cannot open a video path."""
    from tests.helpers import torchcodec_missing

    missing = torchcodec_missing()
    if missing:
        pytest.skip(missing)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """A recorder of its own, installed for the test (the recorder's tests and benchmark)."""
    from pytest_tokenguard.processor.recording import Recorder

    recorder = Recorder()
    recorder.install()
    yield recorder
    recorder.uninstall()


@pytest.fixture
def outside_any_recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The state of a test process between two tests, for the recorder's own tests: no owner
    in this context or in the environment. Under ``--tokenguard`` the suite's own recorder
    has this very test's recording open; the recorder under test must not see it."""
    from pytest_tokenguard.processor.recording import owners

    monkeypatch.delenv(owners.ENV_RECORD_TO, raising=False)
    token = owners.OWNER.set(None)
    yield
    owners.OWNER.reset(token)


@pytest.fixture(autouse=True)
def _planted_runs_are_not_in_ci(request: pytest.FixtureRequest,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A pytest run planted with ``pytester`` does not inherit ``CI`` from the run around
    it (this project's own CI sets it, and a planted suite has no baseline): each test
    that means CI sets it itself."""
    if "pytester" in request.fixturenames:
        monkeypatch.delenv("CI", raising=False)
