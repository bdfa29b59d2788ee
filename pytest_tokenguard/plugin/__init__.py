"""The pytest plugin of tokenguard (the ``pytest11`` entry point).

Loading it (every pytest run where the package is installed) imports nothing heavy:
no torch, transformers, PIL or hypothesis. The hooks here are the ones pytest needs
before a run exists (options, configuration, parametrization); each is a few lines
that call the module that does the work. Everything that happens during a run is
one object, :class:`~pytest_tokenguard.plugin.session.TokenguardSession`.

* :mod:`.options`: every option and ini value, resolved once into ``Settings``;
* :mod:`.markers`: every marker, its signature, validation, check and help;
* :mod:`.fixtures`: the processor, counter and splitter-check fixtures;
* :mod:`.wire`: the figures a test's report carries between processes;
* :mod:`.session`: the run; :mod:`.report`: what is printed at its end.
"""

from __future__ import annotations

import pytest

from . import fixtures, options
from .fixtures import PARAMETRIZED, RESOLUTION_PARAMETERS
from .markers import MARKERS
from .session import TokenguardSession, session_of

__all__ = ["pytest_addoption", "pytest_configure", "pytest_generate_tests"]


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS.values():
        config.addinivalue_line("markers", marker.help)
    session = TokenguardSession(config, options.resolve(config))
    config.pluginmanager.register(session, "tokenguard-session")
    # the fixtures live in their own module; registering it makes pytest collect them
    config.pluginmanager.register(fixtures, "tokenguard-fixtures")


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize tests that use the processor fixtures over the configured resolutions:
    ``tokenguard_longest_edge`` (ids ``le384``...) for a SmolVLM2 model,
    ``tokenguard_max_pixels`` (ids ``mp200704``...) for a Qwen-VL model; unless the test
    parametrizes one itself (then at session scope, which the session-scoped processor
    fixtures need)."""
    if not PARAMETRIZED.intersection(metafunc.fixturenames):
        return
    if any([_own_resolutions_to_session_scope(metafunc.definition, name)
            for name, _ in RESOLUTION_PARAMETERS]):
        return
    session = session_of(metafunc.config)
    if session.processors.pixel_family is None:
        resolutions = session.settings.resolutions
        metafunc.parametrize("tokenguard_longest_edge", resolutions,
                             ids=[f"le{r}" for r in resolutions], scope="session")
        return
    budgets: tuple[int | None, ...] = (session.settings.max_pixels
                                       or (session.processors.default_max_pixels(),))
    metafunc.parametrize("tokenguard_max_pixels", budgets,
                         ids=[f"mp{b if b is not None else 'default'}" for b in budgets],
                         scope="session")


def _own_resolutions_to_session_scope(definition: pytest.Item,
                                      parameter: str = "tokenguard_longest_edge") -> bool:
    """Whether the test parametrizes ``parameter`` (``tokenguard_longest_edge`` or
    ``tokenguard_max_pixels``) itself; its function-level ``parametrize`` mark is given
    ``scope="session"`` when it names no scope (a resolution is a plain value: the scope
    only lets session-scoped fixtures depend on it)."""
    found = False
    for index, mark in enumerate(definition.own_markers):
        if mark.name != "parametrize" or not mark.args:
            continue
        names = mark.args[0]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if parameter not in names:
            continue
        found = True
        if "scope" not in mark.kwargs:
            definition.own_markers[index] = pytest.mark.parametrize(
                *mark.args, **{**mark.kwargs, "scope": "session"}).mark
    return found or any(
        parameter in str(m.args[0])
        for m in definition.iter_markers("parametrize") if m.args)
