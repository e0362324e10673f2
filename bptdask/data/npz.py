"""Ingest from a NumPy ``.npz`` archive holding an images array and a labels array."""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from bptdask.data.arrays import ingest
from bptdask.data.dataset import Dataset
from bptdask.data.format import machine_memory_bytes
from bptdask.data.location import PathOrStore
from bptdask.errors import SourceError

#: Array-name pairs looked for, in order, when the caller names none.
KNOWN_KEYS = (("images", "labels"), ("x_train", "y_train"), ("X", "y"), ("x", "y"))


def _choose_keys(files: list[str], images_key: str | None, labels_key: str | None, where: str) -> tuple[str, str]:
    if images_key is None and labels_key is None:
        for pair in KNOWN_KEYS:
            if set(pair) <= set(files):
                return pair
        raise SourceError(
            f"{where} holds arrays {sorted(files)}, none of the known pairs "
            f"{[f'{a}/{b}' for a, b in KNOWN_KEYS]}; name them with images_key= and labels_key="
        )
    for name, key in (("images_key", images_key), ("labels_key", labels_key)):
        if key not in files:
            raise SourceError(f"{where} has no array {key!r} for {name}; it holds {sorted(files)}")
    return images_key, labels_key


def _check_declared_size(archive: zipfile.ZipFile, key: str, where: str) -> None:
    """Refuse the array ``key`` if its header declares more bytes than its member holds or memory allows.

    Loading an array allocates what its ``.npy`` header declares before reading a byte,
    so a crafted header is refused here, from the header alone.
    """
    info = archive.getinfo(f"{key}.npy" if f"{key}.npy" in archive.namelist() else key)
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)
    declared = math.prod(shape) * dtype.itemsize
    if declared > info.file_size or declared > machine_memory_bytes() // 2:
        raise SourceError(
            f"array {key!r} of {where} declares shape {shape} of {dtype} ({declared / 2**30:.1f} GiB), more than "
            f"its {info.file_size} stored bytes or half of this machine's memory; the file is damaged or crafted; "
            "write it again with numpy.savez"
        )


def ingest_npz(
    npz_path: str | os.PathLike,
    path_or_store: PathOrStore,
    *,
    images_key: str | None = None,
    labels_key: str | None = None,
    **options: Any,
) -> Dataset:
    """Ingest the images and labels arrays of an ``.npz`` file.

    Parameters
    ----------
    npz_path : path
        Written by ``numpy.savez`` / ``savez_compressed``; loaded into memory.
    path_or_store : str, path, URL or zarr.storage store
    images_key, labels_key : str, optional
        Names of the arrays; by default the first pair of :data:`KNOWN_KEYS` present.
        The images are uint8 ``(N, C, H, W)`` (or ``(N, H, W)``, or NHWC with
        ``layout="NHWC"``), the labels integers ``(N,)``.
    **options
        Keyword options of :func:`bptdask.ingest`.

    Returns
    -------
    Dataset

    Raises
    ------
    SourceError
        When the file is missing, not an NPZ archive, or lacks the arrays.
    """
    path = Path(npz_path)
    where = f"NPZ file {str(path)!r}"
    if not path.is_file():
        raise SourceError(f"{where} does not exist; check the path")
    if (images_key is None) != (labels_key is None):
        raise SourceError(f"pass both images_key and labels_key or neither, got {images_key!r} and {labels_key!r}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise SourceError(f"cannot read {where} ({exc}); write it with numpy.savez") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise SourceError(f"{where} holds a single array, not an archive; use bptdask.ingest(images, labels)")
    with archive:
        images_key, labels_key = _choose_keys(archive.files, images_key, labels_key, where)
        try:
            for key in (images_key, labels_key):
                _check_declared_size(archive.zip, key, where)
            images, labels = archive[images_key], archive[labels_key]
        except SourceError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise SourceError(f"cannot read the arrays of {where} ({exc}); write it again with numpy.savez") from exc
    options.setdefault("source", f"npz:{path.name}")
    return ingest(images, labels, path_or_store, **options)
