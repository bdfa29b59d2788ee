"""The per-sample function in the engines users already have: ``datasets.Dataset.map``
with worker processes (Ray Data's ``map_batches`` calls the same ``Auditor.batch``)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from pytest_tokenguard.audit.measure import Auditor, AuditSettings, from_columns
from pytest_tokenguard.audit.summary import Summary
from pytest_tokenguard.audit.trainer import TrainerRules
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
