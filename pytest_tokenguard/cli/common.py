"""What every ``tokenguard`` subcommand shares: exit codes, argument types, the closed pipe.

Defined once so the same mistake gets the same message and the same exit status from
``count``, ``split`` and ``memory``.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO, cast

from ..errors import CLI_WORDING, TokenguardError
from ..units import parse_size

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "OutputError", "integer", "message",
           "output_failed", "plural", "reader_left", "size", "streams"]

#: everything asked for was done
EXIT_OK = 0
#: a check failed, or an input could not be read (the rest was still reported)
EXIT_FAILED = 1
#: the command line, or a model it names, cannot be used; nothing was done
EXIT_USAGE = 2


def message(exc: BaseException) -> str:
    """An error's message as the command line words it: a setting is named by this
    command's option (``--model``, ``--max-chunks``), never the plugin's or the API's."""
    return exc.reworded(CLI_WORDING) if isinstance(exc, TokenguardError) else str(exc)


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 token``, ``2 tokens``, ``1 patch``, ``0 patches``; ``many`` for an irregular
    plural. Every count the commands print goes through it."""
    if count == 1:
        return f"{count} {word}"
    if many is None:
        many = f"{word}es" if word.endswith(("ch", "sh", "s", "x")) else f"{word}s"
    return f"{count} {many}"


def integer(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``; argparse names the option."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not accepted; use {minimum} or more")
        return value

    parse.__name__ = f"integer of at least {minimum}"
    return parse


def size(text: str) -> int:
    """An argparse type: memory as the markers read it (``24GiB``, ``24G``, ``800MB``)."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def reader_left(out: TextIO) -> int:
    """The reader of ``out`` went away (``tokenguard count --json DIR | head -1``): stop
    quietly, as ``cat`` and ``jq`` do, with :data:`EXIT_FAILED` (not all was written).
    ``out``'s descriptor is pointed at /dev/null, so the interpreter's last flush of the
    closed pipe prints no traceback either."""
    try:
        fileno = out.fileno()
    except (AttributeError, OSError, ValueError):
        return EXIT_FAILED
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)
    os.close(devnull)
    return EXIT_FAILED


class OutputError(Exception):
    """Writing the command's output failed (a full disk, ``> /dev/full``, a closed
    standard output): the :class:`OSError` is ``__cause__``."""


class _Output:
    """A subcommand's output stream whose write errors are :class:`OutputError`, so they
    are told from errors reading the inputs. A reader that went away
    (:class:`BrokenPipeError`) passes through, for :func:`reader_left`. ``buffer`` is
    the same for bytes, where the stream has one."""

    CLOSED = "it is closed (>&-); redirect it to a file, or to /dev/null"

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, data: Any) -> int:
        if self._stream is None:
            raise OutputError(self.CLOSED)
        try:
            return int(self._stream.write(data))
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(exc.strerror or str(exc)) from exc

    def flush(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(exc.strerror or str(exc)) from exc

    def fileno(self) -> int:
        if self._stream is None:
            raise OSError(errno.EBADF, "standard output is closed")
        return int(self._stream.fileno())

    @property
    def buffer(self) -> _Output | None:
        if self._stream is None:
            return self
        inner = getattr(self._stream, "buffer", None)
        return None if inner is None else _Output(inner)


def output_failed(command: str, out: TextIO, exc: OutputError, err: TextIO) -> int:
    """Say on one line that the output could not be written; :data:`EXIT_FAILED`. The
    output's descriptor is pointed at /dev/null so the interpreter's last flush of what
    is still buffered prints no traceback."""
    print(f"tokenguard {command}: error: cannot write standard output: {exc}", file=err)
    reader_left(out)
    return EXIT_FAILED


def streams(out: TextIO | None, err: TextIO | None) -> tuple[TextIO, TextIO]:
    """A subcommand's output and error streams: the ones given (tests pass their own), else
    the process's, looked up at the call (so pytest's capture of them is honoured). The
    output raises :class:`OutputError` when it cannot be written (see
    :func:`output_failed`), also when standard output is closed (``>&-``)."""
    return cast(TextIO, _Output(out or sys.stdout)), err or sys.stderr
