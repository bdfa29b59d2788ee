"""``tokenguard``: the command line, kept thin; the work is done by the library modules.

Each subcommand lives in its own module and is imported here explicitly, so a bug in
one of them fails loudly (an ImportError with its traceback) instead of making the
subcommand vanish. Exit codes, the same for every subcommand: 0 ok, 1 a check failed
or an input could not be read, 2 a usage error.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import TextIO

from ..errors import TokenguardWarning
from .audit import add_audit_parser
from .count import add_count_parser
from .memory import add_memory_parser
from .split import add_split_parser

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenguard",
        description="Exact SmolVLM2 image-token counts, sample splitting and GPU memory "
        "estimates.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_count_parser(sub)
    add_split_parser(sub)
    add_memory_parser(sub)
    add_audit_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("default", TokenguardWarning)  # each distinct one, once
        original = warnings.showwarning
        shown: set[str] = set()

        def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
            if issubclass(category, TokenguardWarning):
                if str(message) not in shown:  # an image named twice is noted once
                    shown.add(str(message))
                    print(f"tokenguard {args.command}: note: {message}", file=sys.stderr)
            else:
                original(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        try:
            return int(args.func(args))
        except KeyboardInterrupt:
            print("tokenguard: interrupted", file=sys.stderr)
            return 130

