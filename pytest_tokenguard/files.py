"""Writing files the user owns: whole or not at all.

Every file tokenguard writes for a user (a baseline, a JSON report, split output) goes
through :func:`write_atomic` or :class:`AtomicFile`, so that:

* readers see the old file or the new one, never a mix: the bytes go to a temporary
  file beside the destination (same filesystem), are fsynced, and replace it in one
  ``os.replace``;
* a crash, Ctrl-C, ``SIGTERM`` or ``SIGHUP`` while writing leaves the old file intact
  and no temporary file behind (the process still dies by the signal, as the shell
  expects);
* a destination that is a symbolic link is written *through*: the link's target gets
  the new bytes and the link stays a link, as ``>`` in a shell, ``cp`` or ``sed -i
  --follow-symlinks`` do;
* a new file gets the mode a plain ``open()`` would give it under the current umask;
  an existing file keeps its mode;
* an output that is one of the inputs (``protect``), by whatever path (``./IN``, a
  symbolic or hard link), is refused with :class:`~pytest_tokenguard.errors.SameFileError`
  before anything is written;
* unchanged bytes are not rewritten (no mtime churn for tools watching the file);
* a destination that exists and is not a regular file (``/dev/null``, ``/dev/stdout``, a
  named pipe) is written *directly*, as ``>`` in a shell writes it: a rename would put
  a regular file in the device's place (as root, ``/dev/null`` itself). Such a write
  cannot be all-or-nothing, and need not be: nothing is kept there;
* temporary files are named ``.NAME.tokenguard-HOST-PID-XXXXXXXX.tmp``, so one left by
  a process killed with ``SIGKILL`` (which nothing can catch) is recognisable: the next
  write of the same file on the same host removes those whose process is gone, and
  says so (:attr:`AtomicFile.stale_removed`).

Only the standard library is imported.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

from .errors import SameFileError

__all__ = ["AtomicFile", "is_special_file", "refuse_same_file", "remove_stale_temporaries",
           "write_atomic"]

#: Signals whose default action kills the process without unwinding: while a file is
#: being written they unwind first (removing the temporary file), then kill as before.
_FATAL_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, name)
)


def write_atomic(
    path: str | os.PathLike[str], text: str, *, protect: Iterable[str | os.PathLike[str]] = ()
) -> bool:
    """Replace the file at ``path`` with ``text`` (UTF-8) atomically; see the module
    docstring. Returns False, touching nothing (not even the folder), when the file
    already holds exactly these bytes.
    """
    data = text.encode("utf-8")
    target = _target(Path(path))
    refuse_same_file(target, protect)
    if is_special_file(target):  # reading a pipe to compare would wait for a writer
        with AtomicFile(target) as handle:
            handle.write(data)
        return True
    try:
        if target.read_bytes() == data:
            return False
    except OSError:
        pass
    with AtomicFile(target) as handle:
        handle.write(data)
    return True


def refuse_same_file(
    output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], what: str = "output"
) -> None:
    """Raise :class:`SameFileError` when ``output`` is one of ``inputs`` by any path.

    Compares the files themselves (device and inode, links followed), so ``./IN``, a
    symbolic link to ``IN`` and a hard link of ``IN`` are all ``IN``.
    """
    for source in inputs:
        try:
            same = os.path.samefile(output, source)
        except (OSError, ValueError):  # one of them does not exist (yet): no clash
            same = False
        if same:
            raise SameFileError(
                f"{what} {os.fspath(output)} is the input {os.fspath(source)} (the same file): "
                f"writing it would destroy the input; choose another {what} file"
            )


def is_special_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (links followed) exists and is neither a regular file nor a
    folder: a device (``/dev/null``), a named pipe or a socket, written directly."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


#: the temporary files' tag: ``.NAME.tokenguard-HOST-PID-XXXXXXXX.tmp``
_TEMP_TAG = "tokenguard"


def _host() -> str:
    """This machine's name as a file name part (letters, digits, dots; 24 at most)."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:24] or "host"


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{_TEMP_TAG}-{_host()}-{os.getpid()}-"


def _process_gone(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists under another user (EPERM), or cannot be told: keep it
        return False
    return False


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files of writes of ``path`` that a killed process left
    (``SIGKILL``, a power cut): those named for this host and a process that no longer
    exists. Returns what was removed; files of live processes, other hosts and other
    programs are left alone."""
    target = _target(Path(path))
    pattern = re.compile(re.escape(f".{target.name}.{_TEMP_TAG}-{_host()}-")
                         + r"(\d+)-[A-Za-z0-9_]+\.tmp")
    removed = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    for name in sorted(names):
        match = pattern.fullmatch(name)
        if match is None or not _process_gone(int(match[1])):
            continue
        stale = target.parent / name
        try:
            if stat.S_ISREG(os.lstat(stale).st_mode):
                stale.unlink()
                removed.append(stale)
        except OSError:
            continue
    return removed


def _target(path: Path) -> Path:
    """Where the bytes go: a symbolic link's final target, so the link stays a link."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _new_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file under the current umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


class _Terminated(BaseException):
    """A fatal signal arrived while a file was being written (unwinds like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated(signum)


class AtomicFile:
    """A binary file written beside ``path`` and renamed over it when the ``with``
    block ends without an exception; see the module docstring.

    ::

        with AtomicFile(out, protect=[source]) as handle:
            for line in lines:
                handle.write(line)
        print("written" if handle.changed else "unchanged")

    Nothing is kept in memory: the data streams into the temporary file. If the block
    raises (or a fatal signal arrives) the temporary file is removed and the old file
    is left as it was; the exception (or the signal) then goes on.

    A destination that is a device or a named pipe is opened and written directly (see
    the module docstring). ``create_parents=False`` leaves a missing folder missing
    (``FileNotFoundError``) instead of creating it.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, protect: Iterable[str | os.PathLike[str]] = (),
        create_parents: bool = True,
    ) -> None:
        self.path = Path(path)
        self.target = _target(self.path)
        self.protect = tuple(protect)
        self.create_parents = create_parents
        #: after a clean exit: True if the file was replaced, False if it held these bytes
        self.changed: bool | None = None
        #: temporary files of killed earlier writes that this one removed
        self.stale_removed: list[Path] = []
        #: True when the destination is a device or pipe, written directly
        self.direct = False
        self._handle: IO[bytes] | None = None
        self._temp: str | None = None
        self._previous: dict[int, object] = {}

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> AtomicFile:
        refuse_same_file(self.target, self.protect)
        if is_special_file(self.target):
            self.direct = True
            self._handle = open(self.target, "wb")  # closed by __exit__
            return self
        if self.create_parents:
            self.target.parent.mkdir(parents=True, exist_ok=True)
        self.stale_removed = remove_stale_temporaries(self.target)
        self._install_handlers()
        try:
            with _signals_blocked():  # no signal between creating the file and noting its name
                fd, self._temp = tempfile.mkstemp(
                    prefix=_temp_prefix(self.target), suffix=".tmp", dir=self.target.parent
                )
            self._handle = os.fdopen(fd, "wb")
        except BaseException:
            self._discard()
            self._restore_handlers()
            raise
        return self

    def write(self, data: bytes) -> int:
        assert self._handle is not None, "AtomicFile.write outside its with block"
        return self._handle.write(data)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if kind is None:
                self.changed = self._commit()
            else:
                self._discard()
        except BaseException as error:
            self._discard()
            self._restore_handlers(error)
            raise
        self._restore_handlers(exc)

    # ------------------------------------------------------------------ internals

    def _commit(self) -> bool:
        assert self._handle is not None
        handle = self._handle
        if self.direct:
            handle.close()  # flushes; a device or pipe has nothing to fsync or rename
            return True
        assert self._temp is not None
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        if _same_bytes(self._temp, self.target):
            self._discard()
            return False
        try:
            mode = self.target.stat().st_mode & 0o777
        except OSError:
            mode = _new_file_mode()
        os.chmod(self._temp, mode)
        os.replace(self._temp, self.target)
        self._temp = None
        _fsync_directory(self.target.parent)
        return True

    def _discard(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
        if self._temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._temp)
            self._temp = None

    def _install_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set there; the old file is still safe
        for signum in _FATAL_SIGNALS:
            handler = signal.getsignal(signum)
            if handler in (signal.SIG_DFL, None):
                self._previous[signum] = signal.signal(signum, _terminate)

    def _restore_handlers(self, exc: BaseException | None = None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()
        if isinstance(exc, _Terminated):
            # the temporary file is gone: now die by the signal, as the default action would
            signal.raise_signal(exc.signum)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "pthread_sigmask"
    ):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _FATAL_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _same_bytes(new: str, old: Path, size: int = 1 << 20) -> bool:
    """Whether the file ``old`` holds exactly the bytes of ``new`` (streamed, not loaded)."""
    try:
        if os.path.getsize(new) != old.stat().st_size:
            return False
        with open(new, "rb") as a, open(old, "rb") as b:
            while True:
                block = a.read(size)
                if block != b.read(size):
                    return False
                if not block:
                    return True
    except OSError:
        return False


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
