"""``tokenguard count`` on hostile input: broken, huge and unreadable files, odd folders
and names, closed pipes, broken model folders; and its per-call settings and output.

The contract (cli/count.py): one line on stderr per thing that cannot be read or was
skipped, every other image still reported; exit 0 ok, 1 a file unreadable, 2 usage.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pytest_tokenguard.cli import main
from pytest_tokenguard.processor.loading import ProcessorLoadError, load_processor
from tests.helpers import (
    FIXTURES,
    REPO,
    checkpoint_folder,
    real_processor,
    real_tokens_of,
    write_clip,
)

MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"
FRAME = FIXTURES / "frame_384x384.png"
#: the keys the README promises for every JSON row
README_KEYS = {"path", "width", "height", "longest_edge", "resized_width", "resized_height",
               "rows", "cols", "patches", "image_tokens", "block_tokens", "grid"}


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def count(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run(["count", "--model", str(checkpoint_folder(MODEL)), *args], capsys)


def huge_png(path: Path, side: int = 100_000) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def truncated_png(path: Path) -> Path:
    """A noisy PNG cut in half: the header is intact, the image data is not."""
    image = Image.frombytes("RGB", (400, 300), os.urandom(400 * 300 * 3))
    image.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def subprocess_env(tmp_path: Path) -> dict[str, str]:
    return {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)}


def tokenguard(args: list[str], tmp_path: Path,
               **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "pytest_tokenguard.cli", *args],
                          capture_output=True, env=subprocess_env(tmp_path), check=False,
                          cwd=REPO, **kwargs)


# ---------------------------------------------------------------- output and settings


def test_json_rows_cols_and_grid_agree(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = count(["--json", "--longest-edge", "384", "--longest-edge", "1536",
                          str(FRAME)], capsys)
    assert code == 0
    unsplit, split = (json.loads(line) for line in out.splitlines())
    for row in (unsplit, split):
        assert row.keys() >= README_KEYS
        assert row["grid"] == f"{row['rows']}×{row['cols']}"
    assert (unsplit["rows"], unsplit["cols"], unsplit["patches"]) == (0, 0, 1)
    assert split["patches"] == split["rows"] * split["cols"] + 1


def test_text_mode_has_a_totals_line_in_good_english(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    code, out, _ = count(["--longest-edge", "384", str(FRAME)], capsys)
    assert code == 0
    header, row, total = out.splitlines()
    values = dict(zip(header.split(), row.split(), strict=True))
    assert values["patches"] == "1"
    assert total == (f"total at longest_edge 384: 1 image, 1 patch, {values['image_tokens']} "
                     f"image tokens, {values['block_tokens']} block tokens")
    code, out, _ = count(["--longest-edge", "1536", str(FRAME), str(FRAME)], capsys)
    header, *rows, total = out.splitlines()
    table = [dict(zip(header.split(), r.split(), strict=True)) for r in rows]
    assert total == (
        f"total at longest_edge 1536: 2 images, "
        f"{sum(int(r['patches']) for r in table)} patches, "
        f"{sum(int(r['image_tokens']) for r in table)} image tokens, "
        f"{sum(int(r['block_tokens']) for r in table)} block tokens")


@pytest.mark.parametrize(
    ("flags", "kwargs"),
    [
        (["--no-image-splitting"], {"do_image_splitting": False}),
        (["--tile-size", "512"], {"max_image_size": {"longest_edge": 512}}),
        (["--tile-size", "4096"], {"max_image_size": {"longest_edge": 4096}}),
        (["--image-splitting", "--tile-size", "256"], {"max_image_size": {"longest_edge": 256}}),
    ],
)
def test_per_call_settings_match_the_processor(capsys: pytest.CaptureFixture[str],
                                               flags: list[str], kwargs: dict[str, Any]
                                               ) -> None:
    code, out, _ = count(["--json", *flags, str(FIXTURES)], capsys)
    assert code == 0
    processor = real_processor(MODEL)
    for line in out.splitlines():
        row = json.loads(line)
        assert (row["image_tokens"], row["block_tokens"]) == real_tokens_of(
            processor, row["path"], **kwargs), row["path"]


@pytest.mark.parametrize("flag", ["--tile-size=0", "--tile-size=abc"])
def test_bad_tile_size_is_a_usage_error(capsys: pytest.CaptureFixture[str], flag: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["count", flag, str(FRAME)])
    assert info.value.code == 2
    assert "--tile-size" in capsys.readouterr().err


# ------------------------------------------------------------ --verify and huge images


def test_verify_reports_a_truncated_file_and_still_reports_the_good(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = truncated_png(tmp_path / "cut.png")
    shutil.copy(FRAME, tmp_path / "good.png")
    code, out, err = count(["--json", str(tmp_path)], capsys)
    assert code == 0  # header-only: the truncation is invisible
    assert len(out.splitlines()) == 2
    code, out, err = count(["--json", "--verify", str(tmp_path)], capsys)
    assert code == 1
    assert err.splitlines() == [err.strip()]
    assert err.startswith(f"tokenguard count: {bad}: cannot be decoded")
    assert [json.loads(line)["path"] for line in out.splitlines()] == [
        str(tmp_path / "good.png")]


@pytest.mark.parametrize("mode", [["--json"], []])
def test_huge_header_is_counted_beside_the_others(tmp_path: Path, mode: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    huge = huge_png(tmp_path / "a_huge.png")
    shutil.copy(FRAME, tmp_path / "b_good.png")
    code, out, err = count([*mode, "--longest-edge", "1536", str(tmp_path)], capsys)
    assert (code, err) == (0, "")
    assert str(huge) in out
    assert "b_good.png" in out
    if mode:
        row = json.loads(out.splitlines()[0])
        assert (row["width"], row["height"]) == (100_000, 100_000)
    code, out, err = count([*mode, "--verify", str(tmp_path)], capsys)
    assert code == 1
    assert err.strip().splitlines() == [err.strip()]
    assert "decompression-bomb limit" in err
    assert "b_good.png" in out


def test_split_counts_a_huge_image_from_its_header(tmp_path: Path) -> None:
    """split reads sizes through the same header reader (conversation parsing)."""
    from pytest_tokenguard.conversation import parse_conversation

    huge_png(tmp_path / "huge.png")
    messages = parse_conversation([{"role": "user", "content": [
        {"type": "image", "path": "huge.png"}, {"type": "text", "text": "Describe."}]}],
        base_dir=tmp_path)
    assert (messages[0].content[0].width, messages[0].content[0].height) == (  # type: ignore[union-attr]
        100_000, 100_000)


# ------------------------------------------------------------- folders, links, names


def test_folder_notes_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    (root / "empty").mkdir(parents=True)
    shutil.copy(FRAME, root / "frame.png")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(FRAME, outside / "linked_frame.png")
    (root / "linked").symlink_to(outside)
    code, out, err = count(["--json", str(root)], capsys)
    assert code == 0  # a note is not an error
    assert err == (f"tokenguard count: skipped {root / 'linked'}: is a symbolic link to a "
                   "folder, not followed; pass it directly to count it\n")
    assert [json.loads(line)["path"] for line in out.splitlines()] == [str(root / "frame.png")]
    (root / "dangling.png").symlink_to(tmp_path / "gone.png")
    code, out, err = count(["--json", str(root)], capsys)
    assert code == 1
    assert f"{root / 'dangling.png'}: is a dangling symbolic link" in err
    assert len(out.splitlines()) == 1


def test_empty_folder_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = count([str(tmp_path)], capsys)
    assert (code, out) == (1, "")
    assert f"skipped {tmp_path}: has no image or video files (" in err
    assert ".mp4" in err  # the suffixes looked for are listed
    assert "no image or video was counted" in err


def test_symlink_loop_named_directly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    code, _, err = count([str(loop)], capsys)
    assert code == 1
    assert err == f"tokenguard count: {loop}: is a symbolic link loop; fix or remove the link\n"


def test_non_utf8_names_are_valid_json(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/frame_\xff\xfe.png"
    shutil.copy(FRAME, os.fsdecode(raw))
    done = tokenguard(["count", "--json", "--model", str(checkpoint_folder(MODEL)),
                       str(tmp_path)], tmp_path)
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode("utf-8")  # strict: no lone surrogates, no invalid bytes
    row = json.loads(text)
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in row["path"])
    assert row["path"].endswith("frame_\ufffd\ufffd.png")
    assert row["path_escaped"].endswith("frame_\\xff\\xfe.png")
    done = tokenguard(["count", "--model", str(checkpoint_folder(MODEL)), str(tmp_path)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "frame_\\xff\\xfe.png" in done.stdout.decode("utf-8")


def without_root_privileges() -> list[str]:
    """A command prefix that makes file permissions apply (root reads any file)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv is missing: permissions cannot be enforced")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]


def test_unreadable_file_and_folder(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "locked_dir").mkdir(parents=True)
    shutil.copy(FRAME, root / "locked_dir" / "hidden.png")
    shutil.copy(FRAME, root / "locked.png")
    shutil.copy(FRAME, root / "open.png")
    (root / "locked.png").chmod(0)
    (root / "locked_dir").chmod(0)
    try:
        done = subprocess.run(
            [*without_root_privileges(), sys.executable, "-m", "pytest_tokenguard.cli",
             "count", "--json", "--model", str(checkpoint_folder(MODEL)), str(root)],
            capture_output=True, text=True, env=subprocess_env(tmp_path), cwd=REPO,
            check=False)
    finally:
        (root / "locked_dir").chmod(0o755)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"tokenguard count: {root / 'locked.png'}: cannot be read (permission denied); "
        "check its permissions",
        f"tokenguard count: {root / 'locked_dir'}: is a folder that cannot be read "
        "(Permission denied); its image or video files are not counted",
    ]
    assert [json.loads(line)["path"] for line in done.stdout.splitlines()] == [
        str(root / "open.png")]


def test_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """`tokenguard count --json DIR | head -1`: no BrokenPipeError traceback."""
    for index in range(1500):  # far more than a pipe buffer of JSON lines
        os.link(FRAME, tmp_path / f"frame_{index:04d}.png")
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_tokenguard.cli", "count", "--json", "--model",
         str(checkpoint_folder(MODEL)), str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env(tmp_path),
        cwd=REPO)
    assert process.stdout is not None
    assert process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read().decode()
    code = process.wait(timeout=120)
    assert json.loads(first)["path"].endswith("frame_0000.png")
    assert stderr == ""
    assert code == 1


# ------------------------------------------------------------------ broken models


BROKEN_FILES = {
    "preprocessor_config.json": (b"{\"size\": \"\xe9\"}", "not UTF-8"),
    "processor_config.json": (b"[81]", "expected a JSON object, got list"),
    "tokenizer_config.json": (b"null", "expected a JSON object, got null"),
    "tokenizer.json": (b"{\"version\": \"1.0\"}", "not a tokenizer file"),
}


def broken_folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoint_folder(MODEL), folder)
    (folder / name).write_bytes(BROKEN_FILES[name][0])
    return folder


@pytest.mark.parametrize("name", list(BROKEN_FILES))
def test_broken_model_folder_count(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   name: str) -> None:
    folder = broken_folder(tmp_path, name)
    code, out, err = run(["count", "--model", str(folder), str(FRAME)], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"tokenguard count: {folder / name}: {BROKEN_FILES[name][1]}")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("name", list(BROKEN_FILES))
def test_broken_model_folder_load_processor(tmp_path: Path, name: str) -> None:
    """What split (and the plugin) load through: one error naming the file."""
    folder = broken_folder(tmp_path, name)
    with pytest.raises(ProcessorLoadError) as info:
        load_processor(str(folder))
    assert str(info.value).startswith(f"{folder / name}: {BROKEN_FILES[name][1]}")


def test_broken_model_folder_split(tmp_path: Path) -> None:
    folder = broken_folder(tmp_path, "tokenizer.json")
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"id": 1, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]}]}) + "\n")
    done = tokenguard(["split", "--max-tokens", "100", "--model", str(folder), str(data)],
                      tmp_path)
    stderr = done.stderr.decode()
    assert done.returncode != 0
    assert "Traceback" not in stderr
    assert f"{folder / 'tokenizer.json'}: not a tokenizer file" in stderr


# ---------------------------------------------------------------- videos


def count_hub(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``tokenguard count --model <hub id>``: offline, the embedded default."""
    return run(["count", "--model", MODEL, *args], capsys)


#: exactly the keys of a video's JSON row, in this order
VIDEO_KEYS = ["path", "kind", "duration", "fps", "total_frames", "frames", "image_tokens",
              "block_tokens", "tokens"]


def test_video_rows_have_exactly_their_keys_and_images_a_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import counter, write_clip

    clip = write_clip(tmp_path / "minute.mp4", 60, 1)
    code, out, err = count_hub(["--json", "--longest-edge", "384", "--longest-edge", "1536",
                                str(FRAME), str(clip)], capsys)
    assert (code, err) == (0, "")
    image_384, image_1536, video = (json.loads(line) for line in out.splitlines())
    assert image_384["kind"] == image_1536["kind"] == "image"
    assert image_384.keys() >= README_KEYS
    assert list(video) == VIDEO_KEYS  # one row whatever --longest-edge says
    assert (video["kind"], video["total_frames"], video["frames"]) == ("video", 60, 60)
    assert (video["duration"], video["fps"]) == (60.0, 1.0)
    cost = counter().video(clip)
    assert (video["image_tokens"], video["block_tokens"], video["tokens"]) == (
        cost.image_tokens, cost.block_tokens, cost.tokens)
    code, out, _ = count_hub(["--json", "--num-frames", "8", str(clip)], capsys)
    assert json.loads(out)["tokens"] == counter().video(clip, num_frames=8).tokens
    code, out, _ = count_hub(["--json", "--fps", "0.5", str(clip)], capsys)
    assert json.loads(out)["frames"] == 30


def test_table_and_totals_include_videos(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers import write_clip

    folder = tmp_path / "media"
    folder.mkdir()
    shutil.copy(FRAME, folder / "frame.png")
    write_clip(folder / "a.mp4", 20, 10)
    write_clip(folder / "b.mkv", 45, 15)
    code, out, _ = count_hub(["--num-frames", "2", str(folder)], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[2].startswith("total at longest_edge 1536: 1 image,")
    header, *rows, total = lines[3:]
    assert header.split() == ["path", "duration", "fps", "total_frames", "frames",
                              "image_tokens", "block_tokens", "tokens"]
    table = [dict(zip(header.split(), row.split(), strict=True)) for row in rows]
    _, out, _ = count_hub(["--json", "--num-frames", "2", str(folder)], capsys)
    videos = [row for row in map(json.loads, out.splitlines()) if row["kind"] == "video"]
    # up to 3 decimals in the table (Matroska times are whole milliseconds: 2.999 s)
    assert [(r["path"], r["duration"], r["fps"], r["frames"]) for r in table] == [
        (v["path"], f"{v['duration']:.3f}".rstrip("0").rstrip("."),
         f"{v['fps']:.3f}".rstrip("0").rstrip("."), str(v["frames"])) for v in videos]
    assert (table[0]["path"], table[0]["duration"], table[0]["frames"]) == (
        str(folder / "a.mp4"), "2", "2")
    assert total == (f"total videos: 2 videos, 4 frames sampled, "
                     f"{sum(int(r['image_tokens']) for r in table)} image tokens, "
                     f"{sum(int(r['block_tokens']) for r in table)} block tokens, "
                     f"{sum(int(r['tokens']) for r in table)} tokens")


def test_bad_videos_get_one_line_errors_and_the_rest_is_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import write_clip

    good = write_clip(tmp_path / "good.mp4", 10, 5)
    (tmp_path / "garbage.mp4").write_bytes(b"not a video at all" * 20)
    (tmp_path / "empty.webm").write_bytes(b"")
    shutil.copy(FRAME, tmp_path / "frame_named.mov")  # an image under a video name
    truncated = tmp_path / "truncated.mkv"
    truncated.write_bytes(good.read_bytes()[:40])
    code, out, err = count_hub(["--json", str(tmp_path)], capsys)
    assert code == 1
    assert [json.loads(line)["path"] for line in out.splitlines()] == [str(good)]
    lines = err.splitlines()
    assert len(lines) == 4
    assert all(line.startswith("tokenguard count: ") and "Traceback" not in line
               for line in lines)
    assert f"{tmp_path / 'empty.webm'}: is empty (0 bytes); re-export or remove it" in err
    assert f"{tmp_path / 'frame_named.mov'}: is an image" in err
    assert f"{tmp_path / 'garbage.mp4'}: is not a video FFmpeg can read" in err
    assert str(truncated) in err


def test_a_model_that_takes_no_videos_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint folder without video_sampling (SmolVLM v1) cannot price a video: said
    once, exit 2, before anything is printed; images alone still count with it."""
    from tests.helpers import write_clip

    folder = tmp_path / "model"
    shutil.copytree(checkpoint_folder(MODEL), folder)
    config = json.loads((folder / "preprocessor_config.json").read_text())
    del config["video_sampling"]
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    clip = write_clip(tmp_path / "clip.mp4", 10, 5)
    code, out, err = run(["count", "--model", str(folder), str(FRAME), str(clip)], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("tokenguard count: videos cannot be counted with this model: ")
    assert "no 'video_sampling' object" in err
    code, _, _ = run(["count", "--model", str(folder), str(FRAME)], capsys)
    assert code == 0


@pytest.mark.parametrize("flag", ["--num-frames", "--fps"])
@pytest.mark.parametrize("value", ["0", "-1", "x", "nan"])
def test_bad_sampling_options_are_usage_errors(flag: str, value: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        count_hub([flag, value, str(FRAME)], capsys)
    assert info.value.code == 2
    assert flag in capsys.readouterr().err


# ------------------------------------------------- formats the processor cannot load by path

#: Refused with the default (torchvision) backend whatever decodes its paths: the format
#: PIL reads in the header, and what the message calls it.
REFUSED_BY_PATH = {"scan.bmp": ("BMP", "BMP"), "frame.ppm": ("PPM", "PPM"),
                   "gray.pgm": ("PPM", "PPM"), "scan.tif": ("TIFF", "TIFF"),
                   "scan.tiff": ("TIFF", "TIFF"), "tiff-named.png": ("TIFF", "TIFF"),
                   # named directly: .ico is not an image suffix a folder is searched for
                   "../icon.ico": ("ICO", "ICO")}


def write_formats(folder: Path) -> list[str]:
    """The folder's path and the .ico file beside it, for the command line."""
    folder.mkdir()
    for name, (fmt, _) in REFUSED_BY_PATH.items():
        Image.new("L" if name.endswith(".pgm") else "RGB", (1000, 300)).save(folder / name, fmt)
    Image.new("RGB", (1000, 300)).save(folder / "photo.png")
    Image.new("RGB", (1000, 300)).save(folder / "png-named.tif", "PNG")
    frames = [Image.new("RGB", (1000, 300), color) for color in ("red", "blue")]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    return [str(folder), str(folder / "../icon.ico")]


@pytest.mark.parametrize("verify", [[], ["--verify"]])
def test_formats_the_processor_refuses_by_path_are_refused_by_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], verify: list[str]) -> None:
    """The default processor raises "Unsupported or unrecognized image format" on a BMP,
    PPM, PGM, TIFF or ICO path (decided from the header, not the suffix) and fails on an
    animated GIF: each is one line naming the file, its format and the fix, exit 1, and
    the files it loads are still counted (main priced them all, exit 0)."""
    folder = tmp_path / "formats"
    code, out, err = count(["--json", *verify, *write_formats(folder)], capsys)
    counted = {Path(json.loads(line)["path"]).name for line in out.splitlines()}
    assert counted == {"photo.png", "png-named.tif"}
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == len(REFUSED_BY_PATH) + 1
    for name, (_, shown) in REFUSED_BY_PATH.items():
        (line,) = [line for line in lines if line.startswith(f"tokenguard count: {folder / name}:")]
        assert f"is in {shown} format, which the processor cannot load from a path" in line
        assert line.endswith("convert it to PNG or JPEG, or open it with PIL and pass the image")
    (animated,) = [line for line in lines if f"{folder / 'animated.gif'}:" in line]
    assert "is an animated GIF (2 frames)" in animated


def test_the_pil_backend_counts_every_format_pil_opens(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = count(["--json", "--image-backend", "pil",
                            *write_formats(tmp_path / "formats")], capsys)
    assert (code, err) == (0, "")
    assert len(out.splitlines()) == len(REFUSED_BY_PATH) + 3


def test_avif_files_in_a_folder_follow_the_installed_decoder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An .avif in a folder was skipped silently ("has no image files"): the processor
    loads it when torchcodec decodes its paths, and refuses it with torchvision."""
    folder = tmp_path / "photos"
    folder.mkdir()
    try:
        Image.new("RGB", (1000, 300)).save(folder / "photo.avif")
    except (KeyError, OSError):
        pytest.skip("this Pillow writes no AVIF")
    code, out, err = count(["--json", str(folder)], capsys)
    assert "has no image" not in err
    from pytest_tokenguard.images import default_path_loader

    if default_path_loader() == "torchcodec":
        assert (code, err) == (0, "")
        assert json.loads(out)["block_tokens"] == real_tokens_of(
            real_processor(MODEL), str(folder / "photo.avif"))[1]
    else:
        assert (code, out) == (1, "")
        assert "is in AVIF format" in err
        assert "install torchcodec" in err


def test_qwen_counts_word_the_missing_tokenizer_for_the_command_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A Qwen3-VL video's timestamp text needs the tokenizer: the line that says so names
    the command's own option, not the plugin's."""
    pytest.importorskip("av")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    clip = write_clip(tmp_path / "clip.mp4", 8, 4, size=(64, 48))
    code = main(["count", "--model", "Qwen/Qwen3-VL-8B-Instruct", "--json", str(clip)])
    err = capsys.readouterr().err
    assert code == 1
    assert "pass its checkpoint folder to --model (or $TOKENGUARD_MODEL), or download" in err
    assert "--tokenguard-model" not in err
