"""``tokenguard split``: output re-counted by the real processor, bad lines rejected one by
one, nothing the user owns lost, messages in the command's own words."""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pytest_tokenguard.cli.split import add_split_parser, run_split
from pytest_tokenguard.conversation import Message, VideoItem, atoms, parse_conversation
from pytest_tokenguard.sequence import processor_count
from tests.helpers import REPO, checkpoint_folder, loaded, model_ref

EDGE = ["--longest-edge", "384"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tokenguard")
    add_split_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_split(parse(["split", *argv]), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def run_model(argv: list[str], checkpoint: str = "2.2B") -> tuple[int, str, str]:
    return run(["--model", model_ref(checkpoint), *EDGE, *argv])


def cli(*argv: str, stdin: bytes | None = None, cwd: Path | None = None,
        model: str = "2.2B") -> subprocess.CompletedProcess[bytes]:
    """``tokenguard split`` in a fresh process, as a user runs it."""
    env = {**os.environ, "TOKENGUARD_MODEL": model_ref(model), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pytest_tokenguard.cli", "split", *argv],
                          input=stdin, capture_output=True, env=env, timeout=300, check=False,
                          cwd=cwd)


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
            {"role": "assistant", "content": [{"type": "text", "text": "A road at dusk."}]},
        ]},
        {"id": "big", "messages": [{"role": "user", "content": [
            {"type": "frames", "start": 0, "end": 70, "width": 320, "height": 240}]}]},
    ]


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def chat(text: str = "ok", record_id: Any = 0) -> str:
    return json.dumps({"id": record_id, "messages": [
        {"role": "user", "content": [{"type": "text", "text": text}]}]})


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def test_output_recounted_by_the_real_processor(tmp_path: Path) -> None:
    records = conversations(tmp_path)
    source = write_jsonl(tmp_path / "in.jsonl", records)
    leading = tmp_path / "task.txt"
    leading.write_text("Name the surgical step shown.\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code, stdout, stderr = run_model([
        "--max-tokens", "2000", "--leading-file", str(leading), "--allow-frame-split",
        str(source), "-o", str(out),
    ])
    assert code == 0, stderr
    assert stdout == ""
    assert "3 conversations ->" in stderr
    chunks = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    processor = loaded("2.2B", 384).processor
    by_id: dict[Any, list[dict[str, Any]]] = {}
    for chunk in chunks:
        by_id.setdefault(chunk["id"], []).append(chunk)
        messages = parse_conversation(chunk["messages"], base_dir=out.parent)
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
               for m in parse_conversation(p["messages"], base_dir=out.parent)[1:]
               for a in atoms(m)]
        assert got == [(m.role, a) for m in original for a in atoms(m)]
        sources = [s for p in parts for s in p["sources"]]
        assert sorted(set(sources)) == list(range(len(original)))
        assert sources == sorted(sources)
    assert len(by_id["big"]) == 4  # 70 frames of 84 tokens cannot fit 2000 in fewer


def test_split_imports_no_torch_and_reads_stdin(tmp_path: Path) -> None:
    """``-`` reads standard input (it was "no such file"); a checkpoint folder is read
    tokenizer-only, so the command never imports torch (1 GB before the first line)."""
    probe = ("import runpy, sys; sys.argv = ['tokenguard', 'split', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('pytest_tokenguard.cli', run_name='__main__')\n"
             "finally:\n    print('torch imported' if 'torch' in sys.modules else 'no torch',"
             " file=sys.stderr)\n")
    env = {**os.environ, "TOKENGUARD_MODEL": model_ref("500M"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", probe, "--max-tokens", "4096", "-"],
                          input=(chat("hello", "a") + "\n").encode(), capture_output=True,
                          env=env, timeout=300, check=False)
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr
    assert "no torch" in stderr
    (line,) = done.stdout.decode().splitlines()
    chunk = json.loads(line)
    assert chunk["messages"] == [{"role": "user",
                                  "content": [{"type": "text", "text": "hello"}]}]
    assert "SmolVLM2-500M-Video-Instruct" in stderr
    assert chunk["tokens"] == processor_count(loaded("500M", 2048).processor, chunk["messages"])


# ------------------------------------------------------------------ rejected lines


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("{not json", r"in.jsonl, line 2: not valid JSON"),
        ('["a"]', r"line 2: expected an object with 'messages', got a list"),
        ('{"id": 1}', r"line 2 \(id 1\): 'messages' must be a list of chat messages, got nothing"),
        ('{"id": 1, "messages": [{"role": "user", "content": [{"type": "audio"}]}]}',
         r"line 2 \(id 1\): message 0, item 0: unknown content type 'audio'"),
        ('{"id": 1, "messages": [{"role": "user", "content": [{"type": "image", '
         '"path": "missing.png"}]}]}', r"line 2 \(id 1\): message 0, item 0: image .*missing.png "
                                       "no such"),
        ('{"id": 1, "messages": [{"role": "user", "content": [{"type": "frames", "start": 5, '
         '"end": 5, "width": 9, "height": 9}]}]}', r"line 2 \(id 1\): .*frames \[5, 5\) is empty"),
        ('{"id": "x", "messages": [{"role": "user", "content": [{"type": "text", "text": "'
         + "w " * 5000 + '"}]}]}',
         r"line 2 \(id 'x'\): message 0 \(user, 1 item, 0 images\) is \d+ tokens"),
        ('{"id": "e", "messages": []}', r"line 2 \(id 'e'\): no messages: nothing to split"),
        ('{"id": "nan", "messages": NaN}', r"line 2: not valid JSON \(NaN is not a JSON number"),
    ],
)
def test_bad_line_is_rejected_and_the_rest_goes_on(tmp_path: Path, line: str,
                                                   pattern: str) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(chat(record_id=0) + "\n" + line + "\n" + chat(record_id=2) + "\n",
                      encoding="utf-8")
    out, rejects = tmp_path / "out.jsonl", tmp_path / "rejects.jsonl"
    out.write_text("previous run\n", encoding="utf-8")
    code, stdout, stderr = run_model(["--max-tokens", "4096", str(source), "-o", str(out),
                                      "--rejects", str(rejects)])
    assert code == 1
    lines = stderr.splitlines()
    assert re.search(pattern, lines[0]), stderr
    assert len(lines) == 2  # one line for the rejected line, one summary
    assert "3 conversations -> 2 chunks" in lines[1]
    assert f"1 rejected{', 1 of them empty' if 'no messages' in pattern else ''} (written to " \
           f"{rejects})" in lines[1]
    assert [json.loads(x)["id"] for x in out.read_text(encoding="utf-8").splitlines()] == [0, 2]
    assert rejects.read_bytes() == (line + "\n").encode()  # the input line, unchanged
    assert stdout == ""
    assert temp_files(tmp_path) == []


def test_rejected_lines_are_copied_byte_for_byte(tmp_path: Path) -> None:
    raw = [b'{"id": 1, "messages": [}\r\n', b"\xff\xfe not utf-8\n", b'{"id": 3, "messages": []}']
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(raw))
    rejects = tmp_path / "rejects.jsonl"
    code, stdout, stderr = run_model(["--max-tokens", "100", str(source), "--rejects",
                                      str(rejects)])
    assert code == 1
    assert stdout == ""
    assert "line 2: not UTF-8 text (byte 1 is 0xff)" in stderr
    assert "3 rejected, 1 of them empty" in stderr
    assert rejects.read_bytes() == b"".join(raw) + b"\n"  # the last line gets its newline


def test_empty_conversation_is_reported_not_dropped(tmp_path: Path) -> None:
    """It vanished from the output with rc 0 and no word."""
    source = tmp_path / "in.jsonl"
    source.write_text(chat(record_id="a") + "\n" + '{"id": "empty", "messages": []}\n',
                      encoding="utf-8")
    code, stdout, stderr = run_model(["--max-tokens", "4096", str(source)])
    assert code == 1
    assert "in.jsonl, line 2 (id 'empty'): no messages" in stderr
    assert "2 conversations -> 1 chunk," in stderr
    assert "1 rejected, 1 of them empty" in stderr
    assert [json.loads(x)["id"] for x in stdout.splitlines()] == ["a"]


def hostile(content: Any) -> str:
    return json.dumps({"id": "h", "messages": [{"role": "user", "content": content}]},
                      ensure_ascii=True)


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        (hostile([{"type": "text", "text": "a\ud800b"}]),
         r"message 0, item 0: the text holds a lone surrogate \(U\+D800\) at character 1"),
        (hostile([{"type": "frames", "start": 0, "end": 10**20, "width": 10, "height": 10}]),
         r"message 0, item 0: frame end 100000000000000000000 is out of range"),
        (hostile([{"type": "frames", "start": 0, "end": 1e20, "width": 10, "height": 10}]),
         r"message 0, item 0: frame end must be an integer, got 1e\+20"),
        (hostile([{"type": "text", "text": "look: <video>"}]),
         r"message 0, item 0: the text contains '<video>', which the processor takes for a "
         "video placeholder"),
        (hostile([{"type": "image", "path": 5}]), r"'path' must be a file path \(a string\)"),
        (hostile(""), r"message 0: 'content' is an empty string"),
        ('{"id": "\\udc00", "messages": [{"role": "user", "content": "x"}]}',
         r"line 1 \(id '\\udc00'\): 'id' holds a lone surrogate"),
        ("[" * 100_000, r"line 1: not valid JSON here: nested too deeply"),
        ('{"id": 1e999, "messages": []}', r"line 1: not valid JSON \(the number 1e999 is out of"),
    ],
)
def test_hostile_conversations_are_one_line_errors(tmp_path: Path, line: str,
                                                  pattern: str) -> None:
    """Each was a traceback (TypeError, OverflowError...) or slipped through."""
    source = tmp_path / "in.jsonl"
    source.write_text(line + "\n", encoding="utf-8")
    code, _, stderr = run_model(["--max-tokens", "4096", str(source)])
    assert code == 1
    first = stderr.splitlines()[0]
    assert re.search(pattern, first), stderr
    assert first.startswith(f"tokenguard split: {source}, line 1")
    assert len(stderr.splitlines()) == 2


def test_declared_size_must_match_the_file(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (640, 480)).save(tmp_path / "photo.png")
    item = {"type": "image", "path": "photo.png", "width": 1920, "height": 1080}
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": "p", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "What is it?"}, item]}]}])
    code, _, stderr = run_model(["--max-tokens", "4096", str(source)])
    assert code == 1
    assert ("line 1 (id 'p'): message 0, item 1: image declares 1920×1080 but its file "
            f"{tmp_path / 'photo.png'} is 640×480") in stderr
    # agreeing sizes, or a file that is not there, are fine
    item.update(width=640, height=480)
    write_jsonl(source, [{"id": "p", "messages": [{"role": "user", "content": [item]}]},
                         {"id": "q", "messages": [{"role": "user", "content": [
                             {"type": "image", "path": "elsewhere.png", "width": 64,
                              "height": 64}]}]}])
    code, _, stderr = run_model(["--max-tokens", "4096", str(source)])
    assert code == 0, stderr


def test_string_content_is_counted_as_rendered_and_named(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "s", "messages": [
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]}]}) + "\n",
        encoding="utf-8")
    code, stdout, stderr = run_model(["--max-tokens", "4096", str(source)])
    assert code == 0, stderr
    assert "note: " in stderr
    assert "line 1 (id 's'): message 0 has plain-string content" in stderr
    assert "1 with plain-string content the template drops" in stderr
    chunk = json.loads(stdout)
    assert chunk["messages"][0] == {"role": "user", "content": "Hello there"}  # as given
    assert chunk["tokens"] == processor_count(loaded("2.2B", 384).processor, chunk["messages"])


# ------------------------------------------------------------------ JSON Lines


def test_line_separators_inside_strings_are_not_line_ends(tmp_path: Path) -> None:
    """U+2028, U+2029 and U+0085 are valid inside JSON strings: split rejected such lines
    (str.splitlines) and wrote them raw, so it could not read its own output."""
    text = "one\u2028two\u2029three\x85four"
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "u", "messages": [
        {"role": "user", "content": [{"type": "text", "text": text}]}]},
        ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code, _, stderr = run_model(["--max-tokens", "4096", str(source), "-o", str(out)])
    assert code == 0, stderr
    written = out.read_text(encoding="utf-8")
    assert written.count("\n") == 1
    assert len(written.splitlines()) == 1  # safe for naive readers: the characters are escaped
    assert "\\u2028" in written
    assert json.loads(written)["messages"][0]["content"][0]["text"] == text
    # and the output is valid input again
    again = tmp_path / "again.jsonl"
    code, _, stderr = run_model(["--max-tokens", "4096", str(out), "-o", str(again)])
    assert code == 0, stderr


def test_image_paths_resolve_from_the_output(tmp_path: Path) -> None:
    """Paths were written relative to the input's folder, so they broke when -o wrote
    elsewhere; now relative to the output's folder (absolute on standard output)."""
    from PIL import Image

    data, results = tmp_path / "data", tmp_path / "results" / "run1"
    (data / "img").mkdir(parents=True)
    Image.new("RGB", (300, 200)).save(data / "img" / "a.png")
    source = write_jsonl(data / "in.jsonl", [{"id": 1, "messages": [{"role": "user", "content": [
        {"type": "image", "path": "img/a.png"}, {"type": "text", "text": "what?"}]}]}])
    results.mkdir(parents=True)
    out = results / "out.jsonl"
    code, _, stderr = run_model(["--max-tokens", "4096", str(source), "-o", str(out)])
    assert code == 0, stderr
    (item, _) = json.loads(out.read_text(encoding="utf-8"))["messages"][0]["content"]
    assert item["path"] == os.path.join("..", "..", "data", "img", "a.png")
    assert (out.parent / item["path"]).resolve() == (data / "img" / "a.png").resolve()
    code, stdout, stderr = run_model(["--max-tokens", "4096", str(source)])
    assert code == 0, stderr
    (item, _) = json.loads(stdout)["messages"][0]["content"]
    assert item["path"] == str((data / "img" / "a.png").resolve())


# ------------------------------------------------------------------ the files the user owns


def same_file_ways(tmp_path: Path) -> dict[str, Path]:
    source = tmp_path / "in.jsonl"
    (tmp_path / "link.jsonl").symlink_to(source)
    os.link(source, tmp_path / "hard.jsonl")
    return {"same path": source, "./ path": Path(os.path.relpath(source)),
            "dotted": tmp_path / "." / "in.jsonl", "symlink": tmp_path / "link.jsonl",
            "hard link": tmp_path / "hard.jsonl"}


@pytest.mark.parametrize("way", ["same path", "./ path", "dotted", "symlink", "hard link"])
@pytest.mark.parametrize("option", ["-o", "--rejects"])
def test_output_that_is_the_input_is_refused(tmp_path: Path, way: str, option: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``split IN -o IN`` replaced the input with the chunks (rc 0)."""
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "in.jsonl"
    original = (json.dumps({"id": 1, "extra": "kept", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}) + "\n").encode()
    source.write_bytes(original)
    target = same_file_ways(tmp_path)[way]
    code, stdout, stderr = run_model(["--max-tokens", "4096", str(source), option, str(target)])
    assert code == 2
    assert f"error: {option} {target} is the input {source} (the same file)" in stderr
    assert stdout == ""
    assert source.read_bytes() == original
    assert (tmp_path / "link.jsonl").is_symlink()
    assert temp_files(tmp_path) == []


def test_output_symlink_is_written_through(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}])
    (tmp_path / "store").mkdir()
    real = tmp_path / "store" / "chunks.jsonl"
    real.write_text("old\n", encoding="utf-8")
    link = tmp_path / "out.jsonl"
    link.symlink_to(real)
    code, _, stderr = run_model(["--max-tokens", "4096", str(source), "-o", str(link)])
    assert code == 0, stderr
    assert link.is_symlink()
    assert os.readlink(link) == str(real)
    assert json.loads(real.read_text(encoding="utf-8"))["id"] == 1


def test_new_output_gets_the_umask_mode_and_old_keeps_its_own(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}])
    old = os.umask(0o027)
    try:
        code, _, stderr = run_model(["--max-tokens", "4096", str(source), "-o",
                                     str(tmp_path / "new.jsonl")])
    finally:
        os.umask(old)
    assert code == 0, stderr
    assert (tmp_path / "new.jsonl").stat().st_mode & 0o777 == 0o640
    kept = tmp_path / "kept.jsonl"
    kept.write_text("x\n")
    kept.chmod(0o604)
    code, _, stderr = run_model(["--max-tokens", "4096", str(source), "-o", str(kept)])
    assert code == 0, stderr
    assert kept.stat().st_mode & 0o777 == 0o604


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_the_write_keeps_the_old_output(tmp_path: Path, signum: int) -> None:
    """SIGTERM left ``.OUT.jsonl.*.tmp`` behind."""
    line = chat("word " * 400)
    source = tmp_path / "in.jsonl"
    source.write_text(f"{line}\n" * 40_000, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text("old output\n", encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_tokenguard.cli", "split", "--max-tokens", "4096",
         "--model", model_ref("2.2B"), str(source), "-o", str(out)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not temp_files(tmp_path) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert temp_files(tmp_path), "the output was never being written"
    time.sleep(0.2)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    if signum == signal.SIGTERM:
        assert process.returncode == -signal.SIGTERM  # it still dies by the signal
    else:
        assert process.returncode == 130
        assert b"interrupted" in stderr
    assert b"Traceback" not in stderr
    assert out.read_text(encoding="utf-8") == "old output\n"
    assert temp_files(tmp_path) == []


# ------------------------------------------------------------------ words and exit codes


def test_messages_name_the_options_of_this_command(tmp_path: Path) -> None:
    """The CLI said ``allow_frame_split=True`` and ``--tokenguard-model``."""
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": "v", "messages": [{"role": "user",
        "content": [{"type": "frames", "start": 0, "end": 80, "width": 640, "height": 360}]}]}])
    code, _, stderr = run_model(["--max-tokens", "2000", str(source)])
    assert code == 1
    assert "(--max-tokens 2000 - " in stderr
    assert "--allow-frame-split lets it be cut between frames" in stderr
    assert "allow_frame_split=True" not in stderr
    code, _, stderr = run(["--max-tokens", "10", "--model", str(tmp_path / "no-model"),
                           str(source)])
    assert code == 2
    assert "does not exist: fix the path given to --model (or $TOKENGUARD_MODEL)" in stderr
    assert "tokenguard-model" not in stderr
    leading = tmp_path / "lead.json"
    leading.write_text(json.dumps([{"role": "system", "content": [
        {"type": "text", "text": "word " * 300}]}]))
    code, _, stderr = run_model(["--max-tokens", "100", "--leading-file", str(leading),
                                 str(source)])
    assert code == 2
    assert "leading context alone is" in stderr
    assert "and --max-tokens is 100" in stderr


def test_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}])
    with pytest.raises(SystemExit) as exited:
        parse(["split", "--max-tokens", "0", str(source)])
    assert exited.value.code == 2
    assert "argument --max-tokens: 0 is not accepted; use 1 or more" in capsys.readouterr().err
    code, _, stderr = run(["--max-tokens", "10", str(tmp_path / "nope.jsonl")])
    assert (code, stderr.strip()) == (1, f"tokenguard split: error: {tmp_path / 'nope.jsonl'}: "
                                         "no such file")
    code, _, stderr = run(["--max-tokens", "10", str(tmp_path)])
    assert code == 1
    assert "is a folder" in stderr
    leading = tmp_path / "lead.json"
    leading.write_text(json.dumps({"role": "system", "content": [{"type": "img"}]}))
    code, _, stderr = run(["--max-tokens", "10", "--leading-file", str(leading), str(source)])
    assert code == 1
    assert "leading message 0, item 0: unknown content type 'img'" in stderr
    code, _, stderr = run(["--max-tokens", "10", str(source), "-o", str(tmp_path)])
    assert code == 2
    assert "is a folder" in stderr
    out = tmp_path / "o.jsonl"
    code, _, stderr = run(["--max-tokens", "10", str(source), "-o", str(out), "--rejects",
                           str(out)])
    assert code == 2
    assert "name the same file" in stderr


# ------------------------------------------------------------------ chat templates (issue 9)


def copied_checkpoint(tmp_path: Path, template: str) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoint_folder("2.2B"), folder)
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": template}),
                                               encoding="utf-8")
    return folder


def test_template_differing_by_a_comment_is_counted_exactly(tmp_path: Path) -> None:
    """It ended in a TemplateError traceback."""
    from pytest_tokenguard.processor.embedded import CHAT_TEMPLATE

    folder = copied_checkpoint(tmp_path, "{# fine-tuned by us #}" + CHAT_TEMPLATE.replace(
        "{{ '<image>' }}", "{{'<image>'}}"))
    source = write_jsonl(tmp_path / "in.jsonl", conversations(tmp_path)[1:2])
    out = tmp_path / "out.jsonl"
    code, _, stderr = run(["--model", str(folder), *EDGE, "--max-tokens", "4096", str(source),
                           "-o", str(out)])
    assert code == 0, stderr
    chunk = json.loads(out.read_text(encoding="utf-8"))
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(folder), size={"longest_edge": 384})
    assert processor.chat_template != CHAT_TEMPLATE
    messages = parse_conversation(chunk["messages"], base_dir=out.parent)
    assert chunk["tokens"] == processor_count(processor, messages)


def test_other_template_is_refused_naming_its_file(tmp_path: Path) -> None:
    from pytest_tokenguard.processor.embedded import CHAT_TEMPLATE

    folder = copied_checkpoint(tmp_path, CHAT_TEMPLATE.replace("<end_of_utterance>", "<|im_end|>"))
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}])
    code, stdout, stderr = run(["--model", str(folder), "--max-tokens", "4096", str(source)])
    assert code == 2
    assert stdout == ""
    assert stderr.count("\n") == 1
    assert f"error: {folder / 'chat_template.json'}: this chat template is not SmolVLM2's" in stderr


def test_closed_standard_output_is_not_a_traceback(tmp_path: Path) -> None:
    """``tokenguard split IN | head -1``."""
    source = tmp_path / "in.jsonl"
    source.write_text(f"{chat('word ' * 50)}\n" * 3000, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_tokenguard.cli", "split", "--model", model_ref("2.2B"),
         "--max-tokens", "4096", str(source)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    assert json.loads(process.stdout.readline())["id"] == 0
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr


def test_a_million_frames_are_refused_in_bounded_memory(tmp_path: Path) -> None:
    """Memory does not grow with a frames item's length: a million frames cost what ten
    do (the counter's own set-up, the same in both runs, is all that is traced)."""
    import tracemalloc

    def peak_for(frames: int) -> tuple[int, str]:
        source = tmp_path / f"in{frames}.jsonl"
        source.write_text(hostile([{"type": "frames", "start": 0, "end": frames, "width": 64,
                                    "height": 64}] * 70) + "\n", encoding="utf-8")
        tracemalloc.start()
        try:
            code, _, stderr = run_model(["--max-tokens", "4096", str(source)])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert code == 1
        return peak, stderr

    run_model(["--max-tokens", "4096", str(tmp_path / "warm-up.jsonl")])  # load once
    small, _ = peak_for(10)
    large, stderr = peak_for(10**6)
    assert "--allow-frame-split lets it be cut between frames" in stderr
    assert large - small < 2_000_000


# ---------------------------------------------------------------- videos


def test_videos_by_path_and_metadata_split_and_count_again(tmp_path: Path) -> None:
    """Video items by relative path (resolved against the input's folder, written relative
    to the output's) and by metadata; a long one cut into clips with --allow-frame-split;
    every chunk re-counted by the real processor with its videos handed over as videos."""
    from tests.helpers import torchcodec_missing, write_clip

    data = tmp_path / "data"
    data.mkdir()
    write_clip(data / "short.mp4", 20, 5)
    records = [
        {"id": "file", "messages": [{"role": "user", "content": [
            {"type": "video", "path": "short.mp4"}, {"type": "text", "text": "What?"}]}]},
        {"id": "long", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Steps:"},
                                         {"type": "video", "total_frames": 7200, "fps": 30}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Two."}]}]},
        {"id": "too long", "messages": [{"role": "user", "content": [
            {"type": "video", "total_frames": 1800, "fps": 30}]}]},
        {"id": "string", "messages": [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": [
                                          {"type": "video", "total_frames": 30, "fps": 30}]}]},
    ]
    source = write_jsonl(data / "in.jsonl", records)
    out = tmp_path / "out" / "chunks.jsonl"
    out.parent.mkdir()
    code, _, err = run_model([str(source), "--max-tokens", "4096", "-o", str(out)])
    assert code == 1
    lines = err.splitlines()
    assert any("(id 'too long'): message 0 (user, 1 item, 0 images, 1 video) is " in line
               and "num_frames=" in line and "--allow-frame-split" in line for line in lines)
    assert any("(id 'string'): message 0: plain-string content in a conversation that holds "
               "a video" in line for line in lines)
    chunks = [json.loads(line) for line in out.read_text().splitlines()]
    assert [c["id"] for c in chunks] == ["file"]  # the long videos need cutting
    video = chunks[0]["messages"][0]["content"][0]
    assert video["path"] == os.path.join("..", "data", "short.mp4")
    assert (video["total_frames"], video["fps"]) == (20, 5.0)
    code, _, err = run_model([str(source), "--max-tokens", "4096", "--allow-frame-split",
                              "-o", str(out)])
    assert code == 1
    assert "(id 'string')" in err
    chunks = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted({c["id"] for c in chunks}) == ["file", "long", "too long"]
    long = [c for c in chunks if c["id"] == "long"]
    assert len(long) > 1
    assert [c["chunks"] for c in long] == [len(long)] * len(long)
    clips = [item for c in long for m in c["messages"] for item in m["content"]
             if item["type"] == "video"]
    assert clips[0]["start"] == 0
    assert all(a["end"] == b["start"] for a, b in itertools.pairwise(clips))
    assert clips[-1]["end"] == 7200
    processor = loaded("2.2B", 384).processor
    for chunk in chunks:
        messages = parse_conversation(chunk["messages"], base_dir=out.parent)
        if torchcodec_missing():
            # the processor decodes a file with torchcodec only; without it, it gets the
            # file's metadata (as read by split) with blank frames: the same count, so the
            # test's figures are the same on every machine, FFmpeg or not
            messages = tuple(Message(m.role, tuple(replace(item, file=None)
                                                   if type(item) is VideoItem else item
                                                   for item in m.content), m.string_content)
                             for m in messages)
        assert processor_count(processor, messages) == chunk["tokens"] <= 4096


def test_an_image_the_processor_cannot_load_by_path_is_a_named_reject(tmp_path: Path) -> None:
    """A TIFF (BMP, PPM...) path: the default processor raises "Unsupported or
    unrecognized image format" on it, so its conversation is rejected by name, with the
    fix, and the others are still split (main priced it and wrote its chunk)."""
    from PIL import Image

    Image.new("RGB", (1000, 300)).save(tmp_path / "scan.tif")
    Image.new("RGB", (1000, 300)).save(tmp_path / "photo.png")
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"messages": [{"role": "user", "content": [
        {"type": "image", "path": name}, {"type": "text", "text": "What is it?"}]}]}) + "\n"
        for name in ("scan.tif", "photo.png")), encoding="utf-8")
    code, _, err = run_model([str(source), "--max-tokens", "4096", "-o",
                              str(tmp_path / "out.jsonl")])
    assert code == 1
    assert (f"in.jsonl, line 1 (id 1): message 0, item 0: image {tmp_path / 'scan.tif'} is "
            "in TIFF format, which the processor cannot load from a path") in err
    assert "convert it to PNG or JPEG, or open it with PIL and pass the image" in err
    (chunk,) = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert "photo.png" in chunk
