"""Conversations in the Hugging Face chat format, parsed once into small frozen values.

Splitting and counting need the size of every image up front and must never guess:
an image without a size, an unknown content type or a missing text is an error that
names the message and the fix, raised before any token is counted.

A message whose ``content`` is a plain string (``{"role": "user", "content": "Hi"}``)
is kept as such (:attr:`Message.string_content`): SmolVLM2's chat template renders
only list content, so it writes ``User: `` and drops the string, and the count follows
the template, not the intent. Write ``[{"type": "text", "text": "Hi"}]`` to train on it.

Text that the processor would refuse is refused here, naming the message: an
``<image>`` or ``<video>`` placeholder (the processor raises when their count does not
match the images or videos passed) and lone surrogates (not Unicode text; the
tokenizer raises). Other special tokens (``<fake_token_around_image>``,
``<row_1_col_1>``, ``<end_of_utterance>``...) are tokenized as the special tokens they
are, as the processor does, and counted exactly.

Frames of a video come two ways, priced as the processor processes them:

* ``{"type": "frames", ...}`` (:class:`FramesItem`): frames **sent as images**, one
  ``<image>`` each, priced as that many still images;
* ``{"type": "video", ...}`` (:class:`VideoItem`): a video sent **through the video
  path** (``videos=``), which the processor samples itself and writes with an intro,
  a timestamp line per frame and an outro (:mod:`pytest_tokenguard.video`).

Video frames are referenced by :class:`FrameRange`, a half-open ``[start, end)``
range. It is the only place in the package where a frame range is defined, so the
inclusive/exclusive off-by-one can only be (re)introduced here, where the tests pin
its edges. In JSON a frames item is ``{"type": "frames", "start": s, "end": e,
"width": W, "height": H}`` (``end`` exclusive, ``"video"`` optional); the chat
template sees it as ``end - start`` image items.

Only the standard library is imported at module level; PIL loads when a file is read.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from .errors import ConversationError as ConversationError
from .errors import FrameRangeError as FrameRangeError
from .errors import ImageItemError, ImageReadError, VideoItemError, VideoReadError
from .specs import IMAGE_TOKEN
from .video import VIDEO_TOKEN, VideoInfo, read_video_info

if TYPE_CHECKING:
    from .images import PathLoader

__all__ = [
    "CONTENT_TYPES",
    "MAX_FRAME",
    "MAX_SIDE",
    "PLACEHOLDERS",
    "ContentItem",
    "Conversation",
    "ConversationError",
    "FrameRange",
    "FrameRangeError",
    "FramesItem",
    "ImageItem",
    "Message",
    "MessageLike",
    "TextItem",
    "VideoItem",
    "atoms",
    "image_sizes",
    "item_to_dict",
    "parse_conversation",
    "parse_item",
    "parse_message",
    "to_chat_template",
    "to_dicts",
    "videos_of",
]

CONTENT_TYPES = ("text", "image", "frames", "video")
ROLE_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
#: Strings the processor expands (and raises on when their count does not match the
#: images or videos passed): never allowed inside text.
PLACEHOLDERS = (IMAGE_TOKEN, VIDEO_TOKEN)
#: Frame numbers are below 2**31 (more than a year of video at 60 frames a second): a
#: larger one is a mistake (a timestamp in ms, a stray exponent), and lengths of ranges
#: must stay index-sized.
MAX_FRAME = 2**31 - 1
#: the largest image side accepted (PNG's limit, 2**31 - 1): a declared size beyond it
#: is no image's, and its aspect ratio would not even fit a float
MAX_SIDE = 2**31 - 1


def _frame_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FrameRangeError(f"frame {name} must be an integer, got {_short(value)}")
    if value < 0:
        raise FrameRangeError(f"frame {name} must be >= 0, got {value}")
    if value > MAX_FRAME + (name in ("end", "last")):
        raise FrameRangeError(
            f"frame {name} {_short(value)} is out of range: frame numbers are below 2**31; "
            "give the frame's index in its video"
        )
    return value


def _short(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for one-line messages about any input."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unicode(text: str, what: str, where: str) -> str:
    """``text`` if it is valid Unicode (no lone surrogate, as a JSON ``\\ud800`` makes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConversationError(
            f"{where}: {what} holds a lone surrogate (U+{ord(text[exc.start]):04X}) at "
            f"character {exc.start}, which is not Unicode text and cannot be tokenized; "
            "fix the \\u escape (a surrogate pair, or the character itself)"
        ) from None
    return text


@dataclass(frozen=True, slots=True)
class FrameRange:
    """Frames ``start, start+1, ..., end-1`` of a video: half-open, like ``range``.

    Half-open so that adjacent pieces share a boundary (``[0, 40)`` + ``[40, 100)``),
    lengths are ``end - start`` and an empty range is representable. Use
    :meth:`from_inclusive` when the source numbers its last frame.
    """

    start: int
    end: int

    def __post_init__(self) -> None:
        _frame_int("start", self.start)
        _frame_int("end", self.end)
        if self.start > self.end:
            raise FrameRangeError(
                f"frame range [{self.start}, {self.end}) has start > end; end is exclusive, "
                f"so frames {self.end}..{self.start} are FrameRange({self.end}, {self.start + 1})"
            )

    @classmethod
    def from_inclusive(cls, first: int, last: int) -> FrameRange:
        """The range of frames ``first..last`` with both ends included."""
        return cls(first, _frame_int("last", last) + 1)

    def __len__(self) -> int:
        return self.end - self.start

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.end))

    def __contains__(self, frame: object) -> bool:
        return isinstance(frame, int) and self.start <= frame < self.end

    def split_at(self, frame: int) -> tuple[FrameRange, FrameRange]:
        """``[start, frame)`` and ``[frame, end)``; ``frame`` may be ``start`` or ``end``."""
        if isinstance(frame, bool) or not isinstance(frame, int):
            raise FrameRangeError(f"split frame must be an integer, got {frame!r}")
        if not self.start <= frame <= self.end:
            raise FrameRangeError(
                f"cannot split [{self.start}, {self.end}) at frame {frame}: "
                f"it must lie in {self.start}..{self.end} (both ends allowed)"
            )
        return FrameRange(self.start, frame), FrameRange(frame, self.end)

    def __str__(self) -> str:
        return f"[{self.start}, {self.end})"


@dataclass(frozen=True, slots=True)
class TextItem:
    text: str


@dataclass(frozen=True, slots=True)
class ImageItem:
    """An image whose size is known; ``path``/``image`` are kept only to write them back."""

    width: int
    height: int
    path: str | None = None
    image: Any = field(default=None, compare=False, repr=False)
    #: where ``path`` was found (relative paths resolve against a base folder)
    file: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class FramesItem:
    """Frames of one video, all of one size (a video has one frame size)."""

    frames: FrameRange
    width: int
    height: int
    video: str | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def split_at(self, frame: int) -> tuple[FramesItem, FramesItem]:
        head, tail = self.frames.split_at(frame)
        return (
            FramesItem(head, self.width, self.height, self.video),
            FramesItem(tail, self.width, self.height, self.video),
        )


@dataclass(frozen=True, slots=True)
class VideoItem:
    """A video sent through the processor's video path, which samples it itself.

    ``total_frames``, ``fps`` (the video's own frame rate) and ``duration`` (seconds)
    are what transformers' ``VideoMetadata`` holds: read from the file when a path is
    given (as the processor's loader reads it, no frame decoded), or given by the user.
    ``num_frames`` and ``sample_fps`` are the sampling of the processor call
    (``num_frames=``/``fps=``; ``None``: the checkpoint's ``video_sampling``).

    ``clip`` (``start``/``end`` in JSON, end exclusive) is a run of consecutive frames
    of the video sent **as its own video**: the processor gets frames ``start..end-1``
    with the metadata :meth:`processor_metadata` gives (``end - start`` frames at the
    video's frame rate, ``(end - start) / fps`` seconds) and samples, times and
    introduces them as a video of that length, timestamps starting at 00:00. This is
    how the splitter cuts a long video into clips.
    """

    total_frames: int
    fps: float
    duration: float
    num_frames: int | None = None
    sample_fps: float | None = None
    clip: FrameRange | None = None
    path: str | None = None
    #: where ``path`` was found (relative paths resolve against a base folder)
    file: str | None = field(default=None, compare=False, repr=False)
    #: the frame size as given (``width``/``height`` in JSON; checked against a file that
    #: exists): what a Qwen-VL video costs depends on it (without it the Qwen counter reads
    #: the file's); SmolVLM2 resizes every frame and does not ask
    width: int | None = None
    height: int | None = None

    @property
    def frame_range(self) -> FrameRange:
        """The frames of the video this item sends: its clip, or all of them."""
        return self.clip if self.clip is not None else FrameRange(0, self.total_frames)

    def info(self) -> VideoInfo:
        """The metadata the processor samples from: the video's, or the clip's as a video
        of its own."""
        name = self.file or self.path
        if self.clip is None:
            return VideoInfo(self.total_frames, self.fps, self.duration, self.width,
                             self.height, path=name)
        frames = len(self.clip)
        return VideoInfo(frames, self.fps, frames / self.fps, self.width, self.height,
                         path=name)

    def processor_metadata(self) -> dict[str, Any]:
        """``video_metadata`` for the processor when the frames are passed decoded (a clip,
        or frames loaded by the caller): ``{"total_num_frames", "fps", "duration"}``."""
        info = self.info()
        return {"total_num_frames": info.total_frames, "fps": info.fps,
                "duration": info.duration}

    def split_at(self, frame: int) -> tuple[VideoItem, VideoItem]:
        """Two consecutive clips, ``[start, frame)`` and ``[frame, end)`` (frame numbers of
        the whole video)."""
        head, tail = self.frame_range.split_at(frame)
        return (_replace_clip(self, head), _replace_clip(self, tail))


def _replace_clip(item: VideoItem, clip: FrameRange) -> VideoItem:
    return VideoItem(item.total_frames, item.fps, item.duration, item.num_frames,
                     item.sample_fps, clip, item.path, item.file, item.width, item.height)


ContentItem: TypeAlias = TextItem | ImageItem | FramesItem | VideoItem


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message. ``string_content`` marks a message given as
    ``"content": "text"`` (one :class:`TextItem`): SmolVLM2's chat template drops such
    text, so it is counted and written back as it was given."""

    role: str
    content: tuple[ContentItem, ...]
    string_content: bool = False

    @property
    def images(self) -> int:
        """Images the chat template writes for this message (each frame is one); videos
        are not images (see :attr:`videos`)."""
        return sum(
            1 if type(item) is ImageItem else len(item) if type(item) is FramesItem else 0
            for item in self.content
        )

    @property
    def videos(self) -> int:
        """Video items (each one ``<video>``) of this message."""
        return sum(1 for item in self.content if type(item) is VideoItem)


Conversation: TypeAlias = tuple[Message, ...]
MessageLike: TypeAlias = Message | Mapping[str, Any]


# --------------------------------------------------------------------------- parsing


def _size(value: object, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConversationError(
            f"{where}: {name} must be a positive integer (pixels), got {_short(value)}"
        )
    if value > MAX_SIDE:
        raise ConversationError(
            f"{where}: {name} is {_short(value)}, larger than any image file declares (at most "
            f"{MAX_SIDE} pixels a side); give the image's real size"
        )
    return value


def _image_path(item: Mapping[str, Any], where: str, keys: tuple[str, ...] = (
        "path", "url", "image")) -> str | None:
    """The item's ``path`` (or ``url``, or a path given as ``image``/``video``), checked to
    be text."""
    for key in keys:
        value = item.get(key)
        if key in ("image", "video") and not isinstance(value, str | os.PathLike):
            continue
        if value is None or value == "":
            continue
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise ConversationError(
                f"{where}: {key!r} must be a file path (a string), got {type(value).__name__}"
            )
        _unicode(value, repr(key), where)
        if "\x00" in value:
            raise ConversationError(f"{where}: {key!r} holds a NUL character; fix the path")
        return value
    return None


def _local_file(path: str | None, base_dir: Path | None) -> Path | None:
    """Where an image path points on this machine (None for a remote URL)."""
    if not path:
        return None
    if re.match(r"[a-z][a-z0-9+.-]*://", path, re.I) and not path.startswith("file://"):
        return None
    file = Path(path.removeprefix("file://"))
    if base_dir is not None and not file.is_absolute():
        file = base_dir / file
    return file


def _read_size(file: Path, where: str, loader: PathLoader | None,
               hint: str = "") -> tuple[int, int]:
    """The file's size as the processor reads it; ``hint`` ends the message of a file that
    cannot be read (not of one in a format the processor cannot load: the processor
    opens the file whatever size is declared)."""
    from .errors import ImageFormatError
    from .images import read_image_size

    try:
        return read_image_size(file, loader=loader)
    except ImageFormatError as exc:
        raise ImageItemError(where, exc.path, exc.reason) from None
    except ImageReadError as exc:
        raise ImageItemError(where, exc.path, exc.reason + hint) from None


def _image_size(item: Mapping[str, Any], where: str, base_dir: Path | None,
                loader: PathLoader | None = None) -> ImageItem:
    has_w, has_h = "width" in item, "height" in item
    path = _image_path(item, where)
    image = item.get("image")
    if isinstance(image, str | os.PathLike):
        image = None
    file = _local_file(path, base_dir)
    if has_w or has_h:
        if not (has_w and has_h):
            missing = "height" if has_w else "width"
            raise ConversationError(
                f"{where}: image has no {missing!r}; give both width and height"
            )
        width = _size(item["width"], "width", where)
        height = _size(item["height"], "height", where)
        if file is not None and file.exists():
            # the processor reads the file, not the declared size: they must agree
            real = _read_size(file, where, loader)
            if real != (width, height):
                raise ConversationError(
                    f"{where}: image declares {width}×{height} but its file {file} is "
                    f"{real[0]}×{real[1]} as the processor reads it (EXIF orientation "
                    "applied); fix or drop 'width' and 'height'"
                )
        return ImageItem(width, height, path, image, os.fspath(file) if file else None)
    if image is not None:
        size = getattr(image, "size", None)
        if not (isinstance(size, tuple) and len(size) == 2):
            raise ConversationError(
                f"{where}: 'image' is a {type(image).__name__}, not a PIL image or a path; "
                "give a PIL image, a file under 'path', or 'width' and 'height'"
            )
        return ImageItem(_size(size[0], "width", where), _size(size[1], "height", where),
                         None, image)
    if path:
        if file is None:
            raise ConversationError(
                f"{where}: {_short(path)} is a remote URL, which is never fetched; download it, "
                "or give 'width' and 'height' with it"
            )
        width, height = _read_size(file, where, loader, "; or give 'width' and 'height' to "
                                   "count it without the file")
        return ImageItem(width, height, path, file=os.fspath(file))
    raise ConversationError(
        f"{where}: image has no size: give 'width' and 'height', a file under 'path', or a "
        "PIL image under 'image'"
    )


def _frames(item: Mapping[str, Any], where: str) -> FramesItem:
    for key in ("start", "end", "width", "height"):
        if key not in item:
            raise ConversationError(
                f"{where}: frames item has no {key!r}; write "
                '{"type": "frames", "start": S, "end": E, "width": W, "height": H} '
                "with E exclusive"
            )
    try:
        frames = FrameRange(item["start"], item["end"])
    except FrameRangeError as exc:
        raise FrameRangeError(f"{where}: {exc}") from None
    if len(frames) == 0:
        raise FrameRangeError(
            f"{where}: frames [{frames.start}, {frames.end}) is empty (end is exclusive); "
            "drop the item or use end = start + number of frames"
        )
    video = item.get("video")
    if video is not None:
        if not isinstance(video, str):
            raise ConversationError(f"{where}: 'video' must be a string, got {_short(video)}")
        _unicode(video, "'video'", where)
    return FramesItem(
        frames, _size(item["width"], "width", where), _size(item["height"], "height", where),
        video,
    )


def _text(text: str, where: str) -> str:
    _unicode(text, "the text", where)
    for placeholder in PLACEHOLDERS:
        if placeholder in text:
            kind = placeholder.strip("<>")
            raise ConversationError(
                f"{where}: the text contains {placeholder!r}, which the processor takes for "
                f"a {kind} placeholder (and raises: no {kind} goes with it); put images in "
                "their own {'type': 'image'} items and videos in {'type': 'video'} items"
            )
    return text


#: The keys a video item may have: a typo in a sampling setting ("max_frames" for
#: "num_frames") would change the count, so unknown keys are refused.
VIDEO_KEYS = ("type", "path", "url", "video", "total_frames", "fps", "duration",
              "num_frames", "sample_fps", "start", "end", "width", "height")
_VIDEO_EXAMPLE = ('{"type": "video", "path": "clip.mp4"} or {"type": "video", '
                  '"total_frames": 1800, "fps": 30, "duration": 60}')
#: metadata of video files already read, by (path, mtime, size): a file is scanned once
_VIDEO_INFO: dict[tuple[str, int, int], VideoInfo] = {}


def _video_file_info(file: Path, where: str) -> VideoInfo:
    try:
        stat = file.stat()
    except OSError:
        stat = None
    key = (os.fspath(file), stat.st_mtime_ns, stat.st_size) if stat is not None else None
    info = _VIDEO_INFO.get(key) if key is not None else None
    if info is None:
        try:
            info = read_video_info(file)
        except VideoReadError as exc:
            raise VideoItemError(where, exc.path, exc.reason) from None
        if key is not None:
            if len(_VIDEO_INFO) >= 4096:
                _VIDEO_INFO.clear()
            _VIDEO_INFO[key] = info
    return info


def _number(item: Mapping[str, Any], key: str, where: str, *, integer: bool = False,
            positive: bool = True) -> Any:
    value = item.get(key)
    if value is None:
        return None
    ok = not isinstance(value, bool) and (
        isinstance(value, int) if integer else isinstance(value, int | float))
    if ok and not integer:
        ok = math.isfinite(value)
    if ok:
        ok = value > 0 if positive else value >= 0
    if not ok:
        kind = ("a positive integer" if integer else
                "a positive number" if positive else "a number >= 0")
        raise ConversationError(f"{where}: video {key!r} must be {kind}, got {_short(value)}")
    if integer and value > MAX_FRAME:
        raise ConversationError(f"{where}: video {key!r} {_short(value)} is out of range "
                                "(frame counts are below 2**31)")
    return value


def _video(item: Mapping[str, Any], where: str, base_dir: Path | None) -> VideoItem:
    unknown = [key for key in item if key not in VIDEO_KEYS]
    if unknown:
        hint = ("; the most frames to sample is 'num_frames'" if "max_frames" in unknown else
                "; the sampling rate is 'sample_fps'" if "fps_sample" in unknown else "")
        raise ConversationError(
            f"{where}: video item has unknown key {_short(unknown[0])}{hint}; a video item "
            f"takes {', '.join(repr(k) for k in VIDEO_KEYS[1:])}"
        )
    path = _image_path(item, where, ("path", "url", "video"))
    file = _local_file(path, base_dir)
    total = _number(item, "total_frames", where, integer=True)
    fps = _number(item, "fps", where)
    duration = _number(item, "duration", where, positive=False)
    num_frames = _number(item, "num_frames", where, integer=True)
    sample_fps = _number(item, "sample_fps", where)
    width, height = _video_size(item, where)
    if file is not None and file.exists():
        # the processor reads the file, not declared numbers: they must agree
        info = _video_file_info(file, where)
        checks: list[tuple[str, object, object]] = [
            ("total_frames", total, info.total_frames), ("fps", fps, info.fps),
            ("duration", duration, info.duration)]
        if info.width is not None and info.height is not None:
            checks += [("width", width, info.width), ("height", height, info.height)]
        for key, declared, real in checks:
            if declared is not None and declared != real:
                extra = (" (it is the video's own frame rate; the sampling rate is "
                         "'sample_fps')" if key == "fps" else "")
                raise ConversationError(
                    f"{where}: video declares {key} {declared!r} but its file {file} has "
                    f"{real!r} as the processor's loader reads it{extra}; fix or drop "
                    f"{key!r}"
                )
        assert info.fps is not None
        assert info.duration is not None
        total, fps, duration = info.total_frames, info.fps, info.duration
    elif total is None or fps is None:
        if path and file is None:
            raise ConversationError(
                f"{where}: {_short(path)} is a remote URL, which is never fetched; download "
                "it, or give 'total_frames', 'fps' and 'duration' with it"
            )
        if path:
            raise VideoItemError(where, os.fspath(file) if file else path,
                                 "does not exist; fix the path, or give 'total_frames', 'fps' "
                                 "and 'duration' to count it without the file")
        missing = "total_frames" if total is None else "fps"
        raise ConversationError(
            f"{where}: video has no {missing!r}: give a file under 'path', or its metadata "
            f"'total_frames', 'fps' and 'duration' ({_VIDEO_EXAMPLE})"
        )
    if duration is None:
        duration = total / fps  # what transformers' loaders report
    clip = None
    if "start" in item or "end" in item:
        if not ("start" in item and "end" in item):
            missing = "end" if "start" in item else "start"
            raise ConversationError(f"{where}: video clip has no {missing!r}; give both start "
                                    "and end (frame numbers, end exclusive)")
        try:
            clip = FrameRange(item["start"], item["end"])
        except FrameRangeError as exc:
            raise FrameRangeError(f"{where}: video clip {exc}") from None
        if len(clip) == 0 or clip.end > total:
            why = ("is empty (end is exclusive)" if len(clip) == 0 else
                   f"ends past the video's {total} frames")
            raise FrameRangeError(f"{where}: video clip [{clip.start}, {clip.end}) {why}; give "
                                  f"0 <= start < end <= {total}")
    return VideoItem(total, float(fps), float(duration), num_frames,
                     None if sample_fps is None else float(sample_fps), clip, path,
                     os.fspath(file) if file is not None else None, width, height)


def _video_size(item: Mapping[str, Any], where: str) -> tuple[int | None, int | None]:
    """A video item's declared frame size: both or neither of ``width`` and ``height``."""
    if "width" not in item and "height" not in item:
        return None, None
    if not ("width" in item and "height" in item):
        missing = "height" if "width" in item else "width"
        raise ConversationError(f"{where}: video has no {missing!r}; give both width and "
                                "height (the frame size in pixels)")
    return _size(item["width"], "width", where), _size(item["height"], "height", where)


def parse_item(item: object, where: str, base_dir: Path | None = None, *,
               image_loader: PathLoader | None = None) -> ContentItem:
    """One content item; ``where`` prefixes every error (e.g. ``"message 3, item 0"``).

    ``image_loader`` is what opens an image path for the processor (see
    :func:`~pytest_tokenguard.images.read_image_info`; default: transformers' default
    backend): a file it cannot load is refused, naming its format and the fix."""
    if not isinstance(item, Mapping):
        raise ConversationError(
            f"{where}: content items are objects like {{'type': 'text', 'text': ...}}, "
            f"got {type(item).__name__}"
        )
    kind = item.get("type")
    if kind == "text":
        if "text" not in item:
            raise ConversationError(f"{where}: text item has no 'text'; add \"text\": \"...\"")
        text = item["text"]
        if not isinstance(text, str):
            raise ConversationError(f"{where}: 'text' must be a string, got {type(text).__name__}")
        return TextItem(_text(text, where))
    if kind == "image":
        return _image_size(item, where, base_dir, image_loader)
    if kind == "frames":
        return _frames(item, where)
    if kind == "video":
        return _video(item, where, base_dir)
    raise ConversationError(
        f"{where}: unknown content type {_short(kind)}; use one of {', '.join(CONTENT_TYPES)}"
    )


def parse_message(
    message: MessageLike, index: int = 0, *, base_dir: str | os.PathLike[str] | None = None,
    label: str = "message", image_loader: PathLoader | None = None,
) -> Message:
    """Validate one chat-format message; errors say ``message <index>``. ``image_loader``:
    see :func:`parse_item`."""
    if isinstance(message, Message):
        return message
    where = f"{label} {index}"
    if not isinstance(message, Mapping):
        raise ConversationError(
            f"{where}: a message is an object with 'role' and 'content', got "
            f"{type(message).__name__}"
        )
    role = message.get("role")
    if not isinstance(role, str) or not ROLE_PATTERN.match(role):
        raise ConversationError(
            f"{where}: role must be a word starting with a letter (user, assistant, system), "
            f"got {_short(role)}"
        )
    if "content" not in message:
        raise ConversationError(f"{where}: no 'content'; add a list of text/image items")
    content = message["content"]
    if isinstance(content, str):
        if not content:
            raise ConversationError(
                f"{where}: 'content' is an empty string, which the chat template cannot render "
                "(it reads the first item); give a list of text/image items or drop the message"
            )
        return Message(role, (TextItem(_text(content, where)),), string_content=True)
    if not isinstance(content, Sequence) or isinstance(content, bytes):
        raise ConversationError(
            f"{where}: 'content' must be a list of items, got {type(content).__name__}"
        )
    if not content:
        raise ConversationError(
            f"{where}: 'content' is empty; the chat template reads its first item, so give "
            "at least one text or image item (or drop the message)"
        )
    base = base_dir if base_dir is None or isinstance(base_dir, Path) else Path(base_dir)
    items = tuple(parse_item(item, f"{where}, item {i}", base, image_loader=image_loader)
                  for i, item in enumerate(content))
    return Message(role, items)


def parse_conversation(
    messages: Sequence[MessageLike] | Conversation,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    label: str = "message",
    image_loader: PathLoader | None = None,
) -> Conversation:
    """A validated conversation from chat-format dicts (parsed messages pass through).

    Image files are read as ``image_loader`` opens them for the processor (default:
    transformers' default backend; :func:`~pytest_tokenguard.images.path_loader_of` a
    processor): one it cannot load is refused, naming its format and the fix."""
    if isinstance(messages, Mapping | str | bytes):
        raise ConversationError(
            f"a conversation is a list of messages, got {type(messages).__name__}; "
            "for a JSON object with 'messages', pass its 'messages' list"
        )
    parsed = tuple(
        parse_message(m, i, base_dir=base_dir, label=label, image_loader=image_loader)
        for i, m in enumerate(messages)
    )
    check_video_strings(parsed, label=label)
    return parsed


def check_video_strings(messages: Sequence[Message], *, label: str = "message") -> None:
    """Refuse plain-string content in a conversation that holds a video.

    transformers renders a conversation that holds a video with its own chat template
    (``DEFAULT_CHAT_TEMPLATE``), whatever the checkpoint's: from 5.24 it writes
    plain-string content (``"Role: text"``) where the checkpoint's template, and 5.17's
    built-in one, drop it. The count would depend on the installed version, so such
    content is refused with the fix, never guessed.
    """
    if not any(type(item) is VideoItem for m in messages for item in m.content):
        return
    for index, message in enumerate(messages):
        if message.string_content:
            raise ConversationError(
                f"{label} {index}: plain-string content in a conversation that holds a video, "
                "which transformers renders with its own chat template (5.24 writes the string, "
                "the checkpoint's template drops it); write the content as "
                '[{"type": "text", "text": ...}]'
            )


# --------------------------------------------------------------------------- writing


def item_to_dict(item: ContentItem) -> dict[str, Any]:
    """The JSON form of an item, frames kept as a range (the format :func:`parse_item` reads)."""
    if type(item) is TextItem:
        return {"type": "text", "text": item.text}
    if type(item) is ImageItem:
        out: dict[str, Any] = {"type": "image", "width": item.width, "height": item.height}
        if item.path is not None:
            out["path"] = item.path
        return out
    if type(item) is VideoItem:
        return _video_dict(item, item.path)
    assert type(item) is FramesItem
    frames: dict[str, Any] = {
        "type": "frames", "start": item.frames.start, "end": item.frames.end,
        "width": item.width, "height": item.height,
    }
    if item.video is not None:
        frames["video"] = item.video
    return frames


def _video_dict(item: VideoItem, path: str | None) -> dict[str, Any]:
    """A video item's JSON form: its path (if any) and its metadata, so the item can be
    counted again without the file (the file, when present, must agree)."""
    out: dict[str, Any] = {"type": "video"}
    if path is not None:
        out["path"] = path
    out.update(total_frames=item.total_frames, fps=item.fps, duration=item.duration)
    if item.num_frames is not None:
        out["num_frames"] = item.num_frames
    if item.sample_fps is not None:
        out["sample_fps"] = item.sample_fps
    if item.clip is not None:
        out["start"], out["end"] = item.clip.start, item.clip.end
    if item.width is not None and item.height is not None:
        out["width"], out["height"] = item.width, item.height
    return out


def to_dicts(
    messages: Sequence[Message], *, image_paths: Callable[[str], str] | None = None
) -> list[dict[str, Any]]:
    """JSON-ready messages in this package's format (frames as ranges; string content
    stays a string).

    ``image_paths`` rewrites the path of an image or video found on this machine: it gets
    the path where the file was found (relative paths resolved against the folder they
    were read from) and returns the path to write, e.g. relative to the output's folder.
    Without it, paths are written as they were given.
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.string_content:
            out.append({"role": m.role, "content": m.content[0].text})  # type: ignore[union-attr]
            continue
        content = []
        for item in m.content:
            entry = item_to_dict(item)
            if image_paths is not None and type(item) in (ImageItem, VideoItem) and \
                    item.file is not None:  # type: ignore[union-attr]
                entry["path"] = image_paths(item.file)  # type: ignore[union-attr]
            content.append(entry)
        out.append({"role": m.role, "content": content})
    return out


def to_chat_template(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages as ``processor.apply_chat_template`` takes them: frames become image items
    (frames sent as images), videos stay video items (the processor's video path).

    Image items keep their size (and PIL image, or path resolved to where the file was
    found) and video items their path and metadata, so the same list also tells what to
    hand the processor.
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.string_content:
            out.append({"role": m.role, "content": m.content[0].text})  # type: ignore[union-attr]
            continue
        content: list[dict[str, Any]] = []
        for item in m.content:
            if type(item) is FramesItem:
                for frame in item.frames:
                    image: dict[str, Any] = {"type": "image", "width": item.width,
                                             "height": item.height, "frame": frame}
                    if item.video is not None:
                        image["video"] = item.video
                    content.append(image)
            elif type(item) is VideoItem:
                content.append(_video_dict(item, item.file or item.path))
            else:
                entry = item_to_dict(item)
                if type(item) is ImageItem:
                    if item.image is not None:
                        entry["image"] = item.image
                    if item.file is not None:
                        entry["path"] = item.file
                content.append(entry)
        out.append({"role": m.role, "content": content})
    return out


def videos_of(messages: Sequence[Message]) -> list[VideoItem]:
    """Every video item, in the order the template writes their ``<video>``."""
    return [item for m in messages for item in m.content if type(item) is VideoItem]


def image_sizes(messages: Sequence[Message]) -> list[tuple[int, int]]:
    """(width, height) of every image the template writes, in order (frames expanded)."""
    sizes: list[tuple[int, int]] = []
    for m in messages:
        for item in m.content:
            if type(item) is ImageItem:
                sizes.append((item.width, item.height))
            elif type(item) is FramesItem:
                sizes.extend([(item.width, item.height)] * len(item))
    return sizes


def atoms(message: Message) -> tuple[object, ...]:
    """The message as its indivisible pieces: text items, images, and single frames (of
    frames items, and of videos: a video cut into clips has the frames it had).

    Comparing atom sequences tells whether parts of a split message add up to the
    original, whatever the cut points (two adjoining frames items and one item cut in
    two have the same atoms, as they render the same).
    """
    out: list[object] = []
    for item in message.content:
        if type(item) is FramesItem:
            out.extend(("frame", item.video, frame, item.width, item.height)
                       for frame in item.frames)
        elif type(item) is VideoItem:  # a video cut into clips holds the same frames
            key = (item.path, item.total_frames, item.fps, item.duration, item.num_frames,
                   item.sample_fps)
            out.extend(("video frame", key, frame) for frame in item.frame_range)
        else:
            out.append(item)
    return tuple(out)
