"""Whose call is it: the owner of the running code.

An owner is a token: the path of the folder where a recording's child processes write
(:data:`ENV_RECORD_TO` names it to them). In the process that opened it, tokens map to
:class:`~pytest_tokenguard.processor.recording.records.Recording` objects. The owner of
running code is its context variable (the test, its fixtures, asyncio tasks), else the
one the thread was started with (:mod:`.propagation` sets it), and in a process started
by a test the one its ``multiprocessing`` parent gave it.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["ENV_RECORD_TO", "current_owner", "process_owner", "run_as"]

#: Set while a recording is open: the folder where a process started by the test
#: records its processor calls (one JSON file per call). A child process reads it once.
ENV_RECORD_TO = "TOKENGUARD_RECORD_TO"

OWNER: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tokenguard_owner", default=None
)
#: the attribute a thread or a process object carries its owner in
ATTR = "_tokenguard_owner"
#: tokens opened by a recorder in this process image (inherited by a fork), so a
#: child-mode recorder leaves them to the recorder that knows them
LOCAL_TOKENS: set[str] = set()


def current_owner() -> str | None:
    """The owner of the running code: its context, else the thread's starter."""
    token = OWNER.get()
    if token is None:
        token = getattr(threading.current_thread(), ATTR, None)
    return token


def process_owner() -> str | None:
    """The owner a ``multiprocessing`` parent gave this process when it started it."""
    process = sys.modules.get("multiprocessing.process")
    if process is None:
        return None
    return getattr(process.current_process(), ATTR, None)


def run_as(token: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` with ``token`` as the owner (work a thread pool runs)."""
    reset = OWNER.set(token)
    try:
        return fn(*args, **kwargs)
    finally:
        OWNER.reset(reset)
