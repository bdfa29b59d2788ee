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
from ..specs import FAKE_TOKEN, GLOBAL_TOKEN, IMAGE_TOKEN, KNOWN_SPECS, ModelSpec, spec_from_folder
from ..video import VideoInfo

__all__ = ["FAMILY", "SmolVLMFamily"]


class SmolVLMFamily:
    """The SmolVLM2 / Idefics3 family (see :mod:`pytest_tokenguard.families.base`)."""

    name = "smolvlm"
    model_types = frozenset({"smolvlm", "idefics3"})
    processor_classes = frozenset({"SmolVLMProcessor", "Idefics3Processor"})
    placeholders: Mapping[str, str] = MappingProxyType({"image": IMAGE_TOKEN,
                                                        "video": "<video>"})
    wrappers = (FAKE_TOKEN, GLOBAL_TOKEN)

    def known_models(self) -> Iterable[str]:
        return tuple(KNOWN_SPECS)

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
