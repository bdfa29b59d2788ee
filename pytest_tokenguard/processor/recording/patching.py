"""How a processor class is watched: wrapped while a recorder is installed, now if its
module is loaded, else when transformers loads it (:class:`PatchOnImport`, a
``sys.meta_path`` finder, so installing a recorder imports nothing), and unwrapped by the
function :func:`patch_class` returns.

The wrapped ``__call__`` asks the recorder where the call goes (a recording, a child
process's folder, a stray, or not this recorder's), lets the real call run with a
:class:`~.reading.Frame` open for its inner steps (``_process_images``,
``_process_videos``, ``get_text_with_replacements``, ``_merge_kwargs``) to report into,
and hands what they read to the recorder. A call the recorder cannot read still returns
its output, and is named as unrecorded.
"""

from __future__ import annotations

import importlib
import sys
import threading
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

from .reading import Frame

if TYPE_CHECKING:
    from .recorder import Recorder

__all__ = ["STRAY", "PatchOnImport", "Watched", "patch_class", "watched"]

#: where a call goes that is charged to no test
STRAY = object()


class Watched(NamedTuple):
    """A processor class the recorder watches: its name, and the module of its family
    that reads its calls (:attr:`~pytest_tokenguard.families.base.Family.call_reader`)."""

    class_name: str
    reader: str


_WATCHED: list[dict[str, Watched]] = []


def watched() -> dict[str, Watched]:
    """Module name -> the processor class it defines, for every family's processors (the
    built-in families and those registered through the entry point group). Read once, by
    :meth:`Recorder.install` before its import finder is in place: reading it imports
    family modules and entry points, which must not pass through that finder."""
    if not _WATCHED:
        from ...families import all_families

        # a family registered without these (before the recorder read them) is not watched
        _WATCHED.append({module: Watched(class_name, family.call_reader)
                         for family in all_families() if hasattr(family, "call_reader")
                         for module, class_name in
                         getattr(family, "processor_modules", {}).items()})
    return _WATCHED[0]


def _known() -> dict[str, Watched]:
    """:func:`watched` once read, else nothing (an import while it is being read)."""
    return _WATCHED[0] if _WATCHED else {}


def patch_class(recorder: Recorder, cls: type, reader_name: str) -> Callable[[], None]:
    """Wrap ``cls.__call__`` (and the inner steps it reads) so that each call is read, by
    the family module ``reader_name``, and delivered to ``recorder``; return what undoes
    it."""
    readers: list[ModuleType] = []

    def reader() -> ModuleType:
        if not readers:  # imported on the first call, not when the class loads
            readers.append(importlib.import_module(reader_name))
        return readers[0]
    inherited_call = cls.__call__

    def observed(name: str, note: Callable[..., None]) -> Any:
        """``cls.name`` wrapped so that, inside a recorded call, ``note(frame, self,
        args, kwargs, result)`` reads what it produced (None: ``cls`` has no ``name``).
        A note that fails marks the call unrecorded; the user's call goes on."""
        inherited = getattr(cls, name, None)
        if inherited is None:
            return None

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = inherited(self, *args, **kwargs)
            frame = getattr(recorder._local, "frame", None)
            if frame is not None:
                try:
                    note(frame, self, args, kwargs, result)
                except Exception as exc:
                    frame.error = exc
            return result

        wrapper.__name__ = wrapper.__qualname__ = name
        return wrapper

    def images(frame: Frame, self: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
               result: Any) -> None:
        frame.edge, frame.images = reader().read_images(self, args[0], kwargs, *result)

    def videos(frame: Frame, self: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
               result: Any) -> None:
        frame.videos = reader().read_videos(self, args[0], kwargs, *result)

    def expanded(frame: Frame, self: Any, args: Any, kwargs: Any, result: Any) -> None:
        if isinstance(result, tuple) and result:
            frame.expanded = list(result[0])

    def merged(frame: Frame, self: Any, args: Any, kwargs: Any, result: Any) -> None:
        if isinstance(result, dict):
            text_kwargs = result.get("text_kwargs")
            frame.text_kwargs = dict(text_kwargs) if isinstance(text_kwargs, dict) else None

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        sink = recorder._sink()
        if sink is None:
            return inherited_call(self, *args, **kwargs)
        if sink is STRAY:
            output = inherited_call(self, *args, **kwargs)
            recorder._stray()
            return output
        frame = Frame()
        frame.reader = reader()
        local = recorder._local
        outer = getattr(local, "frame", None)
        local.frame = frame
        try:
            output = inherited_call(self, *args, **kwargs)
        finally:
            local.frame = outer
        try:
            if frame.error is not None:
                raise frame.error
            recorder._deliver(sink, self, args, kwargs, output, frame)
        except Exception as exc:  # the user's call succeeded: never fail it, say so
            recorder._unrecorded(sink, exc)
        return output

    patched: dict[str, Any] = {"__call__": __call__}
    for name, note in (("_process_images", images), ("_process_videos", videos),
                       ("get_text_with_replacements", expanded),
                       ("_merge_kwargs", merged)):
        wrapper = observed(name, note)
        if wrapper is not None:
            patched[name] = wrapper
    originals = {name: cls.__dict__.get(name) for name in patched}
    for name, replacement in patched.items():
        setattr(cls, name, replacement)

    def undo() -> None:
        for name, original in originals.items():
            if original is None:
                delattr(cls, name)  # the inherited method shows through again
            else:
                setattr(cls, name, original)

    return undo


class PatchOnImport:
    """A ``sys.meta_path`` finder that patches a processor class when its module loads,
    so installing a recorder imports nothing."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = weakref.ref(recorder)
        self._searching = threading.local()  # another recorder's finder may ask this one

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        searching = self._searching.__dict__.setdefault("names", set())
        if fullname not in _known() or fullname in searching:
            return None  # re-entered by another recorder's finder: let it go on
        searching.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or type(finder).__name__ == "_TokenguardSiteFinder":
                    continue
                find = getattr(finder, "find_spec", None)
                spec = find(fullname, path, target) if find is not None else None
                if spec is not None:
                    break
            else:
                return None
        finally:
            searching.discard(fullname)
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        spec.loader = PatchingLoader(loader, self._recorder, _known()[fullname])
        return spec


class PatchingLoader:
    """Runs the real loader, then patches the class the module defines."""

    def __init__(self, loader: Any, recorder: weakref.ref[Recorder], target: Watched) -> None:
        self._loader = loader
        self._recorder = recorder
        self._target = target

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        recorder = self._recorder()
        name = self._target.class_name
        if recorder is not None and recorder._installed and hasattr(module, name):
            recorder._patch(getattr(module, name), self._target.reader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)
