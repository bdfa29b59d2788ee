"""What the README's audit section quotes is what TRL and ``tokenguard audit`` print."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from pytest_tokenguard.cli import main
from tests.helpers import ROOT, real_processor, write_oriented_image
from tests.oracle.test_audit_trl import generated_rows

pytest.importorskip("trl")
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

SECTION = ROOT.joinpath("README.md").read_text().split(
    "## Will my training set train?")[1].split("\n## ")[0]
BLOCKS = re.findall(r"```\n(.*?)```", SECTION, re.S)


def _one(folder: Path) -> dict[str, object]:
    photo = write_oriented_image(folder / "phone.jpg", 4032, 3024, 6)
    row = {"messages": [{"role": "user", "content": "What is in this photo?"},
                        {"role": "assistant", "content": "A quiet street with parked cars."}],
           "images": [str(photo)]}
    (folder / "one.jsonl").write_text(json.dumps(row) + "\n")
    return row


def test_quoted_error_is_trls(tmp_path: Path) -> None:
    row = _one(tmp_path)
    collator = DataCollatorForVisionLanguageModeling(real_processor("2.2B"), max_length=1024)
    with pytest.raises(ValueError) as caught:
        collator([row])
    assert BLOCKS[0].strip() == f"ValueError: {caught.value}"


@pytest.mark.parametrize("block", [1, 2])
def test_quoted_audits_are_what_it_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    _one(tmp_path)
    rows = generated_rows(tmp_path)[:24]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    command, *expected = BLOCKS[block].strip().splitlines()
    args = shlex.split(command.removeprefix("$ tokenguard "))
    code = main(args)
    assert capsys.readouterr().out.splitlines() == expected
    assert code == 1
