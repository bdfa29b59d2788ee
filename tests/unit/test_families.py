"""The family seam: the registry finds families by name, model_type, processor class, hub
id, folder and entry point; the SmolVLM2 adapter counts exactly as the existing modules."""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import pytest_tokenguard.families as registry
from pytest_tokenguard.counting import count_image
from pytest_tokenguard.errors import SpecError, TokenizerUnavailable
from pytest_tokenguard.families import (
    all_families,
    family_for_model_type,
    family_for_processor_class,
    family_named,
    resolve_family,
)
from pytest_tokenguard.families.base import Family
from pytest_tokenguard.families.qwen import KNOWN_QWEN_SPECS, QwenRefusal
from pytest_tokenguard.specs import KNOWN_SPECS


def test_builtin_families_implement_the_protocol() -> None:
    assert [f.name for f in all_families()] == ["smolvlm", "qwen-vl"]
    assert all(isinstance(f, Family) for f in all_families())


def test_lookup_by_model_type_and_processor_class() -> None:
    assert family_for_model_type("qwen2_5_vl") is family_named("qwen-vl")
    assert family_for_model_type("idefics3") is family_named("smolvlm")
    assert family_for_processor_class("Qwen3VLProcessor") is family_named("qwen-vl")
    assert family_for_processor_class("SmolVLMProcessor") is family_named("smolvlm")
    assert family_for_model_type("llava") is None
    with pytest.raises(SpecError, match="no model family named 'nope'"):
        family_named("nope")


@pytest.mark.parametrize("model", [*KNOWN_QWEN_SPECS, *KNOWN_SPECS])
def test_known_hub_ids_resolve_offline(model: str) -> None:
    found = resolve_family(model)
    assert found is not None
    assert found.folder is None
    assert found.family.name == ("qwen-vl" if model.startswith("Qwen/") else "smolvlm")


def test_a_folder_is_found_by_its_files(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"size": {"shortest_edge": 1024, "longest_edge": 50000}, "patch_size": 16}))
    found = resolve_family(str(tmp_path))
    assert found is not None
    assert found.family.name == "qwen-vl"
    spec = found.spec()
    assert (spec.generation, spec.image.min_pixels, spec.image.max_pixels) == (
        "qwen3_vl", 1024, 50000)
    assert found.family.image_cost(spec, 1000, 1000).image_tokens == 36  # 192×192 px
    with pytest.raises(TokenizerUnavailable, match=str(tmp_path)):
        found.family.text_counter(str(tmp_path), found.folder)


def test_an_unknown_model_is_left_to_the_smolvlm_resolver(tmp_path: Path) -> None:
    assert resolve_family("someone/unknown-model") is None
    assert resolve_family(str(tmp_path)) is None  # a folder that says nothing


def test_third_party_family_through_the_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    class Point:
        name = "toy"
        value = "toy_package:FAMILY"

        def load(self) -> Any:
            return Toy()

    class Toy:
        name = "toy"
        model_types = frozenset({"toy_vl"})
        processor_classes = frozenset({"ToyProcessor"})

        def known_models(self) -> tuple[str, ...]:
            return ("org/toy",)

    def entry_points(group: str) -> list[Point]:
        assert group == "pytest_tokenguard.families"
        return [Point()]

    monkeypatch.setattr(registry, "_plugins", None)
    monkeypatch.setattr(registry, "_loaded", {})
    monkeypatch.setattr("importlib.metadata.entry_points", entry_points)
    assert family_for_model_type("toy_vl") is family_named("toy")
    assert family_for_processor_class("ToyProcessor") is family_named("toy")
    found = resolve_family("org/toy")
    assert found is not None
    assert found.family.name == "toy"


def test_a_broken_entry_point_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    class Point:
        name = "broken"
        value = "gone:FAMILY"

        def load(self) -> Any:
            raise ImportError("No module named 'gone'")

    monkeypatch.setattr(registry, "_plugins", None)
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: [Point()])
    with pytest.raises(SpecError, match="entry point broken = 'gone:FAMILY'"):
        family_for_model_type("llava")


@pytest.mark.parametrize("size", [(384, 384), (1920, 1080), (1, 12000), (7000, 300)])
@pytest.mark.parametrize("call", [{}, {"size": {"longest_edge": 768}},
                                  {"do_image_splitting": False},
                                  {"images_kwargs": {"max_image_size": {"longest_edge": 512}}}])
def test_smolvlm_adapter_counts_as_count_image(size: tuple[int, int],
                                               call: dict[str, Any]) -> None:
    family = family_named("smolvlm")
    for model, spec in KNOWN_SPECS.items():
        assert family.spec(model, None) is spec
        settings = family.call_settings(call)
        expected = count_image(*size, settings.longest_edge, spec,
                               do_image_splitting=settings.do_image_splitting,
                               tile_size=settings.tile_size)
        assert family.image_cost(spec, *size, settings) == expected


def test_qwen_call_settings_are_read_as_the_processor_reads_them() -> None:
    family = family_named("qwen-vl")
    spec = KNOWN_QWEN_SPECS["Qwen/Qwen2.5-VL-7B-Instruct"]
    nested = family.call_settings({"max_pixels": 1, "images_kwargs": {"max_pixels": 50176}})
    cost = family.image_cost(spec, 1000, 1000, nested)
    assert cost._asdict()["max_pixels"] == 50176
    with pytest.raises(QwenRefusal, match="do_resize=False"):
        family.call_settings({"do_resize": False})
    with pytest.raises(QwenRefusal, match="shortest_edge"):
        family.image_cost(spec, 10, 10, family.call_settings({"size": {"longest_edge": 9}}))


def test_each_family_declares_the_classes_the_recorder_watches() -> None:
    """The recorder patches exactly the families' processor classes, and reads a family's
    calls with the module it names."""
    import importlib

    from pytest_tokenguard.processor.recording.patching import watched

    for family in all_families():
        assert set(family.processor_modules.values()) == set(family.processor_classes)
        reader = importlib.import_module(family.call_reader)
        assert all(callable(getattr(reader, name)) for name in
                   ("read_images", "read_videos", "text_call_edge"))
    assert {w.class_name for w in watched().values()} == {
        "SmolVLMProcessor", "Idefics3Processor", "Qwen2VLProcessor", "Qwen2_5_VLProcessor",
        "Qwen3VLProcessor"}


@settings(max_examples=40, deadline=None)
@given(width=st.integers(1, 80), height=st.integers(1, 80),
       min_pixels=st.sampled_from([1, 3136, 6272]), wanted=st.integers(1, 30),
       qwen3=st.booleans())
@example(width=64, height=48, min_pixels=3136, wanted=3, qwen3=False)
def test_largest_max_pixels_is_the_largest_by_brute_force(
        width: int, height: int, min_pixels: int, wanted: int, qwen3: bool) -> None:
    """Every max_pixels from 1 past the rounded area, priced one by one: the search's
    answer is the largest that costs at most ``wanted``, and (where unbounded) the
    smallest from which the cost no longer changes."""
    from pytest_tokenguard.families.qwen import (
        QwenSettings,
        QwenVision,
        count_qwen_image,
        largest_max_pixels,
    )

    vision = QwenVision(min_pixels, 10**6, patch_size=16 if qwen3 else 14)
    try:
        fit = largest_max_pixels(width, height, vision, wanted)
    except QwenRefusal:
        assert max(width, height) / min(width, height) > 200
        return
    top = 84 * 84  # past the rounded area of any side up to 80
    costs = [count_qwen_image(width, height, vision, QwenSettings(max_pixels=m)).image_tokens
             for m in range(1, top + 1)]
    assert costs == sorted(costs)  # never falls as max_pixels grows
    if fit.max_pixels is None:
        assert costs[0] > wanted
        assert fit.cost.image_tokens == costs[0]
        return
    assert fit.cost.image_tokens == costs[fit.max_pixels - 1]
    if fit.unbounded:
        assert costs[-1] <= wanted
        assert fit.max_pixels == costs.index(costs[-1]) + 1
    else:
        assert costs[fit.max_pixels - 1] <= wanted < costs[fit.max_pixels]


def test_the_qwen_fix_names_the_largest_max_pixels_or_why_none() -> None:
    from pytest_tokenguard.families.qwen import qwen_image_fix
    from pytest_tokenguard.processor.recording import ImageRecord

    def record(width: int, height: int, max_pixels: int) -> ImageRecord:
        return ImageRecord(width, height, None, 0, 0, 0, 0, 0, "Qwen2_5_VLProcessor",
                           family="qwen-vl", min_pixels=3136, max_pixels=max_pixels,
                           patch_size=14, merge_size=2)

    assert qwen_image_fix(record(1024, 768, 1003520), 234).startswith(
        "max_pixels=204885 gives 26×36 patches (234 tokens): pass max_pixels=204885")
    assert qwen_image_fix(record(1024, 768, 1003520), 64) == (
        "no max_pixels gives exactly 64 tokens for a 1024×768 image; the nearest are "
        "max_pixels=58799 (63 tokens) and max_pixels=58800 (70 tokens)")
    # at every max_pixels a 100×100 image costs at most 16 tokens (a 4×4 grid of merges)
    assert qwen_image_fix(record(100, 100, 3136), 20).startswith(
        "no max_pixels gives 20 tokens for a 100×100 image: from max_pixels=")
    assert qwen_image_fix(record(100, 100, 3136), 16).startswith(
        "max_pixels=12544 or more gives 8×8 patches (16 tokens)")
    # a side that rounds to nothing: min_pixels scales it up, whatever max_pixels
    assert qwen_image_fix(record(10, 10, 3136), 1) == (
        "no max_pixels gives as few as 1 token for a 10×10 image: it costs at least 4 "
        'tokens (min_pixels=3136 scales it up); lower min_pixels (size "shortest_edge")')


def test_a_third_party_family_with_a_reader_is_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry-point family's processor classes are patched like the built-in ones; one
    that declares no reader (written before the recorder read families) is left alone."""
    from pytest_tokenguard.processor.recording import patching

    class Toy:
        name = "toy"
        processor_modules = MappingProxyType({"toy_package.processing_toy": "ToyProcessor"})
        call_reader = "toy_package.tokenguard_reader"

    class Old:
        name = "old"

    monkeypatch.setattr(registry, "_plugins", {"toy": Toy(), "old": Old()})
    monkeypatch.setattr(registry, "_loaded", {})
    monkeypatch.setattr(patching, "_WATCHED", [])
    assert patching.watched()["toy_package.processing_toy"] == patching.Watched(
        "ToyProcessor", "toy_package.tokenguard_reader")
    assert len(patching.watched()) == 6  # five built-in classes and the toy's


@pytest.mark.parametrize(("version", "kept"), [("5.24.0", True), ("5.20.2", True),
                                               ("5.25.0", False), ("6.0.0.dev0", False)])
def test_qwen3_video_keeps_the_templates_pair_before_5_25(
        monkeypatch: pytest.MonkeyPatch, version: str, kept: bool) -> None:
    """transformers 5.25 collapses the template's ``<|vision_start|><|video_pad|>
    <|vision_end|>`` around a Qwen3-VL video; 5.24 keeps the pair around the per-patch
    blocks (the oldest-version CI run found 2 tokens more than counted)."""
    import pytest_tokenguard.video as video
    from pytest_tokenguard.families.qwen import count_qwen_video, qwen3_keeps_outer_wrapper

    assert qwen3_keeps_outer_wrapper(version) is kept
    monkeypatch.setattr(video, "_installed_transformers", lambda: version)
    clip = video.video_info(48, 24.0, width=80, height=60)
    qwen3 = count_qwen_video(clip, KNOWN_QWEN_SPECS["Qwen/Qwen3-VL-8B-Instruct"], text=len)
    qwen25 = count_qwen_video(clip, KNOWN_QWEN_SPECS["Qwen/Qwen2.5-VL-7B-Instruct"], text=len)
    assert qwen3.outer_wrapper is kept
    assert qwen3.block_tokens == qwen3.video_tokens + 2 * qwen3.grid_t + (2 if kept else 0)
    assert qwen3.tokens == qwen3.block_tokens + sum(len(t) for t in qwen3.text)
    # Qwen2/2.5-VL write the pads only, inside the template's one pair, on every version
    assert qwen25.block_tokens == qwen25.video_tokens + 2
    assert not qwen25.outer_wrapper
