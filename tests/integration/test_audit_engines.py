"""The per-sample function in the engines users already have: ``datasets.Dataset.map``
with worker processes, and Ray Data's ``map_batches`` (the same ``Auditor.batch``)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from pytest_tokenguard.audit.measure import Auditor, AuditSettings, from_columns
from pytest_tokenguard.audit.summary import Summary
from pytest_tokenguard.audit.trainer import TrainerRules
from pytest_tokenguard.cli import main
from tests.helpers import model_ref


def _rows() -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": [
        {"type": "image", "width": 640 + 97 * i, "height": 480},
        {"type": "text", "text": "What?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "x " * (40 * i)}]}]}
        for i in range(12)]


def test_auditor_pickles_as_its_settings() -> None:
    auditor = Auditor(AuditSettings(model_ref("2.2B"), 768))
    auditor.measure(_rows()[0])
    copy = pickle.loads(pickle.dumps(auditor))
    assert copy.settings == auditor.settings
    assert copy.measure(_rows()[1]) == auditor.measure(_rows()[1])


def test_datasets_map_with_processes_gives_the_audit() -> None:
    datasets = pytest.importorskip("datasets")
    rows = _rows()
    auditor = Auditor(AuditSettings(model_ref("2.2B"), 768))
    dataset = datasets.Dataset.from_list(rows)
    figures = dataset.map(auditor.batch, batched=True, batch_size=4, with_indices=True,
                          num_proc=2, remove_columns=dataset.column_names)
    direct = [auditor.measure(row, i) for i, row in enumerate(rows)]
    mapped = [from_columns(row) for row in figures]
    assert [r._replace(id=str(r.id)) for r in direct] == mapped
    summary = Summary(TrainerRules(400), auditor.longest_edge, auditor.edges,
                      auditor.frame_candidates)
    summary.add_all(mapped)
    assert summary.samples == 12
    assert summary.over_max_length


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own settings
def test_ray_data_map_batches_gives_the_cli_per_sample_results(tmp_path: Path) -> None:
    """Ray Data on a local one-node Ray (``ray.init()`` on this machine; Ray 2.60 has no
    ``local_mode`` any more): ``read_json(...).map_batches(auditor.batch,
    batch_format="pyarrow")`` gives the CLI's ``--per-sample`` figures, and so does
    ``from_items``. On a cluster the same code runs after ``ray.init(address="auto")``."""
    ray = pytest.importorskip(
        "ray", reason="ray is not installed: pip install 'ray[data]' (in the dev extra) to run "
        "the Ray Data example")
    pytest.importorskip("ray.data", reason="ray is installed without Ray Data: pip install "
                        "'ray[data]'")
    rows = [{"id": f"r{i}", **row} for i, row in enumerate(_rows())]
    rows[3]["messages"][1]["content"][0]["text"] = "<image> in text"  # unpriceable: an error
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    per_sample = tmp_path / "per-sample.jsonl"
    code = main(["audit", str(data), "--model", model_ref("2.2B"), "--longest-edge", "768",
                 "--max-length", "400", "--json", "--per-sample", str(per_sample)])
    assert code == 1  # the unpriceable row
    expected = [json.loads(line) for line in per_sample.read_text().splitlines()]
    auditor = Auditor(AuditSettings(model_ref("2.2B"), 768))
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             configure_logging=False, ignore_reinit_error=True)
    try:
        for dataset in (ray.data.read_json(str(data)), ray.data.from_items(rows)):
            figures = dataset.map_batches(auditor.batch, batch_size=5,
                                          batch_format="pyarrow").take_all()
            results = sorted((from_columns(row) for row in figures),
                             key=lambda r: int(str(r.id)[1:]))
            assert [r.to_json() for r in results] == expected
    finally:
        ray.shutdown()
    assert "<image>" in expected[3]["error"]


def test_a_batch_without_ids_or_row_numbers_is_refused() -> None:
    from pytest_tokenguard.errors import InputError

    auditor = Auditor(AuditSettings(model_ref("2.2B"), 768))
    columns = {"messages": [row["messages"] for row in _rows()[:2]]}
    with pytest.raises(InputError, match="row 0 of this batch has no 'id' and no row numbers"):
        auditor.batch(columns)
    assert auditor.batch(columns, [7, 8])["id"] == ["7", "8"]
