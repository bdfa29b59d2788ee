"""``tokenguard memory`` under hostile input: the CLI contract holds for anything.

Hypothesis writes hostile ``config.json`` files into a copy of a checkpoint folder
(``tests.helpers.checkpoint_folder``: raw bytes, any JSON value, the checkpoint's config
with one key replaced by a hostile value or removed) and hostile option values, and
drives ``pytest_tokenguard.cli.main(["memory", ...])`` in-process. Whatever it generates,
the command must exit 0, 1 or 2, print no traceback, answer an error in one line, and
leave the input file as it was. One case runs the installed command in a subprocess,
where an uncaught error would show as the interpreter's own traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_tokenguard.cli import main
from tests.helpers import checkpoint_folder

CHECKPOINT = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"

#: Keys of a SmolVLM config.json the memory model reads, by section ("" = top level).
READ_KEYS = {
    "text_config": ("num_hidden_layers", "hidden_size", "intermediate_size",
                    "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
                    "tie_word_embeddings"),
    "vision_config": ("num_hidden_layers", "hidden_size", "intermediate_size",
                      "num_attention_heads", "patch_size", "image_size"),
    "": ("scale_factor", "text_config", "vision_config", "tie_word_embeddings"),
}

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, -64, 10**40, "eight", "", "64", 1e400, -1e400]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def _dump(value: Any) -> bytes:
    # 1e400 parses to inf; json.dumps writes it as Infinity, which json.loads reads back
    return json.dumps(value).encode()


@st.composite
def hostile_configs(draw: st.DrawFn, real: dict[str, Any]) -> bytes:
    kind = draw(st.sampled_from(["bytes", "value", "key", "drop", "huge-int", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200) | st.sampled_from(
            [b"\xff\xfe{}", b"", b"{", b"[1, 2]", b"null", b'"text"', b"\x00" * 16]))
    if kind == "value":
        return _dump(draw(json_values))
    if kind == "huge-int":  # over Python's 4300-digit limit on int from str
        return b'{"text_config": {"hidden_size": ' + b"9" * 5000 + b"}}"
    if kind == "deep":
        depth = draw(st.integers(min_value=50, max_value=100_000))
        return b"[" * depth + b"]" * depth
    config = json.loads(json.dumps(real))
    section = draw(st.sampled_from(sorted(READ_KEYS)))
    key = draw(st.sampled_from(READ_KEYS[section]))
    target = config if section == "" else config[section]
    if kind == "drop":
        target.pop(key, None)
    else:
        target[key] = draw(json_values)
    return _dump(config)


number_texts = st.one_of(
    st.integers(min_value=-5, max_value=100).map(str),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["0", "1e3", "", " ", "nan", "inf", "1" * 400, "0x10", "٣", "-0"]),
    st.text(max_size=6),
)

option_values = st.fixed_dictionaries({}, optional={
    "--images": number_texts,
    "--text-tokens": number_texts,
    "--batch": number_texts,
    "--longest-edge": number_texts,
    "--gpus": number_texts,
    "--lora-rank": number_texts,
    "--lora-dropout": st.sampled_from(["0", "0.1", "1", "-0.5", "nan", "inf", "x"]),
    "--lora-targets": st.sampled_from(["q_proj", "", ",", "nothing", "all-linear", "q_proj,x"]),
    "--image-size": st.sampled_from(["384x384", "0x1", "x", "1x1", "99999999x1", "ax b"])
    | st.text(max_size=8),
    "--limit": st.sampled_from(["24G", "24", "0", "-1GB", "1e400 GB", "inf GiB", "nan MiB",
                                "99999999999999999999 PiB", "1 B"]) | st.text(max_size=8),
    "--sharding": st.sampled_from(["ddp", "fsdp", "none"]),
    "--optimizer": st.sampled_from(["adamw", "adamw-fused", "sgd", "lion"]),
    "--freeze": st.sampled_from(["vision", "text", "all"]),
})


def _argv(options: dict[str, str], json_output: bool) -> list[str]:
    argv = [f"{flag}={value}" for flag, value in options.items()]  # "=": values may start "-"
    return [*argv, "--json"] if json_output else argv


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["memory", *argv])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def _assert_contract(code: int, out: str, err: str) -> None:
    assert code in (0, 1, 2), (code, out[-500:], err[-500:])
    assert "Traceback" not in out + err, err
    ours = [line for line in err.splitlines() if line.startswith("tokenguard memory: ")]
    if code == 2 and "usage:" not in err:
        assert len(ours) == 1, err
        assert err.count("\n") == 1, err  # one line
    if code == 0:
        assert out, err
        assert not err, err


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable copy of a checkpoint folder (processor files and config.json)."""
    copy = tmp_path_factory.mktemp("model") / Path(CHECKPOINT).name
    shutil.copytree(checkpoint_folder(CHECKPOINT), copy)
    for path in copy.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    return copy


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_config_json_keeps_the_contract(folder: Path, data: st.DataObject) -> None:
    base = json.loads((checkpoint_folder(CHECKPOINT) / "config.json").read_text(encoding="utf-8"))
    content = data.draw(hostile_configs(base), label="config.json")
    config = folder / "config.json"
    config.write_bytes(content)
    code, out, err = _run(["--model", str(folder),
                           *_argv(data.draw(option_values, label="options"),
                                  data.draw(st.booleans(), label="json"))])
    _assert_contract(code, out, err)
    assert config.read_bytes() == content  # the input file is left as it was
    if code == 2 and "usage:" not in err and "config.json" in err:
        assert str(config) in err  # a broken file is named by its path


@settings(max_examples=150, deadline=None)
@given(options=option_values, json_output=st.booleans())
def test_hostile_options_keep_the_contract(options: dict[str, str], json_output: bool) -> None:
    code, out, err = _run(_argv(options, json_output))
    _assert_contract(code, out, err)
    if code == 0 and json_output:
        assert json.loads(out)["peak_bytes"] > 0


@pytest.mark.parametrize(("content", "named"), [
    (b'{"text_config": {"head_dim": -64}}', "vision_config must be a JSON object"),
    (b"\xff\xfe not utf-8", "cannot be read"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b"null", "expected a JSON object, got NoneType"),
    (b"[" * 100_000 + b"]" * 100_000, "cannot be read as a SmolVLM config"),
])
def test_broken_config_in_a_subprocess_exits_2_naming_the_file(
        tmp_path: Path, content: bytes, named: str) -> None:
    copy = tmp_path / Path(CHECKPOINT).name
    shutil.copytree(checkpoint_folder(CHECKPOINT), copy)
    config = copy / "config.json"
    config.chmod(0o644)
    config.write_bytes(content)
    done = subprocess.run([sys.executable, "-m", "pytest_tokenguard.cli", "memory",
                           "--model", str(copy)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"tokenguard memory: {config}")
    assert named in done.stderr
    assert config.read_bytes() == content


@pytest.mark.parametrize(("section", "key", "value", "shown"), [
    ("text_config", "head_dim", -64, "-64"),
    ("text_config", "num_key_value_heads", "eight", "'eight'"),
    ("vision_config", "patch_size", 0, "0"),
    ("text_config", "vocab_size", 10**80, str(10**80)[:57] + "..."),  # long: cut
    ("", "scale_factor", None, "None"),
])
def test_bad_config_value_names_the_file_and_the_key(folder: Path, section: str, key: str,
                                                     value: object, shown: str) -> None:
    base = json.loads((checkpoint_folder(CHECKPOINT) / "config.json").read_text(encoding="utf-8"))
    (base[section] if section else base)[key] = value
    config = folder / "config.json"
    config.write_text(json.dumps(base), encoding="utf-8")
    code, out, err = _run(["--model", str(folder)])
    assert (code, out) == (2, "")
    where = f"{section}.{key}" if section else f"config.{key}"
    assert err == (f"tokenguard memory: {config}: {where} must be a positive integer (at most "
                   f"2147483647), got {shown}; is this a SmolVLM config.json? Restore it from "
                   "the checkpoint\n")
