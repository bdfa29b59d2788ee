"""Hands a test's owner on to the threads, thread pools and processes it starts.

The one place the recorder patches the standard library: ``threading.Thread.start``,
``ThreadPoolExecutor.submit``, ``multiprocessing``'s ``BaseProcess.start`` and
``subprocess.Popen.__init__``. The patches are reference-counted (:data:`PROPAGATION`
is shared by every recorder of the process) and undone when the last recorder releases
them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from .owners import ATTR, ENV_RECORD_TO, current_owner, run_as

__all__ = ["PROPAGATION", "Propagation"]


class Propagation:
    """Hands the owner on to threads, thread pools and processes (reference-counted
    patches of the standard library, shared by every recorder of the process)."""

    def __init__(self) -> None:
        self._users = 0
        self._undo: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            self._users += 1
            if self._users == 1:
                self._patch()

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                while self._undo:
                    self._undo.pop()()

    def _replace(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = owner.__dict__[name]
        setattr(owner, name, make(original))
        self._undo.append(lambda: setattr(owner, name, original))

    def _patch(self) -> None:
        import concurrent.futures
        import multiprocessing.process
        import subprocess

        def thread_start(original: Any) -> Any:
            def start(self: threading.Thread) -> None:
                token = current_owner()
                if token is not None:
                    setattr(self, ATTR, token)
                original(self)
            return start

        def submit(original: Any) -> Any:
            def submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
                token = current_owner()
                if token is None:
                    return original(self, fn, *args, **kwargs)
                return original(self, run_as, token, fn, *args, **kwargs)
            return submit

        def process_start(original: Any) -> Any:
            def start(self: Any) -> None:
                token = current_owner()
                if token is not None:
                    setattr(self, ATTR, token)  # pickled with the process object (spawn)
                original(self)
            return start

        def popen_init(original: Any) -> Any:
            def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
                # os.environ names the test running now; a thread of an earlier test
                # that starts a process must not hand it to the current one
                token = current_owner()
                if len(args) <= 10 and kwargs.get("env") is None and \
                        token != os.environ.get(ENV_RECORD_TO):
                    env = dict(os.environ)
                    env.pop(ENV_RECORD_TO, None)
                    if token is not None:
                        env[ENV_RECORD_TO] = token
                    kwargs["env"] = env
                original(self, *args, **kwargs)
            return __init__

        self._replace(threading.Thread, "start", thread_start)
        self._replace(concurrent.futures.ThreadPoolExecutor, "submit", submit)
        self._replace(multiprocessing.process.BaseProcess, "start", process_start)
        self._replace(subprocess.Popen, "__init__", popen_init)


PROPAGATION = Propagation()

