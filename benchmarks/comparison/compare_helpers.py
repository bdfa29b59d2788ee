"""tokenguard against transformers' and vLLM's token-count helpers, on the same inputs.

For SmolVLM2 (five ``longest_edge``) and each Qwen-VL generation (the published
``max_pixels`` and two per-call ones), on seeded random image sizes (1 to 5,000 px a
side, plus a fixed list of common and edge sizes), and for Qwen videos (frame count, frame
rate, frame size), every helper is asked what an input costs:

* **the real transformers processor** (the ground truth: the ``<image>``/``<|image_pad|>``/
  ``<|video_pad|>`` tokens it writes), run on a sample of each configuration: it resizes
  real pixels, and 2 shared cores cannot run it on every case in minutes;
* **tokenguard** (:func:`~pytest_tokenguard.counting.count_image`,
  :func:`~pytest_tokenguard.families.qwen.count_qwen_image`, ``count_qwen_video``), on every
  case; it must equal the processor on every sampled case (recorded);
* **transformers' helpers**: ``processor._get_num_multimodal_tokens`` (what serving code
  asks; it calls the image processor's ``get_number_of_image_patches`` and the video
  processor's ``get_num_of_video_patches``);
* **vLLM's helpers**, from the unpacked wheels of each ``--vllm`` release, run as they ship
  in a subprocess (``vllm_worker.py``): ``Qwen2VLProcessingInfo.get_num_image_tokens`` /
  ``get_num_video_tokens`` (``Qwen2_5_VLProcessingInfo``, ``Qwen3VLProcessingInfo``),
  ``SmolVLMProcessingInfo.get_num_image_tokens`` and ``get_image_repl``, and the per-image
  reservation for memory profiling (``get_image_size_with_most_features``,
  ``get_max_image_tokens``).

Every case not in the processor's sample is judged against tokenguard, which equals the
processor on every sampled case of the same run (``tokenguard`` rows below; the oracle
tier proves it on hypothesis-generated cases). A helper given a video's frame count is
asked twice: with the clip's frames (what a user knows) and with the frames the processor
keeps after sampling (what vLLM's loader hands it, computed by tokenguard's sampler).

Usage (``setup_vllm.sh`` unpacks the wheels; about 10 minutes on 2 shared cores)::

    PYTHONPATH=$PWD python benchmarks/comparison/compare_helpers.py \\
        --vllm 0.34.0=/work/vllm-target/v34:/work/vllm-target/deps \\
        --vllm 0.19.1=/work/vllm-target/v19:/work/vllm-target/deps19:/work/vllm-target/deps

It writes ``benchmarks/comparison/results.json``; ``--table`` prints the README's table
from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results.json"
RESULTS_FORMAT = 1

SMOLVLM = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"
EDGES = (384, 512, 768, 1024, 1536)
QWEN = ("Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen3-VL-8B-Instruct")
#: None is the checkpoint's published max_pixels; the others are passed per call
MAX_PIXELS = (None, 1003520, 50176)
#: checked by the processor in every configuration, before the random sizes
FIXED_SIZES = ((1, 1), (4032, 3024), (3024, 4032), (1920, 1080), (1080, 1920), (384, 384),
               (640, 480), (5000, 24), (24, 5000), (201, 1), (2400, 12), (28, 28))
VIDEO_RATES = (1.0, 2.0, 24.0, 25.0, 30000 / 1001, 30.0, 60.0)

__all__ = ["EDGES", "FIXED_SIZES", "MAX_PIXELS", "QWEN", "RESULTS", "RESULTS_FORMAT", "SMOLVLM",
           "compare", "image_configs", "main", "readme_table", "reservation_table",
           "video_configs"]

Count = int | None


def _quiet(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, str | None]:
    """``fn(*args, **kwargs)``, or None and what it raised."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs), None
    except (ValueError, ZeroDivisionError, TypeError, IndexError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:200]


def _sizes(seed: str, n: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [*FIXED_SIZES, *((rng.randint(1, 5000), rng.randint(1, 5000)) for _ in range(n))]


# ----------------------------------------------------------------------- configurations


def image_configs(n: int) -> list[dict[str, Any]]:
    """Every image configuration with its sizes (seeded by its name)."""
    configs: list[dict[str, Any]] = []
    for edge in EDGES:
        name = f"smolvlm:{SMOLVLM}:longest_edge={edge}"
        configs.append({"name": name, "family": "smolvlm", "model": SMOLVLM, "edge": edge,
                        "max_pixels": None, "sizes": _sizes(name, n)})
    for model in QWEN:
        for mp in MAX_PIXELS:
            name = f"qwen:{model}:max_pixels={mp or 'published'}"
            configs.append({"name": name, "family": "qwen", "model": model, "edge": None,
                            "max_pixels": mp, "sizes": _sizes(name, n)})
    return configs


def video_configs(n: int) -> list[dict[str, Any]]:
    """Video configurations: clips (width, height, frames, rate) and the call. SmolVLM2's
    at ``do_sample_frames=True`` (``apply_chat_template``'s; vLLM serves no SmolVLM2
    video), then each Qwen generation's."""
    name = f"smolvlm-video:{SMOLVLM}:{json.dumps({'do_sample_frames': True})}"
    rng = random.Random(name)
    clips = [(rng.randint(16, 256), rng.randint(16, 256), rng.randint(1, 300),
              rng.choice(VIDEO_RATES)) for _ in range(n)]
    configs: list[dict[str, Any]] = [{
        "name": name, "family": "smolvlm", "model": SMOLVLM, "edge": None,
        "call": {"do_sample_frames": True},
        "clips": [(64, 36, 1800, 30.0), (160, 90, 1, 30.0), *clips]}]
    for model in QWEN:
        calls: list[dict[str, Any]] = [{}]
        if "Qwen3" not in model:  # Qwen2/2.5-VL keep every frame unless asked to sample
            calls.append({"do_sample_frames": True, "fps": 2.0})
        for call in calls:
            name = f"qwen-video:{model}:{json.dumps(call, sort_keys=True)}"
            rng = random.Random(name)
            clips = [(rng.randint(16, 256), rng.randint(16, 256), rng.randint(1, 300),
                      rng.choice(VIDEO_RATES)) for _ in range(n)]
            configs.append({"name": name, "family": "qwen", "model": model, "call": call,
                            "clips": [(64, 36, 1800, 30.0), (160, 90, 1, 30.0), *clips]})
    return configs


# ---------------------------------------------------------------------------- the counts


def tokenguard_image(config: dict[str, Any]) -> tuple[list[Count], list[Count]]:
    """tokenguard's vision tokens (and SmolVLM2's whole block) for every size."""
    tokens: list[Count] = []
    blocks: list[Count] = []
    if config["family"] == "smolvlm":
        from pytest_tokenguard.counting import count_image
        from pytest_tokenguard.specs import KNOWN_SPECS

        spec = KNOWN_SPECS[config["model"]]
        for w, h in config["sizes"]:
            cost = count_image(w, h, config["edge"], spec)
            tokens.append(cost.image_tokens)
            blocks.append(cost.block_tokens)
        return tokens, blocks
    from pytest_tokenguard.families.qwen import (
        KNOWN_QWEN_SPECS,
        QwenRefusal,
        QwenSettings,
        count_qwen_image,
    )

    qspec = KNOWN_QWEN_SPECS[config["model"]]
    for w, h in config["sizes"]:
        try:
            tokens.append(count_qwen_image(w, h, qspec,
                                           QwenSettings(None, None, config["max_pixels"])
                                           ).image_tokens)
        except QwenRefusal:
            tokens.append(None)
    return tokens, []


def _call_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    return {} if config["max_pixels"] is None else {"max_pixels": config["max_pixels"]}


def _processor(config: dict[str, Any]) -> Any:
    if config["family"] == "smolvlm":
        from pytest_tokenguard.processor.embedded import build_embedded_processor

        if config["edge"] is None:
            return build_embedded_processor(config["model"])
        return build_embedded_processor(config["model"], size={"longest_edge": config["edge"]})
    from tests.qwen_helpers import processor

    return processor(config["model"])


def transformers_image(config: dict[str, Any]) -> list[Count]:
    """``processor._get_num_multimodal_tokens(image_sizes=[(h, w)])`` for every size."""
    proc, kwargs = _processor(config), _call_kwargs(config)
    out: list[Count] = []
    for w, h in config["sizes"]:
        data, _ = _quiet(proc._get_num_multimodal_tokens, image_sizes=[(h, w)], **kwargs)
        out.append(None if data is None else data.num_image_tokens[0])
    return out


def processor_image(config: dict[str, Any], sample: int) -> tuple[list[Count], list[Count]]:
    """What the real processor writes for the first ``sample`` sizes: vision tokens and
    (SmolVLM2) the whole block; None where it refuses the image."""
    import torch
    from PIL import Image

    torch.set_num_threads(1)
    proc, kwargs = _processor(config), _call_kwargs(config)
    tokens: list[Count] = []
    blocks: list[Count] = []
    for w, h in config["sizes"][:sample]:
        image = Image.new("RGB", (w, h), (90, 120, 30))
        if config["family"] == "smolvlm":
            got, _ = _quiet(proc, text=["<image>"], images=[[image]])
            ids = None if got is None else got["input_ids"][0]
            tokens.append(None if ids is None else ids.count(proc.image_token_id))
            blocks.append(None if ids is None else len(ids))
            continue
        from tests.qwen_helpers import expand

        out, _ = _quiet(expand, proc, "x<|vision_start|><|image_pad|><|vision_end|>y",
                        images=[image], **kwargs)
        tokens.append(None if out is None else out[1].count("<|image_pad|>"))
    return tokens, blocks


def tokenguard_video(config: dict[str, Any]) -> tuple[list[Count], list[Count]]:
    """tokenguard's ``<|video_pad|>`` (SmolVLM2: ``<image>``) tokens and the frames the
    processor keeps."""
    from pytest_tokenguard.families.qwen import KNOWN_QWEN_SPECS, QwenRefusal, count_qwen_video
    from pytest_tokenguard.video import video_info

    call = config["call"]
    tokens: list[Count] = []
    kept: list[Count] = []
    if config["family"] == "smolvlm":
        from pytest_tokenguard.specs import KNOWN_SPECS
        from pytest_tokenguard.video import plan_video, video_sampling_for

        sampling = video_sampling_for(config["model"])
        assert sampling is not None
        per_frame = KNOWN_SPECS[config["model"]].image_seq_len  # one global image a frame
        for w, h, total, rate in config["clips"]:
            plan = plan_video(video_info(total, rate, width=w, height=h), sampling,
                              do_sample_frames=call["do_sample_frames"])
            tokens.append(plan.frames * per_frame)
            kept.append(plan.frames)
        return tokens, kept
    spec = KNOWN_QWEN_SPECS[config["model"]]
    for w, h, total, rate in config["clips"]:
        try:
            cost = count_qwen_video(video_info(total, rate, width=w, height=h), spec,
                                    fps=call.get("fps"),
                                    do_sample_frames=call.get("do_sample_frames"))
        except QwenRefusal:
            tokens.append(None)
            kept.append(None)
            continue
        tokens.append(cost.video_tokens)
        kept.append(cost.frames)
    return tokens, kept


def transformers_video(config: dict[str, Any], frames: Sequence[Count]) -> list[Count]:
    """``_get_num_multimodal_tokens(video_sizes=[(frames, h, w)])``: the helper takes a
    frame count, not a clip."""
    proc = _processor(config)
    out: list[Count] = []
    for (w, h, _, _), n in zip(config["clips"], frames, strict=True):
        data, _ = (None, None) if n is None else _quiet(proc._get_num_multimodal_tokens,
                                                        video_sizes=[(n, h, w)])
        out.append(None if data is None else data.num_video_tokens[0])
    return out


def processor_video(config: dict[str, Any], sample: int) -> list[Count]:
    """The ``<|video_pad|>`` (SmolVLM2: ``<image>``) tokens the real processor writes for
    the first clips."""
    import numpy as np

    from tests.qwen_helpers import expand

    proc = _processor(config)
    tokens: list[Count] = []
    for w, h, total, rate in config["clips"][:sample]:
        frames = np.zeros((total, h, w, 3), np.uint8)
        metadata = {"total_num_frames": total, "fps": rate, "duration": total / rate}
        if config["family"] == "smolvlm":
            got, _ = _quiet(proc, text=["<video>"], videos=[frames], video_metadata=[metadata],
                            **config["call"])
            tokens.append(None if got is None else
                          got["input_ids"][0].count(proc.image_token_id))
            continue
        out, _ = _quiet(expand, proc, "x<|vision_start|><|video_pad|><|vision_end|>y",
                        videos=[frames], video_metadata=[metadata], **config["call"])
        tokens.append(None if out is None else out[1].count("<|video_pad|>"))
    return tokens


# ------------------------------------------------------------------------------- vLLM


def vllm_jobs(images: Sequence[dict[str, Any]], videos: Sequence[dict[str, Any]],
              kept: Sequence[Sequence[Count]]) -> list[dict[str, Any]]:
    """The worker's jobs: every image configuration, every video configuration twice
    (the clip's frames, the kept frames), and the Qwen reservations."""
    jobs: list[dict[str, Any]] = []
    for c in images:
        job: dict[str, Any] = {"kind": "image", "family": c["family"], "model": c["model"],
                               "sizes": c["sizes"]}
        if c["family"] == "smolvlm":  # vLLM: --mm-processor-kwargs at load
            job["mm_processor_kwargs"] = {"size": {"longest_edge": c["edge"]}}
        else:  # a request's mm_processor_kwargs
            job["request_kwargs"] = _call_kwargs(c)
        jobs.append(job)
    for c, frames in zip(videos, kept, strict=True):
        if c["family"] != "qwen":  # vLLM serves SmolVLM2 images only
            continue
        for feed in (c["clips"], frames):
            counts = [clip[2] if isinstance(clip, (list, tuple)) else clip for clip in feed]
            jobs.append({"kind": "video", "family": "qwen", "model": c["model"],
                         "videos": [[w, h, n] for (w, h, _, _), n
                                    in zip(c["clips"], counts, strict=True)]})
    for model in QWEN:
        for mp in (None, 1003520):
            jobs.append({"kind": "reserve", "family": "qwen", "model": model,
                         "mm_processor_kwargs": None if mp is None else {"max_pixels": mp}})
    return jobs


def run_vllm(label: str, path: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """The worker's answers, run with ``path`` (vLLM's unpacked wheel first) on sys.path."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "jobs.json", Path(tmp) / "out.json"
        src.write_text(json.dumps(jobs), encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([path, str(ROOT)]))
        subprocess.run([sys.executable, "-m", "benchmarks.comparison.vllm_worker", str(src),
                        str(dst)], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        out: dict[str, Any] = json.loads(dst.read_text(encoding="utf-8"))
    if out["version"] != label:
        raise SystemExit(f"--vllm {label}={path} imported vLLM {out['version']}")
    return out


# ------------------------------------------------------------------------- comparing


def compare(name: str, helper: Sequence[Count], truth: Sequence[Count],
            inputs: Sequence[Any], sample: int) -> dict[str, Any]:
    """How ``helper`` differs from ``truth`` (the processor on the first ``sample``
    inputs, tokenguard after): wrong, under, over, refused or priced wrongly, examples."""
    wrong = under = over = refused = priced = sampled_wrong = 0
    examples: list[dict[str, Any]] = []
    for i, (got, want) in enumerate(zip(helper, truth, strict=True)):
        if got == want:
            continue
        wrong += 1
        sampled_wrong += i < sample
        if got is None:
            refused += 1
        elif want is None:
            priced += 1
        elif got < want:
            under += 1
        else:
            over += 1
        low = got is not None and want is not None and got < want
        if len(examples) < 3 or (low and sum(e["under"] for e in examples) < 2):
            examples.append({"input": list(inputs[i]), "helper": got, "truth": want,
                             "under": low, "processor_checked": i < sample})
    cases = len(truth)
    return {"helper": name, "cases": cases, "processor_checked": min(sample, cases),
            "wrong": wrong, "wrong_pct": round(100 * wrong / cases, 2), "under": under,
            "over": over, "refused_what_processor_takes": refused,
            "priced_what_processor_refuses": priced, "wrong_in_processor_sample": sampled_wrong,
            "examples": examples[:5]}


def _video_what(config: dict[str, Any], feed: str) -> str:
    call = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in config["call"].items()) or "the processor's defaults"
    return f"video tokens ({call}), given {feed}"


def _truth(processor: Sequence[Count], tokenguard: Sequence[Count]) -> list[Count]:
    return [*processor, *tokenguard[len(processor):]]


def _versions(vllm: dict[str, dict[str, Any]]) -> dict[str, Any]:
    import torch
    import transformers

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=False).stdout.strip()
    return {"python": platform.python_version(), "transformers": transformers.__version__,
            "torch": torch.__version__, "tokenguard_commit": commit,
            "vllm": {label: {"files": sorted(v["files"])} for label, v in vllm.items()}}


VLLM_FILES = {
    "smolvlm": "vllm/model_executor/models/smolvlm.py, idefics3.py "
               "(SmolVLMProcessingInfo.get_num_image_tokens, get_image_repl)",
    "qwen": "vllm/model_executor/models/qwen2_vl.py, qwen2_5_vl.py, qwen3_vl.py "
            "(*ProcessingInfo.get_num_image_tokens, get_num_video_tokens, _get_vision_info, "
            "get_image_size_with_most_features, get_max_image_tokens)",
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    images, videos = image_configs(args.cases), video_configs(args.video_cases)
    rows: list[dict[str, Any]] = []
    tg_rows: list[dict[str, Any]] = []
    image_data = []
    for c in images:
        sample = len(FIXED_SIZES) + (args.smolvlm_sample if c["family"] == "smolvlm"
                                     else args.qwen_sample)
        tg, tg_block = tokenguard_image(c)
        proc, proc_block = processor_image(c, sample)
        truth = _truth(proc, tg)
        tg_rows.append({"config": c["name"], **compare("tokenguard", tg[:sample], proc,
                                                       c["sizes"], sample)})
        if proc_block:
            tg_rows.append({"config": c["name"] + " (whole block)",
                            **compare("tokenguard", tg_block[:sample], proc_block, c["sizes"],
                                      sample)})
        image_data.append((c, sample, truth, _truth(proc_block, tg_block)))
        rows.append({"config": c["name"], "family": c["family"], "what": "image tokens",
                     "version": "transformers",
                     **compare("transformers _get_num_multimodal_tokens", transformers_image(c),
                               truth, c["sizes"], sample)})
        print(f"{c['name']}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    video_data = []
    kept_all = []
    for c in videos:
        tg, kept = tokenguard_video(c)
        proc = processor_video(c, args.video_sample)
        truth = _truth(proc, tg)
        tg_rows.append({"config": c["name"], **compare("tokenguard", tg[:args.video_sample],
                                                       proc, c["clips"], args.video_sample)})
        clip_frames: list[Count] = [clip[2] for clip in c["clips"]]
        for feed, frames in (("the clip's frames", clip_frames), ("the kept frames", kept)):
            rows.append({"config": c["name"], "family": c["family"],
                         "what": _video_what(c, feed), "version": "transformers",
                         **compare("transformers _get_num_multimodal_tokens",
                                   transformers_video(c, frames), truth, c["clips"],
                                   args.video_sample)})
        video_data.append((c, truth))
        kept_all.append(kept)
        print(f"{c['name']}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    jobs = vllm_jobs(images, videos, kept_all)
    vllm_out: dict[str, dict[str, Any]] = {}
    reservations: list[dict[str, Any]] = []
    for label, path in args.vllm:
        out = run_vllm(label, path, jobs)
        results = iter(out["results"])
        vllm_out[label] = {"files": [VLLM_FILES["smolvlm"], VLLM_FILES["qwen"]]}
        for c, sample, truth, block_truth in image_data:
            got = next(results)
            rows.append({"config": c["name"], "family": c["family"], "what": "image tokens",
                         "version": f"vLLM {label}",
                         **compare("vLLM get_num_image_tokens", got["tokens"], truth,
                                   c["sizes"], sample)})
            if c["family"] == "smolvlm":
                rows.append({"config": c["name"], "family": "smolvlm",
                             "what": "whole image block", "version": f"vLLM {label}",
                             **compare("vLLM get_image_repl", got["blocks"], block_truth,
                                       c["sizes"], sample)})
        for c, truth in video_data:
            if c["family"] != "qwen":
                continue
            for feed in ("the clip's frames", "the kept frames"):
                got = next(results)
                rows.append({"config": c["name"], "family": "qwen",
                             "what": _video_what(c, feed), "version": f"vLLM {label}",
                             **compare("vLLM get_num_video_tokens", got["tokens"], truth,
                                       c["clips"], args.video_sample)})
        for model in QWEN:
            for mp in (None, 1003520):
                got = next(results)
                reservations.append({"model": model, "vllm": label,
                                     "max_pixels": mp, "size": got["size"],
                                     "reserved": got["tokens"]})
    reservations = check_reservations(reservations)
    return {"format": RESULTS_FORMAT, "versions": _versions(vllm_out),
            "seeds": "random.Random(config name): the name of each configuration",
            "settings": {"cases": args.cases, "smolvlm_sample": args.smolvlm_sample,
                         "qwen_sample": args.qwen_sample, "video_cases": args.video_cases,
                         "video_sample": args.video_sample, "fixed_sizes": FIXED_SIZES,
                         "side_range": [1, 5000], "edges": EDGES, "max_pixels": MAX_PIXELS},
            "seconds": round(time.perf_counter() - started),
            "tokenguard": tg_rows, "helpers": rows, "reservations": reservations}


def check_reservations(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the processor writes for vLLM's size with the most features, and the most any
    image can cost at that ``max_pixels`` (tokenguard), beside what vLLM reserves."""
    from PIL import Image

    from pytest_tokenguard.families.qwen import KNOWN_QWEN_SPECS, QwenSettings, count_qwen_image
    from tests.qwen_helpers import expand, processor

    done: dict[tuple[str, int | None, tuple[int, int]], int | None] = {}
    for row in rows:
        spec = KNOWN_QWEN_SPECS[row["model"]]
        mp = row["max_pixels"] or spec.image.max_pixels
        w, h = row["size"]
        key = (row["model"], row["max_pixels"], (w, h))
        if key not in done:
            kwargs = {} if row["max_pixels"] is None else {"max_pixels": mp}
            out, _ = _quiet(expand, processor(row["model"]),
                            "x<|vision_start|><|image_pad|><|vision_end|>y",
                            images=[Image.new("RGB", (w, h))], **kwargs)
            done[key] = None if out is None else out[1].count("<|image_pad|>")
        row["max_pixels"] = mp
        row["processor_writes"] = done[key]
        row["tokenguard"] = count_qwen_image(w, h, spec, QwenSettings(None, None, mp)
                                             ).image_tokens
        row["most_any_image_costs"] = mp // spec.image.factor ** 2
    return rows


# ---------------------------------------------------------------------- the README table


def _pct(row: dict[str, Any]) -> str:
    return f"{row['wrong']:,} ({row['wrong_pct']:g}%)"


def _direction(row: dict[str, Any]) -> str:
    parts = [f"{row[k]:,} {label}" for k, label in (
        ("under", "under"), ("over", "over"),
        ("refused_what_processor_takes", "refused, processor takes"),
        ("priced_what_processor_refuses", "priced, processor refuses")) if row[k]]
    return ", ".join(parts) or "-"


def _groups(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str, str], list[Any]]:
    groups: dict[tuple[str, str, str, str], list[Any]] = {}
    for row in rows:
        family = "SmolVLM2-2.2B" if row["family"] == "smolvlm" else (
            row["config"].split(":")[1].removeprefix("Qwen/").removesuffix("-Instruct"))
        key = (family, row["helper"], row["version"], row["what"])
        groups.setdefault(key, []).append(row)
    return groups


def _sum(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    total = {k: sum(r[k] for r in rows) for k in (
        "cases", "processor_checked", "wrong", "under", "over", "wrong_in_processor_sample",
        "refused_what_processor_takes", "priced_what_processor_refuses")}
    total["wrong_pct"] = round(100 * total["wrong"] / total["cases"], 2)
    return total


def readme_table(results: dict[str, Any]) -> str:
    """The README's comparison table, one row per family, helper, release and input."""
    lines = ["| family | helper | release | input | cases (processor-checked) | wrong | "
             "direction |", "| --- | --- | --- | --- | --- | --- | --- |"]
    tg = _sum(results["tokenguard"])
    lines.append(f"| all | tokenguard | this commit | every processor-checked case above | "
                 f"{tg['cases']:,} ({tg['processor_checked']:,}) | {_pct(tg)} | "
                 f"{_direction(tg)} |")
    versions = results["versions"]
    for (family, helper, version, what), rows in _groups(results["helpers"]).items():
        total = _sum(rows)
        release = f"transformers {versions['transformers']}" if version == "transformers" \
            else version
        lines.append(f"| {family} | `{helper.split()[-1]}` | {release} | {what} | "
                     f"{total['cases']:,} ({total['processor_checked']:,}) | {_pct(total)} | "
                     f"{_direction(total)} |")
    return "\n".join(lines) + "\n"


def reservation_table(results: dict[str, Any]) -> str:
    lines = ["| model | vLLM | max_pixels | size vLLM profiles | reserved | processor writes "
             "| most any image costs |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["reservations"]:
        lines.append(f"| {r['model']} | {r['vllm']} | {r['max_pixels']:,} | "
                     f"{r['size'][0]}×{r['size'][1]} | {r['reserved']:,} | "
                     f"{r['processor_writes']:,} | {r['most_any_image_costs']:,} |")
    return "\n".join(lines) + "\n"


def _vllm_arg(text: str) -> tuple[str, str]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"--vllm {text!r}: give VERSION=PATH[:PATH...]")
    return label, path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vllm", type=_vllm_arg, action="append", default=[],
                        help="VERSION=PATH: an unpacked vLLM wheel (and its import deps)")
    parser.add_argument("--cases", type=int, default=3000, help="random sizes a configuration")
    parser.add_argument("--smolvlm-sample", type=int, default=100)
    parser.add_argument("--qwen-sample", type=int, default=50)
    parser.add_argument("--video-cases", type=int, default=400)
    parser.add_argument("--video-sample", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--table", action="store_true",
                        help="print the README tables from --out and exit")
    args = parser.parse_args(argv)
    if args.table:
        results = json.loads(args.out.read_text(encoding="utf-8"))
        print(readme_table(results) + "\n" + reservation_table(results), end="")
        return 0
    results = run(args)
    from pytest_tokenguard.files import write_atomic

    write_atomic(args.out, json.dumps(results, indent=1) + "\n")
    print(readme_table(results) + "\n" + reservation_table(results), end="")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
