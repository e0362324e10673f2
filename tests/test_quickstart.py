"""The README quick start's job, ``pipelines/mnist.py``, on a reduced setting."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_quick_start_runs_the_mnist_pipeline():
    readme = (ROOT / "README.md").read_text()
    assert "python pipelines/mnist.py" in readme


def test_mnist_pipeline_reduced(tmp_path):
    model = tmp_path / "m.npz"
    result = subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / "mnist.py"), "--epochs", "2", "--train-size", "1000",
         "--test-size", "500", "--quiet", "--output", str(model)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", result.stdout).group(1))
    assert accuracy >= 0.85, result.stdout
    assert model.exists()
