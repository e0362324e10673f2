"""What the estimator accepts as training and prediction input, checked and put in one shape.

Three kinds of input reach :class:`~bptdask.BPTClassifier`:

- NumPy-like arrays: images ``(N, C, H, W)`` (uint8 0..255 or float), or feature vectors
  ``(N, F)`` that the model sees as ``(N, F, 1, 1)`` (one channel per feature);
- dask arrays of the same shapes, kept lazy: their statistics and labels are computed
  where the chunks live;
- a bptdask dataset (a :class:`~bptdask.data.Dataset`, a path or URL, a Zarr store).

Labels may be any sortable values; the classifier encodes them as indices into its
sorted ``classes_``.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import zarr.abc.store

from bptdask.data import Dataset, open_dataset
from bptdask.errors import DataError, ShapeError
from bptdask.preprocess import channel_stats, check_images, check_targets


def is_dask(value: object) -> bool:
    """Whether ``value`` is a dask collection."""
    return dask.is_dask_collection(value)


def is_dataset(value: object) -> bool:
    """Whether ``value`` names a bptdask dataset rather than holding arrays."""
    return isinstance(value, (Dataset, str, os.PathLike, zarr.abc.store.Store))


def as_dataset(value: object) -> Dataset:
    return value if isinstance(value, Dataset) else open_dataset(value)


def is_vectors(X) -> bool:
    """Whether ``X`` holds feature vectors ``(N, F)`` (rather than images ``(N, C, H, W)``)."""
    return getattr(X, "ndim", None) == 2


def vectors_as_images(X):
    """``(N, F)`` feature vectors as ``(N, F, 1, 1)`` images (NumPy or dask); images as they are."""
    return X.reshape(*X.shape, 1, 1) if is_vectors(X) else X


@dataclass(frozen=True)
class LabelledImages:
    """Checked training input: images ``(N, C, H, W)`` and raw labels ``(N,)``, NumPy or dask.

    ``vectors`` says the images are feature vectors ``(N, F)`` seen as ``(N, F, 1, 1)``.
    """

    images: np.ndarray | da.Array
    labels: np.ndarray | da.Array
    vectors: bool

    @property
    def lazy(self) -> bool:
        return is_dask(self.images)

    def summary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(classes (K,), mean (C,), std (C,))``: sorted distinct labels and channel statistics.

        For dask input they are computed where the chunks are, in one pass, which also
        checks float images for NaN and infinite values.
        """
        if not self.lazy:
            return np.unique(self.labels), *channel_stats(self.images)
        scale = 1.0 / 255.0 if self.images.dtype == np.uint8 else 1.0
        pixels = self.images.astype(np.float64) * scale
        axes = (0, 2, 3)
        finite = da.isfinite(self.images).all() if self.images.dtype.kind == "f" else True
        classes, mean, std, finite = dask.compute(
            da.unique(da.asarray(self.labels)), pixels.mean(axis=axes), pixels.std(axis=axes), finite
        )
        if not finite:
            raise DataError("X contains NaN or infinite values; remove or impute them before training")
        std[std == 0] = 1.0
        return classes, mean, std

    def encoded(self, classes: np.ndarray):
        """Labels as int64 indices into ``classes`` (lazily for dask labels)."""
        if is_dask(self.labels):
            return self.labels.map_blocks(_encode_block, classes, dtype=np.int64)
        return _encode_block(np.asarray(self.labels), classes)


def labelled_images(X, y) -> LabelledImages:
    """``(X, y)`` checked: 4-D images or 2-D vectors with one label per sample.

    NumPy input is checked in full (shape, dtype, NaN/inf); dask input by shape and dtype,
    its values once :meth:`LabelledImages.summary` computes them.

    Raises
    ------
    ShapeError
        On a rank other than 2 or 4, an empty batch, or a label count that differs.
    DataError
        On a dtype other than uint8 or float, or NaN/infinite values.
    """
    if not (is_dask(X) or is_dask(y)):
        vectors = is_vectors(np.asarray(X)) if not hasattr(X, "ndim") else is_vectors(X)
        images = check_images(vectors_as_images(np.asarray(X)))
        return LabelledImages(images, check_targets(y, len(images)), vectors)
    X = da.asarray(X)
    vectors = is_vectors(X)
    images = vectors_as_images(X)
    if images.ndim != 4:
        raise ShapeError(f"X must be images (N, C, H, W) or feature vectors (N, F), got shape {X.shape}")
    if images.dtype != np.uint8 and images.dtype.kind != "f":
        raise DataError(f"X must be uint8 (0..255) or floating point, got dtype {images.dtype}; convert it first")
    labels = y if is_dask(y) else np.asarray(y)
    if labels.ndim != 1 or (labels.shape[0] != images.shape[0] and not np.isnan(labels.shape[0])):
        raise ShapeError(f"y must be 1-D with one label per sample ({images.shape[0]}), got shape {labels.shape}")
    return LabelledImages(images, labels, vectors)


def check_label_kinds(y: np.ndarray, *, name: str = "y") -> np.ndarray:
    """``y`` ``(N,)`` if its labels are all numbers or all strings (an object array may mix them).

    Raises
    ------
    DataError
        Naming the kinds found and one label of each.
    """
    if y.dtype != object:
        return y
    examples: dict[str, object] = {}
    for value in y:
        kind = "number" if isinstance(value, numbers.Number) else type(value).__name__
        examples.setdefault(kind, value)
    if len(examples) > 1:
        found = ", ".join(f"{kind} (such as {value!r})" for kind, value in examples.items())
        raise DataError(f"{name} mixes labels of different kinds: {found}; give every label the same type")
    return y


def _encode_block(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    known = np.isin(labels, classes)
    if not known.all():
        unknown = np.unique(labels[~known])[:5].tolist()
        raise DataError(
            f"labels {unknown} are not among the classes {classes.tolist()}; "
            "pass every class to partial_fit(..., classes=) on the first call"
        )
    return np.searchsorted(classes, labels).astype(np.int64)
