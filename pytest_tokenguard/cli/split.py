"""``tokenguard split``: cut JSON Lines conversations into chunks that fit the model.

Input, one conversation per line (a file, or ``-`` for standard input)::

    {"id": "clip-7", "messages": [{"role": "user", "content": [...]}, ...]}

Images by ``path`` (relative paths are taken from the input file's folder, or the
current folder for standard input) or by ``width``/``height`` (both given with a file
that exists: they must agree with it); video frames sent as images as ``{"type":
"frames", "start": S, "end": E, "width": W, "height": H}`` with ``E`` exclusive; videos
sent through the processor's video path as ``{"type": "video", "path": P}`` or by metadata
``{"type": "video", "total_frames": N, "fps": F, "duration": D}``, with optional
``num_frames``/``sample_fps`` (the call's sampling) and ``start``/``end`` (a clip: frames
``start..end-1`` sent as a video of their own; ``--allow-frame-split`` cuts long videos
into such clips). Video paths are read for their metadata only (PyAV, no decoding) and
written back with it. Output, one line per chunk::

    {"id": "clip-7", "chunk": 0, "chunks": 3, "tokens": 4071, "sources": [0, 1, 2],
     "messages": [...]}

``tokens`` is the exact length the processor gives the rendered chunk; ``sources``
are the input message indices in the chunk (leading context not included).

How it behaves, decided once for every mode:

* **Streaming.** A line is read, split and written before the next is read, so memory
  stays bounded whatever the input size (the largest conversation, not the file).
* **All or nothing.** ``-o`` streams into a temporary file beside the output and
  replaces it in one rename at the end; an interrupt, ``SIGTERM`` or a crash leaves
  the old output intact and no temporary file behind. A symbolic link given to ``-o``
  is written through (the link stays a link). ``-o`` (or ``--rejects``) naming an input
  by any path is refused before anything is read: exit 2.
* **JSON Lines.** Lines end at ``"\\n"`` only (U+2028, U+2029 and U+0085 are ordinary
  characters inside JSON strings); they are written escaped (``\\u2028``) so naive
  line readers stay safe. Blank lines are skipped.
* **Image paths** in the output are relative to the output file's folder with ``-o``,
  and absolute on standard output (where the stream goes is unknown), so they resolve
  wherever the output is written.
* **A line that cannot be used** (not JSON, not a conversation, a message that cannot
  fit, no messages at all) is reported on one line of standard error (file, line number,
  id, why, in this command's option names), copied unchanged to ``--rejects FILE`` when
  given, and the rest goes on; the summary counts it and the exit status is 1.
  A conversation with no messages is rejected so: it has nothing to train on and the
  processor cannot render it, so it yields no chunk.
* Plain-string content (``"content": "Hi"``) is counted as SmolVLM2's chat template
  renders it, which drops the string; the first conversations holding some are named
  on standard error and the summary counts them.

A Qwen-VL ``--model`` (a checkpoint folder, or a hub id in the hub cache) is counted by
:class:`~pytest_tokenguard.families.qwen_text.QwenTokenCounter` with its own tokenizer and
chat template, every chunk rendered whole; ``--min-pixels``/``--max-pixels`` are the
processor call's settings (``--longest-edge`` is a usage error, as are the pixel options
for SmolVLM2), a Qwen hub id with no files on this machine is a usage error naming the
download (``TokenizerUnavailable``), and its template writes plain-string content (no note).
Video items give their frame size (``"width"``, ``"height"``) or a file.

Exit status: 0 every line split; 1 a line was rejected or the input could not be read;
2 a usage error (an option value, an output that is an input, a model or chat template
that cannot be used).

The command is a reader, a per-conversation *mode* and a writer. The mode splits under
``--max-tokens`` (:func:`_split_mode`), with ``--sft`` keeping every question with its
answer (:func:`pytest_tokenguard.splitting.split`'s ``sft``); the reading, rejecting,
writing and summary are shared. Registered into ``tokenguard`` by :func:`add_split_parser`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, TextIO

from ..conversation import Conversation, parse_conversation, to_dicts
from ..errors import CLI_WORDING, InputError, TokenguardError
from ..files import AtomicFile, refuse_same_file
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    OutputError,
    integer,
    output_failed,
    plural,
    reader_left,
    streams,
)
from .family_count import add_family_options

__all__ = ["add_split_parser", "iter_lines", "run_split"]

STDIN = "-"
#: conversations with plain-string content named one by one before the summary counts them
STRING_CONTENT_NOTICES = 5


class UsageError(Exception):
    """A problem with the command line itself: exit 2."""


class Rejected(Exception):
    """One input line that cannot be used; the message says why (and the fix)."""


def add_split_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``split`` subcommand to an ``ArgumentParser.add_subparsers()`` object.

    Sets ``func=run_split`` as the subcommand's default, so ``args.func(args)`` runs it.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "split",
        help="cut JSON Lines conversations into chunks under a token limit",
        description=(
            "Split each conversation of IN.jsonl ({'id', 'messages'} per line; - for standard "
            "input) into chunks whose exact token count, as the processor writes the rendered "
            "chunk, is at most --max-tokens. Writes one JSON object per chunk (id, chunk, "
            "chunks, tokens, sources, messages). A line that cannot be split is reported, "
            "copied to --rejects, and the rest goes on (exit status 1). Exit status: 0 ok, "
            "1 a line was rejected or the input is unreadable, 2 usage error."
        ),
    )
    parser.add_argument("input", metavar="IN.jsonl",
                        help="conversations, one JSON object a line; - reads standard input")
    parser.add_argument("--max-tokens", type=integer(1), required=True,
                        metavar="N", help="the most tokens a chunk may have (e.g. 4096)")
    parser.add_argument("--model", default=None, metavar="M",
                        help="hub id or local checkpoint folder (default: $TOKENGUARD_MODEL, "
                             "else HuggingFaceTB/SmolVLM2-2.2B-Instruct)")
    parser.add_argument("--longest-edge", type=integer(1), default=None,
                        metavar="N",
                        help="the processor's size['longest_edge'] (default: the checkpoint's)")
    add_family_options(parser)
    parser.add_argument("--leading-file", default=None, metavar="F",
                        help="context repeated at the start of every chunk: a JSON list of "
                             "messages (or one message), or plain text for a system message")
    parser.add_argument("--allow-frame-split", action="store_true",
                        help="cut a message that cannot fit whole between its video frames or "
                             "images, and its videos into consecutive clips")
    parser.add_argument("--max-chunks", type=integer(1), default=None, metavar="N",
                        help="refuse a conversation that needs more than N chunks (a frame "
                             "range in milliseconds, say) instead of writing them (default "
                             "10000)")
    parser.add_argument("--sft", action="store_true",
                        help="supervised fine-tuning samples: every chunk ends on an assistant "
                             "turn and keeps each user turn with the answer that follows; the "
                             "opening system messages start every chunk")
    parser.add_argument("-o", "--output", default=None, metavar="OUT.jsonl",
                        help="where to write the chunks, replaced whole at the end (default: "
                             "standard output); image paths are written relative to its "
                             "folder, which must exist")
    parser.add_argument("--rejects", default=None, metavar="FILE",
                        help="write the input lines that could not be split here, unchanged")
    parser.set_defaults(func=run_split)
    return parser


# --------------------------------------------------------------------------- reading


def iter_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) of each JSON Lines line: split at ``b"\\n"`` only, so
    U+2028, U+2029 and U+0085 inside strings do not end a line. One line in memory."""
    yield from enumerate(stream, start=1)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _decode(raw: bytes) -> dict[str, Any]:
    """The JSON object of one line; :class:`Rejected` says what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(f"not UTF-8 text (byte {exc.start + 1} is {raw[exc.start]:#04x}); "
                       "JSON Lines files are UTF-8") from None
    try:
        record = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise Rejected(
            f"not valid JSON ({exc.msg} at column {exc.colno}); each line must be one object "
            'like {"id": ..., "messages": [...]}'
        ) from None
    except ValueError as exc:  # NaN, Infinity, 1e999, an integer of over 4300 digits
        raise Rejected(f"not valid JSON ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise Rejected("not valid JSON here: nested too deeply") from None
    if not isinstance(record, dict):
        raise Rejected(f"expected an object with 'messages', got {_json_type(record)}")
    return record


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _show_id(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_id(value: object) -> None:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Rejected("'id' holds a lone surrogate (a bad \\u escape), which is not "
                       "Unicode text; fix the id") from None


# --------------------------------------------------------------------------- writing


def dump_line(record: dict[str, Any]) -> bytes:
    """One JSON Lines line, UTF-8, with the characters some line readers split at
    (U+2028, U+2029, U+0085) escaped: JSON allows them raw inside strings, which is
    the only place ``json.dumps`` writes them, so escaping them there is exact."""
    text = json.dumps(record, ensure_ascii=False, allow_nan=False)
    if "\u2028" in text or "\u2029" in text or "\x85" in text:
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        text = text.replace("\x85", "\\u0085")
    return (text + "\n").encode("utf-8")


class _Stdout:
    """Standard output as a byte sink (text streams without a buffer get decoded text)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._buffer: IO[bytes] | None = getattr(stream, "buffer", None)

    def write(self, data: bytes) -> None:
        if self._buffer is not None:
            self._buffer.write(data)
        else:
            self._stream.write(data.decode("utf-8"))

    def flush(self) -> None:
        self._stream.flush()


# --------------------------------------------------------------------------- the job


class _Tally:
    """What the summary line reports: conversations read and split, chunks written and the
    largest, lines rejected (empty ones among them), conversations with string content."""

    def __init__(self) -> None:
        self.lines = self.split = self.chunks = self.largest = 0
        self.rejected = self.empty = self.string_content = 0


@dataclass
class _Job:
    """Everything a mode needs, resolved once before the first line is read."""

    args: argparse.Namespace
    name: str  # how the input is named in messages
    base_dir: Path  # relative image paths of the input resolve here
    image_path: Callable[[str], str]  # where a found image file is written as
    counter: Any = None
    leading: Conversation = ()
    source: Any = None
    #: the counter prices chunks whole (a Qwen-VL model): its own parsing, its template
    #: writes plain-string content
    whole: bool = False
    tally: _Tally = field(default_factory=_Tally)


Mode = Callable[[_Job, Any, Conversation], list[dict[str, Any]]]


def _split_mode(job: _Job, record_id: Any, conversation: Conversation) -> list[dict[str, Any]]:
    """The output records of one conversation: its chunks under ``--max-tokens``."""
    from ..splitting import DEFAULT_MAX_CHUNKS, split

    chunks = split(conversation, job.args.max_tokens, counter=job.counter, leading=job.leading,
                   allow_frame_split=job.args.allow_frame_split, sft=job.args.sft,
                   max_chunks=getattr(job.args, "max_chunks", None) or DEFAULT_MAX_CHUNKS)
    return [{
        "id": record_id, "chunk": chunk.index, "chunks": len(chunks), "tokens": chunk.tokens,
        "sources": list(chunk.sources),
        "messages": to_dicts(chunk.messages, image_paths=job.image_path),
    } for chunk in chunks]


def _mode(args: argparse.Namespace) -> Mode:
    """The per-conversation work the options ask for (one mode today)."""
    return _split_mode


def _read_leading(path: str) -> Conversation:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--leading-file {path}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"--leading-file {path}: is not UTF-8 text") from None
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):  # plain text: one system message
        if not text.strip():
            raise InputError(f"--leading-file {path}: is empty; give text or JSON messages")
        data = [{"role": "system", "content": [{"type": "text", "text": text.rstrip("\n")}]}]
    try:
        return parse_conversation(data, base_dir=Path(path).parent, label="leading message")
    except InputError as exc:
        raise InputError(f"--leading-file {path}: {exc}") from None


def _same_path(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse outputs that are inputs (or each other), before anything is read."""
    inputs = [p for p in (args.input, args.leading_file) if p and p != STDIN]
    for option, path in (("-o", args.output), ("--rejects", args.rejects)):
        if path is None:
            continue
        if path == STDIN:
            raise UsageError(f"{option} -: write to standard output by leaving {option} out")
        if os.path.isdir(path):
            raise UsageError(f"{option} {path} is a folder; give a file name")
        folder = os.path.dirname(os.path.realpath(path) if os.path.islink(path) else path)
        if folder and not os.path.isdir(folder):
            raise UsageError(f"{option} {path}: the folder {folder} does not exist; create it "
                             f"first (mkdir -p {folder}) or write elsewhere")
        try:
            refuse_same_file(path, inputs, what=f"{option}")
        except InputError as exc:
            raise UsageError(str(exc)) from None
    if args.output and args.rejects and _same_path(args.output, args.rejects):
        raise UsageError(f"-o and --rejects name the same file ({args.output}); give two files")


def _image_path_writer(output: str | None) -> Callable[[str], str]:
    if output is None:
        return os.path.abspath
    folder = os.path.dirname(os.path.abspath(output))

    def relative(file: str) -> str:
        return os.path.relpath(os.path.abspath(file), folder)

    return relative


def _open_input(path: str) -> IO[bytes]:
    if path == STDIN:
        return sys.stdin.buffer
    try:
        return open(path, "rb")  # closed by the caller's ExitStack
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder; give a JSON Lines file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _prepare(job: _Job) -> None:
    """Load the counter and check the options fit together (usage errors).

    A checkpoint folder is read tokenizer-only (no torch: see
    :mod:`pytest_tokenguard.processor.light`); anything else loads the processor.
    """
    from ..processor.light import light_processor
    from ..processor.loading import load_processor
    from ..processor.source import model_or_default, resolve_source
    from ..sequence import base_tokens
    from ..splitting import split
    from ..tokens import TokenCounter

    args = job.args
    if _prepare_family(job):
        return
    try:
        source = resolve_source(model_or_default(args.model))
        light = light_processor(source)
        if light is not None:
            spec = source.spec()
            if args.longest_edge:  # as from_pretrained(size={"longest_edge": N}) reads it
                spec = replace(spec, default_longest_edge=args.longest_edge)
            job.counter = TokenCounter(light, spec, spec.default_longest_edge)
        else:
            loaded = load_processor(source.model, args.longest_edge, source=source)
            job.counter = TokenCounter(loaded.processor, loaded.spec, loaded.longest_edge)
        job.source = source
        base_tokens(job.counter)  # a chat template the splitter cannot price: refused here
        split((), args.max_tokens, counter=job.counter, leading=job.leading)
    except TokenguardError as exc:  # the model, its template, or a leading context too long
        raise UsageError(exc.reworded(CLI_WORDING)) from None


def _prepare_family(job: _Job) -> bool:
    """Load a Qwen-VL counter when ``--model`` is one (True), checking the options; False
    for SmolVLM2, whose options are then checked by :func:`_prepare`."""
    from ..families import resolve_family
    from ..processor.source import model_or_default

    args = job.args
    model = model_or_default(args.model)
    pixels = [option for option, value in (("--min-pixels", args.min_pixels),
                                           ("--max-pixels", args.max_pixels)) if value]
    try:
        found = resolve_family(model)
        if found is None or found.family.name != "qwen-vl":
            if pixels:
                what = "are Qwen-VL settings" if len(pixels) > 1 else "is a Qwen-VL setting"
                raise UsageError(f"{' and '.join(pixels)} {what}; {model} prices images by "
                                 "--longest-edge")
            return False
        if args.longest_edge:
            raise UsageError(f"--longest-edge is SmolVLM2's resolution; {model} is a Qwen-VL "
                             "model: give --max-pixels (and --min-pixels)")
        from ..families.qwen_text import QwenTokenCounter
        from ..splitting import split

        job.counter = QwenTokenCounter.from_model(model, min_pixels=args.min_pixels,
                                                  max_pixels=args.max_pixels)
        job.whole = True
        split((), args.max_tokens, counter=job.counter, leading=job.leading)
    except TokenguardError as exc:  # the model, its tokenizer, a leading context too long
        raise UsageError(exc.reworded(CLI_WORDING)) from None
    return True


def run_split(args: argparse.Namespace, stdout: TextIO | None = None,
              stderr: TextIO | None = None) -> int:
    """Run ``tokenguard split`` for parsed ``args``; the exit status (0, 1 or 2)."""
    out, err = streams(stdout, stderr)

    def say(message: str) -> None:
        print(f"tokenguard split: {message}", file=err)

    reading_stdin = args.input == STDIN
    job = _Job(
        args=args,
        name="<stdin>" if reading_stdin else args.input,
        base_dir=Path.cwd() if reading_stdin else Path(args.input).parent,
        image_path=_image_path_writer(args.output),
    )
    try:
        _check_outputs(args)
        with contextlib.ExitStack() as stack:
            stream = _open_input(args.input)
            if not reading_stdin:
                stack.callback(stream.close)
            if args.leading_file:
                job.leading = _read_leading(args.leading_file)
            _prepare(job)
            if args.leading_file and not job.whole:
                _note_string_content(f"--leading-file {args.leading_file}", job.leading, say)
            sink: Any = (stack.enter_context(AtomicFile(args.output, create_parents=False))
                         if args.output else _Stdout(out))
            rejects = (stack.enter_context(AtomicFile(args.rejects, create_parents=False))
                       if args.rejects else None)
            for written in (sink, rejects):
                for stale in getattr(written, "stale_removed", ()):
                    say(f"note: removed {stale}, the temporary file of an earlier run that was "
                        "killed before it finished")
            _run(job, _mode(args), stream, sink, rejects, say)
            if not args.output:
                sink.flush()
    except UsageError as exc:
        say(f"error: {exc}")
        return EXIT_USAGE
    except InputError as exc:
        say(f"error: {exc.reworded(CLI_WORDING)}")
        return EXIT_FAILED
    except BrokenPipeError:
        return reader_left(sys.stdout)
    except OutputError as exc:
        return output_failed("split", out, exc, err)
    except OSError as exc:
        where = exc.filename or args.output or args.rejects or "output"
        say(f"error: cannot write {where}: {exc.strerror or exc}")
        return EXIT_FAILED
    _summary(job, say)
    return EXIT_FAILED if job.tally.rejected else EXIT_OK


def _run(job: _Job, mode: Mode, stream: IO[bytes], sink: Any, rejects: AtomicFile | None,
         say: Callable[[str], None]) -> None:
    tally = job.tally
    for number, raw in iter_lines(stream):
        if not raw.strip():
            continue
        tally.lines += 1
        record_id: Any = number
        where = f"{job.name}, line {number}"
        try:
            record = _decode(raw)
            record_id = record.get("id", number)
            where = f"{job.name}, line {number} (id {_show_id(record_id)})"
            _check_id(record_id)
            messages = record.get("messages")
            if not isinstance(messages, list):
                raise Rejected(
                    "'messages' must be a list of chat messages, got "
                    f"{_json_type(messages) if 'messages' in record else 'nothing'}"
                )
            conversation = (job.counter.parse(messages, base_dir=job.base_dir) if job.whole
                            else parse_conversation(messages, base_dir=job.base_dir))
            if not conversation:
                tally.empty += 1
                raise Rejected("no messages: nothing to split, so no chunk is written; drop the "
                               "line or give it messages")
            outputs = mode(job, record_id, conversation)
        except (Rejected, InputError) as exc:
            tally.rejected += 1
            text = exc.reworded(CLI_WORDING) if isinstance(exc, TokenguardError) else str(exc)
            say(f"{where}: {text}")
            if rejects is not None:
                rejects.write(raw if raw.endswith(b"\n") else raw + b"\n")
            continue
        if not job.whole and any(m.string_content for m in conversation):
            tally.string_content += 1
            if tally.string_content <= STRING_CONTENT_NOTICES:
                _note_string_content(where, conversation, say)
        tally.split += 1
        for output in outputs:
            tally.chunks += 1
            tally.largest = max(tally.largest, int(output.get("tokens", 0)))
            sink.write(dump_line(output))


def _note_string_content(where: str, conversation: Conversation,
                         say: Callable[[str], None]) -> None:
    """Say that the template drops the first plain-string message of ``conversation``
    (messages from the input, or the leading context of ``--leading-file``)."""
    dropped = [i for i, m in enumerate(conversation) if m.string_content]
    if dropped:
        say(f"note: {where}: message {dropped[0]} has plain-string content, which "
            "SmolVLM2's chat template drops (it writes the role and no text); counted "
            "as rendered; write [{\"type\": \"text\", \"text\": ...}] to train on it")


def _summary(job: _Job, say: Callable[[str], None]) -> None:
    tally, args = job.tally, job.args
    parts = [f"{plural(tally.lines, 'conversation')} -> {plural(tally.chunks, 'chunk')}, "
             f"largest {tally.largest} of {plural(args.max_tokens, 'token')}"]
    if tally.rejected:
        empty = f", {tally.empty} of them empty" if tally.empty else ""
        kept = f" (written to {args.rejects})" if args.rejects else ""
        parts.append(f"{tally.rejected} rejected{empty}{kept}")
    if tally.string_content:
        parts.append(f"{tally.string_content} with plain-string content the template drops")
    if job.whole:
        counter = job.counter
        say(f"{', '.join(parts)}; min_pixels {counter.min_pixels}, max_pixels "
            f"{counter.max_pixels}; {counter.model}")
        return
    edge = job.counter.longest_edge if job.counter is not None else "?"
    source = job.source.describe() if job.source is not None else ""
    say(f"{', '.join(parts)}; longest_edge {edge}; {source}")
