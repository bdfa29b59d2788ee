"""Reading a processor call's output, whatever the model: the sequences it returned and
their lengths (padding told apart from text, exactly or flagged), the sizes of the images
it was given, and the tokenizer facts those need (probed once per tokenizer).

What one model family reads of its images and videos is the family's
(:mod:`.smolvlm`, and the families' own readers); this module is what they share.
transformers is imported only inside functions, on a call the recorder reads.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from ...specs import ModelSpec, with_tokenizer_facts
from .records import ImageRecord, VideoRecord

__all__ = ["PADDING_UNKNOWN", "Frame", "unpadded_lengths"]

#: why a sequence's length is an upper bound rather than exact
PADDING_UNKNOWN = (
    "padded without an attention mask, and the padding could not be told apart from the "
    "text: the length includes it (pass return_attention_mask=True for the exact length)"
)


def image_size(image: Any) -> tuple[int, int]:
    """(width, height) of a PIL image, array or tensor as the processor reads it."""
    if hasattr(image, "size") and isinstance(image.size, tuple) and len(image.size) == 2:
        return int(image.size[0]), int(image.size[1])
    from transformers.image_utils import get_image_size, infer_channel_dimension_format

    height, width = get_image_size(image, channel_dim=infer_channel_dimension_format(image))
    return int(width), int(height)


def setting(kwargs: dict[str, Any], name: str, default: Any) -> Any:
    value = kwargs.get(name)
    return default if value is None else value


class TokenizerFacts:
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


_FACTS: weakref.WeakKeyDictionary[Any, TokenizerFacts] = weakref.WeakKeyDictionary()
_FACTS_LOCK = threading.Lock()


def facts_of(tokenizer: Any) -> TokenizerFacts:
    try:
        facts = _FACTS.get(tokenizer)
    except TypeError:  # not weakly referenceable: probe each time (slow, still exact)
        return TokenizerFacts(tokenizer)
    if facts is None:
        with _FACTS_LOCK:
            facts = _FACTS.get(tokenizer)
            if facts is None:
                facts = _FACTS[tokenizer] = TokenizerFacts(tokenizer)
    return facts


def rows_of(values: Any) -> list[list[int]]:
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
    rows = rows_of(input_ids)
    pad_id = getattr(tokenizer, "pad_token_id", None)
    if pad_id is None:
        return [(len(row), "") for row in rows]
    facts: TokenizerFacts | None = None
    out: list[tuple[int, str]] = []
    for index, row in enumerate(rows):
        pads = row.count(pad_id)
        if not pads:
            out.append((len(row), ""))
            continue
        facts = facts or facts_of(tokenizer)
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


def _real_pads(text: str | None, tokenizer: Any, facts: TokenizerFacts,
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


def text_argument(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    text = kwargs.get("text", args[1] if len(args) > 1 else None)
    return [text] if isinstance(text, str) else list(text or [])


def preview(text: Any) -> str:
    return " ".join(text[:200].split())[:60] if isinstance(text, str) else ""


class Frame:
    """What one processor call's inner steps report to its ``__call__`` wrapper."""

    __slots__ = ("edge", "error", "expanded", "images", "reader", "text_kwargs", "videos")

    def __init__(self) -> None:
        self.reader: Any = None  # the family module that reads this call
        self.error: Exception | None = None
        self.images: list[ImageRecord] = []
        self.videos: list[VideoRecord] = []
        self.edge: int | None = None
        self.expanded: list[str] | None = None
        self.text_kwargs: dict[str, Any] | None = None


def int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def text_counter(tokenizer: Any) -> Callable[[str], int]:
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


def flat(nested: Any) -> list[int]:
    if nested is None:
        return []
    if hasattr(nested, "tolist"):
        nested = nested.tolist()
    out: list[int] = []
    for item in nested:
        if isinstance(item, (list, tuple)):
            out.extend(int(v) for v in item)
        else:
            out.append(int(item))
    return out


def samples(processor: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any,
            frame: Frame, edge: int | None) -> list[tuple[int, str, int | None, str]]:
    """(length, preview, longest_edge, note) of each sequence the call returned; ``edge``
    is the call's resolution (its ``longest_edge``, ``None`` where it has none)."""
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
            lengths = [(int(sum(row)), "") for row in rows_of(mask)]
    else:
        expanded = frame.expanded
        if expanded is None and not frame.images:  # no image: the text went in as is
            expanded = [t for t in text_argument(args, kwargs) if isinstance(t, str)]
        lengths = unpadded_lengths(input_ids, expanded, processor.tokenizer,
                                   frame.text_kwargs)
    texts = text_argument(args, kwargs)
    return [(length, preview(texts[index]) if index < len(texts) else "", edge, note)
            for index, (length, note) in enumerate(lengths)]
