"""The processes a test starts: how they find the recorder, and how they hand their calls
back.

A forked process inherits the patched classes; a fresh interpreter (``spawn``,
``forkserver``, ``subprocess``) is patched by the ``sitecustomize`` the recorder puts first
on ``PYTHONPATH`` (:func:`sitecustomize`), which loads nothing until the process imports a
watched processor module, then installs a recorder of its own (:func:`install_in_child`).
Either writes each call into the folder named by
:data:`~pytest_tokenguard.processor.recording.owners.ENV_RECORD_TO`, one file per call
(:func:`write_call`), which the test's recorder reads back.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from .owners import ENV_RECORD_TO

if TYPE_CHECKING:
    from .recorder import Recorder

__all__ = ["SITE_DIR", "install_in_child", "remove", "sitecustomize", "write_call"]

SITE_DIR = "tokenguard-site"


def sitecustomize(targets: Sequence[str]) -> str:
    """The ``sitecustomize`` a recorder puts first on ``PYTHONPATH`` for the processes tests
    start; ``targets`` are the processor modules it waits for."""
    return f'''\
"""Written by pytest-tokenguard (pytest_tokenguard/processor/recording/) while a
--tokenguard session runs: a Python process that a test starts records its
processor calls for that test. Nothing is loaded until the process imports a watched
processor module. Then the sitecustomize this one shadows runs."""
import os as _os
import sys as _sys

_TARGETS = {tuple(targets)!r}
_RECORD_TO = _os.environ.get({ENV_RECORD_TO!r})


class _TokenguardSiteFinder:
    done = False

    def find_spec(self, fullname, path=None, target=None):
        if self.done or fullname not in _TARGETS:
            return None
        self.done = True
        try:
            from pytest_tokenguard.processor.recording import install_in_child
        except Exception as exc:
            _note("process %d imported %s but could not load the pytest-tokenguard "
                  "recorder (%s: %s)" % (_os.getpid(), fullname, type(exc).__name__, exc))
            return None
        return install_in_child(_RECORD_TO).find_spec(fullname, path, target)


def _note(text):
    try:
        import json
        _os.makedirs(_RECORD_TO, exist_ok=True)
        name = "%d-unseen" % _os.getpid()
        tmp = _os.path.join(_RECORD_TO, "." + name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({{"unseen": text}}, handle)
        _os.replace(tmp, _os.path.join(_RECORD_TO, name + ".json"))
    except Exception:
        pass


def _chain():
    import importlib.machinery
    import importlib.util
    path = [p for p in _sys.path if _os.path.basename(_os.path.normpath(p or ".")) != {SITE_DIR!r}]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


if _RECORD_TO and not any(type(f).__name__ == "_TokenguardSiteFinder" for f in _sys.meta_path):
    _sys.meta_path.insert(0, _TokenguardSiteFinder())
_chain()
'''

_CHILD: Recorder | None = None
_CHILD_LOCK = threading.Lock()


def install_in_child(record_to: str | None) -> Any:
    """Install the recorder of a process started by a test (once per process); return
    its import finder. Called by the generated ``sitecustomize``."""
    global _CHILD
    with _CHILD_LOCK:
        if _CHILD is None:
            from .recorder import Recorder

            _CHILD = Recorder(_child_of=record_to or "")
            _CHILD.install()
        return _CHILD._finder


def write_call(folder: str, payload: dict[str, Any]) -> None:
    """One file per call, written aside and renamed: the parent never reads half a call."""
    name = f"{os.getpid()}-{threading.get_ident()}-{_next_serial()}"
    try:
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{name}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, separators=(",", ":"))
        os.replace(tmp, os.path.join(folder, f"{name}.json"))
    except OSError as exc:  # the test's folder is gone: say so where someone looks
        print(f"tokenguard: process {os.getpid()} could not record a processor call into "
              f"{folder}: {exc}", file=sys.stderr)


_SERIAL = [0]
_SERIAL_LOCK = threading.Lock()


def _next_serial() -> int:
    with _SERIAL_LOCK:
        _SERIAL[0] += 1
        return _SERIAL[0]


def remove(path: str) -> None:
    with suppress(OSError):
        os.unlink(path)
