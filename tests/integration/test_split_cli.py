"""``tokenguard split``: output re-counted by the real processor, inputs that fail cleanly."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_tokenguard.cli.split import add_split_parser, run_split
from pytest_tokenguard.conversation import atoms, parse_conversation
from pytest_tokenguard.sequence import processor_count
from tests.helpers import REPO, loaded, model_ref


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tokenguard")
    add_split_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_split(parse(["split", *argv]), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def conversations(folder: Path) -> list[dict[str, Any]]:
    from PIL import Image

    Image.new("RGB", (1280, 720)).save(folder / "scene.png")
    frames = [{"role": ("user", "assistant")[i % 2],
               "content": [{"type": "text", "text": f"Frames of step {i}:"},
                           {"type": "frames", "start": 6 * i, "end": 6 * i + 6, "width": 640,
                            "height": 360, "video": "op.mp4"}]}
              for i in range(16)]
    return [
        {"id": "surgery", "messages": frames},
        {"id": 7, "messages": [
            {"role": "user", "content": [{"type": "image", "path": "scene.png"},
                                         {"type": "text", "text": "Describe the scene."}]},
            {"role": "assistant", "content": "A road at dusk, two cars, wet asphalt."},
        ]},
        {"id": "big", "messages": [{"role": "user", "content": [
            {"type": "frames", "start": 0, "end": 70, "width": 320, "height": 240}]}]},
    ]


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_output_recounted_by_the_real_processor(tmp_path: Path) -> None:
    records = conversations(tmp_path)
    source = write_jsonl(tmp_path / "in.jsonl", records)
    leading = tmp_path / "task.txt"
    leading.write_text("Name the surgical step shown.\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code, stdout, stderr = run([
        "--max-tokens", "2000", "--model", model_ref("2.2B"), "--longest-edge", "384",
        "--leading-file", str(leading), "--allow-frame-split", str(source), "-o", str(out),
    ])
    assert code == 0, stderr
    assert stdout == ""
    assert "3 conversations ->" in stderr
    chunks = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    processor = loaded("2.2B", 384).processor
    by_id: dict[Any, list[dict[str, Any]]] = {}
    for chunk in chunks:
        by_id.setdefault(chunk["id"], []).append(chunk)
        # relative image paths are resolved from the input file's folder
        messages = parse_conversation(chunk["messages"], base_dir=tmp_path)
        assert messages[0].role == "system"
        assert processor_count(processor, messages) == chunk["tokens"] <= 2000
    assert list(by_id) == ["surgery", 7, "big"]
    for record in records:
        parts = by_id[record["id"]]
        assert [p["chunk"] for p in parts] == list(range(len(parts)))
        assert {p["chunks"] for p in parts} == {len(parts)}
        original = parse_conversation(record["messages"], base_dir=tmp_path)
        # every message in order, exactly once (a frame-split message across chunks)
        got = [(m.role, a) for p in parts
               for m in parse_conversation(p["messages"], base_dir=tmp_path)[1:] for a in atoms(m)]
        assert got == [(m.role, a) for m in original for a in atoms(m)]
        sources = [s for p in parts for s in p["sources"]]
        assert sorted(set(sources)) == list(range(len(original)))
        assert sources == sorted(sources)
    assert len(by_id["big"]) == 4  # 70 frames of 84 tokens cannot fit 2000 in fewer


def test_stdout_and_env_model_in_a_subprocess(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [
        {"id": "a", "messages": [{"role": "user", "content": "hello"}]}
    ])
    env = {**os.environ, "TOKENGUARD_MODEL": model_ref("500M"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest_tokenguard.cli", "split", "--max-tokens", "4096",
         str(source)], capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    chunk = json.loads(line)
    assert chunk["messages"] == [{"role": "user",
                                  "content": [{"type": "text", "text": "hello"}]}]
    assert "SmolVLM2-500M-Video-Instruct" in done.stderr
    assert chunk["tokens"] == processor_count(loaded("500M", 2048).processor, chunk["messages"])


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("{not json", r"in.jsonl, line 2: not valid JSON"),
        ('["a"]', r"line 2: expected an object with 'messages', got list"),
        ('{"id": 1}', r"line 2: 'messages' must be a list of chat messages, got nothing"),
        ('{"id": 1, "messages": [{"role": "user", "content": [{"type": "audio"}]}]}',
         r"line 2: message 0, item 0: unknown content type 'audio'"),
        ('{"id": 1, "messages": [{"role": "user", "content": [{"type": "image", '
         '"path": "missing.png"}]}]}', r"line 2: message 0, item 0: image .*missing.png no such"),
        ('{"id": 1, "messages": [{"role": "user", "content": [{"type": "frames", "start": 5, '
         '"end": 5, "width": 9, "height": 9}]}]}', r"line 2: .*frames \[5, 5\) is empty"),
        ('{"id": "x", "messages": [{"role": "user", "content": "' + "w " * 5000 + '"}]}',
         r"line 2 \(id 'x'\): message 0 \(user, 1 item, 0 images\) is \d+ tokens"),
    ],
)
def test_bad_line_is_named_and_nothing_is_written(tmp_path: Path, line: str, pattern: str) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 0, "messages": [{"role": "user", "content": "ok"}]}\n'
                      + line + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text("previous run\n", encoding="utf-8")
    code, stdout, stderr = run(["--max-tokens", "4096", "--model", model_ref("2.2B"),
                                "--longest-edge", "384", str(source), "-o", str(out)])
    assert code == 1
    assert stderr.startswith("tokenguard split: error: ")
    assert __import__("re").search(pattern, stderr), stderr
    assert out.read_text(encoding="utf-8") == "previous run\n"  # untouched
    assert stdout == ""
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_leading_context_too_long_and_other_usage_errors(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "messages": [
        {"role": "user", "content": "hi"}]}])
    leading = tmp_path / "lead.json"
    leading.write_text(json.dumps([{"role": "system", "content": "word " * 300}]))
    code, _, stderr = run(["--max-tokens", "100", "--model", model_ref("2.2B"),
                           "--longest-edge", "384", "--leading-file", str(leading), str(source)])
    assert code == 1
    assert "leading context alone is" in stderr
    assert "max_tokens is 100" in stderr
    code, _, stderr = run(["--max-tokens", "0", str(source)])
    assert code == 1
    assert "--max-tokens must be a positive integer" in stderr
    code, _, stderr = run(["--max-tokens", "10", str(tmp_path / "nope.jsonl")])
    assert code == 1
    assert "nope.jsonl: no such file" in stderr
    leading.write_text(json.dumps({"role": "system", "content": [{"type": "img"}]}))
    code, _, stderr = run(["--max-tokens", "10", "--leading-file", str(leading), str(source)])
    assert code == 1
    assert "leading message 0, item 0: unknown content type 'img'" in stderr
    code, _, stderr = run(["--max-tokens", "10", "--model", str(tmp_path / "no-model"),
                           str(source)])
    assert code == 1
    assert "does not exist" in stderr
