"""The ``bptdask`` command line, run in-process and as the installed console script."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bptdask.cli import main


def test_train_then_evaluate(tmp_path, capsys):
    model = tmp_path / "digits.npz"
    args = ["train", "--dataset", "digits", "--padding", "2", "--epochs", "2", "--test-size", "397", "--quiet"]
    assert main([*args, "--output", str(model)]) == 0
    trained = capsys.readouterr().out
    assert "test accuracy: " in trained and model.exists()
    assert main(["evaluate", str(model), "--dataset", "digits", "--test-size", "397"]) == 0
    evaluated = capsys.readouterr().out
    assert trained.splitlines()[0] == evaluated.splitlines()[0]


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    bogus = tmp_path / "bogus.npz"
    bogus.write_text("not a model")
    assert main(["evaluate", str(bogus)]) == 2
    assert "not a bptdask model file" in capsys.readouterr().err
    assert main(["train", "--architecture", "vgg_small", "--padding", "2"]) == 2
    assert "--padding applies to lenet5 only" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("bptdask") is None, reason="console script not installed")
def test_console_script_help():
    result = subprocess.run(["bptdask", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "train" in result.stdout
