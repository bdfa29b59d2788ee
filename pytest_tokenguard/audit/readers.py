"""Read a training set row by row, in bounded memory, cut into parts that processes share.

Formats, chosen by what ``DATA`` is:

* a ``.jsonl`` file (or ``-`` lines on standard input are not supported: give a file),
  one JSON object per line, blank lines skipped; a ``.json`` file holding one array of
  objects (parsed incrementally, one element at a time, with the standard library's
  ``json.JSONDecoder.raw_decode`` over chunks: memory holds one chunk and one row, never
  the file; one process reads it, as an array cannot be cut into parts without parsing
  it, so ``--workers`` needs JSON Lines) or JSON Lines under a ``.json`` name;
* a ``datasets`` ``save_to_disk`` folder (``state.json`` and ``*.arrow`` files, read
  memory-mapped) or one of its split folders;
* a ``.parquet`` file, or a folder of them (sorted by name, as ``load_dataset("parquet",
  data_files=...)`` sorts a glob).

A row's number counts the rows before it from 0 (blank JSON Lines are not rows), which
is the sample's id when it has no ``id`` field. :func:`plan` cuts the input into
:class:`Part` s (byte ranges of a JSON Lines file at line starts, row groups of Parquet,
record batches of Arrow) so that ``--workers`` processes read their own part; each part
reports its row count and the rows are numbered in part order afterwards, so the numbers
never depend on the number of workers. pyarrow (a dependency of ``datasets``) is imported
only for Parquet and Arrow.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["Part", "RowError", "clean_row", "data_files", "json_array", "plan", "read_part",
           "table_rows"]

#: rows converted to Python objects at once from an Arrow batch (image bytes included)
SLICE_ROWS = 64
#: target size of one JSON Lines part: small enough that ``--workers`` processes end
#: together (the last part is the only one a worker may wait for), large enough that a
#: part's results are worth sending
PART_BYTES = 1 << 20
#: characters of a JSON array read at once
JSON_CHUNK = 1 << 18


class RowError(str):
    """A row that cannot be read (not JSON, not an object): its one-line reason."""

    __slots__ = ()


@dataclass(frozen=True)
class Part:
    """A share of the input one process reads: ``kind`` is ``jsonl``, ``json``,
    ``parquet`` or ``arrow``; ``start``/``stop`` are bytes (JSON Lines), row groups
    (Parquet) or record batches (Arrow), ``stop=-1`` for all."""

    kind: str
    path: str
    start: int = 0
    stop: int = -1


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError:
        raise InputError("reading Parquet or a datasets folder needs pyarrow: pip install "
                         "'pytest-tokenguard[audit]' (or datasets)") from None
    return pyarrow


def data_files(data: str | os.PathLike[str]) -> tuple[str, list[Path]]:
    """(kind, files) of ``data``; an :class:`InputError` naming it when it is none of the
    formats above."""
    path = Path(data)
    if not path.exists():
        raise InputError(f"{data}: no such file or folder; give a JSON Lines file, a Parquet "
                         "file or folder, or a datasets save_to_disk folder")
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            splits = sorted(p.name for p in path.iterdir() if (p / "state.json").is_file())
            raise InputError(f"{data}: a DatasetDict folder (splits {', '.join(splits) or 'none'}"
                             f"); give one split's folder, e.g. {path / (splits or ['train'])[0]}")
        state = path / "state.json"
        if state.is_file():
            try:
                listed = json.loads(state.read_text(encoding="utf-8"))["_data_files"]
                files = [path / entry["filename"] for entry in listed]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{state}: not a datasets state.json ({exc}); save the "
                                 "dataset again with save_to_disk") from None
            return "arrow", files
        parquet = sorted(path.rglob("*.parquet"))
        if parquet:
            return "parquet", parquet
        raise InputError(f"{data}: a folder with neither a datasets state.json nor .parquet "
                         "files; give a JSON Lines file, Parquet, or a save_to_disk folder")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet", [path]
    if suffix == ".arrow":
        return "arrow", [path]
    if suffix == ".json":
        with open(path, "rb") as fp:
            head = fp.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
        if head.startswith(b"["):
            return "json", [path]
    return "jsonl", [path]


def plan(data: str | os.PathLike[str], parts: int = 1) -> list[Part]:
    """The input cut into parts, in row order: at least ``parts`` where the input allows."""
    kind, files = data_files(data)
    if kind == "json":
        return [Part("json", str(files[0]))]
    if kind == "jsonl":
        size = files[0].stat().st_size
        count = max(parts, -(-size // PART_BYTES)) if parts > 1 else 1
        step = -(-size // count) if size else 1
        return [Part("jsonl", str(files[0]), start, min(start + step, size))
                for start in range(0, max(size, 1), step)]
    pa = _pyarrow()
    out: list[Part] = []
    for file in files:
        if kind == "parquet":
            try:
                groups = pa.parquet.ParquetFile(file).num_row_groups
            except Exception as exc:
                raise InputError(f"{file}: not a Parquet file ({exc})") from None
        else:
            groups = sum(1 for _ in _arrow_batches(file))
        per = max(1, -(-groups // parts)) if parts > 1 else max(groups, 1)
        out.extend(Part(kind, str(file), start, min(start + per, groups))
                   for start in range(0, max(groups, 1), per))
    return out


def _arrow_batches(file: Path) -> Iterator[Any]:
    pa = _pyarrow()
    try:
        source = pa.memory_map(str(file))
        try:
            reader = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            reader = pa.ipc.open_file(source)
            yield from (reader.get_batch(i) for i in range(reader.num_record_batches))
            return
    except Exception as exc:
        raise InputError(f"{file}: not an Arrow file ({exc}); save the dataset again with "
                         "save_to_disk") from None
    yield from reader


def _clean(value: Any) -> Any:
    """A row from Arrow as JSON would give it: struct fields another row has but this one
    lacks come as None, and are dropped (an image item has no ``text``)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def clean_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row from a columnar table (Arrow, ``datasets``, Ray Data) as its JSON line would
    read: the None fields a column gives a row that lacks them are dropped (an image item
    has no ``text``, a row no ``id``), except in image cells, where ``{"bytes": None,
    "path": ...}`` is ``datasets``' own form."""
    images: dict[str, Any] = {k: row.pop(k) for k in ("images", "image") if k in row}
    cleaned: dict[str, Any] = _clean(row)
    cleaned.update(images)
    return cleaned


def table_rows(table: Any) -> Iterator[dict[str, Any]]:
    """The rows of a pyarrow ``Table`` or ``RecordBatch``, cleaned (:func:`clean_row`),
    converted a slice at a time."""
    for offset in range(0, table.num_rows, SLICE_ROWS):
        for row in table.slice(offset, SLICE_ROWS).to_pylist():
            yield clean_row(row)


_table_rows = table_rows


def _json_row(line: bytes) -> Any:
    try:
        row = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return RowError(f"not JSON ({exc}); fix or remove the line")
    if not isinstance(row, Mapping):
        return RowError(f"a JSON {type(row).__name__}, not an object with 'messages'; write "
                        "one object per line")
    return row


_SPACE = re.compile(r"[ \t\n\r]*")
#: what may follow a number, true, false or null in an array
_AFTER_SCALAR = frozenset(",] \t\n\r")


def json_array(path: str, chunk: int | None = None) -> Iterator[Any]:
    """The elements of the JSON array in ``path``, one at a time: the text is read in
    chunks and each element decoded with :meth:`json.JSONDecoder.raw_decode` as soon as
    the chunks hold it whole, so memory holds a chunk and the element being decoded. An
    :class:`InputError` naming the file and the character where the JSON breaks."""
    base = size = chunk or JSON_CHUNK
    decode = json.JSONDecoder().raw_decode
    try:
        with open(path, encoding="utf-8-sig", newline="") as fp:
            buffer, done, position, consumed = "", False, 0, 0

            def more(grow: bool = False) -> bool:
                """Read the next chunk (``grow``: twice as large as the last, so an
                element larger than a chunk is decoded a logarithmic number of times)."""
                nonlocal buffer, done, position, consumed, size
                if done:
                    return False
                size = size * 2 if grow else size
                text = fp.read(size)
                if not text:
                    done = True
                    return False
                if position > len(buffer) // 2:  # drop what was decoded, once in a while
                    consumed += position
                    buffer, position = buffer[position:], 0
                buffer += text
                return True

            def skip() -> str:
                """The next non-space character (not consumed), or "" at the end."""
                nonlocal position
                while True:
                    position = _SPACE.match(buffer, position).end()  # type: ignore[union-attr]
                    if position < len(buffer):
                        return buffer[position]
                    if not more():
                        return ""

            def broken(what: str) -> InputError:
                return InputError(f"{path}: not a JSON array of rows ({what} at character "
                                  f"{consumed + position}); fix the file, or write JSON Lines")

            if skip() != "[":
                raise broken("no '[' opening the array")
            position += 1
            if skip() == "]":
                return
            while True:
                if not skip():
                    raise broken("the array never closes")
                tries = 0
                while True:
                    try:
                        value, end = decode(buffer, position)
                    except ValueError as exc:
                        tries += 1
                        if more(grow=tries > 1):
                            continue
                        raise broken(str(exc).split(":")[0]) from None
                    if (isinstance(value, dict | list | str)
                            or (end < len(buffer) and buffer[end] in _AFTER_SCALAR)
                            or done or not more()):
                        break  # a number ("-0." of "-0.5") may go on in the next chunk
                size = base
                position = end
                yield value
                following = skip()
                if following == ",":
                    position += 1
                elif following == "]":
                    position += 1
                    if skip():
                        raise broken("text after the array")
                    return
                else:
                    raise broken(f"{following!r} where ',' or ']' belongs" if following
                                 else "the array never closes")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start} of a "
                         "chunk); save it as UTF-8") from None


def read_part(part: Part) -> Iterator[Any]:
    """The rows of ``part`` in order: dicts, or :class:`RowError` for a row that cannot be
    read (the rest goes on)."""
    if part.kind == "jsonl":
        with open(part.path, "rb") as fp:
            if part.start > 0:
                fp.seek(part.start - 1)
                fp.readline()  # the line that started before this part is the previous part's
            position = fp.tell()
            while part.stop < 0 or position < part.stop:
                line = fp.readline()
                if not line:
                    break
                position += len(line)
                if line.strip():
                    yield _json_row(line)
        return
    if part.kind == "json":
        for row in json_array(part.path):
            yield (row if isinstance(row, Mapping)
                   else RowError("not an object with 'messages'"))
        return
    pa = _pyarrow()
    if part.kind == "parquet":
        parquet = pa.parquet.ParquetFile(part.path)
        stop = parquet.num_row_groups if part.stop < 0 else part.stop
        for group in range(part.start, stop):
            for batch in parquet.iter_batches(batch_size=SLICE_ROWS, row_groups=[group]):
                yield from _table_rows(batch)
        return
    for index, batch in enumerate(_arrow_batches(Path(part.path))):
        if index < part.start:
            continue
        if 0 <= part.stop <= index:
            break
        yield from _table_rows(batch)
