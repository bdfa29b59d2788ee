"""``tokenguard audit`` against TRL itself: every length and every refusal of TRL 1.16's
``DataCollatorForVisionLanguageModeling``, run with the real SmolVLM2 processor on a
generated TRL-format set (phone photos, EXIF-rotated JPEGs, long answers, several images,
placeholders and string content, the ``image`` column, a placeholder count TRL refuses),
as JSON Lines of paths and as a ``datasets`` Parquet/``save_to_disk`` set of image bytes.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import pytest

from pytest_tokenguard.audit.trainer import Cut, cut
from pytest_tokenguard.cli import main
from tests.helpers import model_ref, real_folder, real_processor, write_oriented_image

trl = pytest.importorskip("trl")
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling  # noqa: E402

#: (stored width, height, EXIF orientation): phone photos, portrait ones stored landscape
PHOTOS = [(4032, 3024, 1), (4032, 3024, 6), (3024, 4032, 1), (4000, 2250, 8), (1920, 1080, 3),
          (1080, 1920, 6), (384, 384, 1), (2048, 1536, 5), (640, 480, 1), (1200, 300, 8)]
WORDS = ["the", "photo", "shows", "a", "quiet", "street", "with", "parked", "cars", "trees",
         "and", "a", "red", "door"]


def _answer(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + "."


def generated_rows(folder: Path, count: int = 24, seed: int = 17) -> list[dict[str, Any]]:
    """TRL-format rows over phone photos written to ``folder`` (absolute paths, as TRL
    opens them from the training run's folder)."""
    rng = random.Random(seed)
    paths = [str(write_oriented_image(folder / f"photo{i}.jpg", w, h, o))
             for i, (w, h, o) in enumerate(PHOTOS)]
    rows: list[dict[str, Any]] = []
    for index in range(count):
        images = rng.sample(paths, rng.choice([1, 1, 1, 2, 3]))
        answer = _answer(rng, rng.choice([5, 40, 300, 1200, 2500]))
        shape = index % 4
        messages: list[dict[str, Any]]
        if shape == 0:  # string content: TRL puts the images before the first user text
            messages = [{"role": "user", "content": "What is in this photo?"},
                        {"role": "assistant", "content": answer}]
        elif shape == 1:
            messages = [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                        {"role": "user", "content": [
                            {"type": "text", "text": "Compare:"},
                            *[{"type": "image"} for _ in images]]},
                        {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
        elif shape == 2:
            messages = [{"role": "user", "content": [*[{"type": "image"} for _ in images],
                                                     {"type": "text", "text": "Describe."}]},
                        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
                        {"role": "user", "content": [{"type": "text", "text": "More?"}]},
                        {"role": "assistant", "content": [{"type": "text",
                                                           "text": _answer(rng, 30)}]}]
        else:
            images = images[:1]
            messages = [{"role": "user", "content": [{"type": "image"},
                                                     {"type": "text", "text": "Caption it."}]},
                        {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
        row: dict[str, Any] = {"messages": messages}
        if shape == 3 and index % 8 == 3:
            row["image"] = images[0]
        else:
            row["images"] = images
        if index % 3 == 0:
            row["id"] = f"s{index}"
        rows.append(row)
    # TRL refuses this one whatever its length: two images, one placeholder
    rows.append({"id": "mismatch", "images": paths[:2], "messages": [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]}]})
    return rows


def collate(processor: Any, row: dict[str, Any], max_length: int | None) -> int | str:
    """The length TRL's collator gives one row, or "refused" when it raises ValueError."""
    collator = DataCollatorForVisionLanguageModeling(processor, max_length=max_length)
    try:
        batch = collator([json.loads(json.dumps(row))])
    except ValueError:
        return "refused"
    return int(batch["attention_mask"][0].sum())


def audit(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["audit", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def photo_rows(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("trl-set")
    rows = generated_rows(folder)
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return data, rows


def _model(source: str) -> str:
    return model_ref("2.2B") if source == "default" else str(real_folder("2.2B"))


def _processor(source: str, edge: int) -> Any:
    if source == "default":
        return real_processor("2.2B", edge)
    from tests.helpers import real_folder_processor

    return real_folder_processor("2.2B", edge)


@pytest.mark.parametrize("source", ["default", "real files"])
def test_every_length_and_refusal_is_trls(photo_rows: tuple[Path, list[dict[str, Any]]],
                                          tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          source: str) -> None:
    """The issue's check: ``--longest-edge 768 --max-length 2048 --json --per-sample F``
    gives TRL's exact length of every sample, exactly the ids TRL's collator refuses and
    the ids over the limit; and at each sample's own boundary lengths (one token either
    side of the cut that reaches its first image) the refusal is TRL's too."""
    data, rows = photo_rows
    model = _model(source)
    processor = _processor(source, 768)
    per_sample = tmp_path / "per-sample.jsonl"
    code, report = audit([str(data), "--model", model, "--longest-edge", "768",
                          "--max-length", "2048", "--per-sample", str(per_sample)], capsys)
    lines = [json.loads(line) for line in per_sample.read_text().splitlines()]
    assert len(lines) == len(rows) == report["samples"]
    refused, over = [], []
    for number, (row, line) in enumerate(zip(rows, lines, strict=True)):
        ident = row.get("id", number)
        assert line["id"] == ident
        if ident == "mismatch":
            assert collate(processor, row, None) == "refused"
            assert line["refused"].startswith("Number of images provided (2)")
            continue
        assert line["tokens"] == collate(processor, row, None), ident
        got = collate(processor, row, 2048)
        if got == "refused":
            refused.append(ident)
        if line["tokens"] > 2048:
            over.append(ident)
            if got != "refused":
                assert got == 2048
        first, tokens = line["first_image_token"], line["tokens"]
        for limit in {tokens - first - 1, tokens - first, tokens - first + 2}:
            expected = cut(tokens, first, line["tokens_after_last_image"], limit, "left")
            assert (collate(processor, row, limit) == "refused") == (expected is Cut.MEDIA), (
                ident, limit, expected)
    assert report["cut_inside_media"] == refused
    assert report["over_max_length"] == over
    assert [r["id"] for r in report["refused"]] == ["mismatch"]
    assert refused
    assert len(over) > len(refused) - 1
    assert code == 1


def test_trl_defaults_fail_every_photo_sample(photo_rows: tuple[Path, list[dict[str, Any]]],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """With TRL's defaults (max_length 1024) at the processor's default longest_edge 1536,
    every sample holding an ordinary photo (not the 1200×300 panorama alone) is refused by
    the collator, and the audit names exactly those."""
    data, rows = photo_rows
    processor = real_processor("2.2B")
    code, report = audit([str(data), "--trainer", "trl"], capsys)
    assert report["max_length"] == 1024
    refused = [row.get("id", n) for n, row in enumerate(rows) if row.get("id") != "mismatch"
               and collate(processor, row, 1024) == "refused"]
    assert report["cut_inside_media"] == refused
    ordinary = [row.get("id", n) for n, row in enumerate(rows) if row.get("id") != "mismatch"
                and any(not str(p).endswith("photo9.jpg")
                        for p in row.get("images", [row.get("image")]))]
    assert set(ordinary) <= set(refused)
    assert code == 1


def test_parquet_and_save_to_disk_of_image_bytes(
        photo_rows: tuple[Path, list[dict[str, Any]]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A ``datasets`` set with an Image column (bytes in Parquet and in a save_to_disk
    folder): sizes from the bytes' headers as datasets decodes them (EXIF transposed), the
    lengths TRL's collator gives the decoded rows."""
    datasets = pytest.importorskip("datasets")
    _, rows = photo_rows
    # Arrow holds one type per column: rows whose contents are all lists of items
    plain = [row for row in rows if "images" in row and row.get("id") != "mismatch"
             and all(isinstance(m["content"], list) for m in row["messages"])][:8]
    records = [{"id": str(row.get("id", n)), "messages": json.dumps(row["messages"]),
                "images": [{"bytes": Path(p).read_bytes(), "path": None}
                           for p in row["images"]]} for n, row in enumerate(plain)]
    features = datasets.Features({"id": datasets.Value("string"),
                                  "messages": datasets.Value("string"),
                                  "images": datasets.Sequence(datasets.Image())})
    dataset = datasets.Dataset.from_list(records, features=features)
    dataset = dataset.map(lambda r: {"messages": json.loads(r["messages"])},
                          remove_columns=["messages"])
    dataset.to_parquet(str(tmp_path / "train.parquet"))
    dataset.save_to_disk(str(tmp_path / "saved"))
    processor = real_processor("2.2B", 768)
    expected = [collate_decoded(processor, dataset[i]) for i in range(len(dataset))]
    for data in (tmp_path / "train.parquet", tmp_path / "saved"):
        per_sample = tmp_path / f"{data.name}.jsonl"
        audit([str(data), "--longest-edge", "768", "--per-sample", str(per_sample)], capsys)
        got = [json.loads(line)["tokens"] for line in per_sample.read_text().splitlines()]
        assert got == expected, data


def collate_decoded(processor: Any, row: dict[str, Any]) -> int:
    collator = DataCollatorForVisionLanguageModeling(processor)
    batch = collator([{"messages": row["messages"], "images": row["images"]}])
    return int(batch["attention_mask"][0].sum())


def test_image_bytes_header_size_is_datasets_decode(tmp_path: Path) -> None:
    """Every EXIF orientation of a JPEG: the header's size is the size of datasets'
    decoded image."""
    datasets = pytest.importorskip("datasets")
    from pytest_tokenguard.audit.media import pil_upright_size

    for orientation in range(1, 9):
        path = write_oriented_image(tmp_path / f"o{orientation}.jpg", 900, 300, orientation)
        data = path.read_bytes()
        decoded = datasets.Image().decode_example({"bytes": data, "path": None})
        assert pil_upright_size(io.BytesIO(data), "x") == decoded.size, orientation
