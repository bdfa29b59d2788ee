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


# --------------------------------------------------------------------------- not a regular file


def _read_fifo(fifo: Path, got: list[bytes]) -> threading.Thread:
    def read() -> None:
        with open(fifo, "rb") as reader:
            got.append(reader.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("streamed", [False, True], ids=["write_atomic", "AtomicFile"])
def test_named_pipe_is_written_not_replaced(tmp_path: Path, streamed: bool) -> None:
    """The rename put a regular file where the pipe was (and write_atomic, reading the
    pipe first to compare, waited for a writer forever)."""
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = _read_fifo(fifo, got)
    directs: list[bool] = []

    def write() -> None:
        if streamed:
            with AtomicFile(fifo) as handle:
                handle.write(b"new\n")
            directs.append(handle.direct)
        else:
            directs.append(write_atomic(fifo, "new\n"))

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(timeout=30)
    reader.join(timeout=30)
    if writer.is_alive() or reader.is_alive():  # unblock both ends, then fail
        os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))
        pytest.fail("writing the named pipe blocked")
    assert directs == [True]
    assert got == [b"new\n"]
    assert fifo.is_fifo()
    assert listing(tmp_path) == ["report.json"]


def _private_null(tmp_path: Path) -> Path:
    """A character device like /dev/null (major 1, minor 3) in ``tmp_path``: replacing it
    by mistake harms nothing. Skips where device nodes cannot be made (not root)."""
    import stat

    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        with open(device, "wb") as probe:
            probe.write(b"")
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot make a character device here ({exc}): needs root")
    return device


def test_character_device_is_written_not_replaced(tmp_path: Path) -> None:
    """As root, the rename replaced the device (``/dev/null``) with a regular file."""
    import stat

    device = _private_null(tmp_path)
    assert write_atomic(device, "new\n")
    with AtomicFile(device) as handle:
        handle.write(b"streamed\n")
    assert stat.S_ISCHR(os.stat(device).st_mode)
    assert listing(tmp_path) == ["null"]
    link = tmp_path / "out.json"  # through a link, as > would
    link.symlink_to(device)
    write_atomic(link, "x\n")
    assert link.is_symlink()
    assert stat.S_ISCHR(os.stat(device).st_mode)


def test_dev_null_stays_a_device(tmp_path: Path) -> None:
    """The real /dev/null, written the way a user points an output at it."""
    import stat

    write_atomic("/dev/null", "new\n")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


# --------------------------------------------------------------------------- SIGKILL leftovers

KILLED = """
import os, signal, sys
from pathlib import Path
from pytest_tokenguard.files import AtomicFile
with AtomicFile(Path(sys.argv[1])) as handle:
    handle.write(b"half")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_temporary_file_of_a_killed_write_is_removed_next_time(tmp_path: Path) -> None:
    """SIGKILL left ``.out.jsonl.XXXX.tmp``; the next write neither removed nor named it."""
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    done = subprocess.run([sys.executable, "-c", KILLED, str(path)], capture_output=True,
                          timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == -signal.SIGKILL
    left = [name for name in listing(tmp_path) if name != "out.jsonl"]
    assert len(left) == 1
    assert left[0].startswith(".out.jsonl.tokenguard-")
    assert left[0].endswith(".tmp")
    other = tmp_path / ".other.jsonl.tokenguard-x-1-abc.tmp"  # another file's: left alone
    other.write_text("")
    with AtomicFile(path) as handle:
        handle.write(b"new\n")
    assert [p.name for p in handle.stale_removed] == left
    assert listing(tmp_path) == sorted([other.name, "out.jsonl"])
    assert path.read_text() == "new\n"


def test_temporary_file_of_a_live_process_is_kept(tmp_path: Path) -> None:
    from pytest_tokenguard.files import remove_stale_temporaries

    path = tmp_path / "out.jsonl"
    with AtomicFile(path) as handle:
        handle.write(b"x")
        live = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(live) == 1
        assert remove_stale_temporaries(path) == []  # ours, still writing
        assert live[0].exists()
