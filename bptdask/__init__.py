"""bptdask: bi-layered parallel CNN training (BPT-CNN) on Dask.

The namespace is flat and loaded lazily: ``import bptdask.kernels`` pulls in NumPy
only, and Dask or Zarr are imported the first time a name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "BPTClassifier": "bptdask.estimator",
    "Sequential": "bptdask.model",
    "SGD": "bptdask.optim",
    "train_step": "bptdask.inner",
    "save_model": "bptdask.serialize",
    "load_model": "bptdask.serialize",
    "BptDaskError": "bptdask.errors",
    "ingest": "bptdask.data",
    "ingest_npz": "bptdask.data",
    "ingest_idx": "bptdask.data",
    "ingest_folder": "bptdask.data",
    "ingest_builtin": "bptdask.data",
    "open_dataset": "bptdask.data",
    "Dataset": "bptdask.data",
    "RunConfig": "bptdask.outer.run_config",
    "RunReport": "bptdask.report",
    "fit_on_cluster": "bptdask.cluster",
}
_SUBMODULES = {
    "backend",
    "cluster",
    "data",
    "datasets",
    "errors",
    "inner",
    "kernels",
    "layers",
    "models",
    "optim",
    "outer",
    "report",
}

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"bptdask.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bptdask' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from bptdask import backend, cluster, data, datasets, errors, inner, kernels, layers, models, optim, outer, report
    from bptdask.cluster import fit_on_cluster
    from bptdask.data import Dataset, ingest, ingest_builtin, ingest_folder, ingest_idx, ingest_npz, open_dataset
    from bptdask.errors import BptDaskError
    from bptdask.estimator import BPTClassifier
    from bptdask.inner import train_step
    from bptdask.model import Sequential
    from bptdask.optim import SGD
    from bptdask.outer.run_config import RunConfig
    from bptdask.report import RunReport
    from bptdask.serialize import load_model, save_model
