"""One-way imports between the package's rooms (DESIGN.md, "Rooms"), checked on the source.

The house reads top-down: cli → estimator → cluster (the Dask shell) → outer → local →
inner → model → kernels, with plain-data rooms (errors, validation, atomic, report, …)
that import nothing above them. :data:`MAY_IMPORT` lists, for every room, the rooms it
may import; :data:`FORBIDDEN` the outside packages it must never import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bptdask

PACKAGE = Path(bptdask.__file__).parent

_LEAVES = {"_typing", "errors", "validation"}
_CORE = _LEAVES | {"backend", "kernels", "layers", "model", "models", "optim", "preprocess"}

#: room -> the bptdask rooms it may import (its own modules are always allowed).
MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(),
    "_typing": set(),
    "validation": {"errors"},
    "atomic": set(),
    "checksums": set(),
    "report": {"atomic"},
    "cuda": set(),
    "backend": {"_typing", "errors"},
    "kernels": {"_typing", "backend"},
    "layers": {"_typing", "errors", "kernels"},
    "model": {"_typing", "backend", "errors", "kernels", "layers"},
    "models": {"_typing", "errors", "layers", "model"},
    "optim": {"_typing", "backend", "errors", "kernels", "validation"},
    "preprocess": {"_typing", "backend", "errors"},
    "serialize": {"_typing", "atomic", "backend", "checksums", "errors", "model"},
    "datasets": {"errors"},
    "data": {"_typing", "atomic", "backend", "datasets", "errors", "validation"},
    "inner": _CORE,
    "local": _CORE | {"inner"},
    "outer": _CORE | {"atomic", "checksums", "inner", "local", "report"},
    "cluster": _CORE | {"data", "inner", "local", "outer", "report"},
    "inputs": _CORE | {"data"},
    "predictor": _CORE,
    "estimator": _CORE | {"cluster", "data", "inner", "inputs", "local", "outer", "predictor", "report", "serialize"},
    "cli": _CORE | {"cluster", "data", "datasets", "estimator", "outer", "report"},
    "testing": _CORE | {"inner"},
    "__main__": {"cli"},
}

#: room -> outside packages it must never import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "errors": ("numpy",),
    "validation": ("numpy",),
    "atomic": ("numpy", "zarr"),
    "report": ("dask", "distributed", "zarr"),
    "backend": ("dask", "distributed", "zarr"),
    "cuda": ("dask", "distributed", "zarr"),
    "kernels": ("dask", "distributed", "zarr", "cupy", "threading"),
    "layers": ("dask", "distributed", "zarr"),
    "model": ("dask", "distributed", "zarr"),
    "models": ("dask", "distributed", "zarr"),
    "inner": ("dask.distributed", "distributed", "zarr"),
    "local": ("dask", "distributed", "zarr"),
    "outer": ("dask", "distributed"),
    "data": ("distributed", "dask.distributed"),
    "inputs": ("distributed", "dask.distributed"),
    "predictor": ("distributed", "dask.distributed", "zarr"),
}


def _room(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py") if len(relative.parts) > 1 else relative.stem


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every absolute import in the file at ``path``.

    ``from bptdask import kernels`` counts as importing ``bptdask.kernels``.
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "bptdask":
            found += [(node.lineno, f"bptdask.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _files(room: str) -> list[Path]:
    directory = PACKAGE / room
    files = sorted(directory.rglob("*.py")) if directory.is_dir() else [PACKAGE / f"{room}.py"]
    assert files and all(f.exists() for f in files), f"room {room} not found"
    return files


def internal_violations(room: str, allowed: set[str]) -> list[str]:
    found = []
    for path in _files(room):
        for line, module in imported_modules(path):
            parts = module.split(".")
            if parts[0] == "bptdask" and len(parts) > 1 and parts[1] not in allowed | {room}:
                found.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    return found


def violations(room: str, prefixes: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(PACKAGE)}:{line} imports {module}"
        for path in _files(room)
        for line, module in imported_modules(path)
        if any(module == p.rstrip(".") or module.startswith(p if p.endswith(".") else p + ".") for p in prefixes)
    ]


def test_every_room_is_listed():
    rooms = {_room(path) for path in PACKAGE.rglob("*.py")} - {"__init__"}
    assert rooms == set(MAY_IMPORT)


@pytest.mark.parametrize(("room", "allowed"), sorted(MAY_IMPORT.items()))
def test_room_imports_only_the_rooms_below_it(room, allowed):
    assert internal_violations(room, allowed) == []


def test_no_import_runs_back_up():
    """The allowed imports form no cycle: every room sits below the rooms that import it."""
    order, visiting, done = [], set(), set()

    def visit(room, path):
        assert room not in visiting, f"import cycle: {' -> '.join([*path, room])}"
        if room not in done:
            visiting.add(room)
            for below in sorted(MAY_IMPORT[room]):
                visit(below, [*path, room])
            visiting.discard(room)
            done.add(room)
            order.append(room)

    for room in sorted(MAY_IMPORT):
        visit(room, [])
    assert order.index("kernels") < order.index("model") < order.index("inner") < order.index("outer")
    assert order.index("outer") < order.index("cluster") < order.index("estimator") < order.index("cli")


@pytest.mark.parametrize(("room", "prefixes"), sorted(FORBIDDEN.items()))
def test_room_imports_no_forbidden_package(room, prefixes):
    assert violations(room, prefixes) == []


def test_checker_sees_a_forbidden_import(tmp_path, monkeypatch):
    module = tmp_path / "room.py"
    module.write_text(
        "import numpy\nfrom dask.distributed import Client\nimport zarr.storage\nfrom bptdask import cluster\n"
    )
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path)
    assert violations("room", ("distributed", "dask.distributed", "zarr")) == [
        "room.py:2 imports dask.distributed",
        "room.py:3 imports zarr.storage",
    ]
    assert internal_violations("room", {"errors"}) == ["room.py:4 imports bptdask.cluster"]
