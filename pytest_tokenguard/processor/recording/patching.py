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

import sys
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .reading import Frame
from .smolvlm import TARGETS, read_images, read_videos

if TYPE_CHECKING:
    from .recorder import Recorder

__all__ = ["STRAY", "TARGETS", "PatchOnImport", "patch_class"]

#: where a call goes that is charged to no test
STRAY = object()


def patch_class(recorder: Recorder, cls: type) -> Callable[[], None]:
    """Wrap ``cls.__call__`` (and the inner steps it reads) so that each call is read and
    delivered to ``recorder``; return what undoes it."""
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
        frame.edge, frame.images = read_images(self, args[0], kwargs, *result)

    def videos(frame: Frame, self: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
               result: Any) -> None:
        frame.videos = read_videos(self, args[0], kwargs, *result)

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
        if fullname not in TARGETS or fullname in searching:
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
        spec.loader = PatchingLoader(loader, self._recorder, TARGETS[fullname])
        return spec


class PatchingLoader:
    """Runs the real loader, then patches the class the module defines."""

    def __init__(self, loader: Any, recorder: weakref.ref[Recorder], class_name: str) -> None:
        self._loader = loader
        self._recorder = recorder
        self._class_name = class_name

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        recorder = self._recorder()
        if recorder is not None and recorder._installed and hasattr(module, self._class_name):
            recorder._patch(getattr(module, self._class_name))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)
