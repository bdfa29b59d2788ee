"""The one helper module of the test suite: where the processor files are, how the real
processor is loaded (once per process), and the recorded GPU measurements.

The processor files are not in the repo: they live in ``../shared/models`` beside the
checkout (or wherever ``TOKENGUARD_MODELS_DIR`` points). Tests that need them skip with
the reason when they are missing.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from pytest_tokenguard.processor.loading import LoadedProcessor, load_processor
from pytest_tokenguard.tokens import TokenCounter

ROOT = Path(__file__).resolve().parent.parent
REPO = ROOT
FIXTURES = ROOT / "fixtures"
GPU_RESULTS_DIR = ROOT / "benchmarks" / "gpu"
CHECKPOINTS = {
    "2.2B": "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
    "500M": "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
    "256M": "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
}
#: the hub ids of the three checkpoints, 2.2B first
MODEL_IDS = tuple(CHECKPOINTS.values())
RESOLUTIONS = (384, 512, 768, 1024, 1536)
#: every (checkpoint, longest_edge) the property tests run at
GRID = [(ckpt, edge) for ckpt in CHECKPOINTS for edge in RESOLUTIONS]


def models_dir() -> Path:
    return Path(os.environ.get("TOKENGUARD_MODELS_DIR") or ROOT.parent / "shared" / "models")


MODELS_DIR = models_dir()


def model_folder(name: str) -> Path:
    """The folder of a checkpoint's real processor files (hub id or short name)."""
    folder = models_dir() / CHECKPOINTS.get(name, name)
    if not (folder / "preprocessor_config.json").is_file():
        pytest.skip(f"real processor files for {name} not found in {models_dir()}; set "
                    "TOKENGUARD_MODELS_DIR to the shared models folder")
    return folder


def model_path(checkpoint: str = "2.2B") -> str:
    return str(model_folder(checkpoint))


@cache
def real_processor(name: str, longest_edge: int | None = None) -> Any:
    """The real transformers processor, loaded the way users load it (cached per process)."""
    from transformers import AutoProcessor

    kwargs = {"size": {"longest_edge": longest_edge}} if longest_edge else {}
    return AutoProcessor.from_pretrained(str(model_folder(name)), **kwargs)


def real_image_tokens(processor: Any, width: int, height: int, **kwargs: Any) -> tuple[int, int]:
    """(<image> tokens, total tokens) the real processor writes for one image alone."""
    from PIL import Image

    image = Image.new("RGB", (width, height), (120, 30, 200))
    ids = processor(text=["<image>"], images=[[image]], **kwargs)["input_ids"][0]
    return ids.count(processor.image_token_id), len(ids)


@cache
def _load(path: str, edge: int) -> LoadedProcessor:
    import torch

    torch.set_num_threads(1)  # one core per xdist worker; many small ops
    return load_processor(path, edge)


def loaded(checkpoint: str = "2.2B", edge: int = 384) -> LoadedProcessor:
    return _load(model_path(checkpoint), edge)


@cache
def _counter(path: str, edge: int) -> TokenCounter:
    lp = _load(path, edge)
    return TokenCounter(lp.processor, lp.spec, lp.longest_edge)


def counter(checkpoint: str = "2.2B", edge: int = 384) -> TokenCounter:
    return _counter(model_path(checkpoint), edge)


def gpu_model_folder(name: str) -> Path:
    """A checkpoint folder with its config.json, for the GPU tests (short folder name)."""
    folder = models_dir() / "HuggingFaceTB" / name
    if not (folder / "config.json").is_file():
        pytest.skip(
            f"{name}: no config.json in {folder.parent}; set TOKENGUARD_MODELS_DIR to the "
            "folder holding HuggingFaceTB/<checkpoint>/"
        )
    return folder


def recorded_results() -> list[dict[str, Any]]:
    """Every measured case of every ``results-*.json`` (default allocator settings first)."""
    cases: list[dict[str, Any]] = []
    for path in sorted(GPU_RESULTS_DIR.glob("results-*.json"),
                       key=lambda p: (len(p.name), p.name)):
        report = json.loads(path.read_text(encoding="utf-8"))
        for case in report["cases"]:
            if "steady" in case:
                cases.append({**case, "results_file": path.name})
    return cases


# ------------------------------------------------------------------ planted wrong splitters


class PlantedSplitter:
    """A greedy splitter over chat-template dicts that makes one classic mistake.

    Every planted splitter is this project's exact calculator with one thing wrong, so
    each isolates one bug class: what the checker must catch, and how fast, is measured
    by tests/benchmarks/test_bench_split.py. ``check_kwargs`` are the settings the
    checker runs it with (the generation prompt or leading context the mistake is about).
    """

    def __init__(self, name: str, c: TokenCounter, max_tokens: int, mistake: str,
                 leading: list[dict[str, Any]] | None = None) -> None:
        self.name = name
        self.c = c
        self.max_tokens = max_tokens
        self.mistake = mistake
        self.leading = leading or []
        self.check_kwargs: dict[str, Any] = {}
        if mistake == "no generation prompt":
            self.check_kwargs["add_generation_prompt"] = True
        if self.leading:
            self.check_kwargs["leading"] = self.leading

    def __repr__(self) -> str:
        return f"PlantedSplitter({self.name!r})"

    def cost(self, message: dict[str, Any]) -> int:
        from pytest_tokenguard.conversation import parse_message
        from pytest_tokenguard.sequence import message_cost

        parsed = parse_message(message)
        exact = message_cost(parsed, self.c)
        if self.mistake == "81 per image":  # image_seq_len, without the block's wrapper tokens
            return exact.template + exact.text + exact.image_tokens
        if self.mistake == "84 per image, no template":
            return exact.text + 84 * exact.images
        if self.mistake == "text as characters / 4":
            words = sum(len(item.get("text", "")) for item in message["content"]
                        if item["type"] == "text")
            return exact.template + exact.blocks + words // 4
        if self.mistake == "inclusive frame end":
            return exact.tokens - self.c.image(*_frame_size(message)).block_tokens * _runs(message)
        return exact.tokens

    def base(self) -> int:
        from pytest_tokenguard.sequence import base_tokens

        lead = sum(self.cost(m) for m in self.leading)
        if self.mistake == "84 per image, no template":
            return lead
        return base_tokens(self.c) + lead

    def __call__(self, messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        from pytest_tokenguard.splitting import SplitError

        room = self.max_tokens - self.base()
        if self.mistake == "leading context counted once":
            lead = sum(self.cost(m) for m in self.leading)
            first_room, room = room, room + lead
        else:
            first_room = room
        chunks: list[list[dict[str, Any]]] = []
        run: list[dict[str, Any]] = []
        used = 0
        for message in messages:
            cost = self.cost(message)
            limit = first_room if not chunks else room
            if cost > limit:
                if self.mistake == "drops the frame at a cut" and _images(message) > 1:
                    for part in self._cut(message, limit):
                        if run:
                            chunks.append(run)
                        run, used = [part], self.cost(part)
                    continue
                raise SplitError(f"message too large: {cost} tokens")
            if run and used + cost > limit:
                chunks.append(run)
                run, used = [], 0
                limit = room
            run.append(message)
            used += cost
        if run:
            chunks.append(run)
        return [[*self.leading, *chunk] for chunk in chunks]

    def _cut(self, message: dict[str, Any], room: int) -> list[dict[str, Any]]:
        """Cut between images, but start each next part one image too late."""
        content = message["content"]
        parts: list[dict[str, Any]] = []
        start = 0
        while start < len(content):
            lo, hi = start + 1, len(content)  # the longest part that fits: binary search
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self.cost({"role": message["role"], "content": content[start:mid]}) <= room:
                    lo = mid
                else:
                    hi = mid - 1
            parts.append({"role": message["role"], "content": content[start:lo]})
            start = lo + 1  # the off-by-one: the image at `lo` is lost
        return parts


def _images(message: dict[str, Any]) -> int:
    return sum(item["type"] == "image" for item in message["content"])


def _frame_size(message: dict[str, Any]) -> tuple[int, int]:
    for item in message["content"]:
        if item["type"] == "image" and "frame" in item:
            return int(item["width"]), int(item["height"])
    return 1, 1


def _runs(message: dict[str, Any]) -> int:
    """Frames runs in the message: consecutive image items with consecutive frame numbers."""
    runs = 0
    previous: int | None = None
    for item in message["content"]:
        frame = item.get("frame") if item["type"] == "image" else None
        if frame is not None and (previous is None or frame != previous + 1):
            runs += 1
        previous = frame
    return runs


#: The planted mistakes, in the order the benchmark reports them.
MISTAKES = ("81 per image", "84 per image, no template", "inclusive frame end",
            "no generation prompt", "text as characters / 4", "leading context counted once",
            "drops the frame at a cut")
LEADING_SYSTEM = [{"role": "system", "content": [
    {"type": "text", "text": "You describe surgical video frames, step by step."}]}]


def planted(mistake: str, c: TokenCounter, max_tokens: int = 4096) -> PlantedSplitter:
    lead = LEADING_SYSTEM if mistake == "leading context counted once" else None
    return PlantedSplitter(mistake, c, max_tokens, mistake, lead)
