"""``tokenguard audit`` end to end: output keys, exit codes, parts and workers agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_tokenguard.audit.readers import Part, plan, read_part
from pytest_tokenguard.cli import main


def _rows(count: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for index in range(count):
        rows.append({"messages": [
            {"role": "user", "content": [
                {"type": "image", "width": 384 * (1 + index % 4), "height": 384},
                {"type": "text", "text": f"Frame {index}?"}]},
            {"role": "assistant", "content": [{"type": "text",
                                               "text": "word " * (index * 37 % 900)}]}]})
        if index % 5 == 0:
            rows[-1]["id"] = f"row-{index}"
    return rows


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" + ("\n" if i % 7 == 3 else "")
                            for i, r in enumerate(rows)))
    return path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["audit", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_report_keys_and_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write(tmp_path / "d.jsonl", _rows(30))
    code, out, _ = run([str(data), "--longest-edge", "768", "--max-length", "1200", "--json",
                        "--per-sample", str(tmp_path / "s.jsonl")], capsys)
    report = json.loads(out)
    for key in ("samples", "max_length", "tokens", "over_max_length", "cut_inside_media"):
        assert key in report
    assert set(report["tokens"]) >= {"p50", "p90", "p99", "max"}
    lines = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == [f"row-{i}" if i % 5 == 0 else i
                                              for i in range(30)]
    over = [line["id"] for line in lines if line["tokens"] > 1200]
    assert report["over_max_length"] == over
    assert over
    assert report["tokens"]["max"] == max(line["tokens"] for line in lines)
    assert code == (1 if report["cut_inside_media"] else 0)


def test_workers_give_the_same_report(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pytest_tokenguard.audit.readers.PART_BYTES", 2000)
    data = _write(tmp_path / "d.jsonl", _rows(60))
    outputs = []
    for workers in ("1", "2"):
        code, out, _ = run([str(data), "--max-length", "1500", "--json", "--workers", workers,
                            "--per-sample", str(tmp_path / f"s{workers}.jsonl")], capsys)
        outputs.append((code, json.loads(out)))
    assert outputs[0] == outputs[1]
    assert (tmp_path / "s1.jsonl").read_bytes() == (tmp_path / "s2.jsonl").read_bytes()


def test_parts_cover_every_line_once(tmp_path: Path) -> None:
    data = _write(tmp_path / "d.jsonl", _rows(40))
    whole = list(read_part(Part("jsonl", str(data))))
    for parts in (1, 2, 3, 7):
        cut = [row for part in plan(data, parts) for row in read_part(part)]
        assert cut == whole, parts


@pytest.mark.parametrize(("args", "expected"), [
    (["--packing"], "--packing: TRL's SFTTrainer refuses packing for vision data sets"),
    (["--padding-free"], "--padding-free: TRL's SFTTrainer refuses padding-free"),
    (["--keep", "1.5"], "not a share"),
    (["--model", "./nowhere"], "nowhere"),
])
def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             args: list[str], expected: str) -> None:
    data = _write(tmp_path / "d.jsonl", _rows(2))
    try:
        code, _, err = run([str(data), *args], capsys)
    except SystemExit as exc:  # argparse's own usage errors
        code, err = int(str(exc.code)), capsys.readouterr().err
    assert code == 2
    assert expected in err
    assert "Traceback" not in err


def test_missing_data_and_bad_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([str(tmp_path / "none.jsonl")], capsys)
    assert code == 2
    assert "none.jsonl: no such file" in err
    data = tmp_path / "d.jsonl"
    data.write_text('{"messages": []}\nnot json\n' + json.dumps(_rows(1)[0]) + "\n")
    code, out, _ = run([str(data), "--json"], capsys)
    report = json.loads(out)
    assert code == 1
    assert [e["id"] for e in report["errors"]] == [0, 1]
    assert "not JSON" in report["errors"][1]["error"]


def test_outputs_are_atomic_and_never_the_input(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    data = _write(tmp_path / "d.jsonl", _rows(3))
    before = data.read_bytes()
    code, _, _err = run([str(data), "--per-sample", str(data)], capsys)
    assert code == 2
    assert data.read_bytes() == before


def test_histogram_and_step_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    data = _write(tmp_path / "d.jsonl", _rows(10))
    run([str(data), "--max-length", "900", "--histogram", str(tmp_path / "h.png")], capsys)
    assert (tmp_path / "h.png").read_bytes().startswith(b"\x89PNG")
    assert "### tokenguard audit" in summary.read_text()


def test_trainer_trl_names_the_values_used(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("trl")
    data = _write(tmp_path / "d.jsonl", _rows(3))
    _, out, _ = run([str(data), "--trainer", "trl", "--gpu-memory", "80GiB"], capsys)
    assert "SFTConfig defaults used: max_length=1024, per_device_train_batch_size=8, " \
           "gradient_checkpointing=True" in out
    assert "truncation_side='left'" in out
    assert "worst batch: 8 x" in out


def test_workers_die_by_sigterm_whatever_the_parent_writes(tmp_path: Path) -> None:
    """A forked worker does not keep the parent's AtomicFile signal handlers (which turn
    SIGTERM into an exception): with them, the pool's shutdown at the end of a
    ``--per-sample`` run waited forever on a worker now and then."""
    import signal

    from pytest_tokenguard.audit.measure import Auditor, AuditSettings
    from pytest_tokenguard.audit.run import _pool
    from pytest_tokenguard.files import AtomicFile
    from tests.helpers import model_ref

    auditor = Auditor(AuditSettings(model_ref("2.2B")))
    with AtomicFile(tmp_path / "out.jsonl") as handle:
        handle.write(b"")
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
        with _pool(2, auditor) as pool:
            seen = {pool.apply(signal.getsignal, (number,)) for number in
                    (signal.SIGTERM, signal.SIGTERM, signal.SIGTERM, signal.SIGTERM)}
            interrupt = pool.apply(signal.getsignal, (signal.SIGINT,))
    assert seen == {signal.SIG_DFL}
    assert interrupt == signal.SIG_IGN


def test_a_terminated_run_leaves_no_file_and_no_worker(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers import REPO, model_ref

    data = _write(tmp_path / "d.jsonl", _rows(400) * 20)
    out = tmp_path / "per-sample.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_tokenguard.cli", "audit", str(data), "--model",
         model_ref("2.2B"), "--workers", "2", "--per-sample", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".per-sample.jsonl.*")) and time.monotonic() < deadline:
        time.sleep(0.05)  # the temporary output exists: the run is under way
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == -signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl"]  # nothing half-written
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):  # no worker left in the run's process group
        os.killpg(process.pid, 0)
