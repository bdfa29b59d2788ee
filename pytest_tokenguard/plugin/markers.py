"""The token markers as small pure functions: records in, a typed verdict out.

Each check returns a :class:`MarkerResult` with a one-line ``message`` (the line a
reader sees in the failure summary) and a ``detail`` section (the table that
explains it). The pytest hooks only decide *when* to call them, so the checks are
unit-tested without pytest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..counting import count_image
from ..processor.recording import ImageRecord, SequenceRecord
from ..specs import MAX_IMAGE_SIZE, ModelSpec

if TYPE_CHECKING:
    from ..gpu.measure import Measure


@dataclass(frozen=True)
class MarkerResult:
    """The verdict of one marker on one test."""

    passed: bool
    message: str = ""
    detail: str = ""

    def longrepr(self) -> str:
        return f"{self.message}\n\n{self.detail}" if self.detail else self.message


PASSED = MarkerResult(True)


def validate_expected_tokens(marker_name: str, value: object) -> int:
    """The marker argument as a positive int, or a ValueError that says how to write it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"@pytest.mark.{marker_name}({value!r}): expected a positive number of tokens, "
            f"e.g. @pytest.mark.{marker_name}(81)"
        )
    return value


def suggest_longest_edge(image: ImageRecord, expected: int) -> str:
    """The fix for an image that costs more (or fewer) tokens than declared.

    Searches the ``longest_edge`` values the processor accepts for the largest one
    (the most detail kept) that gives exactly ``expected`` image tokens.
    """
    if image.tile_size < 1:
        return "set the processor's size to a smaller longest_edge"
    seq_len = image.image_tokens // max(image.patches, 1)
    spec = ModelSpec(
        name="recorded", tile_size=image.tile_size, image_seq_len=max(seq_len, 1),
        default_longest_edge=image.longest_edge,
    )
    best: int | None = None
    best_patches = 0
    for edge in range(image.tile_size, MAX_IMAGE_SIZE + 1, image.tile_size):
        cost = count_image(image.width, image.height, edge, spec)
        if cost.image_tokens == expected:
            best, best_patches = edge, cost.patches
        elif cost.image_tokens > expected:  # costs only grow with the edge
            break
    if best is None:
        one = count_image(image.width, image.height, image.tile_size, spec)
        return (
            f"no longest_edge gives exactly {expected} tokens for a {image.width}×{image.height} "
            f"image; the fewest is size={{\"longest_edge\": {image.tile_size}}} "
            f"({one.image_tokens} tokens, {one.patches} patch{'es' if one.patches > 1 else ''})"
        )
    plural = "es" if best_patches > 1 else ""
    return f'size={{"longest_edge": {best}}} gives {best_patches} patch{plural} ({expected} tokens)'


def check_image_tokens(images: Sequence[ImageRecord], expected: int) -> MarkerResult:
    """Every image processed during the test must cost exactly ``expected`` ``<image>`` tokens."""
    if not images:
        return MarkerResult(
            False,
            f"Test declared {expected} image tokens per image but no SmolVLM processor call "
            "processed an image while it ran",
            "The marker checks images expanded by a real SmolVLMProcessor/Idefics3Processor "
            "call. Call the processor inside the test, or remove the marker.",
        )
    wrong = [image for image in images if image.image_tokens != expected]
    if not wrong:
        return PASSED
    first = wrong[0]
    message = (
        f"Image {first.width}×{first.height} cost {first.image_tokens} <image> tokens "
        f"({first.grid} grid, {first.patches} patches at longest_edge={first.longest_edge}) "
        f"but the test declared {expected}; {suggest_longest_edge(first, expected)}"
    )
    lines = [f"{len(wrong)} of {len(images)} images cost other than {expected} <image> tokens:"]
    lines.append(f"  {'image':>11}  {'longest_edge':>12}  {'grid':>5}  {'patches':>7}  "
                 f"{'<image>':>7}  {'block':>6}")
    for image in wrong[:20]:
        lines.append(
            f"  {f'{image.width}×{image.height}':>11}  {image.longest_edge:>12}  "
            f"{image.grid:>5}  {image.patches:>7}  {image.image_tokens:>7}  "
            f"{image.block_tokens:>6}"
        )
    if len(wrong) > 20:
        lines.append(f"  ... and {len(wrong) - 20} more")
    return MarkerResult(False, message, "\n".join(lines))


def check_max_sequence(sequences: Sequence[SequenceRecord], limit: int) -> MarkerResult:
    """No sequence produced during the test may be longer than ``limit`` tokens."""
    over = [sequence for sequence in sequences if sequence.length > limit]
    if not over:
        return PASSED
    worst = max(over, key=lambda sequence: sequence.length)
    message = (
        f"Sequence '{worst.name}' is {worst.length} tokens, over the limit of {limit} "
        f"by {worst.length - limit}"
    )
    lines = [f"{len(over)} of {len(sequences)} sequences are longer than {limit} tokens:"]
    for sequence in over[:20]:
        edge = f" at longest_edge={sequence.longest_edge}" if sequence.longest_edge else ""
        lines.append(f"  {sequence.name}: {sequence.length} tokens{edge}  {sequence.preview!r}")
    lines.append(
        "Lower the processor's longest_edge, send fewer images per sample, or split the "
        "sample (pytest_tokenguard.splitting)."
    )
    return MarkerResult(False, message, "\n".join(lines))


#: keyword arguments ``limit_predicted_gpu_memory`` passes on to the memory model
PREDICTED_KWARGS = frozenset(
    {"longest_edge", "images", "text_tokens", "batch", "gradient_checkpointing", "dtype",
     "optimizer", "image_size", "margin"}
)


@dataclass(frozen=True)
class GpuLimit:
    """A validated ``limit_gpu_memory`` marker."""

    limit_bytes: int
    measure: Measure


def validate_gpu_limit(args: Sequence[object], kwargs: Mapping[str, object]) -> GpuLimit:
    """``limit_gpu_memory("24 GiB", measure="max")`` checked at collection.

    Raises ValueError naming the marker and how to write it: a bad unit must stop the
    run before a GPU job spends minutes loading a model.
    """
    from ..gpu.measure import MEASURES
    from ..units import parse_size

    usage = '@pytest.mark.limit_gpu_memory("24 GiB", measure="max")'
    if len(args) != 1 or set(kwargs) - {"measure"}:
        raise ValueError(f"limit_gpu_memory takes one size and an optional measure: {usage}")
    try:
        limit = parse_size(args[0])
    except ValueError as exc:
        raise ValueError(f"@pytest.mark.limit_gpu_memory({args[0]!r}): {exc}") from None
    measure = kwargs.get("measure", "max")
    if measure not in MEASURES:
        raise ValueError(
            f"@pytest.mark.limit_gpu_memory(measure={measure!r}): measure must be one of "
            f"{', '.join(MEASURES)}"
        )
    return GpuLimit(limit, measure)


def validate_predicted_limit(args: Sequence[object], kwargs: Mapping[str, object]) -> int:
    """``limit_predicted_gpu_memory("80 GiB", longest_edge=1536, ...)`` checked at collection."""
    from ..units import parse_size

    usage = '@pytest.mark.limit_predicted_gpu_memory("80 GiB", longest_edge=1536, images=4)'
    unknown = sorted(set(kwargs) - PREDICTED_KWARGS)
    if len(args) != 1 or unknown:
        extra = f" (unknown: {', '.join(unknown)})" if unknown else ""
        raise ValueError(f"limit_predicted_gpu_memory takes one size and the sample's shape"
                         f"{extra}: {usage}; shape keywords: {', '.join(sorted(PREDICTED_KWARGS))}")
    try:
        return parse_size(args[0])
    except ValueError as exc:
        raise ValueError(f"@pytest.mark.limit_predicted_gpu_memory({args[0]!r}): {exc}") from None
