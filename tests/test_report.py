"""The typed run report: the merge log, the JSON round trip and the text summary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bptdask.report import (
    MERGE_COLUMNS,
    CheckpointStatus,
    EpochMerges,
    Evaluation,
    MergeLog,
    MergeRecord,
    Recovery,
    RoundReport,
    RunReport,
    WorkerSummary,
    WorkerTotals,
    format_report,
    load_report,
    save_report,
)

A, B = "tcp://127.0.0.1:4001", "tcp://127.0.0.1:4002"


def merges(n=5):
    return MergeLog(
        MergeRecord(A if i % 2 else B, i // 2, i, i % 3, 0.5**i, i, i + 1, 40, 0.1 * i, 2.0 + i) for i in range(n)
    )


def sample_report():
    return RunReport(
        epochs_done=2,
        epoch_ends=[1.5, 3.0],
        seconds=3.25,
        version=5,
        generation=1,
        rounds=[RoundReport(0, 0, {A: 1.0, B: 0.5}, {A: 80, B: 40}, 1.0, 0.25)],
        workers={A: WorkerTotals(3, 120, 1.5, [0, 1, 2], power=80.0), B: WorkerTotals(2, 80, 1.0, [1, 0])},
        merges=merges(),
        evaluations=[Evaluation(1, 1.5, 3, 0.91)],
        rejected=1,
        invalid=0,
        failure=None,
        dropped={B: "silent for over 60 s"},
        checkpoints=CheckpointStatus(3, 5, []),
        restored_version=2,
        seen_version=5,
        coordinator=A,
        worker_loops={A: WorkerSummary(A, parts=3, samples=120)},
        lost_workers={B: "silent: treated as frozen"},
        restarted_tasks=[A],
        recoveries=[Recovery(1.25, B, "its worker left", 2, 1, A)],
        merges_lost=1,
        resumed_from=None,
        merge_rule="concurrency(merge_weight=1, staleness_decay=0.5)",
        max_staleness=4,
        epoch_merges={0: EpochMerges(5, 1.2, 2, 1.0, 0.05)},
    )


def test_the_merge_log_keeps_every_merge_as_columns():
    log = merges(200)
    assert len(log) == 200 and log[7] == MergeRecord(A, 3, 7, 1, 0.5**7, 7, 8, 40, 0.1 * 7, 9.0)
    assert log.column("worker")[:3].tolist() == [B, A, B] and log.column("version").dtype == np.int64
    assert [r.version for r in log.since(198)] == [199, 200]
    assert MergeLog.from_table(*log.to_table()) == log == MergeLog.from_dict(log.to_dict())
    assert list(log.to_dict()) == list(MERGE_COLUMNS)


def test_a_merge_table_naming_unknown_workers_is_refused():
    table, workers = merges().to_table()
    with pytest.raises(ValueError, match=r"outside 0..0"):
        MergeLog.from_table(table, workers[:1])


def test_the_report_round_trips_through_json(tmp_path):
    report = sample_report()
    plain = report.to_dict()
    assert json.loads(json.dumps(plain)) == plain
    assert plain["workers"][A]["staleness"] == [0, 1, 2] and plain["merges"]["worker"][0] == B
    assert RunReport.from_dict(plain) == report
    path = save_report(report, tmp_path / "runs" / "run.json")
    assert load_report(path) == report and [p.name for p in path.parent.iterdir()] == ["run.json"]


def test_the_summary_names_workers_losses_and_recoveries():
    text = format_report(sample_report())
    assert text.splitlines()[0] == (
        "2 epochs in 3.2 s: 1 IDPA rounds (mean idle fraction 0.250), 5 merges, 1 stale pushes rejected"
    )
    assert f"lost {B}: silent: treated as frozen" in text
    assert f"coordinator on {B} lost at 1.2 s; recreated on {A} from version 2 (1 merges lost)" in text
    assert "3 checkpoints written, the last of version 5" in text
    assert "merge rule concurrency(merge_weight=1, staleness_decay=0.5); effective learning rate by epoch: 0.05" in text
    assert f"{A:<28}    cpu      3      120" in text and f"{B:<28}   lost      2       80" in text
