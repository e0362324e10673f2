"""The ``bptdask`` command line, run in-process and as the installed console script."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

import bptdask
from bptdask import datasets
from bptdask.cli import main


@pytest.mark.parametrize("workers", ["0", "2"], ids=["in-process", "local-cluster"])
def test_train_then_evaluate(tmp_path, capsys, workers):
    model = tmp_path / "digits.npz"
    args = [
        "train",
        "--dataset",
        "digits",
        "--padding",
        "2",
        "--epochs",
        "2",
        "--test-size",
        "397",
        "--quiet",
        "--workers",
        workers,
    ]
    assert main([*args, "--output", str(model)]) == 0
    trained = capsys.readouterr().out
    assert "test accuracy: " in trained and model.exists()
    assert main(["evaluate", str(model), "--dataset", "digits", "--test-size", "397"]) == 0
    evaluated = capsys.readouterr().out
    assert trained.splitlines()[0] == evaluated.splitlines()[0]


def test_train_on_a_zarr_dataset_writes_the_run_report(tmp_path, capsys):
    bptdask.ingest(*datasets.digits(random_state=0), tmp_path / "digits.zarr", chunk_size=50, test_size=0.2)
    report = tmp_path / "run.json"
    args = [
        "train",
        str(tmp_path / "digits.zarr"),
        "--padding",
        "2",
        "--epochs",
        "3",
        "--workers",
        "2",
        "--update",
        "sgwu",
        "--report",
        str(report),
        "--quiet",
        "--checkpoint",
        str(tmp_path / "ckpt"),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "checkpoints written, the last of version" in out
    accuracy = float(re.search(r"test accuracy: ([0-9.]+) \((\d+) images\)", out).group(1))
    assert accuracy > 0.8, out
    assert "3 epochs in" in out and "IDPA rounds" in out
    saved = json.loads(report.read_text())
    assert saved["epochs_done"] == 3 and len(saved["worker_loops"]) == 2
    assert [e["epoch"] for e in saved["evaluations"]] == [1, 2, 3]
    assert set(saved["merges"]["staleness"]) == {0}, "SGWU merges whole rounds"
    assert main(args) == 0, "the same run again resumes from its final checkpoint: nothing left to train"
    again = capsys.readouterr().out
    assert f"resumed from the checkpoint of version {saved['version']}" in again
    assert json.loads(report.read_text())["version"] == saved["version"]


def test_train_takes_the_merge_rule(tmp_path, capsys):
    bptdask.ingest(*datasets.digits(random_state=0), tmp_path / "digits.zarr", chunk_size=100, test_size=0.2)
    report = tmp_path / "run.json"
    args = ["train", str(tmp_path / "digits.zarr"), "--padding", "2", "--epochs", "1", "--workers", "2"]
    assert main([*args, "--merge-rule", "exponential", "--report", str(report), "--quiet"]) == 0
    assert json.loads(report.read_text())["merge_rule"].startswith("exponential(")
    with pytest.raises(SystemExit) as usage:
        main([*args, "--merge-rule", "fedavg"])
    assert usage.value.code == 2
    assert "argument --merge-rule: invalid choice: 'fedavg'" in capsys.readouterr().err


def test_errors_exit_with_their_status_and_a_message(tmp_path, capsys):
    bogus = tmp_path / "bogus.npz"
    bogus.write_text("not a model")
    assert main(["evaluate", str(bogus)]) == 3
    assert "not a bptdask model file" in capsys.readouterr().err
    assert main(["train", "--architecture", "vgg_small", "--padding", "2"]) == 2
    assert "--padding applies to lenet5 only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["train", "--workers", "-1"])
    assert usage.value.code == 2
    assert "argument --workers: expected an integer >= 0, got '-1'" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.zarr")]) == 3
    assert "missing.zarr" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("bptdask") is None, reason="console script not installed")
def test_console_script_help():
    result = subprocess.run(["bptdask", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "train" in result.stdout
