"""Import rules: light modules load no heavy dependency; kernels get ``xp`` from their arrays."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import bptdask.kernels

KERNELS_DIR = Path(bptdask.kernels.__file__).parent
HEAVY = ("dask", "distributed", "zarr", "cupy")
KERNEL_FORBIDDEN_MODULES = {"numpy", "cupy", "dask", "distributed", "zarr", "threading", "concurrent"}
KERNEL_FORBIDDEN_NAMES = {"np", "numpy", "cp", "cupy"}


LIGHT_MODULES = [
    "bptdask.kernels",
    "bptdask.cuda",
    "bptdask.model",
    "bptdask.layers",
    "bptdask.models",
    "bptdask.inner",
    "bptdask.report",
    "bptdask.outer.run_config",
    "bptdask.outer.partition",
    "bptdask.outer.weights",
    "bptdask.outer.supervisor",
    "bptdask.outer.worker_loop",
]


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_light_modules_load_no_heavy_dependency(module):
    code = (
        f"import json, sys, {module}\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [], f"import {module} loaded heavy modules"


def kernel_rule_violations(source: str, filename: str = "<source>") -> list[str]:
    """``file:line: what`` for each import or use of a forbidden module or name in ``source``."""
    violations = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            roots = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            roots = [(node.module or "").split(".")[0]] if node.level == 0 else []
        else:
            roots = []
        forbidden = [root for root in roots if root in KERNEL_FORBIDDEN_MODULES]
        violations += [f"{filename}:{node.lineno}: imports {root}" for root in forbidden]
        if isinstance(node, ast.Name) and node.id in KERNEL_FORBIDDEN_NAMES:
            violations.append(f"{filename}:{node.lineno}: uses the name {node.id}")
    return violations


def test_rule_checker_catches_numpy_in_kernels():
    bad = "import numpy\nfrom numpy import zeros\nimport numpy.linalg as la\ndef f(x):\n    return np.zeros(3)\n"
    assert len(kernel_rule_violations(bad)) == 4
    good = "from bptdask.backend import array_namespace\ndef f(x):\n    return array_namespace(x).zeros(3)\n"
    assert kernel_rule_violations(good) == []


def test_kernels_use_only_the_array_namespace_of_their_inputs():
    files = sorted(KERNELS_DIR.glob("*.py"))
    assert files, f"no kernel modules found in {KERNELS_DIR}"
    violations = [v for path in files for v in kernel_rule_violations(path.read_text(), path.name)]
    assert violations == [], "kernels must get xp from bptdask.backend.array_namespace:\n" + "\n".join(violations)
