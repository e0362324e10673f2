"""Saving and loading trained models as NPZ files, without pickle.

A file holds each parameter as an array named ``param/{name}`` and one JSON document,
``bptdask.json``, stored as a uint8 array: the format tag and version, the architecture
(:meth:`Sequential.to_config`) and free-form metadata (classes, normalisation).
Loading uses ``allow_pickle=False`` and rebuilds layers only from the known layer types,
so a file can never run code. Writes go to a temporary file renamed into place, so a
failed save never replaces a good file.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bptdask._typing import Params
from bptdask.atomic import replacing
from bptdask.backend import to_numpy
from bptdask.errors import ModelFileError
from bptdask.model import Sequential

FORMAT_NAME = "bptdask-model"
FORMAT_VERSION = 1
HEADER_KEY = "bptdask.json"
PARAM_PREFIX = "param/"
ZIP_MAGIC = b"PK\x03\x04"


@dataclass
class SavedModel:
    """A model read back from disk: architecture, NumPy parameters and metadata."""

    model: Sequential
    params: Params
    metadata: dict[str, Any] = field(default_factory=dict)


def save_model(
    path: str | os.PathLike, model: Sequential, params: Params, *, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` and ``params`` to ``path`` (an ``.npz`` file) atomically.

    Parameters
    ----------
    path : path of the file to write; its directory must exist
    model : Sequential
    params : dict of NumPy or CuPy arrays matching ``model``
    metadata : JSON-serialisable dict stored alongside (e.g. classes, mean/std)

    Returns
    -------
    Path of the written file.
    """
    model.check_params(params)
    path = Path(path)
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "architecture": model.to_config(),
        "metadata": metadata or {},
    }
    arrays = {PARAM_PREFIX + name: to_numpy(value) for name, value in params.items()}
    arrays[HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with replacing(path) as staged, open(staged, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def _read_header(archive, path) -> dict[str, Any]:
    if HEADER_KEY not in archive.files:
        raise ModelFileError(f"{path} is an NPZ file but not a bptdask model (no {HEADER_KEY!r} entry)")
    try:
        header = json.loads(archive[HEADER_KEY].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: the model header is corrupt ({exc}); save the model again") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path} is not a bptdask model file (format tag {header.get('format')!r})")
    if header.get("version", 0) > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written by a newer bptdask (model format {header['version']}, "
            f"this version reads up to {FORMAT_VERSION}); upgrade bptdask"
        )
    return header


def load_model(path: str | os.PathLike) -> SavedModel:
    """Read a model written by :func:`save_model`.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ModelFileError
        When the file is truncated, corrupt, or not a bptdask model.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        if handle.read(4) != ZIP_MAGIC:
            raise ModelFileError(f"{path} is not a bptdask model file (not an NPZ archive); check the path")
    try:
        with np.load(path, allow_pickle=False) as archive:
            header = _read_header(archive, path)
            params = {
                name[len(PARAM_PREFIX) :]: archive[name] for name in archive.files if name.startswith(PARAM_PREFIX)
            }
    except FileNotFoundError:
        raise
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise ModelFileError(
            f"{path} is truncated or not a bptdask model file ({type(exc).__name__}: {exc}); "
            "save the model again or check the path"
        ) from None
    try:
        model = Sequential.from_config(header["architecture"])
        model.check_params(params)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: the stored architecture does not match its parameters ({exc})") from None
    return SavedModel(model=model, params=params, metadata=header.get("metadata", {}))
