"""Exact image-token arithmetic for SmolVLM-family processors, with no pixels decoded.

This mirrors, step by step, what transformers' ``SmolVLMImageProcessor`` does to an
image of a given size (rescale so the longest edge equals ``longest_edge``, round the
odd side up to even, cap at 4096, grow each side to a multiple of the tile, cut into
tiles plus one global image) and what ``SmolVLMProcessor`` then writes into the text
(wrapper tokens, ``<row_r_col_c>`` markers, newlines). The float arithmetic is the
processor's own, operation for operation, so rounding agrees for every size; the test
suite proves it with hypothesis against the real processor.

Note: transformers' own ``get_number_of_image_patches`` helper takes a shortcut that
differs from the pipeline it describes; this module follows the pipeline.

Pure Python and free of pytest, so it is cheap to call millions of times.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

from .errors import CountingError as CountingError
from .specs import MAX_IMAGE_SIZE, ModelSpec

__all__ = [
    "CountingError",
    "ImageCost",
    "ImageCounter",
    "ImageSettings",
    "block_tokens",
    "count_image",
    "rescaled_size",
    "settings_from_kwargs",
    "tiled_size",
]


class ImageCost(NamedTuple):
    """What one image costs at one ``longest_edge`` (immutable).

    A ``NamedTuple`` rather than a frozen dataclass: it is built in a third of the
    time, and the counter is called millions of times by splitters and fuzzers.

    ``rows`` and ``cols`` are 0 when the image is not split (one tile only), as the
    processor reports them. ``patches`` counts the tiles the vision tower encodes,
    the global image included. ``block_tokens`` is every token the processor writes
    for the image: the ``<image>`` tokens plus the wrappers, markers and newlines.
    """

    width: int
    height: int
    longest_edge: int
    resized_width: int
    resized_height: int
    rows: int
    cols: int
    patches: int
    image_tokens: int
    block_tokens: int

    @property
    def grid(self) -> str:
        """``rows×cols`` as the failure messages print it (``1×1`` for an unsplit image)."""
        return f"{max(self.rows, 1)}×{max(self.cols, 1)}"


def _check_positive(name: str, value: object, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CountingError(f"{name} must be an integer, got {value!r}; {fix}")
    if value < 1:
        raise CountingError(f"{name} must be at least 1, got {value}; {fix}")
    return value


def rescaled_size(width: int, height: int, longest_edge: int) -> tuple[int, int]:
    """(width, height) after the processor's first resize: longest edge to ``longest_edge``."""
    aspect_ratio = width / height
    if width >= height:
        width = longest_edge
        height = int(width / aspect_ratio)
        if height % 2 != 0:
            height += 1
    else:
        height = longest_edge
        width = int(height * aspect_ratio)
        if width % 2 != 0:
            width += 1
    height = max(height, 1)
    width = max(width, 1)
    # transformers caps any side at MAX_IMAGE_SIZE, keeping the aspect ratio
    aspect_ratio = width / height
    if width >= height and width > MAX_IMAGE_SIZE:
        width = MAX_IMAGE_SIZE
        height = int(width / aspect_ratio)
    elif height > width and height > MAX_IMAGE_SIZE:
        height = MAX_IMAGE_SIZE
        width = int(height * aspect_ratio)
    return max(width, 1), max(height, 1)


def tiled_size(width: int, height: int, tile: int) -> tuple[int, int]:
    """(width, height) after ``resize_for_vision_encoder``: both sides multiples of ``tile``."""
    aspect_ratio = width / height
    if width >= height:
        width = math.ceil(width / tile) * tile
        height = int(width / aspect_ratio)
        height = math.ceil(height / tile) * tile
    else:
        height = math.ceil(height / tile) * tile
        width = int(height * aspect_ratio)
        width = math.ceil(width / tile) * tile
    return width, height


def block_tokens(rows: int, cols: int, spec: ModelSpec) -> int:
    """Tokens of the text block the processor writes for an image split ``rows``×``cols``."""
    seq = spec.image_seq_len
    # <fake_token_around_image><global-img><image>*seq<fake_token_around_image>
    global_block = 3 + seq
    if rows == 0 and cols == 0:
        return global_block
    # each tile: <fake_token_around_image><row_r_col_c><image>*seq
    if rows <= spec.special_marker_grid and cols <= spec.special_marker_grid:
        tiles = rows * cols * (2 + seq)
    else:
        tiles = sum(
            1 + spec.marker_tokens(row, col) + seq
            for row in range(1, rows + 1)
            for col in range(1, cols + 1)
        )
    # each row ends in "\n"; the last row's "\n" meets the "\n" before the global image
    newlines = (rows - 1) * spec.newline_tokens + spec.double_newline_tokens
    return tiles + newlines + global_block


def count_image(
    width: int,
    height: int,
    longest_edge: int | None = None,
    spec: ModelSpec | None = None,
    *,
    do_image_splitting: bool | None = None,
    tile_size: int | None = None,
) -> ImageCost:
    """The exact token cost of a ``width``×``height`` image at ``longest_edge``.

    ``longest_edge`` defaults to the spec's own default (1536 for SmolVLM2-2.2B);
    ``spec`` defaults to SmolVLM2-2.2B-Instruct. ``do_image_splitting`` and ``tile_size``
    override the spec's as the processor's per-call arguments do
    (``processor(..., do_image_splitting=False)``, ``max_image_size={"longest_edge": N}``);
    ``longest_edge`` is ``size={"longest_edge": N}``. The ``<image>`` tokens per tile stay
    the processor's ``image_seq_len`` whatever the tile size, as in transformers.
    """
    if spec is None:
        from .specs import DEFAULT_MODEL, KNOWN_SPECS

        spec = KNOWN_SPECS[DEFAULT_MODEL]
    if longest_edge is None:
        longest_edge = spec.default_longest_edge
    # fast path first: this function is hot, the named checks only run on bad input
    if not (type(width) is int and type(height) is int and type(longest_edge) is int
            and width > 0 and height > 0 and longest_edge > 0):
        _check_positive("width", width, "pass the image's width in pixels")
        _check_positive("height", height, "pass the image's height in pixels")
        _check_positive(
            "longest_edge",
            longest_edge,
            f'use e.g. size={{"longest_edge": {spec.tile_size}}} for one tile per image',
        )
    if tile_size is None:
        tile = spec.tile_size  # validated by ModelSpec
    else:
        tile = _check_positive("tile_size", tile_size,
                               "pass the max_image_size longest_edge, e.g. 384")
    if do_image_splitting is None:
        do_image_splitting = spec.do_image_splitting
    elif type(do_image_splitting) is not bool:
        raise CountingError(
            f"do_image_splitting must be True, False or None, got {do_image_splitting!r}"
        )
    if not do_image_splitting:
        return ImageCost(
            width, height, longest_edge, tile, tile, 0, 0, 1, spec.image_seq_len,
            block_tokens(0, 0, spec),
        )
    resized_w, resized_h = rescaled_size(width, height, longest_edge)
    tiled_w, tiled_h = tiled_size(resized_w, resized_h, tile)
    if tiled_h > tile or tiled_w > tile:
        rows = math.ceil(tiled_h / tile)
        cols = math.ceil(tiled_w / tile)
        patches = rows * cols + 1
    else:
        rows = cols = 0
        patches = 1
    return ImageCost(
        width,
        height,
        longest_edge,
        tiled_w,
        tiled_h,
        rows,
        cols,
        patches,
        patches * spec.image_seq_len,
        block_tokens(rows, cols, spec),
    )


class ImageCounter:
    """The image prices of one spec at one ``longest_edge`` and per-call settings:
    :func:`count_image` bound to them, memoised per size. Immutable: its settings are
    fixed at construction, so its prices can never go stale; a counter with other
    settings is another :class:`ImageCounter` (:meth:`with_settings`), with its own,
    empty, cache. ``TokenCounter`` owns one, and every path that prices an image of
    that counter asks it.

    Real data repeats sizes (every frame of a video, every photo of a camera), and
    splitters ask for the same image again and again while they search for a cut, so
    a dictionary lookup answers most calls. The cache is bounded: it is cleared when
    it reaches ``max_entries`` sizes.

    ``do_image_splitting`` and ``tile_size`` override the spec's, as the processor's
    per-call arguments do; they are folded into :attr:`spec`, so code that reads the
    counter's spec counts the same way.
    """

    __slots__ = ("_cache", "longest_edge", "max_entries", "spec")

    spec: ModelSpec
    longest_edge: int
    max_entries: int
    _cache: dict[tuple[int, int], ImageCost]

    def __init__(
        self,
        spec: ModelSpec,
        longest_edge: int | None = None,
        max_entries: int = 65536,
        *,
        do_image_splitting: bool | None = None,
        tile_size: int | None = None,
    ) -> None:
        edge = spec.default_longest_edge if longest_edge is None else longest_edge
        # validates every setting with the same messages
        count_image(1, 1, edge, spec, do_image_splitting=do_image_splitting,
                    tile_size=tile_size)
        init = object.__setattr__
        init(self, "spec", spec.with_settings(do_image_splitting=do_image_splitting,
                                              tile_size=tile_size))
        init(self, "longest_edge", edge)
        init(self, "max_entries", max_entries)
        init(self, "_cache", {})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"ImageCounter is immutable (cannot set {name!r}); build one with other "
            "settings with .with_settings(...)"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ImageCounter is immutable (cannot delete {name!r})")

    def with_settings(self, *, longest_edge: int | None = None,
                      do_image_splitting: bool | None = None,
                      tile_size: int | None = None) -> ImageCounter:
        """A new counter with other settings (``None`` keeps this one's) and an empty
        cache."""
        edge = self.longest_edge if longest_edge is None else longest_edge
        return ImageCounter(self.spec, edge, self.max_entries,
                            do_image_splitting=do_image_splitting, tile_size=tile_size)

    def __call__(self, width: int, height: int) -> ImageCost:
        try:
            return self._cache[width, height]
        except KeyError:
            pass
        cost = count_image(width, height, self.longest_edge, self.spec)
        if len(self._cache) >= self.max_entries:
            self._cache.clear()
        self._cache[width, height] = cost
        return cost

    def __repr__(self) -> str:
        return (f"ImageCounter({self.spec.name!r}, longest_edge={self.longest_edge}, "
                f"tile_size={self.spec.tile_size}, "
                f"do_image_splitting={self.spec.do_image_splitting})")


class ImageSettings(NamedTuple):
    """The processor call arguments that change an image's cost, as the counter takes
    them (``None``: the processor's own)."""

    longest_edge: int | None = None
    do_image_splitting: bool | None = None
    tile_size: int | None = None


def settings_from_kwargs(kwargs: Mapping[str, object]) -> ImageSettings:
    """The :class:`ImageSettings` of a processor call's keyword arguments.

    Reads ``size``, ``max_image_size`` and ``do_image_splitting`` at the top level or
    inside ``images_kwargs`` (which wins, as in transformers). Arguments the counter
    cannot model exactly (``size`` given as height and width, ``do_resize=False``) are a
    :class:`CountingError` naming them, never counted approximately.
    """
    merged = dict(kwargs)
    nested = merged.pop("images_kwargs", None)
    if isinstance(nested, dict):
        merged.update(nested)

    def edge_of(name: str) -> int | None:
        value = merged.get(name)
        if value is None:
            return None
        if isinstance(value, dict) and value.get("longest_edge") is not None:
            # SizeDict: a longest_edge wins over height/width in the SmolVLM processor
            return _check_positive(f"{name}['longest_edge']", value["longest_edge"],
                                   f'use {name}={{"longest_edge": 384}}')
        raise CountingError(
            f"{name}={value!r} cannot be counted: give {name}={{'longest_edge': N}}, the "
            "only form the SmolVLM image processor tiles by"
        )

    if merged.get("do_resize", True) is False:
        raise CountingError("do_resize=False cannot be counted: the image is then tiled at "
                            "its own size; resize it yourself and count that size")
    split = merged.get("do_image_splitting")
    if split is not None and type(split) is not bool:
        raise CountingError(f"do_image_splitting must be True or False, got {split!r}")
    return ImageSettings(edge_of("size"), split, edge_of("max_image_size"))
