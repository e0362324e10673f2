"""One-way imports between the package's rooms (DESIGN.md, "Rooms"), checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bptdask

PACKAGE = Path(bptdask.__file__).parent

#: room (module or sub-package, relative to bptdask/) -> module prefixes it must never import.
FORBIDDEN = {
    "errors.py": ("bptdask.", "dask", "distributed", "zarr", "numpy"),
    "_typing.py": ("bptdask.", "dask", "distributed", "zarr"),
    "backend.py": ("dask", "distributed", "zarr"),
    "cuda.py": ("bptdask.", "dask", "distributed", "zarr"),
    "kernels": ("dask", "distributed", "zarr", "cupy", "threading"),
    "layers.py": ("dask", "distributed", "zarr"),
    "model.py": ("dask", "distributed", "zarr"),
    "models.py": ("dask", "distributed", "zarr"),
    "inner": ("dask.distributed", "distributed", "zarr"),
    "partition.py": ("dask", "distributed", "zarr", "bptdask.kernels"),
    "allocation.py": ("dask", "distributed", "zarr", "bptdask.kernels", "numpy"),
    "ps.py": ("dask", "distributed", "zarr"),
    "data": ("distributed", "dask.distributed"),
    "checkpoint.py": ("dask", "distributed"),
    "coordinator.py": ("dask", "distributed"),
    "schedule.py": ("dask", "distributed", "zarr"),
    "estimator.py": ("bptdask.cli",),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every absolute import in the file at ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def violations(room: str, prefixes: tuple[str, ...]) -> list[str]:
    target = PACKAGE / room
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    assert files and all(f.exists() for f in files), f"room {room} not found"
    return [
        f"{path.relative_to(PACKAGE)}:{line} imports {module}"
        for path in files
        for line, module in imported_modules(path)
        if any(module == p.rstrip(".") or module.startswith(p if p.endswith(".") else p + ".") for p in prefixes)
    ]


@pytest.mark.parametrize(("room", "prefixes"), sorted(FORBIDDEN.items()))
def test_room_imports_only_what_it_may(room, prefixes):
    assert violations(room, prefixes) == []


def test_checker_sees_a_forbidden_import(tmp_path, monkeypatch):
    module = tmp_path / "room.py"
    module.write_text("import numpy\nfrom dask.distributed import Client\nimport zarr.storage\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path)
    assert violations("room.py", ("distributed", "dask.distributed", "zarr")) == [
        "room.py:2 imports dask.distributed", "room.py:3 imports zarr.storage",
    ]
