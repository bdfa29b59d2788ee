"""The audit in bounded memory: a JSON array parsed one element at a time, id lists that
spill to disk, and a ``--json`` report written with the lists streamed."""

from __future__ import annotations

import io
import json
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from pytest_tokenguard.audit import ids as ids_module
from pytest_tokenguard.audit.ids import IdList
from pytest_tokenguard.audit.readers import Part, json_array, read_part
from pytest_tokenguard.audit.report import AuditReport
from pytest_tokenguard.audit.summary import Summary
from pytest_tokenguard.audit.trainer import TrainerRules
from pytest_tokenguard.errors import InputError


def _values(seed: int) -> list[Any]:
    rng = random.Random(seed)
    out: list[Any] = []
    for index in range(60):
        out.append(rng.choice([
            {"id": index, "messages": [{"role": "user", "content": "a ]} [{ \"quoted\" , "}]},
            {"text": "é" * rng.randint(0, 40), "n": rng.randint(-10**12, 10**12)},
            123456789 * index, -0.5e-3, "a, ]", None, True, [], {}, [1, [2, [3]]],
        ]))
    return out


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("indent", [None, 2])
def test_json_array_equals_json_load(tmp_path: Path, chunk: int, indent: int | None) -> None:
    values = _values(chunk)
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(values, indent=indent, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    assert list(json_array(str(path), chunk)) == values


def test_json_array_with_a_bom_and_empty(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_bytes(b"\xef\xbb\xbf [ ] \n")
    assert list(json_array(str(path), 1)) == []
    path.write_bytes(b'\xef\xbb\xbf[{"a": 1}]')
    assert list(json_array(str(path), 2)) == [{"a": 1}]


@pytest.mark.parametrize(("text", "expected"), [
    ('{"a": 1}', "no '[' opening the array"),
    ('[{"a": 1}', "the array never closes"),
    ('[{"a": 1},', "the array never closes"),
    ('[{"a": 1} {"b": 2}]', "'{' where ',' or ']' belongs at character 10"),
    ('[{"a": 1}] x', "text after the array"),
    ('[{"a": 1, }]', "Expecting property name enclosed in double quotes"),
])
def test_json_array_names_where_it_breaks(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "rows.json"
    path.write_text(text, encoding="utf-8")
    for chunk in (1, 4, 1 << 20):
        with pytest.raises(InputError, match=r"rows\.json: not a JSON array of rows") as info:
            list(json_array(str(path), chunk))
        assert expected in str(info.value)
        assert "fix the file, or write JSON Lines" in str(info.value)


def test_a_json_array_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """Reading 8 MB of JSON array rows holds a chunk and a row, not the file (the file
    was parsed whole before: its rows alone took several times its size)."""
    row = {"messages": [{"role": "user", "content": [
        {"type": "image", "width": 640, "height": 480},
        {"type": "text", "text": "word " * 150}]}]}
    line = json.dumps(row)
    count = 8_000_000 // len(line)
    path = tmp_path / "big.json"
    with path.open("w", encoding="utf-8") as handle:
        handle.write("[\n" + ",\n".join(line for _ in range(count)) + "\n]\n")
    tracemalloc.start()
    try:
        seen = sum(1 for _ in read_part(Part("json", str(path))))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert peak < 6 << 20, f"{peak / 2**20:.1f} MiB held reading an 8 MB JSON array"


def test_id_list_spills_past_its_limit_and_reads_back_in_order() -> None:
    ids = IdList(in_memory=3)
    entries: list[Any] = ["a", 1, "b", 2, "c", 3, "ü"]
    for entry in entries:
        ids.append(entry)
    assert len(ids) == 7
    assert ids.head == ["a", 1, "b"]
    assert ids.spilled == 4
    assert list(ids) == entries
    assert list(ids) == entries
    ids.append(4)
    assert list(ids) == [*entries, 4]
    assert ids[:2] == ["a", 1]
    assert ids[1:5] == [1, "b", 2, "c"]
    with pytest.raises(IndexError):
        ids[::2]
    pairs = IdList(pairs=True, in_memory=1)
    pairs.append((0, "why"))
    pairs.append(("x", "because"))
    assert list(pairs) == [(0, "why"), ("x", "because")]
    ids.close()
    assert ids.head == ["a", 1, "b"]


def _summary_with(failing: int) -> Summary:
    from pytest_tokenguard.audit.measure import SampleResult

    summary = Summary(TrainerRules(100, "left"), 768, (384, 768), ())
    for index in range(failing):
        summary.add(SampleResult(index if index % 2 else f"s{index}", 150, 64, 1, 0, 2, 10, 5,
                                 (120, 150), (1, 2)))
    summary.add(SampleResult("refused", refused="Number of images provided (2) does not "
                                                "match number of image placeholders (1)."))
    summary.add(SampleResult("bad", error="not JSON"))
    return summary


def test_summary_memory_does_not_grow_with_failing_samples(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids_module, "IN_MEMORY", 50)
    summary = _summary_with(400)
    for ids in (summary.over_max_length, summary.cut_inside_media):
        assert len(ids) == 400
        assert len(ids.head) == 50
        assert ids.spilled == 350
    summary.close()


def test_write_json_is_json_dumps_of_to_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids_module, "IN_MEMORY", 7)
    summary = _summary_with(40)
    report = AuditReport(summary, "m", 1.0, None, ())
    stream = io.StringIO()
    report.write_json(stream)
    whole = report.to_json()
    assert stream.getvalue() == json.dumps(whole) + "\n"
    assert whole["over_max_length"] == [i if i % 2 else f"s{i}" for i in range(40)]
    assert whole["refused"][0]["id"] == "refused"
    assert whole["errors"] == [
        {"id": "bad", "error": "not JSON"}]
    lines = "\n".join(report.lines())
    assert "over max_length 100: 40 (s0, 1, s2, 3, s4, 5, s6, 7, s8, 9 and 30 more)" in lines
