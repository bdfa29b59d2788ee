"""``tokenguard split``: cut JSON Lines conversations into chunks that fit the model.

Input, one conversation per line::

    {"id": "clip-7", "messages": [{"role": "user", "content": [...]}, ...]}

Images by ``path`` (relative paths are taken from the input file's folder) or by
``width``/``height``; video frames as ``{"type": "frames", "start": S, "end": E,
"width": W, "height": H}`` with ``E`` exclusive. Output, one line per chunk::

    {"id": "clip-7", "chunk": 0, "chunks": 3, "tokens": 4071, "sources": [0, 1, 2],
     "messages": [...]}

``tokens`` is the exact length the processor gives the rendered chunk; ``sources``
are the input message indices in the chunk (leading context not included). The whole
input is validated and split before anything is written, and the output file is
replaced in one rename: a bad line leaves no half-written output behind.

Registered into the ``tokenguard`` command by :func:`add_split_parser`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from ..conversation import Conversation, ConversationError, parse_conversation, to_dicts
from ..files import write_atomic

EXIT_OK = 0
EXIT_ERROR = 1


class InputError(ValueError):
    """A problem with the input file; the message names the line and the fix."""


def add_split_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``split`` subcommand to an ``ArgumentParser.add_subparsers()`` object.

    Sets ``func=run_split`` as the subcommand's default, so ``args.func(args)`` runs it.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "split",
        help="cut JSON Lines conversations into chunks under a token limit",
        description=(
            "Split each conversation of IN.jsonl ({'id', 'messages'} per line) into chunks "
            "whose exact token count, as the processor writes the rendered chunk, is at most "
            "--max-tokens. Writes one JSON object per chunk (id, chunk, chunks, tokens, "
            "sources, messages)."
        ),
    )
    parser.add_argument("input", metavar="IN.jsonl", help="conversations, one JSON object a line")
    parser.add_argument("--max-tokens", type=int, required=True, metavar="N",
                        help="the most tokens a chunk may have (e.g. 4096)")
    parser.add_argument("--model", default=None, metavar="M",
                        help="hub id or local checkpoint folder (default: $TOKENGUARD_MODEL, "
                             "else HuggingFaceTB/SmolVLM2-2.2B-Instruct)")
    parser.add_argument("--longest-edge", type=int, default=None, metavar="N",
                        help="the processor's size['longest_edge'] (default: the checkpoint's)")
    parser.add_argument("--leading-file", default=None, metavar="F",
                        help="context repeated at the start of every chunk: a JSON list of "
                             "messages (or one message), or plain text for a system message")
    parser.add_argument("--allow-frame-split", action="store_true",
                        help="cut a message that cannot fit whole between its video frames")
    parser.add_argument("-o", "--output", default=None, metavar="OUT.jsonl",
                        help="where to write the chunks (default: standard output)")
    parser.set_defaults(func=run_split)
    return parser


def _read_leading(path: str) -> Conversation:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--leading-file {path}: cannot be read ({exc.strerror})") from None
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):  # plain text: one system message
        if not text.strip():
            raise InputError(f"--leading-file {path}: is empty; give text or JSON messages")
        data = [{"role": "system", "content": [{"type": "text", "text": text.rstrip("\n")}]}]
    try:
        return parse_conversation(data, base_dir=Path(path).parent, label="leading message")
    except ConversationError as exc:
        raise InputError(f"--leading-file {path}: {exc}") from None


def read_jsonl(path: str) -> list[tuple[int, Any, Conversation]]:
    """(line number, id, conversation) for every non-blank line; the first bad line raises."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    base = Path(path).parent
    out: list[tuple[int, Any, Conversation]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); each line must be "
                "one object like {\"id\": ..., \"messages\": [...]}"
            ) from None
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected an object with 'messages', got "
                             f"{type(record).__name__}")
        messages = record.get("messages")
        if not isinstance(messages, list):
            raise InputError(f"{where}: 'messages' must be a list of chat messages, got "
                             f"{type(messages).__name__ if 'messages' in record else 'nothing'}")
        try:
            conversation = parse_conversation(messages, base_dir=base)
        except ConversationError as exc:
            raise InputError(f"{where}: {exc}") from None
        out.append((number, record.get("id", number), conversation))
    return out


def run_split(args: argparse.Namespace, stdout: TextIO | None = None,
              stderr: TextIO | None = None) -> int:
    """Run ``tokenguard split`` for parsed ``args``; the exit status (0 ok, 1 error)."""
    from ..processor.loading import ProcessorLoadError, load_processor
    from ..processor.source import model_or_default
    from ..splitting import SplitError, split
    from ..tokens import TokenCounter

    out = stdout or sys.stdout
    err = stderr or sys.stderr

    def fail(message: str) -> int:
        print(f"tokenguard split: error: {message}", file=err)
        return EXIT_ERROR

    if args.max_tokens < 1:
        return fail(f"--max-tokens must be a positive integer, got {args.max_tokens}")
    try:
        leading = _read_leading(args.leading_file) if args.leading_file else ()
        records = read_jsonl(args.input)
    except InputError as exc:
        return fail(str(exc))
    model = model_or_default(args.model)
    try:
        loaded = load_processor(model, args.longest_edge)
    except ProcessorLoadError as exc:
        return fail(str(exc))
    counter = TokenCounter(loaded.processor, loaded.spec, loaded.longest_edge)
    lines: list[str] = []
    largest = 0
    for number, record_id, conversation in records:
        try:
            chunks = split(conversation, args.max_tokens, counter=counter, leading=leading,
                           allow_frame_split=args.allow_frame_split)
        except SplitError as exc:
            return fail(f"{args.input}, line {number} (id {record_id!r}): {exc}")
        for chunk in chunks:
            largest = max(largest, chunk.tokens)
            lines.append(json.dumps({
                "id": record_id, "chunk": chunk.index, "chunks": len(chunks),
                "tokens": chunk.tokens, "sources": list(chunk.sources),
                "messages": to_dicts(chunk.messages),
            }, ensure_ascii=False))
    text = "".join(line + "\n" for line in lines)
    if args.output:
        try:
            write_atomic(Path(args.output), text)
        except OSError as exc:
            return fail(f"cannot write {args.output}: {exc.strerror or exc}")
    else:
        out.write(text)
        out.flush()
    print(
        f"tokenguard split: {len(records)} conversations -> {len(lines)} chunks, largest "
        f"{largest} of {args.max_tokens} tokens, longest_edge {loaded.longest_edge}; "
        f"{loaded.source.describe()}",
        file=err,
    )
    return EXIT_OK
