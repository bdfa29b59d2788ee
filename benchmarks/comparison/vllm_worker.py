"""vLLM's own token-count helpers, run on the cases ``compare_helpers.py`` hands over.

Run by ``compare_helpers.py`` in a subprocess whose ``sys.path`` starts with one unpacked
vLLM wheel (``setup_vllm.sh``), so two vLLM releases never meet in one process. vLLM's
modules are imported as they ship (``vllm.model_executor.models.qwen2_vl``, ``qwen2_5_vl``,
``qwen3_vl``, ``smolvlm``/``idefics3``); its compiled ops are not needed by these helpers.
Only the model *loading* is replaced: :class:`InputProcessingContext` (vLLM's own class)
gets a ``model_config`` holding the transformers config and vLLM's own
``MultiModalConfig``, and ``get_hf_processor`` returns the real transformers processor
built from the published settings (``tests/qwen_helpers.py``, the embedded SmolVLM2
default) instead of downloading it. Everything vLLM computes (merging
``mm_processor_kwargs``, ``smart_resize``, the patch grid, ``get_image_repl``,
``get_max_image_tokens``) is its own code.

Usage: ``python -m benchmarks.comparison.vllm_worker JOBS.json OUT.json``.
"""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

__all__ = ["main", "run_job"]


def _config(model: str) -> Any:
    """The transformers config class vLLM checks, with the vision shapes the helpers read
    (patch, merge and temporal patch: the published values)."""
    from pytest_tokenguard.families.qwen import KNOWN_QWEN_SPECS

    spec = KNOWN_QWEN_SPECS[model]
    vision = {"patch_size": spec.image.patch_size, "spatial_merge_size": spec.image.merge_size,
              "temporal_patch_size": spec.video.temporal_patch_size}
    if spec.generation == "qwen3_vl":
        from transformers import Qwen3VLConfig

        return Qwen3VLConfig(vision_config=vision)
    if spec.generation == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        return Qwen2_5_VLConfig(vision_config=vision)
    from transformers import Qwen2VLConfig

    return Qwen2VLConfig(vision_config=vision)


def _info(job: dict[str, Any]) -> tuple[Any, Any]:
    """vLLM's ``*ProcessingInfo`` for the job's model and the processor it is given."""
    context = importlib.import_module("vllm.multimodal.processing.context")
    mm_config = importlib.import_module("vllm.config.multimodal").MultiModalConfig(
        mm_processor_kwargs=job.get("mm_processor_kwargs") or None)
    if job["family"] == "smolvlm":
        from transformers import SmolVLMConfig

        from pytest_tokenguard.processor.embedded import build_embedded_processor

        kwargs = job.get("mm_processor_kwargs") or {}
        processor = build_embedded_processor(job["model"], **kwargs)
        hf_config = SmolVLMConfig()
        info_cls = importlib.import_module("vllm.model_executor.models.smolvlm"
                                           ).SmolVLMProcessingInfo
    else:
        from tests.qwen_helpers import model_spec
        from tests.qwen_helpers import processor as qwen_processor

        processor = qwen_processor(job["model"])
        hf_config = _config(job["model"])
        generation = model_spec(job["model"]).generation
        module, name = {"qwen2_vl": ("qwen2_vl", "Qwen2VLProcessingInfo"),
                        "qwen2_5_vl": ("qwen2_5_vl", "Qwen2_5_VLProcessingInfo"),
                        "qwen3_vl": ("qwen3_vl", "Qwen3VLProcessingInfo")}[generation]
        info_cls = getattr(importlib.import_module(f"vllm.model_executor.models.{module}"), name)
    model_config = SimpleNamespace(hf_config=hf_config, multimodal_config=mm_config,
                                   get_multimodal_config=lambda: mm_config, model=job["model"],
                                   hf_image_processor_config={})

    class Context(context.InputProcessingContext):  # type: ignore[misc,name-defined]
        """vLLM's context with the processor handed in instead of downloaded."""

        def get_hf_processor(self, typ: Any = None, /, **kwargs: object) -> Any:
            if typ is not None and not isinstance(processor, typ):
                raise TypeError(f"{type(processor).__name__} is not {typ}")
            return processor

    return info_cls(Context(model_config=model_config, tokenizer=processor.tokenizer)), processor


def _call(fn: Any) -> tuple[int | None, str | None]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return int(fn()), None
    except (ValueError, ZeroDivisionError, TypeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:200]


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """The counts vLLM's helpers give for one job (None where the helper raised)."""
    info, processor = _info(job)
    counts: list[int | None] = []
    blocks: list[int | None] = []
    errors: list[str | None] = []
    kind = job["kind"]
    if kind == "reserve":
        size = info.get_image_size_with_most_features()
        return {"size": [int(size.width), int(size.height)],
                "tokens": int(info.get_max_image_tokens())}
    mm_kwargs = job.get("request_kwargs") or {}
    if kind == "image" and job["family"] == "smolvlm":
        tokenizer = processor.tokenizer
        for w, h in job["sizes"]:
            n, err = _call(lambda w=w, h=h: info.get_num_image_tokens(
                image_width=w, image_height=h, processor=processor, mm_kwargs=mm_kwargs))
            block, _ = _call(lambda w=w, h=h: len(tokenizer(info.get_image_repl(
                image_width=w, image_height=h, processor=processor, mm_kwargs=mm_kwargs),
                add_special_tokens=False)["input_ids"]))
            counts.append(n)
            blocks.append(block)
            errors.append(err)
        return {"tokens": counts, "blocks": blocks, "errors": errors}
    if kind == "image":
        image_processor = info.get_image_processor()
        for w, h in job["sizes"]:
            n, err = _call(lambda w=w, h=h: info.get_num_image_tokens(
                image_width=w, image_height=h, image_processor=image_processor,
                mm_kwargs=mm_kwargs))
            counts.append(n)
            errors.append(err)
        return {"tokens": counts, "errors": errors}
    # a video: vLLM's helper takes the frames it is told (its loader samples before it)
    video_processor = (processor.video_processor if "qwen3" in job["model"].lower()
                       else info.get_image_processor())
    for w, h, frames in job["videos"]:
        if frames is None:  # the processor refuses the clip: nothing to ask
            counts.append(None)
            errors.append(None)
            continue
        n, err = _call(lambda w=w, h=h, frames=frames: info.get_num_video_tokens(
            image_width=w, image_height=h, num_frames=frames,
            image_processor=video_processor, mm_kwargs=mm_kwargs))
        counts.append(n)
        errors.append(err)
    return {"tokens": counts, "errors": errors}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    jobs = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    vllm = importlib.import_module("vllm")
    out = {"version": str(vllm.__version__), "file": str(Path(str(vllm.__file__)).parent),
           "results": [run_job(job) for job in jobs]}
    Path(args[1]).write_text(json.dumps(out), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
