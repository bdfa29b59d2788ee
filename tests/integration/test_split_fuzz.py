"""``tokenguard split`` on hypothesis-generated hostile JSON Lines keeps its contract:
exit status 0, 1 or 2; one-line messages, never a traceback; the input file unchanged;
no temporary file left; output lines valid JSON that naive line readers split right;
every non-blank input line either split or rejected (and copied to --rejects as it was).

Each example runs the command in process (its exceptions would surface here as they
would as a traceback); a fixed zoo of the worst lines also runs in a real subprocess.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pytest_tokenguard.cli import main
from tests.helpers import REPO, model_ref

SUMMARY = re.compile(r"tokenguard split: (\d+) conversations? -> (\d+) chunks?, largest (\d+) of "
                     r"(\d+) tokens?(?:, (\d+) rejected)?")

# ------------------------------------------------------------------ hostile JSON Lines

WEIRD_CHARS = ["\ud800", "\udfff", "\u2028", "\u2029", "\x85", "\x00", "\n", "\r", "<image>",
               "<video>", "<row_1_col_1>", "<end_of_utterance>", "é", "\U0001f600", "{model}"]
texts = st.lists(st.text(max_size=12) | st.sampled_from(WEIRD_CHARS), max_size=5).map("".join)
numbers = (st.integers(-3, 5000) | st.sampled_from([0, -1, 2**31 - 1, 2**31, 10**20, 2**63])
           | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e20, 1e7, 3.0]))
anything = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def frames(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(st.sampled_from([0, 3, 2**31 - 5, -1]) | numbers)
    if isinstance(start, int) and 0 <= start < 2**31 and draw(st.booleans()):
        end: Any = start + draw(st.integers(-1, 120))  # an ordinary run, at most 120 frames
    else:
        # only values that must be refused: a huge in-range run is a splitting.py matter
        end = draw(st.sampled_from([10**20, 2**31 + 7, 1e20, 2**63, "9", None, -4]))
    item = {"type": "frames", "start": start, "end": end,
            "width": draw(st.sampled_from([640, 1, 0, 10**30, "w"])),
            "height": draw(st.sampled_from([360, 2, -5, 2.5]))}
    if draw(st.booleans()):
        del item[draw(st.sampled_from(list(item)))]
    if draw(st.booleans()):
        item["video"] = draw(texts | numbers)
    return item


@st.composite
def images(draw: st.DrawFn) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "image"}
    for key in draw(st.sets(st.sampled_from(["width", "height", "path", "url", "image"]))):
        if key in ("width", "height"):
            item[key] = draw(st.sampled_from([64, 640, 1, 0, -3, 10**30, 2.0, "9", None]))
        else:
            item[key] = draw(st.sampled_from(["photo.png", "missing.png", "https://x.org/a.png",
                                              "file://photo.png", "", "a\ud800.png", 5, None,
                                              "dir", "not-an-image.png"]))
    return item


items = (st.builds(lambda t: {"type": "text", "text": t}, texts)
         | st.builds(lambda t: {"type": "text", "text": t}, anything)
         | images() | frames()
         | st.sampled_from([{"type": "video", "path": "a.mp4"}, {"type": "audio"}, {"type": None},
                            {"text": "no type"}, {"type": "text"}, {}])
         | anything)
contents = texts | st.lists(items, max_size=4) | anything
messages = (st.builds(lambda role, content: {"role": role, "content": content},
                      st.sampled_from(["user", "assistant", "system", "tool", "", " user",
                                       "User", 5, None]), contents)
            | st.builds(lambda role: {"role": role}, st.just("user"))
            | anything)
records = st.builds(
    lambda rid, msgs, extra: {"id": rid, "messages": msgs, **extra},
    anything, st.lists(messages, max_size=5) | anything,
    st.dictionaries(st.sampled_from(["source", "split", "meta"]), anything, max_size=2),
) | st.builds(lambda rid: {"id": rid}, anything)


#: well-formed conversations (some text with line separators or special tokens), so that
#: splitting, frame cuts and writing are exercised as much as rejecting
plain_texts = st.lists(st.text(max_size=30) | st.sampled_from(
    ["\u2028", "\u2029", "\x85", "<row_1_col_1>", "word " * 200, "é\U0001f600"]), min_size=1,
    max_size=4).map("".join).filter(lambda t: "<image>" not in t and "<video>" not in t)
good_items = (st.builds(lambda t: {"type": "text", "text": t}, plain_texts)
              | st.builds(lambda w, h: {"type": "image", "width": w, "height": h},
                          st.integers(1, 3000), st.integers(1, 3000))
              | st.just({"type": "image", "path": "photo.png"})
              | st.builds(lambda s, n: {"type": "frames", "start": s, "end": s + n, "width": 640,
                                        "height": 360, "video": "v.mp4"},
                          st.integers(0, 10**6), st.integers(1, 60)))
good_messages = st.builds(lambda role, content: {"role": role, "content": content},
                          st.sampled_from(["user", "assistant", "system"]),
                          st.lists(good_items, min_size=1, max_size=4)
                          | plain_texts.filter(lambda t: t.strip() != ""))
good_records = st.builds(lambda rid, msgs: {"id": rid, "messages": msgs},
                         st.integers() | texts, st.lists(good_messages, min_size=1, max_size=6))


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind >= 4:
        record = draw(good_records)
        return json.dumps(record, ensure_ascii=draw(st.booleans())).encode("utf-8",
                                                                           "surrogatepass")
    if kind == 0:
        return draw(st.binary(max_size=30))
    if kind == 1:
        return draw(st.sampled_from([b"", b"   ", b"\t", b"[" * 5000, b"{}", b"null",
                                     b'{"messages": NaN}', b'{"id": 1e999, "messages": []}',
                                     b"\xef\xbb\xbf{}"]))
    text = json.dumps(draw(records), ensure_ascii=draw(st.booleans()))
    data = text.encode("utf-8", "surrogatepass")  # raw surrogates: invalid UTF-8, as found
    if kind == 2:
        data = data[: draw(st.integers(0, len(data)))]
    return data + draw(st.sampled_from([b"", b"\r"]))


files = st.lists(lines(), max_size=8).map(lambda ls: b"\n".join(ls) + b"\n")


# ------------------------------------------------------------------ running the command


@pytest.fixture(scope="module")
def fast_loading() -> Iterator[None]:
    """The tokenizer-only processor and the spec are read once for the module, not for
    every example (the command itself reads them once per run)."""
    from pytest_tokenguard.processor import light, source

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(light, "light_processor", functools.lru_cache(light.light_processor))
        patch.setattr(source.ModelSource, "spec", functools.lru_cache(source.ModelSource.spec))
        yield


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def folder_with_files(root: Path) -> None:
    from PIL import Image

    Image.new("RGB", (64, 64)).save(root / "photo.png")
    (root / "not-an-image.png").write_bytes(b"nope")
    (root / "dir").mkdir()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=files, max_tokens=st.sampled_from([1, 60, 300, 4096]),
       frame_split=st.booleans(), to_file=st.booleans(), with_rejects=st.booleans(),
       clash=st.sampled_from([None, None, None, "-o", "--rejects"]))
def test_split_keeps_its_contract_on_hostile_input(
    fast_loading: None, data: bytes, max_tokens: int, frame_split: bool, to_file: bool,
    with_rejects: bool, clash: str | None,
) -> None:
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        folder_with_files(root)
        source = root / "in.jsonl"
        source.write_bytes(data)
        out, rejects = root / "out.jsonl", root / "rejects.jsonl"
        argv = ["split", "--model", model_ref("2.2B"), "--longest-edge", "384",
                "--max-tokens", str(max_tokens), str(source)]
        argv += ["--allow-frame-split"] * frame_split
        argv += ["-o", str(out)] * to_file + ["--rejects", str(rejects)] * with_rejects
        if clash:
            argv += [clash, os.path.join(name, ".", "in.jsonl")]
        code, stdout, stderr = run_cli(argv)

        event(f"exit status {code}")
        assert code in (0, 1, 2), stderr
        assert "Traceback" not in stderr
        assert source.read_bytes() == data
        assert [p.name for p in root.iterdir() if p.name.endswith(".tmp")] == []
        if clash:
            assert code == 2
            assert "is the input" in stderr
            return
        assert code != 2, stderr
        *notes, summary = stderr.splitlines()
        match = SUMMARY.match(summary)
        assert match, summary
        read, chunks, largest = (int(g) for g in match.groups()[:3])
        rejected = int(match[5] or 0)
        assert code == (1 if rejected else 0)
        event("some lines split" if chunks else "no line split")
        assert read == sum(1 for line in data.split(b"\n") if line.strip())
        assert len(notes) == rejected + sum("note: " in n for n in notes)
        written = out.read_text(encoding="utf-8") if to_file else stdout
        if to_file:
            assert stdout == ""
        assert len(written.splitlines()) == written.count("\n") == chunks  # naive readers too
        for line in written.splitlines():
            chunk = json.loads(line)
            assert chunk["tokens"] <= max_tokens
            assert chunk["tokens"] <= largest
        if with_rejects:
            copied = rejects.read_bytes().split(b"\n")[:-1] if rejected else []
            assert len(copied) == rejected
            originals = data.split(b"\n")
            assert all(line in originals for line in copied)


ZOO = [
    b'{"id": 1, "messages": [{"role": "user", "content": [{"type": "text", "text": "a\\ud800"}]}]}',
    b'{"id": 2, "messages": [{"role": "user", "content": [{"type": "frames", "start": 0, '
    b'"end": 100000000000000000000, "width": 9, "height": 9}]}]}',
    b'{"id": 3, "messages": [{"role": "user", "content": [{"type": "frames", "start": 0, '
    b'"end": 1e20, "width": 9, "height": 9}]}]}',
    b'{"id": 4, "messages": [{"role": "user", "content": "<video> here"}]}',
    b'{"id": 5, "messages": []}',
    b"[" * 100_000,
    b"\xff\xfe",
    b'{"id": 6, "messages": [{"role": "user", "content": [{"type": "text", "text": "ok\xe2\x80\xa8'
    b'fine"}]}]}',
]


def test_the_zoo_in_a_real_process(tmp_path: Path) -> None:
    source = tmp_path / "zoo.jsonl"
    source.write_bytes(b"\n".join(ZOO) + b"\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest_tokenguard.cli", "split", "--model", model_ref("2.2B"),
         "--max-tokens", "4096", str(source), "--rejects", str(tmp_path / "rejects.jsonl")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == len(ZOO)  # one per rejected line, one summary
    numbers = [re.match(rf"tokenguard split: {re.escape(str(source))}, line (\d+)", line)
               for line in lines[:-1]]
    assert [int(m[1]) for m in numbers if m] == list(range(1, len(ZOO)))
    assert "8 conversations -> 1 chunk," in lines[-1]
    assert "7 rejected, 1 of them empty" in lines[-1]
    assert json.loads(done.stdout)["id"] == 6
