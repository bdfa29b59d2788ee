"""Record what real SmolVLM processor calls produce, and charge each call to its test.

The code under test builds its own processor, often with settings the test author
never sees (the default ``longest_edge`` of 1536, say). So recording happens at the
class level: while a :class:`Recorder` is installed, every ``SmolVLMProcessor`` (and
``Idefics3Processor``) call reports each image it expanded, with the rows×cols grid,
the ``<image>`` tokens and the size of the text block it wrote, and every sequence it
returned. The figures are read off the processor's own output, at the settings the
call actually used (per-call ``size``, ``max_image_size``, ``do_image_splitting``, in
any form transformers' kwargs merging accepts).

Videos (``processor(videos=...)``, and chat templates with video items, which call it)
are recorded apart from images (:class:`VideoRecord`): the frames the call sampled,
their ``<image>`` and block tokens, everything written in place of the ``<video>``, the
video's metadata and source name when it was given by path, and the exact cost at
every ``num_frames``, so a marker can name the setting that would fit.

**Whose call is it.** A :class:`Recording` is opened for a test (:meth:`Recorder.open`,
closed by :meth:`Recorder.close`; the plugin keeps one open from the test's setup to
its teardown) and each call is charged to its *owner*:

- a call made by the code that opened the recording (the test, its fixtures, asyncio
  tasks it creates) belongs to it: the owner is a context variable;
- a thread belongs to the test that started it (``threading.Thread.start`` records
  the owner), and work handed to a ``ThreadPoolExecutor`` belongs to the test that
  submitted it. A thread that outlives its test never charges its calls to a later
  test: they are dropped and listed by :meth:`Recorder.strays`;
- a process started by the test records its calls into a folder named by the
  environment variable :data:`ENV_RECORD_TO`, and :meth:`Recorder.collect` reads them
  back into the test's recording. A forked process (``DataLoader(num_workers=...)``
  under the default ``fork``) inherits the patched classes; a fresh interpreter
  (``spawn``, ``forkserver``, ``subprocess``) is patched by a ``sitecustomize``
  the recorder puts first on ``PYTHONPATH``, which loads nothing until the process
  imports a SmolVLM processor module. What cannot be followed is named in
  :attr:`Recording.unseen`, never passed in silence.

transformers is imported only when the code under test imports it.
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
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from ..counting import block_tokens as _block_tokens
from ..specs import GLOBAL_TOKEN, IMAGE_TOKEN, ModelSpec, with_tokenizer_facts

__all__ = [
    "ENV_RECORD_TO",
    "ImageRecord",
    "Recorder",
    "Recording",
    "SequenceRecord",
    "Stray",
    "VideoRecord",
    "install_in_child",
    "unchecked_reason",
]

#: Set while a recording is open: the folder where a process started by the test
#: records its processor calls (one JSON file per call). A child process reads it once.
ENV_RECORD_TO = "TOKENGUARD_RECORD_TO"

#: the processor modules whose classes are patched, and the class each defines
_TARGETS = {
    "transformers.models.smolvlm.processing_smolvlm": "SmolVLMProcessor",
    "transformers.models.idefics3.processing_idefics3": "Idefics3Processor",
}

#: why a sequence's length is an upper bound rather than exact
PADDING_UNKNOWN = (
    "padded without an attention mask, and the padding could not be told apart from the "
    "text: the length includes it (pass return_attention_mask=True for the exact length)"
)


@dataclass(frozen=True)
class ImageRecord:
    """One image as a real processor call expanded it, at the settings that call used."""

    width: int
    height: int
    """The size the processor was given (a decoded path: upright, as it decoded it)."""
    longest_edge: int
    tile_size: int
    """``size["longest_edge"]`` and ``max_image_size["longest_edge"]`` of that call."""
    rows: int
    cols: int
    """The processor's own grid (0 and 0 for an image that is not split)."""
    image_tokens: int
    block_tokens: int
    """``<image>`` tokens, and everything written for the image (wrappers, markers)."""
    processor: str
    """The processor's class name."""
    do_image_splitting: bool = True

    @property
    def patches(self) -> int:
        return self.rows * self.cols + 1 if self.rows or self.cols else 1

    @property
    def grid(self) -> str:
        return f"{max(self.rows, 1)}×{max(self.cols, 1)}"


@dataclass(frozen=True)
class VideoRecord:
    """One video as a real processor call expanded it (``videos=``).

    ``name`` is the path or URL the call was given ("" for decoded frames). ``frames``
    is what the call sampled (``sampled``: ``do_sample_frames`` was on), ``tokens``
    everything written in place of the ``<video>``, tokenized alone. ``total_frames``,
    ``fps`` and ``duration`` are the metadata the processor had (None when unknown).
    ``num_frames``/``sample_fps`` are the call's sampling (None: the processor's
    ``video_sampling``, whose cap is ``max_frames``). ``by_num_frames[n - 1]`` is the
    exact cost at ``num_frames=n`` and ``by_fps`` lists ``(fps, tokens)`` pairs, both
    computed when the call was recorded (empty when the metadata lacks a rate or a
    duration): what a failing marker reads its fix from.
    """

    name: str
    frames: int
    image_tokens: int
    block_tokens: int
    tokens: int
    total_frames: int | None
    fps: float | None
    duration: float | None
    sampled: bool
    num_frames: int | None
    sample_fps: float | None
    max_frames: int
    processor: str
    longest_edge: int | None = None
    by_num_frames: tuple[int, ...] = ()
    by_fps: tuple[tuple[float, int], ...] = ()

    @property
    def label(self) -> str:
        """How messages name the video: its file name, else the call's position."""
        return os.path.basename(self.name) if self.name else "(decoded frames)"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["by_num_frames"] = list(self.by_num_frames)
        data["by_fps"] = [list(pair) for pair in self.by_fps]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VideoRecord:
        values = dict(data)
        values["by_num_frames"] = tuple(int(t) for t in data.get("by_num_frames", ()))
        values["by_fps"] = tuple((float(f), int(t)) for f, t in data.get("by_fps", ()))
        return cls(**values)


@dataclass(frozen=True)
class SequenceRecord:
    """One sequence (one sample of one processor call) and its length in tokens.

    ``note`` is empty when ``length`` is exact; otherwise it says why ``length`` is an
    upper bound (it is never lower than the real length).
    """

    name: str
    length: int
    preview: str
    longest_edge: int | None = None
    note: str = ""


@dataclass
class Recording:
    """Everything charged to one test.

    ``unseen`` names calls the test made that could not be recorded (a child process
    that could not load the recorder, a call cut short): a marker cannot pass over them.
    ``phase`` is set by the caller (``"setup"``, ``"call"``, ``"teardown"``) and shows in
    the names of the sequences recorded while it holds.
    """

    images: list[ImageRecord] = field(default_factory=list)
    sequences: list[SequenceRecord] = field(default_factory=list)
    videos: list[VideoRecord] = field(default_factory=list)
    calls: int = 0
    name: str = ""
    unseen: list[str] = field(default_factory=list)
    phase: str = ""
    closed: bool = False
    #: the folder this recording's child processes write to (its owner token)
    token: str = field(default="", repr=False)


@dataclass(frozen=True)
class Stray:
    """Processor calls not charged to any test: ``owner`` is the test that started the
    thread or process (``None``: started outside any test) and had ended."""

    owner: str | None
    where: str
    calls: int

    def describe(self) -> str:
        plural, were = ("s", "were") if self.calls != 1 else ("", "was")
        if self.owner is None:
            return (f"{self.calls} processor call{plural} from {self.where}, started outside "
                    f"any test, {were} charged to no test")
        return (f"{self.calls} processor call{plural} from {self.where}, started by "
                f"{self.owner}, came after that test ended and {were} charged to no test")


def unchecked_reason(recording: Recording,
                     kind: Literal["image", "sequence", "video"]) -> str | None:
    """Why a token marker on this recording would check nothing, or ``None``.

    The rule the token markers share (``image_tokens`` with ``kind="image"``,
    ``max_sequence_tokens`` with ``kind="sequence"``, ``video_tokens`` with
    ``kind="video"``): a marker fails, with this reason as its message, when the test
    made calls that could not be recorded, or when no call produced what it checks. A
    marker that checks nothing is a bug.
    """
    if recording.unseen:
        count = len(recording.unseen)
        return (f"{count} processor call{'s' if count > 1 else ''} of this test could not be "
                f"recorded: {'; '.join(recording.unseen[:3])}")
    if kind == "image" and not recording.images:
        return "no SmolVLM processor call processed an image while the test ran"
    if kind == "video" and not recording.videos:
        return "no SmolVLM processor call processed a video while the test ran"
    if kind == "sequence" and not recording.sequences:
        return "no SmolVLM processor call returned a sequence while the test ran"
    return None


# --- owners ------------------------------------------------------------------------
# An owner is a token: the path of the folder where the recording's child processes
# write. In the process that opened it, tokens map to Recording objects.

_OWNER: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tokenguard_owner", default=None
)
_ATTR = "_tokenguard_owner"
#: tokens opened by a recorder in this process image (inherited by a fork), so a
#: child-mode recorder leaves them to the recorder that knows them
_LOCAL_TOKENS: set[str] = set()


def _current_owner() -> str | None:
    """The owner of the running code: its context, else the thread's starter."""
    token = _OWNER.get()
    if token is None:
        token = getattr(threading.current_thread(), _ATTR, None)
    return token


def _process_owner() -> str | None:
    """The owner a ``multiprocessing`` parent gave this process when it started it."""
    process = sys.modules.get("multiprocessing.process")
    if process is None:
        return None
    return getattr(process.current_process(), _ATTR, None)


def _run_as(token: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    reset = _OWNER.set(token)
    try:
        return fn(*args, **kwargs)
    finally:
        _OWNER.reset(reset)


class _Propagation:
    """Hands the owner on to threads, thread pools and processes (reference-counted
    patches of the standard library, shared by every recorder of the process)."""

    def __init__(self) -> None:
        self._users = 0
        self._undo: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            self._users += 1
            if self._users == 1:
                self._patch()

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                while self._undo:
                    self._undo.pop()()

    def _replace(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = owner.__dict__[name]
        setattr(owner, name, make(original))
        self._undo.append(lambda: setattr(owner, name, original))

    def _patch(self) -> None:
        import concurrent.futures
        import multiprocessing.process
        import subprocess

        def thread_start(original: Any) -> Any:
            def start(self: threading.Thread) -> None:
                token = _current_owner()
                if token is not None:
                    setattr(self, _ATTR, token)
                original(self)
            return start

        def submit(original: Any) -> Any:
            def submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
                token = _current_owner()
                if token is None:
                    return original(self, fn, *args, **kwargs)
                return original(self, _run_as, token, fn, *args, **kwargs)
            return submit

        def process_start(original: Any) -> Any:
            def start(self: Any) -> None:
                token = _current_owner()
                if token is not None:
                    setattr(self, _ATTR, token)  # pickled with the process object (spawn)
                original(self)
            return start

        def popen_init(original: Any) -> Any:
            def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
                # os.environ names the test running now; a thread of an earlier test
                # that starts a process must not hand it to the current one
                token = _current_owner()
                if len(args) <= 10 and kwargs.get("env") is None and \
                        token != os.environ.get(ENV_RECORD_TO):
                    env = dict(os.environ)
                    env.pop(ENV_RECORD_TO, None)
                    if token is not None:
                        env[ENV_RECORD_TO] = token
                    kwargs["env"] = env
                original(self, *args, **kwargs)
            return __init__

        self._replace(threading.Thread, "start", thread_start)
        self._replace(concurrent.futures.ThreadPoolExecutor, "submit", submit)
        self._replace(multiprocessing.process.BaseProcess, "start", process_start)
        self._replace(subprocess.Popen, "__init__", popen_init)


_PROPAGATION = _Propagation()


# --- child processes ----------------------------------------------------------------

_SITE_DIR = "tokenguard-site"

#: the sitecustomize a recorder puts first on PYTHONPATH for the processes tests start
SITECUSTOMIZE = f'''\
"""Written by pytest-tokenguard (pytest_tokenguard/processor/recording.py) while a
--tokenguard session runs: a Python process that a test starts records its SmolVLM
processor calls for that test. Nothing is loaded until the process imports a SmolVLM
or Idefics3 processor module. Then the sitecustomize this one shadows runs."""
import os as _os
import sys as _sys

_TARGETS = {tuple(_TARGETS)!r}
_RECORD_TO = _os.environ.get({ENV_RECORD_TO!r})


class _TokenguardSiteFinder:
    done = False

    def find_spec(self, fullname, path=None, target=None):
        if self.done or fullname not in _TARGETS:
            return None
        self.done = True
        try:
            from pytest_tokenguard.processor.recording import install_in_child
        except Exception as exc:
            _note("process %d imported %s but could not load the pytest-tokenguard "
                  "recorder (%s: %s)" % (_os.getpid(), fullname, type(exc).__name__, exc))
            return None
        return install_in_child(_RECORD_TO).find_spec(fullname, path, target)


def _note(text):
    try:
        import json
        _os.makedirs(_RECORD_TO, exist_ok=True)
        name = "%d-unseen" % _os.getpid()
        tmp = _os.path.join(_RECORD_TO, "." + name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({{"unseen": text}}, handle)
        _os.replace(tmp, _os.path.join(_RECORD_TO, name + ".json"))
    except Exception:
        pass


def _chain():
    import importlib.machinery
    import importlib.util
    path = [p for p in _sys.path if _os.path.basename(_os.path.normpath(p or ".")) != {_SITE_DIR!r}]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


if _RECORD_TO and not any(type(f).__name__ == "_TokenguardSiteFinder" for f in _sys.meta_path):
    _sys.meta_path.insert(0, _TokenguardSiteFinder())
_chain()
'''

_CHILD: Recorder | None = None
_CHILD_LOCK = threading.Lock()


def install_in_child(record_to: str | None) -> Any:
    """Install the recorder of a process started by a test (once per process); return
    its import finder. Called by the generated ``sitecustomize``."""
    global _CHILD
    with _CHILD_LOCK:
        if _CHILD is None:
            _CHILD = Recorder(_child_of=record_to or "")
            _CHILD.install()
        return _CHILD._finder


def _write_call(folder: str, payload: dict[str, Any]) -> None:
    """One file per call, written aside and renamed: the parent never reads half a call."""
    name = f"{os.getpid()}-{threading.get_ident()}-{_next_serial()}"
    try:
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{name}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, separators=(",", ":"))
        os.replace(tmp, os.path.join(folder, f"{name}.json"))
    except OSError as exc:  # the test's folder is gone: say so where someone looks
        print(f"tokenguard: process {os.getpid()} could not record a processor call into "
              f"{folder}: {exc}", file=sys.stderr)


_SERIAL = [0]
_SERIAL_LOCK = threading.Lock()


def _next_serial() -> int:
    with _SERIAL_LOCK:
        _SERIAL[0] += 1
        return _SERIAL[0]


# --- reading the processor's output ------------------------------------------------


def _longest_edge_of(size: Any) -> int | None:
    """The longest edge a ``size`` setting resizes to (a dict, a SizeDict or an int)."""
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    def get(key: str) -> Any:
        return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

    edge = get("longest_edge")
    if edge:
        return int(edge)
    height, width = get("height"), get("width")
    if height and width:
        return max(int(height), int(width))
    return None


def _image_size(image: Any) -> tuple[int, int]:
    """(width, height) of a PIL image, array or tensor as the processor reads it."""
    if hasattr(image, "size") and isinstance(image.size, tuple) and len(image.size) == 2:
        return int(image.size[0]), int(image.size[1])
    from transformers.image_utils import get_image_size, infer_channel_dimension_format

    height, width = get_image_size(image, channel_dim=infer_channel_dimension_format(image))
    return int(width), int(height)


def _setting(kwargs: dict[str, Any], name: str, default: Any) -> Any:
    value = kwargs.get(name)
    return default if value is None else value


class _TokenizerFacts:
    """What the recorder needs to know of a tokenizer, probed once per tokenizer."""

    __slots__ = ("added_pads", "pad_is_added", "specs", "tokenizer")

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.specs: dict[int, ModelSpec] = {}
        pad_id = getattr(tokenizer, "pad_token_id", None)
        pad = getattr(tokenizer, "pad_token", None)
        self.added_pads = 0
        self.pad_is_added = False
        if pad_id is not None and pad:
            with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
            plain = tokenizer("a", add_special_tokens=False)["input_ids"]
            self.added_pads = list(with_special).count(pad_id) - list(plain).count(pad_id)
            try:
                self.pad_is_added = pad in tokenizer.get_added_vocab()
            except Exception:  # pragma: no cover - a tokenizer without added tokens
                self.pad_is_added = False

    def spec(self, image_seq_len: int) -> ModelSpec:
        """The tokenizer facts :func:`counting.block_tokens` needs, at one ``image_seq_len``."""
        spec = self.specs.get(image_seq_len)
        if spec is None:
            tokenizer = self.tokenizer

            def encode(text: str) -> int:
                return len(tokenizer(text, add_special_tokens=False)["input_ids"])

            base = ModelSpec(name="recorded", tile_size=1, image_seq_len=image_seq_len,
                             default_longest_edge=1)
            spec = self.specs[image_seq_len] = with_tokenizer_facts(base, encode)
        return spec


_FACTS: weakref.WeakKeyDictionary[Any, _TokenizerFacts] = weakref.WeakKeyDictionary()
_FACTS_LOCK = threading.Lock()


def _facts(tokenizer: Any) -> _TokenizerFacts:
    try:
        facts = _FACTS.get(tokenizer)
    except TypeError:  # not weakly referenceable: probe each time (slow, still exact)
        return _TokenizerFacts(tokenizer)
    if facts is None:
        with _FACTS_LOCK:
            facts = _FACTS.get(tokenizer)
            if facts is None:
                facts = _FACTS[tokenizer] = _TokenizerFacts(tokenizer)
    return facts


_MARKER_CHARS: dict[tuple[int, int], int] = {}


def _expected_block_chars(rows: int, cols: int, seq: int, fake: str, image: str,
                          global_token: str) -> int:
    """Characters of the block ``replace_image_token`` writes for a rows×cols image."""
    single = 2 * len(fake) + len(global_token) + seq * len(image)
    if rows == 0 and cols == 0:
        return single
    markers = _MARKER_CHARS.get((rows, cols))
    if markers is None:
        markers = _MARKER_CHARS[rows, cols] = sum(
            len(f"<row_{r}_col_{c}>") for r in range(1, rows + 1) for c in range(1, cols + 1))
    tiles = rows * cols * (len(fake) + seq * len(image)) + markers
    return tiles + rows + 1 + single  # a newline per row, one before the global image


def block_of(processor: Any, text: str, rows: int, cols: int) -> tuple[int, int]:
    """(``<image>`` tokens, block tokens) of one image's replacement ``text``.

    The block is computed from rows, cols and the tokenizer's facts
    (:func:`counting.block_tokens`) once the text is checked to be exactly the block the
    SmolVLM processors write; any other text (a customised processor) is tokenized.
    """
    image = getattr(processor, "image_token", IMAGE_TOKEN)
    image_tokens = text.count(image)
    patches = rows * cols + 1 if rows or cols else 1
    seq, rest = divmod(image_tokens, patches)
    fake = getattr(processor, "fake_image_token", "<fake_token_around_image>")
    global_token = getattr(processor, "global_image_token",
                           getattr(processor, "global_image_tag", GLOBAL_TOKEN))
    tokenizer = processor.tokenizer
    if seq > 0 and not rest and text.startswith(fake) and \
            len(text) == _expected_block_chars(rows, cols, seq, fake, image, global_token):
        return image_tokens, _block_tokens(rows, cols, _facts(tokenizer).spec(seq))
    return image_tokens, len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _rows(values: Any) -> list[list[int]]:
    if hasattr(values, "tolist"):
        values = values.tolist()
    if values and isinstance(values[0], int):
        return [list(values)]
    return [list(row) for row in values]


def unpadded_lengths(
    input_ids: Any, texts: Sequence[str] | None, tokenizer: Any,
    text_kwargs: dict[str, Any] | None,
) -> list[tuple[int, str]]:
    """(length, note) of each sample returned without an attention mask.

    A pad id is padding unless the text put it there: each sample holds as many real pad
    ids as its expanded ``texts`` entry holds the pad token (plus any the tokenizer's
    special tokens add), so the padding is the rest, and it must sit at one end (left or
    right). ``text_kwargs`` are the settings the tokenizer received (the processor's
    merged ``text_kwargs``; ``None`` when unknown). Where the padding cannot be told
    exactly the padded length is kept (never lower than the truth) and the note says why.
    """
    rows = _rows(input_ids)
    pad_id = getattr(tokenizer, "pad_token_id", None)
    if pad_id is None:
        return [(len(row), "") for row in rows]
    facts: _TokenizerFacts | None = None
    out: list[tuple[int, str]] = []
    for index, row in enumerate(rows):
        pads = row.count(pad_id)
        if not pads:
            out.append((len(row), ""))
            continue
        facts = facts or _facts(tokenizer)
        text = texts[index] if texts is not None and index < len(texts) else None
        real = _real_pads(text, tokenizer, facts, text_kwargs)
        if real is None:
            out.append((len(row), PADDING_UNKNOWN))
            continue
        padding = pads - real
        if padding <= 0:  # no padding (a truncated row is never padded)
            out.append((len(row), ""))
        elif all(t == pad_id for t in row[len(row) - padding:]) or \
                all(t == pad_id for t in row[:padding]):
            out.append((len(row) - padding, ""))
        else:
            out.append((len(row), PADDING_UNKNOWN))
    return out


def _real_pads(text: str | None, tokenizer: Any, facts: _TokenizerFacts,
               text_kwargs: dict[str, Any] | None) -> int | None:
    """Pad ids the text itself holds, or ``None`` when that cannot be told exactly."""
    if not isinstance(text, str) or not facts.pad_is_added:
        return None  # unknown text, or a pad token ordinary text could produce
    options = text_kwargs or {}
    if any(options.get(name) for name in ("text_pair", "text_target", "text_pair_target",
                                          "is_split_into_words")):
        return None
    literal = text.count(tokenizer.pad_token)
    if literal:
        if text_kwargs is None:
            return None
        if options.get("split_special_tokens", getattr(tokenizer, "split_special_tokens",
                                                        False)):
            literal = 0  # the pad token in the text is tokenized as text
        elif options.get("sanitize_control_tokens"):
            try:
                from transformers.processing_utils import _MARKED_RE
            except ImportError:  # pragma: no cover - another transformers
                return None
            literal = _MARKED_RE.sub("", text).count(tokenizer.pad_token)
    added = facts.added_pads
    if added:
        if text_kwargs is None:
            return None
        if options.get("add_special_tokens", True) is False:
            added = 0
    return literal + added


def _text_argument(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    text = kwargs.get("text", args[1] if len(args) > 1 else None)
    return [text] if isinstance(text, str) else list(text or [])


def _preview(text: Any) -> str:
    return " ".join(text[:200].split())[:60] if isinstance(text, str) else ""


class _Frame:
    """What one processor call's inner steps report to its ``__call__`` wrapper."""

    __slots__ = ("edge", "error", "expanded", "images", "text_kwargs", "videos")

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.images: list[ImageRecord] = []
        self.videos: list[VideoRecord] = []
        self.edge: int | None = None
        self.expanded: list[str] | None = None
        self.text_kwargs: dict[str, Any] | None = None


_STRAY = object()


# --- the recorder ---------------------------------------------------------------------


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
        self._finder = _PatchOnImport(self)
        self._installed = False

    # lifecycle ----------------------------------------------------------------------

    def install(self) -> None:
        """Patch the processor classes now, or when transformers loads them (idempotent).

        In the test process this also hands owners on to threads and processes, and
        points child processes at the results folder.
        """
        if self._installed:
            return
        self._installed = True
        sys.meta_path.insert(0, self._finder)
        self._undo.append(lambda: sys.meta_path.remove(self._finder))
        for module_name, class_name in _TARGETS.items():
            module = sys.modules.get(module_name)
            if module is not None and hasattr(module, class_name):
                self._patch(getattr(module, class_name))
        if self._child_of is not None:
            return
        _PROPAGATION.acquire()
        self._undo.append(_PROPAGATION.release)
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
        site = os.path.join(self._dir, _SITE_DIR)
        os.makedirs(site, exist_ok=True)
        with open(os.path.join(site, "sitecustomize.py"), "w", encoding="utf-8") as handle:
            handle.write(SITECUSTOMIZE)
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
        _LOCAL_TOKENS.add(token)
        self._open[token] = recording
        self._states[token] = (_OWNER.set(token), os.environ.get(ENV_RECORD_TO))
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
                _OWNER.reset(reset)
            except (ValueError, RuntimeError):  # closed from another context
                _OWNER.set(None)
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
            child_token = _process_owner() or self._child_of
            return child_token if child_token and child_token not in _LOCAL_TOKENS else None
        token = _current_owner()
        if token is None:
            return _STRAY if self._open else None
        recording = self._open.get(token)
        if recording is None and token not in self._closed:
            return None  # another recorder's
        if os.getpid() != self._pid:
            return token  # a forked child: the parent reads the file (a stray if closed)
        return _STRAY if recording is None else recording

    def _stray(self) -> None:
        token = _current_owner()
        owner = self._closed.get(token) if token is not None else None
        where = f"thread {threading.current_thread().name!r}"
        if os.getpid() != self._pid:
            where = f"process {os.getpid()}"
        with self._lock:
            key = (owner, where)
            self._strays[key] = self._strays.get(key, 0) + 1

    # patching -----------------------------------------------------------------------

    def _patch(self, cls: type) -> None:
        recorder = self
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

        def images(frame: _Frame, self: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                   result: Any) -> None:
            frame.edge, frame.images = recorder._images(self, args[0], kwargs, *result)

        def videos(frame: _Frame, self: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                   result: Any) -> None:
            frame.videos = recorder._videos(self, args[0], kwargs, *result)

        def expanded(frame: _Frame, self: Any, args: Any, kwargs: Any, result: Any) -> None:
            if isinstance(result, tuple) and result:
                frame.expanded = list(result[0])

        def merged(frame: _Frame, self: Any, args: Any, kwargs: Any, result: Any) -> None:
            if isinstance(result, dict):
                text_kwargs = result.get("text_kwargs")
                frame.text_kwargs = dict(text_kwargs) if isinstance(text_kwargs, dict) else None

        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            sink = recorder._sink()
            if sink is None:
                return inherited_call(self, *args, **kwargs)
            if sink is _STRAY:
                output = inherited_call(self, *args, **kwargs)
                recorder._stray()
                return output
            frame = _Frame()
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

        self._undo.append(undo)

    # recording ----------------------------------------------------------------------

    def _images(self, processor: Any, images: Any, kwargs: dict[str, Any], processed: Any,
                replacements: list[str]) -> tuple[int | None, list[ImageRecord]]:
        """The images of one call, at the settings the image processor received."""
        from transformers.image_utils import make_flat_list_of_images

        image_processor = processor.image_processor
        resize = _setting(kwargs, "do_resize", getattr(image_processor, "do_resize", True))
        edge = _longest_edge_of(_setting(kwargs, "size", image_processor.size))
        tile = _longest_edge_of(_setting(kwargs, "max_image_size",
                                         image_processor.max_image_size)) or 0
        splitting = bool(_setting(kwargs, "do_image_splitting",
                                  getattr(image_processor, "do_image_splitting", True)))
        rows_of = _flat(processed.get("rows")) if hasattr(processed, "get") else []
        cols_of = _flat(processed.get("cols")) if hasattr(processed, "get") else []
        name = type(processor).__name__
        records = []
        for index, (image, text) in enumerate(
                zip(make_flat_list_of_images(images), replacements, strict=False)):
            width, height = _image_size(image)
            rows = rows_of[index] if index < len(rows_of) else 0
            cols = cols_of[index] if index < len(cols_of) else 0
            image_tokens, block = block_of(processor, text, rows, cols)
            records.append(ImageRecord(
                width=width, height=height,
                longest_edge=(edge or 0) if resize else max(width, height),
                tile_size=tile, rows=rows, cols=cols, image_tokens=image_tokens,
                block_tokens=block, processor=name, do_image_splitting=splitting,
            ))
        if not resize:  # each image kept its own size
            edge = max((record.longest_edge for record in records), default=None)
        return edge, records

    def _videos(self, processor: Any, videos: Any, kwargs: dict[str, Any], processed: Any,
                replacements: list[str]) -> list[VideoRecord]:
        """The videos of one call, read off the processor's own replacement text."""
        from transformers.video_utils import make_batched_videos

        from ..video import VideoCounter, video_info, video_sampling_from_processor

        video_processor = processor.video_processor
        sampled = bool(_setting(kwargs, "do_sample_frames",
                                getattr(video_processor, "do_sample_frames", False)))
        num_frames = kwargs.get("num_frames")
        sample_fps = kwargs.get("fps")
        sampling = video_sampling_from_processor(processor)
        inputs = make_batched_videos(videos)
        metadata = list(processed.get("video_metadata") or []) if hasattr(processed, "get") \
            else []
        fake = getattr(processor, "fake_image_token", "<fake_token_around_image>")
        image = getattr(processor, "image_token", IMAGE_TOKEN)
        global_token = getattr(processor, "global_image_token", GLOBAL_TOKEN)
        tokenizer = processor.tokenizer
        counter: VideoCounter | None = None
        records = []
        for index, text in enumerate(replacements):
            frames = text.count(global_token)
            image_tokens = text.count(image)
            seq = image_tokens // frames if frames else 0
            block = (block_of(processor, f"{fake}{global_token}{image * seq}{fake}", 0, 0)[1]
                     * frames) if seq else 0
            tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            meta = metadata[index] if index < len(metadata) else None
            total = _int_or_none(getattr(meta, "total_num_frames", None))
            fps = _float_or_none(getattr(meta, "fps", None))
            duration = _float_or_none(getattr(meta, "duration", None))
            by_num: tuple[int, ...] = ()
            by_fps: tuple[tuple[float, int], ...] = ()
            if total and fps and duration is not None and seq:
                if counter is None:
                    spec = ModelSpec(name=type(processor).__name__, tile_size=1,
                                     image_seq_len=seq, default_longest_edge=1)
                    counter = VideoCounter(spec, _text_counter(tokenizer), sampling)
                info = video_info(total, fps, duration)
                by_num = counter.tokens_by_num_frames(info, fps=sample_fps)
                by_fps = counter.tokens_by_fps(info, num_frames=num_frames)
            source = inputs[index] if index < len(inputs) else None
            records.append(VideoRecord(
                name=os.fspath(source) if isinstance(source, str | os.PathLike) else "",
                frames=frames, image_tokens=image_tokens, block_tokens=block, tokens=tokens,
                total_frames=total, fps=fps, duration=duration, sampled=sampled,
                num_frames=_int_or_none(num_frames), sample_fps=_float_or_none(sample_fps),
                max_frames=sampling.max_frames, processor=type(processor).__name__,
                by_num_frames=by_num, by_fps=by_fps,
            ))
        return records

    def _deliver(self, sink: Recording | str | object, processor: Any, args: tuple[Any, ...],
                 kwargs: dict[str, Any], output: Any, frame: _Frame) -> None:
        samples = self._samples(processor, args, kwargs, output, frame)
        if frame.videos:  # grouped with the call's sequences: the call's size setting
            edge = samples[0][2] if samples else frame.edge
            frame.videos = [replace(video, longest_edge=edge) for video in frame.videos]
        if isinstance(sink, str):
            _write_call(sink, {
                "pid": os.getpid(),
                "images": [asdict(image) for image in frame.images],
                "sequences": [list(sample) for sample in samples],
                "videos": [video.to_json() for video in frame.videos],
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
                                   preview, edge, note)
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
            _write_call(sink, {"unseen": note})
        elif isinstance(sink, Recording):
            with self._lock:
                sink.unseen.append(note)

    def _samples(self, processor: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 output: Any, frame: _Frame) -> list[tuple[int, str, int | None, str]]:
        """(length, preview, longest_edge, note) of each sequence the call returned."""
        if not hasattr(output, "get"):
            return []
        input_ids = output.get("input_ids")
        if input_ids is None:
            return []
        mask = output.get("attention_mask")
        if mask is not None:
            if hasattr(mask, "sum") and hasattr(mask, "ndim"):
                sums = mask.sum(-1).tolist()
                lengths = [(int(v), "") for v in (sums if isinstance(sums, list) else [sums])]
            else:
                lengths = [(int(sum(row)), "") for row in _rows(mask)]
        else:
            expanded = frame.expanded
            if expanded is None and not frame.images:  # no image: the text went in as is
                expanded = [t for t in _text_argument(args, kwargs) if isinstance(t, str)]
            lengths = unpadded_lengths(input_ids, expanded, processor.tokenizer,
                                       frame.text_kwargs)
        edge = frame.edge
        if edge is None and not frame.images:  # text only: the call's size setting
            image_processor = processor.image_processor
            size = kwargs.get("size")
            for place in ("images_kwargs", "common_kwargs"):
                if size is None and isinstance(kwargs.get(place), dict):
                    size = kwargs[place].get("size")
            edge = _longest_edge_of(size if size is not None else
                                    getattr(image_processor, "size", None))
        texts = _text_argument(args, kwargs)
        return [(length, _preview(texts[index]) if index < len(texts) else "", edge, note)
                for index, (length, note) in enumerate(lengths)]

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
                    _remove(path)
                continue
            try:
                with open(path, encoding="utf-8") as handle:
                    payload = json.load(handle)
            except (OSError, ValueError) as exc:
                if recording is not None:
                    recording.unseen.append(f"a call record {name} could not be read ({exc})")
                _remove(path)
                continue
            _remove(path)
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
        pid = payload.get("pid", "?")
        with self._lock:
            recording.calls += 1
            call = recording.calls
            recording.images.extend(images)
            recording.videos.extend(videos)
            recording.sequences.extend(
                SequenceRecord(f"{recording.name} process {pid} call {call} sample {index}",
                               *sample)
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


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _text_counter(tokenizer: Any) -> Callable[[str], int]:
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


def _remove(path: str) -> None:
    with suppress(OSError):
        os.unlink(path)


def _flat(nested: Any) -> list[int]:
    if nested is None:
        return []
    if hasattr(nested, "tolist"):
        nested = nested.tolist()
    flat: list[int] = []
    for item in nested:
        if isinstance(item, (list, tuple)):
            flat.extend(int(v) for v in item)
        else:
            flat.append(int(item))
    return flat


class _PatchOnImport:
    """A ``sys.meta_path`` finder that patches a processor class when its module loads,
    so installing a recorder imports nothing."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = weakref.ref(recorder)
        self._searching = threading.local()  # another recorder's finder may ask this one

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        searching = self._searching.__dict__.setdefault("names", set())
        if fullname not in _TARGETS or fullname in searching:
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
        spec.loader = _PatchingLoader(loader, self._recorder, _TARGETS[fullname])
        return spec


class _PatchingLoader:
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
