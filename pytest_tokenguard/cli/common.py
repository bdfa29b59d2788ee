"""What every ``tokenguard`` subcommand shares: exit codes, argument types, the closed pipe.

Defined once so the same mistake gets the same message and the same exit status from
``count``, ``split`` and ``memory``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TextIO

from ..units import parse_size

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "integer", "reader_left", "size", "streams"]

#: everything asked for was done
EXIT_OK = 0
#: a check failed, or an input could not be read (the rest was still reported)
EXIT_FAILED = 1
#: the command line, or a model it names, cannot be used; nothing was done
EXIT_USAGE = 2


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


def streams(out: TextIO | None, err: TextIO | None) -> tuple[TextIO, TextIO]:
    """A subcommand's output and error streams: the ones given (tests pass their own), else
    the process's, looked up at the call (so pytest's capture of them is honoured)."""
    return out or sys.stdout, err or sys.stderr
