"""What every ``tokenguard`` subcommand shares: exit codes, argument types, the closed pipe,
and the walk over the files a counting command was given (:class:`FileWalk`).

Defined once so the same mistake gets the same message and the same exit status from
``count``, ``split`` and ``memory``.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from ..errors import CLI_WORDING, TokenguardError
from ..units import parse_size

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "FileWalk", "OutputError", "integer",
           "message", "output_failed", "plural", "reader_left", "size", "streams"]

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


class FileWalk:
    """The image and video files of a counting command's paths (``tokenguard count`` for
    every model family), and its one account of them on stderr.

    Iterating yields ``(path, shown)`` for each file to count (``shown``: the name as one
    printable line); on the way, a thing skipped (a link to a folder inside a folder, an
    empty folder) is one ``skipped`` line and a folder or file that cannot be read is one
    line and a failure. A file that cannot be counted is reported with :meth:`refused`,
    one that was counted with :meth:`counted`; :meth:`exit_status` says, once, when
    nothing at all was counted. The folders are walked when the walk is made, so
    :attr:`has_video` is known before the first file is counted.
    """

    def __init__(self, command: str, paths: Sequence[str | os.PathLike[str]],
                 err: TextIO) -> None:
        from ..images import IMAGE_SUFFIXES, walk_image_paths
        from ..video import VIDEO_SUFFIXES

        self.command = command
        self.err = err
        self.failures = 0
        self.count = 0
        self.events = list(walk_image_paths(paths, suffixes=IMAGE_SUFFIXES | VIDEO_SUFFIXES,
                                            what="image or video"))

    @property
    def has_video(self) -> bool:
        """Whether any file to count is a video (by its name)."""
        from ..video import is_video_path

        return any(e.kind == "image" and is_video_path(e.path) for e in self.events)

    def say(self, text: str) -> None:
        print(f"tokenguard {self.command}: {text}", file=self.err)

    def __iter__(self) -> Iterator[tuple[Path, str]]:
        from ..images import display_path

        for event in self.events:
            shown = display_path(event.path)
            if event.kind == "skipped":
                self.say(f"skipped {shown}: {event.reason}")
            elif event.kind == "unreadable":
                self.failures += 1
                self.say(f"{shown}: {event.reason}")
            else:
                yield event.path, shown

    def refused(self, shown: str, exc: BaseException) -> None:
        """``shown`` could not be read or counted: one line with the reason, a failure."""
        reason = getattr(exc, "reason", None)
        self.failed(shown, reason if isinstance(reason, str) else message(exc))

    def failed(self, shown: str, reason: str) -> None:
        self.failures += 1
        self.say(f"{shown}: {reason}")

    def counted(self) -> None:
        self.count += 1

    def exit_status(self) -> int:
        """:data:`EXIT_OK` when every file was counted; :data:`EXIT_FAILED` when one could
        not be, or when nothing at all was counted (said on stderr)."""
        if self.count == 0 and self.failures == 0:
            self.say("no image or video was counted; pass image or video files, or folders "
                     "that hold some")
            return EXIT_FAILED
        return EXIT_FAILED if self.failures else EXIT_OK
