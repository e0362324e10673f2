"""Ingest from NumPy or dask arrays: the entry point every other source goes through.

NumPy input is checked in full before anything is written. Dask input stays lazy: its
shape and dtype are checked first, its label values while the chunks are written (an
out-of-range label then discards the partial dataset).

Without ``classes``, the classes are the distinct label values present, sorted, and the
stored labels are indices into them (a stray label adds one class, not a range of
empty ones).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np

from bptdask.data.dataset import Dataset
from bptdask.data.format import DEFAULT_CHUNK_SIZE, check_classes
from bptdask.data.location import PathOrStore, resolve
from bptdask.data.writer import check_label_range, write_dataset
from bptdask.errors import ConfigurationError, DataError, ShapeError

LAYOUTS = ("NCHW", "NHWC")


def _as_numpy(values: Any, name: str) -> np.ndarray:
    """``values`` as a NumPy array; DataError for ragged nested lists."""
    try:
        return np.asarray(values)
    except ValueError as exc:
        raise DataError(f"{name} cannot be made into one array ({exc}); give every sample the same shape") from None


def as_image_array(images: Any, *, layout: str = "NCHW") -> np.ndarray | da.Array:
    """``images`` as a uint8 NumPy or dask array ``(N, C, H, W)`` (dask input stays lazy).

    Parameters
    ----------
    images : NumPy or dask array, uint8
        ``(N, C, H, W)``, ``(N, H, W, C)`` with ``layout="NHWC"``, or ``(N, H, W)``
        (one channel).
    layout : {"NCHW", "NHWC"}
    """
    if layout not in LAYOUTS:
        raise ConfigurationError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not isinstance(images, da.Array):
        images = _as_numpy(images, "images")
    if images.dtype != np.uint8:
        raise DataError(
            f"images must be uint8 pixel values 0..255, got dtype {images.dtype}; convert floats in [0, 1] with "
            "(x * 255).round().astype('uint8') and integers in 0..255 with x.astype('uint8')"
        )
    if any(isinstance(n, float) and math.isnan(n) for n in images.shape):
        raise ShapeError(
            f"images have unknown chunk sizes (shape {images.shape}); call images.compute_chunk_sizes() first"
        )
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and layout == "NHWC":
        images = images.transpose(0, 3, 1, 2)
    elif images.ndim != 4:
        raise ShapeError(
            f"images must be (N, C, H, W), (N, H, W, C) with layout='NHWC', or (N, H, W); got shape {images.shape}"
        )
    if images.shape[0] == 0:
        raise DataError(f"images hold no samples (shape {images.shape}); pass at least one")
    if min(images.shape[1:]) < 1:
        raise ShapeError(f"images have an empty channel or spatial axis, shape {images.shape}")
    return images


def as_label_array(labels: Any, num_samples: int) -> np.ndarray | da.Array:
    """``labels`` as a 1-D integer NumPy or dask array of ``num_samples`` values."""
    if not isinstance(labels, da.Array):
        labels = _as_numpy(labels, "labels")
    if labels.ndim != 1 or labels.shape[0] != num_samples:
        hint = "; flatten it with labels.ravel()" if labels.ndim == 2 and labels.shape[1] == 1 else ""
        raise ShapeError(f"labels must be 1-D with one label per image ({num_samples}), got shape {labels.shape}{hint}")
    if labels.dtype.kind not in "iu":
        raise DataError(
            f"labels must be integer class indices, got dtype {labels.dtype}; encode them with "
            "codes = numpy.unique(labels, return_inverse=True)[1]"
        )
    return labels


def encode_labels(labels: np.ndarray | da.Array) -> tuple[np.ndarray | da.Array, tuple[int, ...]]:
    """Integer ``labels`` ``(N,)`` as int64 indices into their sorted distinct values, and those values.

    Dask labels are read once for their distinct values and stay lazy.
    """
    if isinstance(labels, da.Array):
        values = np.unique(da.unique(labels).compute())
        encoded = labels.map_blocks(_positions, values, dtype=np.int64)
    else:
        values, encoded = np.unique(labels, return_inverse=True)
        encoded = encoded.astype(np.int64, copy=False)
    return encoded, tuple(int(value) for value in values)


def _positions(labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The index in sorted ``values`` of each of ``labels``, int64, same shape."""
    return np.searchsorted(values, labels).astype(np.int64)


def ingest(
    images: Any,
    labels: Any,
    path_or_store: PathOrStore,
    *,
    classes: Sequence[Any] | None = None,
    source: str | None = None,
    layout: str = "NCHW",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    shard_size: int | None = None,
    test_size: float | int = 0.2,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
    storage_options: dict | None = None,
) -> Dataset:
    """Write images and labels as a bptdask dataset (a Zarr v3 group) and open it.

    Dask input is written lazily and in parallel by the current Dask scheduler (a
    distributed client when one is active); each task writes whole chunks (whole shards
    with ``shard_size``). The dataset becomes visible only once complete; see
    :mod:`bptdask.data.writer`.

    Parameters
    ----------
    images : NumPy or dask array, uint8
        ``(N, C, H, W)``, ``(N, H, W, C)`` with ``layout="NHWC"``, or ``(N, H, W)``.
    labels : NumPy or dask array of integers, shape (N,)
        Class indices ``0 .. K-1`` into ``classes``; or, without ``classes``, any
        integer labels (the classes are then their distinct values).
    path_or_store : str, path, URL or zarr.storage store
        Where to write; see :func:`open_dataset`.
    classes : sequence, optional
        Class names, one per label value; default: the sorted distinct label values.
    source : str, optional
        Provenance recorded in the attributes; default ``"numpy"`` or ``"dask"``.
    layout : {"NCHW", "NHWC"}
    chunk_size : int
        Samples per chunk, the unit of reading and of allocation to workers.
    shard_size : int, optional
        Samples per shard (a multiple of ``chunk_size``) to store fewer, larger objects.
    test_size : float or int
        Fraction or count of samples drawn with ``seed`` for the stored test split.
    seed : int
    overwrite : bool
        Replace an existing dataset (it is kept until the new one is complete when the
        target is a local directory).
    progress : bool
        Show a progress bar (Dask's local schedulers).
    storage_options : dict, optional
        fsspec options for a URL.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError, ShapeError
        On a wrong dtype, shape or label (nothing is written).
    ConfigurationError
        On an unusable option.
    DatasetExistsError
        When the target holds data and ``overwrite`` is false.
    """
    location = resolve(path_or_store, storage_options=storage_options, writable=True)
    if source is None:
        source = "dask" if isinstance(images, da.Array) else "numpy"
    images = as_image_array(images, layout=layout)
    labels = as_label_array(labels, int(images.shape[0]))
    if classes is None:
        labels, names = encode_labels(labels)
    else:
        names = check_classes(classes)
        if isinstance(labels, np.ndarray):
            check_label_range(int(labels.min()), int(labels.max()), names)
    return write_dataset(
        location,
        images,
        labels,
        classes=names,
        source=source,
        chunk_size=chunk_size,
        shard_size=shard_size,
        test_size=test_size,
        seed=seed,
        overwrite=overwrite,
        progress=progress,
    )
