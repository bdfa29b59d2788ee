"""The family seam: the registry finds families by name, model_type, processor class, hub
id, folder and entry point; the SmolVLM2 adapter counts exactly as the existing modules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

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
