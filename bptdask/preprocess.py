"""Input checks and the image normalisation shared by every training and inference path.

Images arrive as ``uint8`` (0..255, scaled to 0..1) or floating point (used as given),
and are standardised per channel with the training set's mean and standard deviation.
"""

from __future__ import annotations

import numpy as np

from bptdask._typing import Array
from bptdask.backend import array_namespace, to_device
from bptdask.errors import DataError, ShapeError


def check_images(X, *, name: str = "X") -> np.ndarray:
    """``X`` as a NumPy array of shape ``(N, C, H, W)``, uint8 or float, all finite.

    Raises
    ------
    ShapeError
        On a rank other than 4 or an empty batch.
    DataError
        On a non-numeric dtype or NaN/infinite values (the message gives the count and
        the first bad sample's index).
    """
    X = np.asarray(X)
    if X.ndim != 4:
        hint = f"; for single-channel images add a channel axis with {name}[:, None]" if X.ndim == 3 else ""
        raise ShapeError(f"{name} must be a 4-D array (N, C, H, W), got shape {X.shape}{hint}")
    if X.shape[0] == 0:
        raise ShapeError(f"{name} is empty (shape {X.shape}); pass at least one sample")
    if X.dtype != np.uint8 and X.dtype.kind != "f":
        raise DataError(f"{name} must be uint8 (0..255) or floating point, got dtype {X.dtype}; convert it first")
    if X.dtype.kind == "f":
        bad = ~np.isfinite(X)
        if bad.any():
            first = int(np.argmax(bad.reshape(len(X), -1).any(axis=1)))
            raise DataError(
                f"{name} contains {int(bad.sum())} NaN or infinite values (first in sample {first}); "
                "remove or impute them before training"
            )
    return X


def check_targets(y, n_samples: int) -> np.ndarray:
    """``y`` as a 1-D NumPy array of ``n_samples`` labels (any sortable dtype)."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n_samples:
        raise ShapeError(f"y must be 1-D with one label per sample ({n_samples}), got shape {y.shape}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataError("y contains NaN or infinite labels; drop those samples")
    return y


def channel_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of ``X`` ``(N, C, H, W)`` after scaling.

    Returns two float64 arrays of shape ``(C,)``; a constant channel gets std 1.
    """
    scale = 1.0 / 255.0 if X.dtype == np.uint8 else 1.0
    mean = np.empty(X.shape[1])
    std = np.empty(X.shape[1])
    for c in range(X.shape[1]):
        channel = X[:, c].astype(np.float64) * scale
        mean[c], std[c] = channel.mean(), channel.std()
    std[std == 0] = 1.0
    return mean, std


def normalize(X: Array, mean: np.ndarray, std: np.ndarray, *, dtype="float32") -> Array:
    """Scale (uint8 → 0..1) and standardise ``X`` ``(N, C, H, W)`` per channel.

    Works on NumPy or CuPy input and returns an array of ``dtype`` in the same namespace.
    """
    dtype = np.dtype(dtype)
    scale = 1.0 / 255.0 if X.dtype == np.uint8 else 1.0
    shift = (np.asarray(mean) / scale).astype(dtype).reshape(1, -1, 1, 1)
    factor = (scale / np.asarray(std)).astype(dtype).reshape(1, -1, 1, 1)
    xp = array_namespace(X)
    shift, factor = to_device(shift, xp), to_device(factor, xp)
    return (X.astype(dtype) - shift) * factor
