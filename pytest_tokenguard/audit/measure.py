"""One sample, measured as the trainer will see it: the pure per-sample function.

:class:`Auditor` turns a row (a dict: ``messages`` plus, in TRL's vision format, an
``images`` or ``image`` column) into a :class:`SampleResult`: the exact length of the
sample TRL's collator tokenizes, its ``<image>`` tokens, where its first and last
``<image>`` tokens sit (what decides whether a cut drops image tokens), its tiles, and
the same lengths at smaller ``longest_edge`` values and video ``num_frames`` (what the
"what fits" answer needs). Nothing in a result depends on other rows, so the same
object serves the command's worker processes, ``datasets.Dataset.map(num_proc=...)``
(:meth:`Auditor.__call__`, :meth:`Auditor.batch`) and Ray Data's ``map_batches``
(:meth:`Auditor.batch`): it pickles as its settings and loads its tokenizer once per
process, on first use.

**How a sample is priced.** The conversation is rendered by the processor's chat
template (SmolVLM2's, recognised by its syntax tree, is rendered in Python by
:func:`pytest_tokenguard.sequence.render`; any other by the processor) and the rendered
text is cut at the tokenizer's added tokens, which the tokenizer never merges with
their neighbours: each text piece is counted by the exact text counter of
:class:`~pytest_tokenguard.tokens.TokenCounter`, each added token is one token, each
``<image>`` is the block :meth:`TokenCounter.image` prices, and each ``<video>`` is
expanded as the processor expands it (:func:`pytest_tokenguard.sequence.video_costs`:
its intro and outro are text that merges with the text around it). That walk gives
positions as well as the total; the suite checks the total against
:func:`~pytest_tokenguard.sequence.count_conversation` and every position against TRL's
collator.

**TRL's vision format.** A row with ``images`` (or ``image``) is prepared as TRL's
``prepare_multimodal_messages`` prepares it: string content becomes a text item, the
first user message given as a string gets one ``{"type": "image"}`` per image before
its text, and the ``{"type": "image"}`` placeholders are filled from the column in
order; a count that does not match, or a role TRL does not know, is TRL's own
``ValueError`` (:attr:`SampleResult.refused`). A row without those columns is the
project's chat format (images by ``path`` or ``width``/``height``, videos, frames),
rendered the same way.

**One pricer per model family.** What a sample costs is the family's: the auditor asks
the family registry (:func:`~pytest_tokenguard.families.resolve_family`) for the model's
family and builds the pricer its ``audit_pricer`` names: :class:`SmolVLMPricer` (above),
or :class:`~pytest_tokenguard.audit.qwen.QwenPricer` for Qwen2-VL, Qwen2.5-VL and
Qwen3-VL. A pricer says which processor setting its "what fits" candidates vary
(``knob``: ``longest_edge`` or ``max_pixels``) and prices one prepared conversation into a
:class:`SampleResult`; everything else (TRL's row preparation, the cut, the summary, the
report) is shared.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from ..errors import TokenguardError
from .media import ImageSizer

__all__ = ["COLUMNS", "AuditSettings", "Auditor", "Pricer", "SampleResult", "SmolVLMPricer",
           "candidate_edges", "default_base_dir", "from_columns", "pricer_for", "trl_messages"]

#: ``num_frames`` values the "what fits" answer tries for videos (those up to the
#: checkpoint's ``max_frames``)
FRAME_CANDIDATES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
#: sampling ``fps`` values the "what fits" answer tries for videos (at the ``num_frames``
#: cap the videos are audited with)
FPS_CANDIDATES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
TRL_ROLES = frozenset({"system", "user", "assistant", "tool"})


class TrlRefusal(ValueError):
    """What TRL's collator raises for a row before any length is known."""


@dataclass(frozen=True)
class AuditSettings:
    """Everything a per-sample measurement depends on (picklable, hashable).

    ``longest_edge`` is the processor's ``size={"longest_edge": N}`` (None: the
    checkpoint's); ``num_frames``/``fps`` the video sampling of the processor call
    (None: the checkpoint's); ``base_dir`` resolves relative image paths (the data
    file's folder). ``max_pixels`` is Qwen-VL's resolution (the processor's
    ``size["longest_edge"]``, None: the checkpoint's); each family refuses the other's.
    """

    model: str
    longest_edge: int | None = None
    num_frames: int | None = None
    fps: float | None = None
    base_dir: str | None = None
    max_pixels: int | None = None


class SampleResult(NamedTuple):
    """One sample. ``tokens`` is the length TRL's collator tokenizes before any cut;
    ``first_image`` the index of its first ``<image>`` token and ``after_last_image``
    how many tokens follow its last one (None for a sample without images or videos);
    ``tiles`` the tiles the vision tower encodes (video frames included).
    ``edge_tokens``/``edge_tiles`` are the same at each of the auditor's candidate
    ``longest_edge`` values (:attr:`Auditor.edges`), ``frame_tokens`` the length at each
    candidate ``num_frames`` (:attr:`Auditor.frame_candidates`) for a sample with videos,
    else empty, and ``fps_tokens`` the length at each candidate sampling ``fps``
    (:attr:`Auditor.fps_candidates`). ``error`` is why the sample could not be priced,
    ``refused`` why TRL's collator refuses it whatever its length; both None for a priced
    sample."""

    id: Any
    tokens: int = 0
    image_tokens: int = 0
    images: int = 0
    videos: int = 0
    tiles: int = 0
    first_image: int | None = None
    after_last_image: int | None = None
    edge_tokens: tuple[int, ...] = ()
    edge_tiles: tuple[int, ...] = ()
    frame_tokens: tuple[int, ...] = ()
    error: str | None = None
    refused: str | None = None
    fps_tokens: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The ``--per-sample`` line: ``id``, ``tokens``, ``image_tokens`` and the rest."""
        data: dict[str, Any] = {"id": self.id, "tokens": self.tokens,
                                "image_tokens": self.image_tokens, "images": self.images,
                                "videos": self.videos, "tiles": self.tiles,
                                "first_image_token": self.first_image,
                                "tokens_after_last_image": self.after_last_image}
        if self.error is not None:
            data["error"] = self.error
        if self.refused is not None:
            data["refused"] = self.refused
        return data


def candidate_edges(longest_edge: int, tile: int) -> tuple[int, ...]:
    """The ``longest_edge`` values "what fits" tries: every multiple of the tile below
    ``longest_edge`` (where the tile count changes for most photos), and it."""
    return tuple(sorted({tile * k for k in range(1, longest_edge // tile + 1)
                         if tile * k < longest_edge} | {longest_edge}))


def _image_cell(item: Mapping[str, Any]) -> Any:
    for key in ("image", "url", "path", "base64"):
        if key in item and item[key] is not None:
            return item[key]
    return None


def trl_messages(row: Mapping[str, Any], sizer: ImageSizer) -> list[dict[str, Any]]:
    """The row's conversation as TRL's ``prepare_multimodal_messages`` builds it, each
    image item with the ``width``/``height`` the processor will see (see the module
    docstring). Raises :class:`TrlRefusal` where TRL raises."""
    messages = row.get("messages")
    if not isinstance(messages, Sequence) or isinstance(messages, str | bytes):
        raise ValueError("'messages' is not a list of messages")
    images = [row["image"]] if "image" in row else list(row.get("images") or [])
    prepared: list[dict[str, Any]] = []
    included = False
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"message {index} is not an object with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in TRL_ROLES:
            raise TrlRefusal(f"Invalid role in message: {role}. Expected 'system', 'user', "
                             "'assistant', or 'tool'.")
        if isinstance(content, str):
            text = [{"type": "text", "text": content}]
            if role == "user" and not included:
                content = [{"type": "image"} for _ in images] + text
                included = True
            else:
                content = text
        prepared.append({**message, "content": content})
    placeholders = sum(
        1 for m in prepared if m.get("content") and m["role"] != "tool"
        for part in m["content"] if part.get("type") == "image" and "image" not in part)
    if placeholders != len(images):
        raise TrlRefusal(f"Number of images provided ({len(images)}) does not match number "
                         f"of image placeholders ({placeholders}).")
    cells = iter(images)
    out = []
    for message in prepared:
        content = message.get("content")
        if not content or message["role"] == "tool" or not isinstance(content, list):
            out.append(message)
            continue
        items = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "image":
                cell = next(cells) if "image" not in part else _image_cell(part)
                width, height = sizer(cell)
                items.append({"type": "image", "width": width, "height": height})
            else:
                items.append(part)
        out.append({**message, "content": items})
    return out


class Pricer(Protocol):
    """What an auditor needs of a model family (see the module docstring).

    ``knob`` names the processor setting the "what fits" candidates vary, ``setting`` its
    audited value, ``edges`` the candidates (:attr:`SampleResult.edge_tokens`);
    ``size_floor`` the processor's lower bound written beside it in the processor line
    (None: none); ``wrap_before`` the wrapper tokens before a block's first media token
    (what a left cut may drop and still leave the media whole)."""

    knob: str
    wrap_before: int

    @property
    def setting(self) -> int: ...
    @property
    def edges(self) -> tuple[int, ...]: ...
    @property
    def frame_candidates(self) -> tuple[int, ...]: ...
    @property
    def fps_candidates(self) -> tuple[float, ...]: ...
    @property
    def truncation_side(self) -> str: ...
    @property
    def size_floor(self) -> int | None: ...
    @property
    def counter(self) -> Any: ...

    def price(self, ident: Any, messages: Any, base_dir: Path | None) -> SampleResult: ...


#: family name -> "module:class" of its pricer, for families that name none themselves
_PRICERS = {"smolvlm": "pytest_tokenguard.audit.measure:SmolVLMPricer"}


def pricer_for(settings: AuditSettings) -> Pricer:
    """The pricer of ``settings.model``'s family (its ``audit_pricer``); a model no
    family claims goes to SmolVLM2's, whose resolver names what is wrong with it. A
    family with no pricer is refused by name."""
    import importlib

    from ..errors import InputError
    from ..families import resolve_family

    try:
        found = resolve_family(settings.model)
    except (TokenguardError, ValueError, RecursionError):
        found = None  # an unreadable folder: SmolVLM2's resolver reports it, as before
    name = "smolvlm" if found is None else found.family.name
    target = getattr(found.family, "audit_pricer", None) if found is not None else None
    target = target or _PRICERS.get(name)
    if target is None:
        raise InputError(f"{settings.model}: tokenguard audit has no pricer for the {name} "
                         "family; audit SmolVLM2 or Qwen-VL models")
    module, _, attribute = str(target).partition(":")
    pricer: Pricer = getattr(importlib.import_module(module), attribute)(settings)
    return pricer


class Auditor:
    """The per-sample function (see the module docstring)."""

    def __init__(self, settings: AuditSettings) -> None:
        self.settings = settings
        self._pricer: Pricer | None = None
        self._sizer = ImageSizer(settings.base_dir)

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.settings = state["settings"]
        self._pricer = None
        self._sizer = ImageSizer(self.settings.base_dir)

    # ------------------------------------------------------------------ setup (once)

    @property
    def pricer(self) -> Pricer:
        """The model family's pricer, built (its tokenizer loaded) on first use."""
        if self._pricer is None:
            self._pricer = pricer_for(self.settings)
        return self._pricer

    @property
    def counter(self) -> Any:
        """The family's token counter at the audited setting."""
        return self.pricer.counter

    @property
    def knob(self) -> str:
        """The processor setting "what fits" varies: ``longest_edge`` or ``max_pixels``."""
        return self.pricer.knob

    @property
    def longest_edge(self) -> int:
        """The audited value of :attr:`knob` (SmolVLM2's ``longest_edge``, Qwen-VL's
        ``max_pixels``)."""
        return int(self.pricer.setting)

    @property
    def edges(self) -> tuple[int, ...]:
        """The candidate values of :attr:`knob` of :attr:`SampleResult.edge_tokens`."""
        return self.pricer.edges

    @property
    def frame_candidates(self) -> tuple[int, ...]:
        """The candidate ``num_frames`` of :attr:`SampleResult.frame_tokens`."""
        return self.pricer.frame_candidates

    @property
    def fps_candidates(self) -> tuple[float, ...]:
        """The candidate sampling ``fps`` of :attr:`SampleResult.fps_tokens`."""
        return self.pricer.fps_candidates

    @property
    def truncation_side(self) -> str:
        """The tokenizer's ``truncation_side``: the end TRL's collator cuts."""
        return self.pricer.truncation_side

    @property
    def source(self) -> Any:
        return getattr(self.pricer, "source", None)

    # ------------------------------------------------------------------ per sample

    def measure(self, row: Any, index: int = 0) -> SampleResult:
        """The :class:`SampleResult` of one row (its id: ``id``, else ``index``)."""
        pricer = self.pricer
        ident = row.get("id", index) if isinstance(row, Mapping) else index
        if not isinstance(ident, str | int) or isinstance(ident, bool):
            ident = str(ident)
        try:
            if not isinstance(row, Mapping):
                raise ValueError(str(row))
            if "messages" not in row:
                raise ValueError("no 'messages' column; give the conversation as 'messages' "
                                 "(TRL's conversational format)")
            if "images" in row or "image" in row:
                messages: Any = trl_messages(row, self._sizer)
            else:
                messages = row["messages"]
            base_dir = None if self.settings.base_dir is None else Path(self.settings.base_dir)
            return pricer.price(ident, messages, base_dir)
        except TrlRefusal as exc:
            return SampleResult(ident, refused=str(exc))
        except (TokenguardError, ValueError, TypeError, KeyError) as exc:
            message = " ".join(str(exc).split()) or type(exc).__name__
            return SampleResult(ident, error=message)

    def __call__(self, example: Mapping[str, Any], index: int = 0) -> dict[str, Any]:
        """For ``Dataset.map(auditor, with_indices=True)``: the sample's figures as new
        columns (``audit_`` prefixed, so they never replace the data's own)."""
        result = self.measure(example, index)
        return {"audit_" + key: value for key, value in _columns(result).items()}

    def batch(self, batch: Any, indices: Sequence[int] | None = None) -> dict[str, list[Any]]:
        """For ``Dataset.map(auditor.batch, batched=True, with_indices=True)`` and Ray Data's
        ``map_batches(auditor.batch, batch_format="pyarrow")``: columns in (a mapping of
        columns, or a pyarrow table), one row of figures per sample out (``id``,
        ``tokens``, ``image_tokens``, ...; see :data:`COLUMNS`).

        Rows are read as their JSON lines would be (:func:`~.readers.clean_row`). A row's
        id is its ``id``, else its number from ``indices``; without ``indices`` (Ray Data
        numbers no rows) a row without ``id`` is refused, as its number in the batch is no
        row number. Ray's default numpy batches turn integers of a column with gaps into
        floats (``384.0``), which are refused as sizes: use ``batch_format="pyarrow"``."""
        from .readers import clean_row, table_rows

        if hasattr(batch, "to_pylist") and hasattr(batch, "num_rows"):
            rows = list(table_rows(batch))
        else:
            names = list(batch)
            size = len(batch[names[0]]) if names else 0
            rows = [clean_row({name: _plain(batch[name][i]) for name in names})
                    for i in range(size)]
        if indices is None:
            missing = next((i for i, row in enumerate(rows) if "id" not in row), None)
            if missing is not None:
                from ..errors import InputError

                raise InputError(f"row {missing} of this batch has no 'id' and no row numbers "
                                 "were given: pass with_indices=True (datasets.Dataset.map), "
                                 "or give every row an 'id' (Ray Data numbers no rows)")
            numbers = list(range(len(rows)))
        else:
            numbers = list(indices)
        out: dict[str, list[Any]] = {key: [] for key in COLUMNS}
        for row, number in zip(rows, numbers, strict=True):
            for key, value in _columns(self.measure(row, number)).items():
                out[key].append(value)
        return out

    def measure_all(self, rows: Iterator[Any], start: int = 0) -> Iterator[SampleResult]:
        for offset, row in enumerate(rows):
            yield self.measure(row, start + offset)


class SmolVLMPricer:
    """SmolVLM2's pricer: the walk of the module docstring, candidates of
    ``longest_edge`` (multiples of the tile), ``num_frames`` and sampling ``fps``."""

    knob = "longest_edge"
    wrap_before = 2
    size_floor = None

    def __init__(self, settings: AuditSettings) -> None:
        if settings.max_pixels is not None:
            from ..errors import InputError

            raise InputError(f"max_pixels={settings.max_pixels} is a Qwen-VL setting; "
                             f"{settings.model} (SmolVLM2) resizes by longest_edge: give "
                             "--longest-edge instead")
        self.settings = settings
        self.state = _prepare(settings)

    @property
    def counter(self) -> Any:
        """The :class:`~pytest_tokenguard.tokens.TokenCounter` at the audited edge."""
        return self.state["counter"]

    @property
    def setting(self) -> int:
        return int(self.state["counter"].longest_edge)

    @property
    def edges(self) -> tuple[int, ...]:
        return self.state["edges"]  # type: ignore[no-any-return]

    @property
    def frame_candidates(self) -> tuple[int, ...]:
        return self.state["frames"]  # type: ignore[no-any-return]

    @property
    def fps_candidates(self) -> tuple[float, ...]:
        return self.state["rates"]  # type: ignore[no-any-return]

    @property
    def truncation_side(self) -> str:
        return str(self.state["side"])

    @property
    def source(self) -> Any:
        return self.state["source"]

    def price(self, ident: Any, messages: Any, base_dir: Path | None) -> SampleResult:
        from ..conversation import parse_conversation

        parsed = parse_conversation(messages, base_dir=base_dir)
        if not parsed:
            raise ValueError("'messages' is empty")
        return self._priced(ident, parsed, self.state)

    def _priced(self, ident: Any, parsed: Any, state: dict[str, Any]) -> SampleResult:
        from ..conversation import VideoItem, image_sizes, videos_of

        settings = self.settings
        if videos_of(parsed) and (settings.num_frames is not None or settings.fps is not None):
            # the processor call's sampling, for the videos that do not set their own
            parsed = tuple(replace(m, content=tuple(
                replace(item, num_frames=settings.num_frames, sample_fps=settings.fps)
                if type(item) is VideoItem and item.num_frames is None
                and item.sample_fps is None else item for item in m.content)) for m in parsed)
        walk = _walk(parsed, state["counter"], state)
        sizes = image_sizes(parsed)
        image_blocks = walk.image_blocks
        edge_tokens, edge_tiles = [], []
        for counter in state["edge_counters"]:
            costs = [counter.image(w, h) for w, h in sizes]
            edge_tokens.append(walk.tokens - image_blocks + sum(c.block_tokens for c in costs))
            edge_tiles.append(walk.tiles - walk.image_tiles + sum(c.patches for c in costs))
        frame_tokens: list[int] = []
        fps_tokens: list[int] = []
        if videos_of(parsed):
            # the same conversation at each candidate sampling, priced by the same walk
            # (the counter's own per-call video costs), so it follows the counter
            for frames in state["frames"]:
                frame_tokens.append(_walk(_resampled(parsed, num_frames=frames),
                                          state["counter"], state).tokens)
            for rate in state["rates"]:
                fps_tokens.append(_walk(_resampled(parsed, sample_fps=rate),
                                        state["counter"], state).tokens)
        return SampleResult(
            ident, walk.tokens, walk.image_tokens, len(sizes), walk.videos, walk.tiles,
            walk.first_image, walk.after_last_image, tuple(edge_tokens), tuple(edge_tiles),
            tuple(frame_tokens), fps_tokens=tuple(fps_tokens))


def _resampled(parsed: Any, **sampling: Any) -> Any:
    """``parsed`` with every video sampled at ``sampling`` (``num_frames=`` or
    ``sample_fps=``; the other setting as the video had it)."""
    from ..conversation import VideoItem

    return tuple(replace(m, content=tuple(replace(item, **sampling)
                                          if type(item) is VideoItem else item
                                          for item in m.content)) for m in parsed)


#: the columns :meth:`Auditor.batch` returns
COLUMNS = ("id", "tokens", "image_tokens", "images", "videos", "tiles", "first_image",
           "after_last_image", "edge_tokens", "edge_tiles", "frame_tokens", "error", "refused",
           "fps_tokens")


def _columns(result: SampleResult) -> dict[str, Any]:
    data = result._asdict()
    data["id"] = str(result.id)  # one type per column, for Arrow
    data["error"] = result.error or ""
    data["refused"] = result.refused or ""
    data["first_image"] = -1 if result.first_image is None else result.first_image
    data["after_last_image"] = -1 if result.after_last_image is None else result.after_last_image
    for key in ("edge_tokens", "edge_tiles", "frame_tokens", "fps_tokens"):
        data[key] = list(data[key])
    return data


def from_columns(row: Mapping[str, Any]) -> SampleResult:
    """A :class:`SampleResult` back from one row of :meth:`Auditor.batch`'s columns."""
    def optional(value: Any) -> int | None:
        return None if value is None or int(value) < 0 else int(value)

    return SampleResult(
        row["id"], int(row["tokens"]), int(row["image_tokens"]), int(row["images"]),
        int(row["videos"]), int(row["tiles"]), optional(row["first_image"]),
        optional(row["after_last_image"]), tuple(int(v) for v in row["edge_tokens"]),
        tuple(int(v) for v in row["edge_tiles"]), tuple(int(v) for v in row["frame_tokens"]),
        row["error"] or None, row["refused"] or None,
        tuple(int(v) for v in row.get("fps_tokens") or ()))


def _plain(value: Any) -> Any:
    """A cell from pandas or numpy (Ray's batch formats) as JSON would give it."""
    tolist = getattr(value, "tolist", None)
    if tolist is not None and not isinstance(value, str | bytes):
        value = tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------- the walk


class _Walk(NamedTuple):
    tokens: int
    image_tokens: int
    image_blocks: int
    tiles: int
    image_tiles: int
    videos: int
    first_image: int | None
    after_last_image: int | None


def _walk(messages: Any, counter: Any, state: dict[str, Any]) -> _Walk:
    """The rendered conversation walked token by token (see the module docstring)."""
    from ..conversation import image_sizes, to_chat_template, videos_of
    from ..processor.chat import render_chat
    from ..sequence import render, video_costs

    videos = videos_of(messages)
    if state["known"] or videos:
        rendered = render(messages)
    else:
        rendered = render_chat(counter.processor, to_chat_template(messages))
    text = state["text"]
    sizes = iter(image_sizes(messages))
    costs = iter(video_costs(videos, counter) if videos else ())
    position = image_tokens = image_blocks = tiles = image_tiles = 0
    first: int | None = None
    last: int | None = None
    pending = ""
    for part in state["split"](rendered):
        if not part:
            continue
        if part == "<image>":
            position += text(pending) if pending else 0
            pending = ""
            cost = counter.image(*next(sizes))
            if first is None:
                first = position + 2
            position += cost.block_tokens
            last = position - 2
            image_tokens += cost.image_tokens
            image_blocks += cost.block_tokens
            tiles += cost.patches
            image_tiles += cost.patches
        elif part == "<video>":
            video = next(costs)
            block = video.block_tokens // video.frames
            pending += video.pieces[0]
            for frame in range(video.frames):
                position += text(pending) if pending else 0
                pending = video.pieces[frame + 1]
                if first is None:
                    first = position + 2
                position += block
                last = position - 2
            image_tokens += video.image_tokens
            tiles += video.frames
        elif part in state["specials"]:
            position += (text(pending) if pending else 0) + 1
            pending = ""
        else:
            pending += part
    position += text(pending) if pending else 0
    return _Walk(position, image_tokens, image_blocks, tiles, image_tiles, len(videos), first,
                 None if last is None else position - 1 - last)


def _truncation_side(source: Any, processor: Any) -> str:
    tokenizer = getattr(processor, "tokenizer", None)
    side = getattr(tokenizer, "truncation_side", None)
    if side is None:
        if source.kind == "embedded":
            from ..processor.embedded import TOKENIZER_SETTINGS

            side = TOKENIZER_SETTINGS.get("truncation_side", "right")
        else:
            config = source.read_json("tokenizer_config.json") or {}
            side = config.get("truncation_side", "right")
    return str(side)


def _prepare(settings: AuditSettings) -> dict[str, Any]:
    """Load the tokenizer (torch-free where it can be) and build the counters."""
    from ..processor.light import light_processor
    from ..processor.loading import load_processor
    from ..processor.source import resolve_source
    from ..sequence import is_known_template
    from ..tokens import TokenCounter, fast_text_counter
    from ..video import video_sampling_from_processor

    source = resolve_source(settings.model)
    light = light_processor(source)
    if light is not None and is_known_template(light.chat_template):
        spec = source.spec()
        edge = settings.longest_edge or spec.default_longest_edge
        counter = TokenCounter(light, replace(spec, default_longest_edge=edge), edge)
    else:
        loaded = load_processor(source.model, settings.longest_edge, source=source)
        counter = TokenCounter(loaded.processor, loaded.spec, loaded.longest_edge)
    added = sorted({token.content for token in
                    counter.tokenizer.backend_tokenizer.get_added_tokens_decoder().values()}
                   | {"<image>", "<video>"}, key=len, reverse=True)
    pattern = re.compile("(" + "|".join(re.escape(token) for token in added) + ")")
    edges = candidate_edges(counter.longest_edge, counter.spec.tile_size)
    try:
        max_frames = video_sampling_from_processor(counter.processor).max_frames
    except TokenguardError:
        max_frames = max(FRAME_CANDIDATES)
    return {
        "source": source,
        "counter": counter,
        "known": is_known_template(getattr(counter.processor, "chat_template", None)),
        "text": fast_text_counter(counter),
        "split": pattern.split,
        "specials": frozenset(added) - {"<image>", "<video>"},
        "side": _truncation_side(source, counter.processor),
        "edges": edges,
        "edge_counters": [counter.with_settings(longest_edge=e) for e in edges],
        "frames": tuple(f for f in FRAME_CANDIDATES if f <= max_frames),
        "rates": FPS_CANDIDATES,
    }


def default_base_dir(data: str | os.PathLike[str]) -> str:
    """Where relative image paths of ``data`` resolve: its folder (a folder: itself)."""
    path = os.path.abspath(os.fspath(data))
    return path if os.path.isdir(path) else os.path.dirname(path)
