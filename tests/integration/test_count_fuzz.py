"""Fuzz ``tokenguard count`` with hostile files, folders and model folders.

Hypothesis builds a folder of truncated, corrupt, empty and huge-header images (with
EXIF orientations), odd and non-UTF-8 names, symbolic links (to files, to folders,
dangling, loops) and nested folders, then runs the command with a random mix of
options. The contract, whatever the input: exit status 0, 1 or 2; no traceback; one
``tokenguard count:`` line per message on stderr; valid JSON Lines on stdout with
``--json``; and nothing in the input folder changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pytest_tokenguard.cli import main
from pytest_tokenguard.testing.profiles import processor_examples
from tests.helpers import REPO

MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"


@pytest.fixture(scope="module", autouse=True)
def offline_known_model() -> Iterator[None]:
    """Count with the built-in spec (no model files read), offline."""
    with tempfile.TemporaryDirectory() as cache, pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_CACHE", cache)
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.delenv("TOKENGUARD_MODEL", raising=False)
        yield


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@st.composite
def image_bytes(draw: st.DrawFn) -> bytes:
    """A real image in a common format, small, with an optional EXIF orientation."""
    fmt = draw(st.sampled_from(["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"]))
    width, height = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    noise = random.Random(draw(st.integers(0, 2**32))).randbytes(width * height * 3)
    image = Image.frombytes("RGB", (width, height), noise)
    save: dict[str, Any] = {}
    if fmt in ("PNG", "JPEG", "WEBP", "TIFF") and draw(st.booleans()):
        exif = Image.Exif()
        exif[0x0112] = draw(st.integers(0, 10))
        save["exif"] = exif
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


@st.composite
def hostile_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["good", "truncated", "flipped", "zero-tail", "junk",
                                 "empty", "huge-header"]))
    if kind == "empty":
        return b""
    if kind == "junk":
        return draw(st.binary(max_size=200))
    if kind == "huge-header":
        width = draw(st.integers(1, 2**31 - 1))
        height = draw(st.integers(1, 2**31 - 1))
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
                + png_chunk(b"IDAT", zlib.compress(b"\0" * 16)) + png_chunk(b"IEND", b""))
    data = draw(image_bytes())
    if kind == "good":
        return data
    # a fraction, not an index: the encoded length varies, the draw must not
    at = min(int(draw(st.floats(0, 1)) * len(data)), len(data) - 1)
    if kind == "truncated":
        return data[:at]
    if kind == "flipped":
        return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]
    return data[:at] + bytes(len(data) - at)


names = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="/\0"), min_size=1,
            max_size=12).filter(lambda n: n not in (".", "..")),
    st.binary(min_size=1, max_size=8).filter(
        lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")).map(os.fsdecode),
)
suffixes = st.sampled_from([".png", ".jpg", ".JPEG", ".gif", ".webp", ".bmp", ".tif", ".txt",
                            ""])


@st.composite
def hostile_tree(draw: st.DrawFn) -> list[tuple[str, str, Any]]:
    """Entries (kind, relative path, payload) of a folder to build."""
    entries: list[tuple[str, str, Any]] = []
    folders = [""]
    used: set[str] = set()
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["file", "file", "file", "dir", "link-file",
                                     "link-dir", "dangling", "loop"]))
        parent = draw(st.sampled_from(folders))
        name = draw(names) + (draw(suffixes) if kind != "dir" else "")
        rel = os.path.join(parent, name) if parent else name
        if rel.casefold() in used:
            continue
        used.add(rel.casefold())
        if kind == "dir":
            folders.append(rel)
            entries.append((kind, rel, None))
        elif kind == "file":
            entries.append((kind, rel, draw(hostile_bytes())))
        else:
            entries.append((kind, rel, None))
    return entries


def build(root: Path, entries: list[tuple[str, str, Any]]) -> None:
    root.mkdir()
    outside = root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "ok.png").write_bytes(_small_png())
    for kind, rel, payload in entries:
        path = root / rel
        try:
            if kind == "dir":
                path.mkdir()
            elif kind == "file":
                path.write_bytes(payload)
            elif kind == "link-file":
                path.symlink_to(outside / "ok.png")
            elif kind == "link-dir":
                path.symlink_to(outside, target_is_directory=True)
            elif kind == "dangling":
                path.symlink_to(root / "no-such-file.png")
            elif kind == "loop":
                path.symlink_to(path)
        except OSError:  # a name the file system refuses (too long in bytes, say)
            continue


def _small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10)).save(buffer, "PNG")
    return buffer.getvalue()


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``root``: type, mode, link target or content hash."""
    state: dict[str, tuple[Any, ...]] = {}
    for folder, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if os.path.islink(path):
                state[path] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                state[path] = ("dir", info.st_mode)
            else:
                with open(path, "rb") as file:
                    digest = hashlib.sha256(file.read()).hexdigest()
                state[path] = ("file", info.st_mode, info.st_mtime_ns, digest)
    return state


options = st.fixed_dictionaries({
    "json": st.booleans(),
    "verify": st.booleans(),
    "edges": st.lists(st.sampled_from(["384", "1536", "4096"]), max_size=2),
    "split": st.sampled_from([None, "--image-splitting", "--no-image-splitting"]),
    "tile": st.sampled_from([None, "256", "512"]),
})


def argv(opts: dict[str, Any], paths: list[str]) -> list[str]:
    args = ["count", "--model", MODEL]
    if opts["json"]:
        args.append("--json")
    if opts["verify"]:
        args.append("--verify")
    for edge in opts["edges"]:
        args += ["--longest-edge", edge]
    if opts["split"]:
        args.append(opts["split"])
    if opts["tile"]:
        args += ["--tile-size", opts["tile"]]
    return [*args, "--", *paths]


def check_output(code: int, out: str, err: str, as_json: bool) -> None:
    assert code in (0, 1, 2)
    assert "Traceback" not in err
    for line in err.splitlines():
        assert line.startswith("tokenguard count: "), line
    if as_json:
        for line in out.splitlines():
            row = json.loads(line.encode("utf-8"))  # strict UTF-8: no lone surrogates
            assert row["grid"] == f"{row['rows']}×{row['cols']}"


@settings(deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tree=hostile_tree(), opts=options, name_directly=st.booleans())
def test_count_keeps_its_contract(tree: list[tuple[str, str, Any]], opts: dict[str, Any],
                                  name_directly: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        build(root, tree)
        before = snapshot(root)
        paths = [str(root)]
        if name_directly:  # the entries themselves, as a shell glob would pass them
            paths += sorted(str(root / rel) for _, rel, _ in tree if "/" not in rel)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv(opts, paths))
        check_output(code, out.getvalue(), err.getvalue(), opts["json"])
        assert snapshot(root) == before


broken_json = st.one_of(
    st.binary(max_size=40),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                 lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                 max_leaves=6).map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries({}, optional={
        "size": st.none() | st.integers(-2, 5000) | st.fixed_dictionaries(
            {"longest_edge": st.integers(-2, 5000) | st.text(max_size=3)}),
        "max_image_size": st.fixed_dictionaries(
            {"longest_edge": st.integers(-2, 5000) | st.none()}),
        "do_image_splitting": st.booleans() | st.integers(),
        "do_resize": st.booleans(),
        "image_seq_len": st.integers(-2, 200) | st.floats() | st.text(max_size=3),
        "image_processor": st.none() | st.dictionaries(st.text(max_size=6), st.integers(),
                                                        max_size=2),
    }).map(lambda value: json.dumps(value).encode()),
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pre=broken_json, proc=st.none() | broken_json)
def test_broken_model_folder_is_exit_2_or_counted(pre: bytes, proc: bytes | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ckpt"
        folder.mkdir()
        (folder / "preprocessor_config.json").write_bytes(pre)
        if proc is not None:
            (folder / "processor_config.json").write_bytes(proc)
        image = Path(tmp) / "frame.png"
        image.write_bytes(_small_png())
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["count", "--json", "--model", str(folder), str(image)])
        assert code in (0, 2)
        if code == 2:
            assert out.getvalue() == ""
            assert err.getvalue().count("\n") == 1
            assert str(folder) in err.getvalue()
        else:
            assert json.loads(out.getvalue())["image_tokens"] >= 1


@settings(max_examples=processor_examples(5), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(tree=hostile_tree(), opts=options)
def test_count_keeps_its_contract_in_a_subprocess(tree: list[tuple[str, str, Any]],
                                                  opts: dict[str, Any]) -> None:
    """The real console: real stdout encoding, no in-process exception handling."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        build(root, tree)
        before = snapshot(root)
        done = subprocess.run(
            [sys.executable, "-m", "pytest_tokenguard.cli", *argv(opts, [str(root)])],
            capture_output=True, check=False, cwd=REPO,
            env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(Path(tmp) / "hub"),
                 "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)},
        )
        check_output(done.returncode, done.stdout.decode("utf-8"),
                     done.stderr.decode("utf-8", "replace"), opts["json"])
        assert snapshot(root) == before
        shutil.rmtree(root)
