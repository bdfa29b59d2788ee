"""files.py: a file the user owns is replaced whole or not at all, through links, with
the mode a plain open() gives, never by one of the inputs, and not even a temporary file
is left when a signal arrives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pytest_tokenguard.errors import SameFileError
from pytest_tokenguard.files import AtomicFile, refuse_same_file, write_atomic
from tests.helpers import REPO


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_symlink_is_written_through(tmp_path: Path) -> None:
    """The link was replaced by a regular file."""
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "baseline.json"
    target.write_text("old\n")
    link = tmp_path / "baseline.json"
    link.symlink_to(Path("real") / "baseline.json")
    assert write_atomic(link, "new\n")
    assert link.is_symlink()
    assert target.read_text() == "new\n"
    assert listing(tmp_path / "real") == ["baseline.json"]
    with AtomicFile(link) as handle:
        handle.write(b"streamed\n")
    assert link.is_symlink()
    assert target.read_text() == "streamed\n"


def test_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    link = tmp_path / "out.jsonl"
    link.symlink_to(tmp_path / "made.jsonl")
    assert write_atomic(link, "x\n")
    assert link.is_symlink()
    assert (tmp_path / "made.jsonl").read_text() == "x\n"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_file_mode_follows_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "a.json", "{}\n")
        with AtomicFile(tmp_path / "b.json") as handle:
            handle.write(b"{}\n")
        with open(tmp_path / "c.json", "w") as plain:
            plain.write("{}\n")
    finally:
        os.umask(old)
    modes = {name: (tmp_path / name).stat().st_mode & 0o777 for name in listing(tmp_path)}
    assert modes == {"a.json": 0o666 & ~umask, "b.json": 0o666 & ~umask,
                     "c.json": 0o666 & ~umask}


def test_existing_mode_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")
    path.chmod(0o604)
    with AtomicFile(path) as handle:
        handle.write(b"new")
    assert path.stat().st_mode & 0o777 == 0o604


def test_streamed_unchanged_bytes_touch_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"a\nb\n")
    os.utime(path, ns=(1, 1))
    with AtomicFile(path) as handle:
        handle.write(b"a\n")
        handle.write(b"b\n")
    assert handle.changed is False
    assert path.stat().st_mtime_ns == 1
    assert listing(tmp_path) == ["out.jsonl"]
    with AtomicFile(path) as handle:
        handle.write(b"a\nc\n")
    assert handle.changed is True
    assert path.read_bytes() == b"a\nc\n"


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_exception_in_the_block_keeps_the_old_file(tmp_path: Path,
                                                  error: type[BaseException]) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    handle = AtomicFile(path)

    def interrupted() -> None:
        with handle:
            handle.write(b"half")
            raise error

    with pytest.raises(error):
        interrupted()
    assert path.read_text() == "old\n"
    assert listing(tmp_path) == ["out.jsonl"]
    assert handle.changed is None


def test_same_file_by_any_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "in.jsonl"
    source.write_text("input\n")
    (tmp_path / "sym").symlink_to(source)
    os.link(source, tmp_path / "hard")
    for other in ("in.jsonl", "./in.jsonl", str(source), "sym", "hard", "sub/../in.jsonl"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(SameFileError, match="is the input"):
            write_atomic(other, "chunks\n", protect=[source])
        with pytest.raises(SameFileError), AtomicFile(other, protect=[str(source)]):
            pass
    assert source.read_text() == "input\n"
    assert not [name for name in listing(tmp_path) if name.endswith(".tmp")]
    refuse_same_file(tmp_path / "new.jsonl", [source])  # does not exist yet: no clash
    refuse_same_file(source, [tmp_path / "missing"])


def test_works_outside_the_main_thread(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with AtomicFile(tmp_path / "t.json") as handle:
                handle.write(b"ok")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert errors == []
    assert (tmp_path / "t.json").read_bytes() == b"ok"


def test_handlers_are_restored(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with AtomicFile(tmp_path / "x") as handle:
        assert signal.getsignal(signal.SIGTERM) is not before
        handle.write(b"x")
    assert signal.getsignal(signal.SIGTERM) is before


SIGNALLED = """
import os, signal, sys
from pathlib import Path
from pytest_tokenguard.files import write_atomic

real_fsync = os.fsync
def fsync_then_signal(fd):
    real_fsync(fd)
    os.kill(os.getpid(), signal.SIG{name})
os.fsync = fsync_then_signal
write_atomic(Path(sys.argv[1]), "new\\n")
print("not reached", file=sys.stderr)
"""


@pytest.mark.parametrize("name", ["TERM", "HUP", "INT"])
def test_fatal_signal_while_writing_leaves_no_temporary_file(tmp_path: Path, name: str) -> None:
    """``.OUT.jsonl.*.tmp`` was left behind by SIGTERM (the default action kills at once)."""
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    done = subprocess.run(
        [sys.executable, "-c", SIGNALLED.format(name=name), str(path)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if name == "INT":
        assert "KeyboardInterrupt" in done.stderr
    else:
        assert done.returncode == -getattr(signal, f"SIG{name}"), done.stderr
        assert done.stderr == ""
    assert "not reached" not in done.stderr
    assert path.read_text() == "old\n"
    assert listing(tmp_path) == ["out.jsonl"]
