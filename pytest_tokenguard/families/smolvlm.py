"""SmolVLM2 / Idefics3 on the family seam: an adapter over the existing modules.

Nothing is counted differently: images go to :func:`~pytest_tokenguard.counting.count_image`
with the settings :func:`~pytest_tokenguard.counting.settings_from_kwargs` reads, videos
to :class:`~pytest_tokenguard.video.VideoCounter`, the spec comes from
:mod:`pytest_tokenguard.specs`, and the tokenizer of a known checkpoint that is not on
this machine is SmolVLM2's own, shipped with tokenguard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..counting import ImageCost, ImageSettings, count_image, settings_from_kwargs
from ..errors import SpecError
from ..specs import (
    FAKE_TOKEN,
    GLOBAL_TOKEN,
    IMAGE_TOKEN,
    KNOWN_SPECS,
    MAX_IMAGE_SIZE,
    ModelSpec,
    spec_from_folder,
)
from ..video import VideoInfo

__all__ = [
    "FAMILY",
    "SmolVLMFamily",
    "describe_smolvlm_image",
    "frame_fix",
    "suggest_longest_edge",
    "suggest_sampling",
]


def _patches(n: int) -> str:
    return f"{n} patch" if n == 1 else f"{n} patches"


def describe_smolvlm_image(image: Any) -> str:
    """How a failing ``image_tokens`` marker describes a recorded SmolVLM image's cost."""
    return (f"cost {image.image_tokens} <image> tokens ({image.grid} grid, "
            f"{_patches(image.patches)} at longest_edge={image.longest_edge})")


def suggest_longest_edge(image: Any, expected: int) -> str:
    """The fix for an image that costs more (or fewer) tokens than declared.

    Searches the ``longest_edge`` values the processor accepts for the largest one
    (the most detail kept) that gives exactly ``expected`` image tokens.
    """
    if image.tile_size < 1:
        return "set the processor's size to a smaller longest_edge"
    if getattr(image, "do_image_splitting", True) is False:
        return ("image splitting is off for this call, so every image costs one tile at any "
                "longest_edge: change the tile size (max_image_size) or the image count")
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
            f"({one.image_tokens} tokens, {_patches(one.patches)})"
        )
    return f'size={{"longest_edge": {best}}} gives {_patches(best_patches)} ({expected} tokens)'


def _rate(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def suggest_sampling(video: Any, limit: int) -> str:
    """The fix for a video that costs more than ``limit`` tokens: the largest
    ``num_frames`` (the processor's ``video_sampling.max_frames`` per call) and the
    largest sampling ``fps`` whose exact cost fits, read off the costs the recorder
    computed (:func:`pytest_tokenguard.video.largest_within`)."""
    from ..video import largest_within

    if not video.by_num_frames:
        return ("its metadata has no frame rate or duration, so no sampling can be "
                "suggested: pass video_metadata with fps and duration, or fewer frames")
    cap = largest_within(video.by_num_frames, limit)
    if cap is None:
        return (f"even one sampled frame costs {video.by_num_frames[0]} tokens: raise the "
                "limit, or send the frame as an image")
    rate = f", at fps={_rate(video.sample_fps)}" if video.sample_fps is not None else ""
    fix = (f"num_frames={cap} fits ({video.by_num_frames[cap - 1]} tokens{rate}; "
           f"processor(..., num_frames={cap}, do_sample_frames=True), apply_chat_template"
           f"(..., num_frames={cap}), or video_sampling max_frames={cap})")
    fitting = [(fps, tokens) for fps, tokens in video.by_fps if tokens <= limit]
    if fitting:
        fps, tokens = fitting[-1]
        fix += f"; or fps={_rate(fps)} ({tokens} tokens)"
    if not video.sampled:
        fix = ("this call kept every frame (do_sample_frames is off by default in a direct "
               f"processor call): pass do_sample_frames=True; {fix}")
    return fix



def frame_fix(record: Any, per: int, per_frame: int) -> str:
    """Why a recorded SmolVLM2 video's frames cost ``per`` tokens each, over
    ``per_frame``: a frame is one image block whose size the checkpoint fixes."""
    return (f"costs {per} tokens a frame (its image block), over the declared per_frame="
            f"{per_frame}: every sampled frame is one image block, the checkpoint's "
            "image_seq_len <image> tokens and the 3 around them (84 on the 2.2B, 67 on the "
            "256M and 500M), which no num_frames, fps or resolution changes; declare "
            f"per_frame={per} or more")


class SmolVLMFamily:
    """The SmolVLM2 / Idefics3 family (see :mod:`pytest_tokenguard.families.base`)."""

    name = "smolvlm"
    model_types = frozenset({"smolvlm", "idefics3"})
    processor_classes = frozenset({"SmolVLMProcessor", "Idefics3Processor"})
    placeholders: Mapping[str, str] = MappingProxyType({"image": IMAGE_TOKEN,
                                                        "video": "<video>"})
    wrappers = (FAKE_TOKEN, GLOBAL_TOKEN)
    processor_modules: Mapping[str, str] = MappingProxyType({
        "transformers.models.smolvlm.processing_smolvlm": "SmolVLMProcessor",
        "transformers.models.idefics3.processing_idefics3": "Idefics3Processor",
    })
    call_reader = "pytest_tokenguard.processor.recording.smolvlm"
    image_token = IMAGE_TOKEN

    def known_models(self) -> Iterable[str]:
        return tuple(KNOWN_SPECS)

    def describe_image(self, record: Any) -> str:
        return describe_smolvlm_image(record)

    def image_fix(self, record: Any, expected: int) -> str:
        return suggest_longest_edge(record, expected)

    def video_fix(self, record: Any, limit: int) -> str:
        return suggest_sampling(record, limit)

    def frame_fix(self, record: Any, per: int, per_frame: int) -> str:
        return frame_fix(record, per, per_frame)

    def spec(self, model: str, folder: Path | None) -> ModelSpec:
        if folder is not None:
            return spec_from_folder(folder, name=model)
        spec = KNOWN_SPECS.get(model)
        if spec is None:
            raise SpecError(f"no SmolVLM2 settings are known for {model!r}; point the model at "
                            "a checkpoint folder")
        return spec

    def call_settings(self, kwargs: Mapping[str, object]) -> ImageSettings:
        return settings_from_kwargs(kwargs)

    def image_cost(self, spec: ModelSpec, width: int, height: int,
                   settings: ImageSettings | None = None) -> ImageCost:
        given = settings or ImageSettings()
        return count_image(width, height, given.longest_edge, spec,
                           do_image_splitting=given.do_image_splitting,
                           tile_size=given.tile_size)

    def video_cost(self, spec: ModelSpec, info: VideoInfo, *, num_frames: int | None = None,
                   fps: float | None = None,
                   text: Callable[[str], int] | None = None) -> Any:
        from ..video import VideoCounter, video_sampling_for

        sampling = video_sampling_for(spec.name)
        if sampling is None:
            raise SpecError(f"{spec.name}: no video_sampling known; count videos with "
                            "VideoCounter.from_folder")
        counter = VideoCounter(spec, text or self.text_counter(spec.name, None), sampling)
        return counter(info, num_frames=num_frames, fps=fps)

    def text_counter(self, model: str, folder: Path | None) -> Callable[[str], int]:
        if folder is not None:
            from ..video import text_counter_from_folder

            return text_counter_from_folder(folder)
        from tokenizers import Tokenizer

        from ..processor.embedded import tokenizer_json
        from ..video import tokenizer_text_counter

        return tokenizer_text_counter(Tokenizer.from_str(tokenizer_json()))


FAMILY = SmolVLMFamily()
