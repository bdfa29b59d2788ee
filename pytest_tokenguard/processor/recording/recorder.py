"""The recorder: installs the watch on the processor classes, opens a :class:`Recording`
per test and charges each call to its owner's.

**Whose call is it.** A :class:`Recording` is opened for a test (:meth:`Recorder.open`,
closed by :meth:`Recorder.close`; the plugin keeps one open from the test's setup to
its teardown) and each call is charged to its *owner* (:mod:`.owners`):

- a call made by the code that opened the recording (the test, its fixtures, asyncio
  tasks it creates) belongs to it: the owner is a context variable;
- a thread belongs to the test that started it, and work handed to a
  ``ThreadPoolExecutor`` belongs to the test that submitted it (:mod:`.propagation`). A
  thread that outlives its test never charges its calls to a later test: they are dropped
  and listed by :meth:`Recorder.strays`;
- a process started by the test records its calls into a folder named by the
  environment variable :data:`~.owners.ENV_RECORD_TO` (:mod:`.children`), and
  :meth:`Recorder.collect` reads them back into the test's recording. What cannot be
  followed is named in :attr:`Recording.unseen`, never passed in silence.
"""

from __future__ import annotations

import atexit
import contextvars
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, replace
from typing import Any

from ...figures import PixelBounds
from . import reading
from .children import SITE_DIR, remove, sitecustomize, write_call
from .owners import ENV_RECORD_TO, LOCAL_TOKENS, OWNER, current_owner, process_owner
from .patching import STRAY, PatchOnImport, patch_class, watched
from .propagation import PROPAGATION
from .reading import Frame
from .records import ImageRecord, Recording, SequenceRecord, Stray, VideoRecord

__all__ = ["Recorder"]


def _pixels_of(images: list[ImageRecord]) -> PixelBounds | None:
    """The pixel budget of a call's images (one per call: its settings), for a
    pixel-budget family (Qwen-VL); None for SmolVLM2's and for a call with no image."""
    first = next((image for image in images if image.merge_size), None)
    return None if first is None else PixelBounds(first.min_pixels, first.max_pixels)


class Recorder:
    """Patches the SmolVLM-family processor classes while installed and charges each
    call to its owner's :class:`Recording` (see the module docstring).

    ``results_dir`` is where child processes write (a temporary folder, removed at
    :meth:`uninstall`, when not given).
    """

    def __init__(self, results_dir: str | os.PathLike[str] | None = None, *,
                 _child_of: str | None = None) -> None:
        self._given_dir = os.fspath(results_dir) if results_dir is not None else None
        self._dir = ""
        self._child_of = _child_of  # set: this is the recorder of a child process
        self._pid = os.getpid()
        self._undo: list[Callable[[], None]] = []
        self._open: dict[str, Recording] = {}
        self._closed: dict[str, str] = {}
        self._serial = 0
        self._strays: dict[tuple[str | None, str], int] = {}
        self._local = threading.local()
        self._states: dict[str, tuple[contextvars.Token[str | None], str | None]] = {}
        self._lock = threading.Lock()
        self._finder = PatchOnImport(self)
        self._installed = False

    # lifecycle ----------------------------------------------------------------------

    def install(self) -> None:
        """Patch the processor classes now, or when transformers loads them (idempotent).

        In the test process this also hands owners on to threads and processes, and
        points child processes at the results folder.
        """
        if self._installed:
            return
        targets = watched()  # before the finder: reading it imports family modules
        self._installed = True
        sys.meta_path.insert(0, self._finder)
        self._undo.append(lambda: sys.meta_path.remove(self._finder))
        for module_name, target in targets.items():
            module = sys.modules.get(module_name)
            if module is not None and hasattr(module, target.class_name):
                self._patch(getattr(module, target.class_name), target.reader)
        if self._child_of is not None:
            return
        PROPAGATION.acquire()
        self._undo.append(PROPAGATION.release)
        self._dir = self._given_dir or tempfile.mkdtemp(prefix="tokenguard-")
        os.makedirs(self._dir, exist_ok=True)
        if self._given_dir is None:
            folder, pid = self._dir, os.getpid()

            def remove() -> None:
                if os.getpid() == pid:  # never from a forked child
                    shutil.rmtree(folder, ignore_errors=True)

            atexit.register(remove)  # a process that ends without uninstall()
            self._undo.append(remove)
            self._undo.append(lambda: atexit.unregister(remove))
        site = os.path.join(self._dir, SITE_DIR)
        os.makedirs(site, exist_ok=True)
        with open(os.path.join(site, "sitecustomize.py"), "w", encoding="utf-8") as handle:
            handle.write(sitecustomize(tuple(targets)))
        before = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = site if not before else site + os.pathsep + before

        def restore_path() -> None:
            entries = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                       if p and p != site]
            if entries:
                os.environ["PYTHONPATH"] = os.pathsep.join(entries)
            else:
                os.environ.pop("PYTHONPATH", None)

        self._undo.append(restore_path)

    def uninstall(self) -> None:
        """Undo :meth:`install`; strays found so far stay readable."""
        if self._installed and self._child_of is None:
            self._sweep()
        while self._undo:
            self._undo.pop()()
        self._installed = False

    # recordings ---------------------------------------------------------------------

    def open(self, name: str) -> Recording:
        """Start charging the calls of the running code (and of the threads and processes
        it starts) to a new recording, until :meth:`close`. May span pytest phases."""
        if not self._installed or self._child_of is not None:
            raise RuntimeError("Recorder.open: call install() first (in the test process)")
        with self._lock:
            self._serial += 1
            token = os.path.join(self._dir, f"r{self._serial}")
        recording = Recording(name=name, token=token)
        LOCAL_TOKENS.add(token)
        self._open[token] = recording
        self._states[token] = (OWNER.set(token), os.environ.get(ENV_RECORD_TO))
        os.environ[ENV_RECORD_TO] = token
        return recording

    def collect(self, recording: Recording) -> Recording:
        """Read back what the recording's child processes wrote so far (call it before
        judging a phase: a DataLoader's workers write there). A closed recording takes
        nothing more: what its processes write later is listed by :meth:`strays`."""
        if self._child_of is None and recording.token and not recording.closed:
            self._read_folder(recording.token, recording)
        return recording

    def close(self, recording: Recording) -> Recording:
        """Stop charging calls to ``recording`` and read back its child processes.

        Calls its threads or processes make later are dropped and listed by
        :meth:`strays`, never charged to another test.
        """
        if recording.closed:
            return recording
        token = recording.token
        state = self._states.pop(token, None)
        if state is not None:
            reset, env_before = state
            try:
                OWNER.reset(reset)
            except (ValueError, RuntimeError):  # closed from another context
                OWNER.set(None)
            if env_before is None:
                os.environ.pop(ENV_RECORD_TO, None)
            else:
                os.environ[ENV_RECORD_TO] = env_before
        self._open.pop(token, None)
        self._read_folder(token, recording, closing=True)
        self._closed[token] = recording.name
        recording.closed = True
        with suppress(OSError):
            os.rmdir(token)  # a process still running recreates it: its calls are strays
        self._sweep()
        return recording

    @contextmanager
    def record(self, name: str) -> Iterator[Recording]:
        """:meth:`open` and :meth:`close` around a block."""
        recording = self.open(name)
        try:
            yield recording
        finally:
            self.close(recording)

    def strays(self) -> list[Stray]:
        """Calls charged to no test: from threads and processes whose test had ended, or
        started outside any test while one ran."""
        if self._installed and self._child_of is None:
            self._sweep()
        with self._lock:
            items = sorted(self._strays.items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))
        return [Stray(owner, where, calls) for (owner, where), calls in items]

    # where a call goes --------------------------------------------------------------

    def _sink(self) -> Recording | str | object | None:
        """The recording, the child folder, a stray, or ``None`` (not this recorder's)."""
        if self._child_of is not None:
            child_token = process_owner() or self._child_of
            return child_token if child_token and child_token not in LOCAL_TOKENS else None
        token = current_owner()
        if token is None:
            return STRAY if self._open else None
        recording = self._open.get(token)
        if recording is None and token not in self._closed:
            return None  # another recorder's
        if os.getpid() != self._pid:
            return token  # a forked child: the parent reads the file (a stray if closed)
        return STRAY if recording is None else recording

    def _stray(self) -> None:
        token = current_owner()
        owner = self._closed.get(token) if token is not None else None
        where = f"thread {threading.current_thread().name!r}"
        if os.getpid() != self._pid:
            where = f"process {os.getpid()}"
        with self._lock:
            key = (owner, where)
            self._strays[key] = self._strays.get(key, 0) + 1

    # patching -----------------------------------------------------------------------

    def _patch(self, cls: type, reader: str) -> None:
        self._undo.append(patch_class(self, cls, reader))

    # recording ----------------------------------------------------------------------

    def _deliver(self, sink: Recording | str | object, processor: Any, args: tuple[Any, ...],
                 kwargs: dict[str, Any], output: Any, frame: Frame) -> None:
        edge = frame.edge
        if edge is None and not frame.images:  # text only: the call's size setting
            edge = frame.reader.text_call_edge(processor, kwargs)
        samples = reading.samples(processor, args, kwargs, output, frame, edge)
        if frame.videos:  # grouped with the call's sequences: the call's size setting
            edge = samples[0][2] if samples else frame.edge
            frame.videos = [replace(video, longest_edge=edge) for video in frame.videos]
        pixels = _pixels_of(frame.images)
        if isinstance(sink, str):
            write_call(sink, {
                "pid": os.getpid(),
                "images": [asdict(image) for image in frame.images],
                "sequences": [list(sample) for sample in samples],
                "videos": [video.to_json() for video in frame.videos],
                "pixels": None if pixels is None else list(pixels),
            })
            return
        if not isinstance(sink, Recording):
            return
        with self._lock:
            if not sink.closed:
                sink.calls += 1
                call = sink.calls
                sink.images.extend(frame.images)
                sink.videos.extend(frame.videos)
                phase = f" {sink.phase}" if sink.phase not in ("", "call") else ""
                sink.sequences.extend(
                    SequenceRecord(f"{sink.name}{phase} call {call} sample {index}", length,
                                   preview, edge, note, pixels)
                    for index, (length, preview, edge, note) in enumerate(samples))
                return
        self._stray()  # its test ended while this call ran in another thread

    def _unrecorded(self, sink: Recording | str | object, exc: Exception) -> None:
        """A call the recorder could not read: named, so its test cannot pass over it."""
        where = f"thread {threading.current_thread().name!r}"
        if os.getpid() != self._pid or self._child_of is not None:
            where = f"process {os.getpid()}"
        note = (f"a processor call in {where} could not be recorded "
                f"({type(exc).__name__}: {exc})")
        if isinstance(sink, str):
            write_call(sink, {"unseen": note})
        elif isinstance(sink, Recording):
            with self._lock:
                sink.unseen.append(note)

    # child processes' files ---------------------------------------------------------

    def _read_folder(self, folder: str, recording: Recording | None, *,
                     closing: bool = False) -> int:
        """Move the calls written into ``folder`` into ``recording`` (``None``: strays);
        ``closing``: a call still being written is unseen."""
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return 0
        calls = 0
        for name in names:
            path = os.path.join(folder, name)
            if name.startswith("."):
                if recording is not None and closing and name.endswith(".tmp"):
                    pid = name[1:].split("-", 1)[0]
                    recording.unseen.append(f"process {pid} was still writing a call when "
                                            "the test ended")
                    remove(path)
                continue
            try:
                with open(path, encoding="utf-8") as handle:
                    payload = json.load(handle)
            except (OSError, ValueError) as exc:
                if recording is not None:
                    recording.unseen.append(f"a call record {name} could not be read ({exc})")
                remove(path)
                continue
            remove(path)
            if recording is None:
                self._late(folder, payload)
                continue
            if "unseen" in payload:
                recording.unseen.append(str(payload["unseen"]))
                continue
            try:
                self._merge(recording, payload)
            except (KeyError, TypeError, ValueError) as exc:
                recording.unseen.append(f"a call record {name} was malformed ({exc!r})")
                continue
            calls += 1
        return calls

    def _merge(self, recording: Recording, payload: dict[str, Any]) -> None:
        images = [ImageRecord(**image) for image in payload["images"]]
        videos = [VideoRecord.from_json(video) for video in payload.get("videos", ())]
        samples = [(int(length), str(preview), None if edge is None else int(edge), str(note))
                   for length, preview, edge, note in payload["sequences"]]
        bounds = payload.get("pixels")
        pixels = None if bounds is None else PixelBounds(int(bounds[0]), int(bounds[1]))
        pid = payload.get("pid", "?")
        with self._lock:
            recording.calls += 1
            call = recording.calls
            recording.images.extend(images)
            recording.videos.extend(videos)
            recording.sequences.extend(
                SequenceRecord(f"{recording.name} process {pid} call {call} sample {index}",
                               *sample, pixels)
                for index, sample in enumerate(samples))

    def _late(self, folder: str, payload: dict[str, Any]) -> None:
        if "unseen" in payload:
            return
        key = (self._closed.get(folder), f"process {payload.get('pid', '?')}")
        with self._lock:
            self._strays[key] = self._strays.get(key, 0) + 1

    def _sweep(self) -> None:
        """Calls written for recordings already closed: strays."""
        if not self._dir:
            return
        try:
            entries = os.listdir(self._dir)
        except OSError:
            return
        for entry in entries:
            folder = os.path.join(self._dir, entry)
            if folder in self._closed:
                self._read_folder(folder, None)
                with suppress(OSError):
                    os.rmdir(folder)
