"""Saving and loading trained models as NPZ files, without pickle.

A file is a ZIP archive of ``.npy`` entries, stored uncompressed: each parameter as
``param/{name}`` and one JSON document, ``bptdask.json``, stored as a uint8 array: the
format tag and version, the architecture (:meth:`Sequential.to_config`), the CRC32C
checksum of every parameter's bytes and free-form metadata (classes, normalisation).
Writes go to a temporary file renamed into place, so a failed save never replaces a
good file.

Loading trusts nothing in the file: it reads each entry's ``.npy`` header before its
data and allocates only what the architecture needs, and only when the entry really
holds that many bytes (so a small crafted file cannot inflate in memory); it refuses
pickled or non-float parameters, NaN or infinite values, a failed checksum, entries
bptdask never writes, and metadata that cannot describe the model (classes, mean/std).
Layers are rebuilt only from the known layer types, so a file can never run code.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bptdask._typing import Params
from bptdask.atomic import replacing
from bptdask.backend import to_numpy
from bptdask.checksums import array_crc32c
from bptdask.errors import ModelFileError, ModelNotFoundError, TrainingDivergedError
from bptdask.model import Sequential

FORMAT_NAME = "bptdask-model"
#: 2: the header holds the CRC32C of every parameter (``checksums``); format 1 files still load.
FORMAT_VERSION = 2
HEADER_KEY = "bptdask.json"
PARAM_PREFIX = "param/"
ZIP_MAGIC = b"PK\x03\x04"
#: Largest header document read, in bytes (a model's description and its training history).
MAX_HEADER_BYTES = 16 * 2**20
#: Parameter dtypes a model file may hold.
PARAM_DTYPES = (np.dtype("<f4"), np.dtype("<f8"))


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
    params : dict of NumPy or CuPy float arrays matching ``model``
    metadata : JSON-serialisable dict stored alongside (e.g. classes, mean/std)

    Returns
    -------
    Path of the written file.

    Raises
    ------
    TrainingDivergedError
        A parameter holds NaN or infinite values (nothing is written).
    ModelFileError
        ``metadata`` would not load back (see :func:`check_metadata`; nothing is written).
    """
    model.check_params(params)
    path = Path(path)
    check_metadata(metadata or {}, model, path, fix="pass metadata that describes this model")
    arrays = {PARAM_PREFIX + name: np.ascontiguousarray(to_numpy(value)) for name, value in params.items()}
    broken = sorted(name for name, value in arrays.items() if not np.isfinite(value).all())
    if broken:
        raise TrainingDivergedError(
            f"parameters {broken} hold NaN or infinite values; nothing was written to {path}; "
            "train again with a lower learning rate"
        )
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "architecture": model.to_config(),
        "checksums": {name.removeprefix(PARAM_PREFIX): array_crc32c(value) for name, value in arrays.items()},
        "metadata": metadata or {},
    }
    arrays[HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with replacing(path) as staged, open(staged, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def load_model(path: str | os.PathLike) -> SavedModel:
    """Read a model written by :func:`save_model`, checking everything in it.

    Memory use is bounded by the file's size: no entry is decompressed or allocated
    beyond the bytes it holds.

    Raises
    ------
    ModelNotFoundError
        When ``path`` does not exist (a ``FileNotFoundError`` and a :class:`ModelFileError`).
    ModelFileError
        When ``path`` is a directory or an empty file, or the file is truncated,
        corrupt (a failed checksum), crafted (pickles, compressed or unknown entries,
        sizes that do not match) or not a bptdask model, or its parameters or metadata
        cannot serve the model (non-float or non-finite values, wrong class list,
        mean/std).
    """
    path = Path(path)
    size = _check_model_path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            entries = _entries(archive, path, size)
            header = _read_header(archive, entries, path)
            model = _model_of(header, path)
            checksums = header.get("checksums") if header.get("version", 1) >= 2 else None
            params = _read_params(archive, entries, model, checksums, path)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise ModelFileError(
            f"{path} is truncated or not a bptdask model file ({type(exc).__name__}: {exc}); "
            "save the model again or check the path"
        ) from None
    metadata = header.get("metadata", {})
    check_metadata(metadata, model, path, fix="the file is damaged or was changed; save the model again")
    return SavedModel(model=model, params=params, metadata=metadata)


def _check_model_path(path: Path) -> int:
    """The size of the file at ``path``, once it is known to be a non-empty ZIP file."""
    if not path.exists():
        raise ModelNotFoundError(f"no model file at {path}; check the path (save a model with save_model first)")
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory; pass the .npz file a model was saved to")
    size = path.stat().st_size
    if size == 0:
        raise ModelFileError(f"{path} is empty (0 bytes): the save never finished or the file was cut; save it again")
    with open(path, "rb") as handle:
        if handle.read(4) != ZIP_MAGIC:
            raise ModelFileError(f"{path} is not a bptdask model file (not an NPZ archive); check the path")
    return size


def _entries(archive: zipfile.ZipFile, path: Path, size: int) -> dict[str, zipfile.ZipInfo]:
    """The archive's entries by name (``.npy`` dropped), refusing what :func:`save_model` never writes."""
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = info.filename.removesuffix(".npy")
        if name != HEADER_KEY and not name.startswith(PARAM_PREFIX):
            raise ModelFileError(
                f"{path} is not a bptdask model file: it holds the entry {info.filename!r}, which bptdask never writes"
            )
        if name in entries:
            raise ModelFileError(f"{path} holds the entry {info.filename!r} twice; the file is crafted or corrupt")
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size or info.file_size > size:
            raise ModelFileError(
                f"{path}: the entry {info.filename!r} is compressed or declares {info.file_size} bytes that the "
                f"{size}-byte file cannot hold; bptdask stores entries uncompressed; save the model again"
            )
        entries[name] = info
    return entries


def _read_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, shape: tuple | None) -> np.ndarray:
    """One ``.npy`` entry: its header is checked (dtype, ``shape`` unless None, size) before any data is read."""
    where = f"{path}: {info.filename!r}"
    with archive.open(info) as stream:
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        version = np.lib.format.read_magic(stream)
        if version not in readers:
            raise ModelFileError(f"{where} is in .npy format {version}, which bptdask never writes")
        stored, fortran, dtype = readers[version](stream)
        if dtype.hasobject or dtype.kind not in "fu":
            raise ModelFileError(f"{where} has dtype {dtype}; a model file holds only float arrays (no pickles)")
        if shape is not None and tuple(stored) != tuple(shape):
            raise ModelFileError(
                f"{where} has shape {tuple(stored)}; the stored architecture needs {tuple(shape)}: the stored "
                "architecture does not match its parameters; save the model again"
            )
        nbytes = math.prod(stored) * dtype.itemsize
        if info.file_size - stream.tell() != nbytes:
            raise ModelFileError(
                f"{where} holds {info.file_size - stream.tell()} bytes of data for {nbytes} declared; the file is "
                "truncated or crafted; save the model again"
            )
        data = bytearray(nbytes)
        if stream.readinto(data) != nbytes or stream.read(1):  # reading to the end checks the entry's CRC-32
            raise ModelFileError(f"{where} is truncated; save the model again")
    return np.frombuffer(data, dtype=dtype).reshape(stored, order="F" if fortran else "C")


def _read_header(archive: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo], path: Path) -> dict[str, Any]:
    if HEADER_KEY not in entries:
        raise ModelFileError(f"{path} is an NPZ file but not a bptdask model (no {HEADER_KEY!r} entry)")
    if entries[HEADER_KEY].file_size > MAX_HEADER_BYTES:
        raise ModelFileError(f"{path}: the model header is {entries[HEADER_KEY].file_size} bytes, too large to read")
    raw = _read_npy(archive, entries[HEADER_KEY], path, None)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(f"{path}: the model header is not a byte string; the file is not a bptdask model")
    try:
        header = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: the model header is corrupt ({exc}); save the model again") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        tag = header.get("format") if isinstance(header, dict) else None
        raise ModelFileError(f"{path} is not a bptdask model file (format tag {tag!r})")
    version = header.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{path}: the model header has format version {version!r}; save the model again")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written by a newer bptdask (model format {version}, "
            f"this version reads up to {FORMAT_VERSION}); upgrade bptdask"
        )
    return header


def _model_of(header: dict[str, Any], path: Path) -> Sequential:
    """The model the header describes, rebuilt from known layer types only."""
    try:
        return Sequential.from_config(header["architecture"])
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise ModelFileError(f"{path}: the stored architecture cannot be rebuilt ({exc}); save it again") from None


def _read_params(
    archive: zipfile.ZipFile,
    entries: dict[str, zipfile.ZipInfo],
    model: Sequential,
    checksums: dict[str, int] | None,
    path: Path,
) -> Params:
    """Every parameter of ``model``, checked for shape, dtype, finiteness and (format 2) checksum."""
    expected = model.param_shapes()
    stored = {name.removeprefix(PARAM_PREFIX) for name in entries if name != HEADER_KEY}
    if stored != set(expected):
        raise ModelFileError(
            f"{path}: the stored architecture does not match its parameters (missing {sorted(set(expected) - stored)}, "
            f"unexpected {sorted(stored - set(expected))}); save the model again"
        )
    if checksums is not None and (not isinstance(checksums, dict) or set(checksums) != stored):
        raise ModelFileError(f"{path}: the header's checksums do not list every parameter; the file is corrupt")
    params = {}
    for name, shape in expected.items():
        value = _read_npy(archive, entries[PARAM_PREFIX + name], path, shape)
        if value.dtype not in PARAM_DTYPES:
            raise ModelFileError(f"{path}: parameter {name!r} has dtype {value.dtype}; models hold float32 or float64")
        if checksums is not None and array_crc32c(value) != checksums[name]:
            raise ModelFileError(f"{path}: parameter {name!r} fails its CRC32C checksum; the file is corrupt")
        if not np.isfinite(value).all():
            raise ModelFileError(f"{path}: parameter {name!r} holds NaN or infinite values; the model is unusable")
        params[name] = value
    return params


def check_metadata(metadata: Any, model: Sequential, path: str | os.PathLike, *, fix: str) -> None:
    """Raise ModelFileError, ending in ``fix``, unless the classifier entries of ``metadata`` fit ``model``.

    Checked when present: ``classes`` (distinct integers or distinct names, one per
    output of the model), ``mean`` and ``std`` (one finite number per input channel,
    ``std > 0``), ``dtype`` (``"float32"`` or ``"float64"``), ``vectors`` (a bool),
    ``history`` (a list).
    """
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{path}: the model's metadata is {type(metadata).__name__}, not a mapping; {fix}")
    if "classes" in metadata and not _distinct_labels(metadata["classes"], model.num_classes):
        shown = metadata["classes"][:10] if isinstance(metadata["classes"], list) else metadata["classes"]
        raise ModelFileError(
            f"{path}: the class list {shown!r} is not {model.num_classes} distinct integers or names, one per "
            f"output of the model; {fix}"
        )
    channels = model.input_shape[0]
    for name in ("mean", "std"):
        values = metadata.get(name, [1.0] * channels)
        ok = isinstance(values, list) and len(values) == channels and all(_is_finite_number(v) for v in values)
        if not ok or (name == "std" and min(values) <= 0):
            raise ModelFileError(
                f"{path}: {name} is {values!r}; the model needs {channels} finite numbers (one per input channel"
                f"{', all > 0' if name == 'std' else ''}); {fix}"
            )
    if _dtype_name(metadata.get("dtype", "float32")) not in ("float32", "float64"):
        raise ModelFileError(f"{path}: dtype is {metadata['dtype']!r}, not 'float32' or 'float64'; {fix}")
    if not isinstance(metadata.get("vectors", False), bool) or not isinstance(metadata.get("history", []), list):
        raise ModelFileError(f"{path}: 'vectors' must be a bool and 'history' a list; {fix}")


def _distinct_labels(classes: Any, num_classes: int) -> bool:
    """Whether ``classes`` lists ``num_classes`` distinct integers, or distinct names."""
    if not isinstance(classes, list) or len(classes) != num_classes or len(set(map(repr, classes))) != num_classes:
        return False
    integers = all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in classes)
    return integers or all(isinstance(c, str) for c in classes)


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _dtype_name(value: Any) -> str | None:
    """The name of the dtype ``value`` spells (``"f4"`` is ``"float32"``), or None."""
    try:
        return np.dtype(value).name
    except TypeError:
        return None
