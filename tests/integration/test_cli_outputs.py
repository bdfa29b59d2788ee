"""What the ``tokenguard`` commands say and write when an output or an input is odd: a full
disk or a closed standard output is one line and an exit status (no traceback), a
conversation that cannot be priced is one rejected line (the run goes on), messages
name the command's own options, counts agree with their nouns, and the outputs a user
points at are never replaced by something else (a missing folder is refused, the
leftovers of a killed run are removed and named)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_tokenguard.cli import main
from pytest_tokenguard.cli.common import plural
from tests.helpers import REPO, model_ref


def env(tmp_path: Path) -> dict[str, str]:
    return {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO),
            "TOKENGUARD_MODEL": model_ref("2.2B")}


def tokenguard(args: list[str], tmp_path: Path, *, shell_redirect: str = "",
               stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    """The command in a fresh process; ``shell_redirect`` (``>&-``) is applied by a shell."""
    command = [sys.executable, "-m", "pytest_tokenguard.cli", *args]
    if shell_redirect:
        command = ["sh", "-c", f'exec "$@" {shell_redirect}', "sh", *command]
    return subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, text=True,
                          env=env(tmp_path), cwd=tmp_path, timeout=300, check=False)


def image(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "a.png"
    Image.new("RGB", (500, 300)).save(path)
    return path


def jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


TEXT = {"id": "ok", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}


def commands(tmp_path: Path) -> dict[str, list[str]]:
    source = jsonl(tmp_path / "in.jsonl", [TEXT])
    return {"count": ["count", str(image(tmp_path))], "count --json":
            ["count", "--json", str(image(tmp_path))], "memory": ["memory"],
            "split": ["split", "--max-tokens", "4096", str(source)]}


def one_error_line(stderr: str, command: str) -> str:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert len(errors) == 1, stderr
    assert errors[0].startswith(f"tokenguard {command}: error: cannot write standard output: ")
    return errors[0]


# --------------------------------------------------------------------------- the output stream


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
@pytest.mark.parametrize("name", ["count", "count --json", "memory", "split"])
def test_a_full_output_is_one_line_and_status_1(tmp_path: Path, name: str) -> None:
    """``count DIR > /dev/full`` and ``memory > /dev/full`` ended in OSError tracebacks."""
    args = commands(tmp_path)[name]
    with open("/dev/full", "w") as full:
        done = tokenguard(args, tmp_path, stdout=full.fileno())
    assert done.returncode == 1
    line = one_error_line(done.stderr, args[0])
    assert line.endswith("No space left on device")


@pytest.mark.parametrize("name", ["count", "memory", "split"])
def test_a_closed_output_is_one_line_and_status_1(tmp_path: Path, name: str) -> None:
    """``count >&-`` ended in an AttributeError traceback (sys.stdout is None)."""
    args = commands(tmp_path)[name]
    done = tokenguard(args, tmp_path, shell_redirect=">&-", stdout=None)
    assert done.returncode == 1
    assert "closed" in one_error_line(done.stderr, args[0])


def test_split_to_a_file_needs_no_standard_output(tmp_path: Path) -> None:
    source = jsonl(tmp_path / "in.jsonl", [TEXT])
    done = tokenguard(["split", "--max-tokens", "4096", str(source), "-o", "out.jsonl"],
                      tmp_path, shell_redirect=">&-", stdout=None)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out.jsonl").read_text())["id"] == "ok"


# --------------------------------------------------------------------------- words


@pytest.mark.parametrize("command", [["count", "a.png"], ["memory"]])
def test_the_model_is_named_by_the_commands_option(command: list[str],
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    """They told the user to fix --tokenguard-model and the tokenguard_model ini value,
    which the command line does not have."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    code = main([command[0], "--model", "nobody/no-such-model", *command[1:]])
    err = capsys.readouterr().err
    assert code == 2
    assert "point --model (or $TOKENGUARD_MODEL) at" in err
    assert "tokenguard-model" not in err
    assert "ini" not in err


def test_plural_agrees_with_its_count() -> None:
    assert [plural(n, "token") for n in (0, 1, 2)] == ["0 tokens", "1 token", "2 tokens"]
    assert plural(1, "patch") == "1 patch"
    assert plural(3, "patch") == "3 patches"
    assert plural(1, "image token") == "1 image token"


def test_split_summary_agrees_with_its_counts(tmp_path: Path) -> None:
    """"1 conversations -> 1 chunks"."""
    source = jsonl(tmp_path / "in.jsonl", [TEXT])
    done = tokenguard(["split", "--max-tokens", "4096", str(source)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "tokenguard split: 1 conversation -> 1 chunk, largest " in done.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    done = tokenguard(["split", "--max-tokens", "1", str(empty)], tmp_path)
    assert "0 conversations -> 0 chunks, largest 0 of 1 token;" in done.stderr


def test_memory_sample_agrees_with_its_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """"(1 images of 384x384 ...): 1 tiles"."""
    assert main(["memory", "--images", "1", "--longest-edge", "384"]) == 0
    out = capsys.readouterr().out
    assert "(1 image of 384x384 at longest_edge=384" in out
    assert ": 1 tile, " in out


def test_max_chunks_is_an_option_and_named_as_one(tmp_path: Path) -> None:
    """The split error said "pass a larger max_chunks", an option split did not have."""
    words = " ".join(["word"] * 30)
    record = {"id": "long", "messages": [
        {"role": ("user", "assistant")[i % 2], "content": [{"type": "text", "text": words}]}
        for i in range(4)]}
    source = jsonl(tmp_path / "in.jsonl", [record])
    done = tokenguard(["split", "--max-tokens", "60", "--max-chunks", "2", str(source)], tmp_path)
    assert done.returncode == 1
    assert "needs more than --max-chunks=2 chunks" in done.stderr
    assert "pass a larger --max-chunks" in done.stderr
    assert "max_chunks=" not in done.stderr
    done = tokenguard(["split", "--max-tokens", "60", "--max-chunks", "4", str(source)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 4


def test_plain_string_leading_message_is_noted(tmp_path: Path) -> None:
    """A plain-string system message in --leading-file was dropped by the template without
    the note the same message gets in the input."""
    leading = tmp_path / "lead.json"
    leading.write_text(json.dumps({"role": "system", "content": "Answer briefly."}))
    source = jsonl(tmp_path / "in.jsonl", [TEXT])
    done = tokenguard(["split", "--max-tokens", "4096", "--leading-file", str(leading),
                       str(source)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert (f"note: --leading-file {leading}: message 0 has plain-string content, which "
            "SmolVLM2's chat template drops") in done.stderr


# --------------------------------------------------------------------------- inputs and files


def test_an_image_size_past_any_float_is_one_rejected_line(tmp_path: Path) -> None:
    """A width of 401 digits: an OverflowError traceback, nothing written, the run lost."""
    huge = {"id": "huge", "messages": [{"role": "user", "content": [
        {"type": "image", "width": int("9" * 401), "height": 10},
        {"type": "text", "text": "hi"}]}]}
    source = jsonl(tmp_path / "in.jsonl", [huge, TEXT])
    done = tokenguard(["split", "--max-tokens", "4096", str(source), "-o", "out.jsonl",
                       "--rejects", "rejects.jsonl"], tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    rejected = [line for line in done.stderr.splitlines() if "(id 'huge')" in line]
    assert len(rejected) == 1
    assert "width is an integer of about 40" in rejected[0]
    assert "digits, larger than any image file declares" in rejected[0]
    assert [json.loads(line)["id"] for line in (tmp_path / "out.jsonl").open()] == ["ok"]
    assert json.loads((tmp_path / "rejects.jsonl").read_text())["id"] == "huge"


@pytest.mark.parametrize("option", ["-o", "--rejects"])
def test_an_output_in_a_missing_folder_is_refused(tmp_path: Path, option: str) -> None:
    """``-o results/out.jsonl`` created ``results/`` without a word."""
    source = jsonl(tmp_path / "in.jsonl", [TEXT])
    done = tokenguard(["split", "--max-tokens", "4096", str(source), option,
                       "results/out.jsonl"], tmp_path)
    assert done.returncode == 2
    assert (f"tokenguard split: error: {option} results/out.jsonl: the folder results does "
            "not exist; create it first (mkdir -p results)") in done.stderr
    assert not (tmp_path / "results").exists()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_killed_runs_temporary_file_is_removed_and_named(tmp_path: Path) -> None:
    """After SIGKILL split's temporary file stayed, and the next run neither removed nor
    mentioned it."""
    import re

    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:24]
    stale = tmp_path / f".out.jsonl.tokenguard-{host}-{dead_pid()}-abcd1234.tmp"
    stale.write_text('{"id": "half')
    source = jsonl(tmp_path / "in.jsonl", [TEXT])
    done = tokenguard(["split", "--max-tokens", "4096", str(source), "-o", "out.jsonl"],
                      tmp_path)
    assert done.returncode == 0, done.stderr
    assert not stale.exists()
    assert (f"tokenguard split: note: removed {stale.name}, the temporary file of an earlier run "
            "that was killed") in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def broken_exif_jpeg(path: Path) -> Path:
    """A JPEG whose EXIF ImageDescription claims 5000 bytes the block does not hold (PIL
    skips the tag with a warning) and whose orientation (6) is intact."""
    import struct

    from PIL import Image

    exif = Image.Exif()
    exif[0x010E] = "x" * 50
    exif[0x0112] = 6
    raw = bytearray(exif.tobytes())
    order = "<" if raw[6:8] == b"II" else ">"
    at = raw.find(struct.pack(order + "HH", 0x010E, 2))
    raw[at + 4:at + 8] = struct.pack(order + "I", 5000)
    Image.new("RGB", (40, 30)).save(path, exif=bytes(raw))
    return path


def test_a_damaged_exif_block_is_one_note_in_our_words(tmp_path: Path) -> None:
    """PIL's raw warning leaked, with its site-packages path and source line."""
    photo = broken_exif_jpeg(tmp_path / "photo.jpg")
    done = tokenguard(["count", "--json", str(photo), str(photo)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"tokenguard count: note: {photo}: its EXIF block is damaged (PIL: Tag data larger "
        "than file. Skipping tag 270); counted with the orientation read from the rest (6), as "
        "transformers' PIL loading reads it; re-save the image to repair it"]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["width"], r["height"], r["orientation"]) for r in rows] == [(30, 40, 6)] * 2


def test_the_library_warns_in_its_own_category(tmp_path: Path) -> None:
    from pytest_tokenguard.errors import TokenguardWarning
    from pytest_tokenguard.images import read_image_info, verify_image

    photo = broken_exif_jpeg(tmp_path / "photo.jpg")
    for read in (read_image_info, verify_image):
        with pytest.warns(TokenguardWarning, match="its EXIF block is damaged") as caught:
            assert read(photo).width == 30
        assert [w.category for w in caught] == [TokenguardWarning]


def test_memory_help_quotes_the_readmes_measured_errors(capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """``tokenguard memory --help`` said "within 5%" where the README shows +12.1% for DDP."""
    import re

    with pytest.raises(SystemExit):
        main(["memory", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()

    def table(header: str) -> list[list[str]]:
        """The rows of the README table whose header line starts with ``header``."""
        start = next(i for i, line in enumerate(lines) if line.startswith(header))
        rows = []
        for line in lines[start + 2:]:
            if not line.startswith("| "):
                break
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        return rows

    def percents(cell: str) -> list[float]:
        cell = cell.split(" of the recorded")[0]
        minus = "\N{MINUS SIGN}"  # the README writes negative errors with it
        return [float(m.replace(minus, "-"))
                for m in re.findall(rf"[{minus}+-]?\d+\.\d+(?=%)", cell)]

    recipes = table("| recipe | cases |")
    loops = table("| case (longest_edge")
    ddp = [p for row in recipes if row[0].startswith("DDP") for p in percents(row[-1])]
    others = [p for row in recipes if not row[0].startswith("DDP") for p in percents(row[-1])]
    # the loop table's error column (the last one is the old manual-loop model's)
    others += [p for row in loops for p in percents(row[-2])]
    assert len(loops) >= 6
    assert ddp
    assert others
    assert "within 5% of measured peaks" not in text
    assert f"within {min(others):+.1f}% to {max(others):+.1f}% for every recipe but DDP" in text
    assert f"up to {max(ddp):.1f}% high" in text
    assert "never more than 2% below a measured peak" in text
    assert min(ddp + others) >= -2.0


def test_fixtures_help_shows_the_checkers_whole_entry(pytester: pytest.Pytester) -> None:
    """``pytest --fixtures`` cut the checker's entry after "in one line::"."""
    result = pytester.runpytest("--fixtures")
    text = result.stdout.str()
    entry = text[text.index("tokenguard_check_splitter [session scope]"):].split("\n\n")[0]
    assert "in one line::" not in entry
    assert "resolutions=[384]" in entry
    assert "it is not parametrized" in entry
