"""Choosing NumPy or CuPy, and moving arrays between host and device.

Kernels never import CuPy: they ask :func:`array_namespace` for the module that owns
their arrays. CuPy is imported lazily, only when a CuPy array or device is asked for,
so CPU-only installs never need it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

from bptdask._typing import Array
from bptdask.errors import ConfigurationError


def is_cupy_array(x: object) -> bool:
    """True when ``x`` is a CuPy array (checked without importing CuPy)."""
    return type(x).__module__.split(".")[0] == "cupy"


def array_namespace(*arrays: Array) -> ModuleType:
    """The array module (``numpy`` or ``cupy``) that owns ``arrays``.

    Mixing host and device arrays is an error: it would silently copy on every call.
    """
    kinds = {is_cupy_array(a) for a in arrays if a is not None}
    if kinds == {True}:
        return importlib.import_module("cupy")
    if kinds == {True, False}:
        raise ConfigurationError(
            "got a mix of NumPy and CuPy arrays; move them to one device first "
            "(bptdask.backend.to_device)"
        )
    return np


def get_namespace(device: str) -> ModuleType:
    """The array module for ``device``: ``"cpu"`` gives NumPy, ``"gpu"`` gives CuPy."""
    if device == "cpu":
        return np
    if device == "gpu":
        try:
            return importlib.import_module("cupy")
        except ImportError as exc:
            raise ConfigurationError(
                "device='gpu' needs CuPy; install it with `pip install bptdask[gpu]` "
                "or use device='cpu'"
            ) from exc
    raise ConfigurationError(f"device must be 'cpu' or 'gpu', got {device!r}")


def to_device(x: Array, xp: ModuleType) -> Array:
    """``x`` as an array of ``xp`` (a host-to-device copy when ``xp`` is CuPy)."""
    if xp is np:
        return to_numpy(x)
    return xp.asarray(x)


def to_numpy(x: Array) -> np.ndarray:
    """``x`` as a NumPy array (a device-to-host copy for CuPy arrays)."""
    if is_cupy_array(x):
        return x.get()
    return np.asarray(x)


def default_rng(xp: ModuleType, seed: int | None):
    """A random generator of ``xp`` (``numpy.random.Generator`` or CuPy's) seeded by ``seed``."""
    return xp.random.default_rng(seed)
