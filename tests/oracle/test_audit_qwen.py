"""``tokenguard audit`` on Qwen2.5-VL and Qwen3-VL training sets, against TRL itself.

The oracle is TRL 1.16's ``DataCollatorForVisionLanguageModeling`` run on the same rows
with the real Qwen processor (the real image processors from the published settings, a
stand-in byte-level BPE with Qwen's special tokens and the ChatML template of
:mod:`tests.qwen_helpers`), loaded from the folder the audit reads
(``save_pretrained`` into ``tmp_path``) as a user loads theirs:
``AutoProcessor.from_pretrained(folder, size=...)``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from pytest_tokenguard.audit.qwen import max_pixels_candidates
from pytest_tokenguard.audit.trainer import Cut, cut
from pytest_tokenguard.cli import main
from tests.qwen_helpers import PUBLISHED, chat_processor, model_spec

trl = pytest.importorskip("trl")
from tests.oracle.test_audit_trl import audit, collate, generated_rows  # noqa: E402

MODELS = ["Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen3-VL-8B-Instruct"]
#: the audited resolution: 512 image tokens per image on Qwen2.5-VL, 392 on Qwen3-VL
MAX_PIXELS = 401408
MAX_LENGTH = 1024


def min_pixels(model: str) -> int:
    image = PUBLISHED[model][0]
    return int(image["min_pixels"] if "min_pixels" in image else image["size"]["shortest_edge"])


def save_folder(model: str, folder: Path, *, side: str | None = None,
                config: bool = False) -> Path:
    """The test processor saved as a checkpoint folder (``side``: the tokenizer's
    ``truncation_side`` written into its config; ``config``: the published
    ``config.json``, which the memory model reads)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chat_processor(model, "bpe").save_pretrained(str(folder))
    if side is not None:
        path = folder / "tokenizer_config.json"
        data = json.loads(path.read_text())
        data["truncation_side"] = side
        path.write_text(json.dumps(data))
    if config:
        from pytest_tokenguard.families.qwen_memory import QWEN_CONFIGS

        published = QWEN_CONFIGS.get(model) or QWEN_CONFIGS["Qwen/Qwen2.5-VL-7B-Instruct"]
        (folder / "config.json").write_text(json.dumps(published))
    return folder


def folder_processor(folder: Path, model: str, max_pixels: int) -> Any:
    """The user's processor: the folder at ``size={"shortest_edge": min_pixels,
    "longest_edge": max_pixels}`` (the line the audit writes)."""
    from transformers import AutoProcessor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoProcessor.from_pretrained(
            str(folder), size={"shortest_edge": min_pixels(model), "longest_edge": max_pixels})


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """Phone photos with EXIF orientations, answers up to 2,500 words, 1 to 3 images,
    TRL's placeholder and string-content shapes, the ``image`` column and a row TRL
    refuses (the generator of the SmolVLM2 oracle, tests/oracle/test_audit_trl.py)."""
    folder = tmp_path_factory.mktemp("qwen-trl-set")
    rows = generated_rows(folder, count=20, seed=18)
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return data, rows


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("side", [None, "left"])
def test_every_length_and_refusal_is_trls(photo_set: tuple[Path, list[dict[str, Any]]],
                                          tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          model: str, side: str | None) -> None:
    """``tokenguard audit DATA --model FOLDER --max-pixels M --max-length 1024 --json
    --per-sample F``: TRL's exact length of every sample, exactly the ids its collator
    refuses and the ids over the limit; and at each sample's boundaries (the cut one
    token inside its first and its last image block, and on the wrapper tokens around
    them) the refusal is TRL's, on the tokenizer's side (Qwen's right; left written into
    the folder's tokenizer config)."""
    data, rows = photo_set
    folder = save_folder(model, tmp_path / "ckpt", side=side)
    processor = folder_processor(folder, model, MAX_PIXELS)
    expected_side = side or "right"
    assert processor.tokenizer.truncation_side == expected_side
    per_sample = tmp_path / "per-sample.jsonl"
    code, report = audit([str(data), "--model", str(folder), "--max-pixels", str(MAX_PIXELS),
                          "--max-length", str(MAX_LENGTH), "--per-sample", str(per_sample)],
                         capsys)
    assert report["max_pixels"] == MAX_PIXELS
    assert report["truncation_side"] == expected_side
    lines = [json.loads(line) for line in per_sample.read_text().splitlines()]
    assert len(lines) == len(rows) == report["samples"]
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    refused, over = [], []
    for number, (row, line) in enumerate(zip(rows, lines, strict=True)):
        ident = row.get("id", number)
        assert line["id"] == ident
        if ident == "mismatch":
            assert collate(processor, row, None) == "refused"
            assert line["refused"].startswith("Number of images provided (2)")
            continue
        tokens, first = line["tokens"], line["first_image_token"]
        assert tokens == collate(processor, row, None), ident
        # where the pads sit: the collator's own input_ids
        ids = collated_ids(processor, row)
        pads = [i for i, token in enumerate(ids) if token == pad]
        assert line["image_tokens"] == len(pads)
        assert first == pads[0]
        assert line["tokens_after_last_image"] == tokens - 1 - pads[-1]
        got = collate(processor, row, MAX_LENGTH)
        if got == "refused":
            refused.append(ident)
        if tokens > MAX_LENGTH:
            over.append(ident)
            if got != "refused":
                assert got == MAX_LENGTH
        last = pads[-1]
        if expected_side == "right":
            # 1 pad of the first block kept; the last pad cut; only <|vision_end|> cut
            limits = {first + 1, last, last + 1, last + 2}
        else:
            # 1 pad of the first block cut; only <|vision_start|> cut; nothing of it
            limits = {tokens - first - 1, tokens - first, tokens - first + 1}
        for limit in limits:
            if not 0 < limit < tokens:
                continue
            verdict = cut(tokens, first, line["tokens_after_last_image"], limit,
                          expected_side, 1)
            assert (collate(processor, row, limit) == "refused") == (verdict is Cut.MEDIA), (
                ident, limit, verdict)
    assert report["cut_inside_media"] == refused
    assert report["over_max_length"] == over
    assert [r["id"] for r in report["refused"]] == ["mismatch"]
    assert refused
    if expected_side == "right":
        assert set(over) - set(refused)  # cut in the answer after the images: trained on
    assert code == 1


def collated_ids(processor: Any, row: dict[str, Any]) -> list[int]:
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    batch = DataCollatorForVisionLanguageModeling(processor)([json.loads(json.dumps(row))])
    return [int(i) for i in batch["input_ids"][0]]


def test_the_boundary_one_token_inside_an_image_block(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sample whose answer comes before its image: ``max_length`` at one token inside the
    image block (its first pad kept) is refused by TRL and named by the audit; one token
    shorter (only ``<|vision_start|>`` kept) is refused too; the whole block plus
    ``<|vision_end|>`` is not."""
    from PIL import Image

    model = "Qwen/Qwen2.5-VL-7B-Instruct"
    folder = save_folder(model, tmp_path / "ckpt")
    photo = tmp_path / "p.jpg"
    Image.new("RGB", (1280, 960)).save(photo)
    row = {"id": "b", "images": [str(photo)], "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Look at this."},
                                     {"type": "image"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Fine."}]}]}
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps(row) + "\n")
    processor = folder_processor(folder, model, MAX_PIXELS)
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    ids = collated_ids(processor, row)
    first = ids.index(pad)
    last = len(ids) - 1 - ids[::-1].index(pad)
    for limit, refused in ((first + 1, True), (first, True), (last + 2, False)):
        assert (collate(processor, row, limit) == "refused") is refused, limit
        code, report = audit([str(data), "--model", str(folder), "--max-pixels",
                              str(MAX_PIXELS), "--max-length", str(limit)], capsys)
        assert report["cut_inside_media"] == (["b"] if refused else []), limit
        assert code == (1 if refused else 0)


def test_a_left_cut_on_the_image_blocks_wrapper(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A tokenizer that truncates on the left, the image first: a cut that drops the
    text before the block and its ``<|vision_start|>`` (TRL's ``input_ids`` then start
    with the first pad) is trained on, as a broken block (``cut_media_wrapper``); one
    token less is cut in text only; one more is refused, by TRL and the audit."""
    from PIL import Image

    model = "Qwen/Qwen3-VL-8B-Instruct"
    folder = save_folder(model, tmp_path / "ckpt", side="left")
    photo = tmp_path / "p.jpg"
    Image.new("RGB", (900, 1600)).save(photo)
    row = {"id": "w", "images": [str(photo)], "messages": [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A tall photo."}]}]}
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps(row) + "\n")
    processor = folder_processor(folder, model, MAX_PIXELS)
    tokenizer = processor.tokenizer
    pad, start = (tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>",
                                                               "<|vision_start|>"))
    ids = collated_ids(processor, row)
    first = ids.index(pad)
    for dropped, head, key in ((first - 1, start, None), (first, pad, "cut_media_wrapper"),
                               (first + 1, None, "cut_inside_media")):
        limit = len(ids) - dropped
        got = collate(processor, row, limit)
        if head is None:
            assert got == "refused"
        else:
            from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

            batch = DataCollatorForVisionLanguageModeling(processor, max_length=limit)(
                [json.loads(json.dumps(row))])
            assert int(batch["input_ids"][0][0]) == head
        _, report = audit([str(data), "--model", str(folder), "--max-pixels",
                           str(MAX_PIXELS), "--max-length", str(limit)], capsys)
        for name in ("cut_media_wrapper", "cut_inside_media"):
            assert report[name] == (["w"] if name == key else []), (dropped, name)
        assert report["over_max_length"] == ["w"]


@pytest.mark.parametrize("model", MODELS)
def test_what_fits_is_the_largest_max_pixels_trl_fits(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str) -> None:
    """The audit's "keep max_length, lower max_pixels" answer, pasted as written
    (``AutoProcessor.from_pretrained(folder, size=...)``): at it TRL's collator fits every
    sample in ``max_length``; at the next larger candidate it does not."""
    folder = save_folder(model, tmp_path / "ckpt")
    rows = [row for row in generated_rows(tmp_path / "photos", count=12, seed=5)
            if row.get("id") != "mismatch"]
    for row in rows:  # short answers: the images decide what fits
        for message in row["messages"]:
            if message["role"] == "assistant":
                message["content"] = "A short answer."
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    limit = 1200
    code, report = audit([str(data), "--model", str(folder), "--max-length", str(limit)],
                         capsys)
    assert code == 1  # at the checkpoint's own max_pixels, photos are cut inside
    lowered = [fit for fit in report["fits"] if fit["what"].endswith("lower max_pixels")]
    assert len(lowered) == 1
    fit = lowered[0]
    value = fit["max_pixels"]
    floor = min_pixels(model)
    assert fit["processor"] == (
        f'processor = AutoProcessor.from_pretrained("{folder}", size={{"shortest_edge": '
        f'{floor}, "longest_edge": {value}}})  # max_pixels={value}')
    assert f"max_length={limit}" in fit["sft_config"]
    candidates = max_pixels_candidates(model_spec(model).image.max_pixels, floor,
                                       model_spec(model).image.factor)
    larger = candidates[candidates.index(value) + 1]
    fits = folder_processor(folder, model, value)
    assert all(collate(fits, row, None) <= limit for row in rows)  # type: ignore[operator]
    too_big = folder_processor(folder, model, larger)
    assert any(collate(too_big, row, None) > limit for row in rows)  # type: ignore[operator]
    # and the audit at that setting passes
    code, report = audit([str(data), "--model", str(folder), "--max-length", str(limit),
                          "--max-pixels", str(value)], capsys)
    assert (code, report["over_max_length"], report["cut_inside_media"]) == (0, [], [])


def test_worst_batch_through_the_qwen25_memory_model(
        photo_set: tuple[Path, list[dict[str, Any]]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``--gpu-memory`` on a Qwen2.5-VL folder with its ``config.json``: the worst batch's
    peak is the memory model's for the batch's vision patches (``image_tokens·4`` per
    image) and padded length; a Qwen3-VL folder is refused by name for memory, with the
    counts still given (exit 2)."""
    from pytest_tokenguard.gpu.model import estimate_step, resolve_model, validate

    data, rows = photo_set
    model = "Qwen/Qwen2.5-VL-3B-Instruct"
    folder = save_folder(model, tmp_path / "qwen25", config=True)
    code, report = audit([str(data), "--model", str(folder), "--max-pixels", str(MAX_PIXELS),
                          "--max-length", "4096", "--batch", "2", "--gpu-memory", "80GiB"],
                         capsys)
    worst = report["worst_batch"]
    arch, _ = resolve_model(str(folder))
    per_sample = {}
    lines_path = tmp_path / "p.jsonl"
    main(["audit", str(data), "--model", str(folder), "--max-pixels", str(MAX_PIXELS),
          "--per-sample", str(lines_path)])
    capsys.readouterr()
    for line in map(json.loads, lines_path.read_text().splitlines()):
        if "tokens" in line and "refused" not in line:
            per_sample[line["id"]] = (line["image_tokens"] * 4, line["tokens"])
    top = sorted((tiles for tiles, _ in per_sample.values()), reverse=True)[:2]
    assert worst["tiles"] == sum(top)
    assert worst["seq_len"] == min(4096, max(tokens for _, tokens in per_sample.values()))
    shape = validate(batch=2)
    expected = estimate_step(arch, tiles_per_sample=-(-sum(top) // 2),
                             seq_len=worst["seq_len"], shape=shape)
    assert worst["peak_bytes"] == expected.peak_bytes
    assert code == 1  # the mismatch row

    qwen3 = save_folder("Qwen/Qwen3-VL-8B-Instruct", tmp_path / "qwen3")
    code = main(["audit", str(data), "--model", str(qwen3), "--max-pixels", str(MAX_PIXELS),
                 "--gpu-memory", "80GiB", "--json"])
    captured = capsys.readouterr()
    assert code == 2
    out = json.loads(captured.out)
    assert out["samples"] == len(rows)
    assert out["priced"] == len(rows) - 1
    assert "worst_batch" not in out
    assert "config.json" in out["memory_refused"]
    assert captured.err.startswith("tokenguard audit: --gpu-memory: ")
    assert str(qwen3) in captured.err


def test_the_auditor_api_and_the_marker_gate_take_a_qwen_model(
        photo_set: tuple[Path, list[dict[str, Any]]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``Auditor`` (what ``Dataset.map`` and Ray call) and the ``training_set_fits`` gate,
    given a Qwen folder and ``max_pixels``, give the collator's lengths and the CLI's
    verdicts."""
    from pytest_tokenguard.audit.gate import audit_training_set, gate_from_marker
    from pytest_tokenguard.audit.measure import Auditor, AuditSettings

    data, rows = photo_set
    model = "Qwen/Qwen3-VL-8B-Instruct"
    folder = save_folder(model, tmp_path / "ckpt")
    processor = folder_processor(folder, model, MAX_PIXELS)
    auditor = Auditor(AuditSettings(str(folder), base_dir=str(data.parent),
                                    max_pixels=MAX_PIXELS))
    assert auditor.knob == "max_pixels"
    for number, row in enumerate(rows[:4]):
        assert auditor.measure(row, number).tokens == collate(processor, row, None)
    video = auditor.measure({"messages": [{"role": "user", "content": [
        {"type": "video", "total_frames": 8, "fps": 2.0, "width": 64, "height": 64}]}]}, 9)
    assert video.error is not None
    assert video.error.startswith("the sample holds a video, which the Qwen-VL audit does "
                                  "not price")
    report = audit_training_set(gate_from_marker(str(folder), data, max_length=MAX_LENGTH,
                                                 max_pixels=MAX_PIXELS))
    _, cli = audit([str(data), "--model", str(folder), "--max-pixels", str(MAX_PIXELS),
                    "--max-length", str(MAX_LENGTH)], capsys)
    gate = report.to_json()
    for key in ("max_pixels", "tokens", "over_max_length", "cut_inside_media", "fits"):
        assert gate[key] == cli[key], key
