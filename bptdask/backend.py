"""Choosing NumPy or CuPy, and moving arrays between host and device.

Kernels never import CuPy: they ask :func:`array_namespace` for the module that owns
their arrays. CuPy is imported lazily, only when a CuPy array or device is asked for,
so CPU-only installs never need it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
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
            "got a mix of NumPy and CuPy arrays; move them to one device first (bptdask.backend.to_device)"
        )
    return np


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device (``CUDA_VISIBLE_DEVICES`` applies)."""
    try:
        cupy = importlib.import_module("cupy")
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def get_namespace(device: str) -> ModuleType:
    """The array module for ``device``.

    ``"cpu"`` gives NumPy, ``"gpu"`` CuPy, and ``"auto"`` CuPy where :func:`gpu_available`
    says so, else NumPy.
    """
    if device == "auto":
        device = "gpu" if gpu_available() else "cpu"
    if device == "cpu":
        return np
    if device == "gpu":
        try:
            return importlib.import_module("cupy")
        except ImportError as exc:
            raise ConfigurationError(
                "device='gpu' needs CuPy; install it with `pip install bptdask[gpu]` or use device='cpu'"
            ) from exc
    raise ConfigurationError(f"device must be 'cpu', 'gpu' or 'auto', got {device!r}")


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


_device_kernels_enabled = True


def device_kernels(xp: ModuleType) -> ModuleType | None:
    """:mod:`bptdask.cuda` when ``xp`` is CuPy (one launch per kernel), else None.

    The generic kernels call this once and hand their work over when it returns a module;
    inside :func:`generic_kernels` it always returns None.
    """
    if xp is np or not _device_kernels_enabled:
        return None
    return importlib.import_module("bptdask.cuda")


@contextmanager
def generic_kernels() -> Iterator[None]:
    """Run the generic slice-per-offset kernels on CuPy too (for tests and benchmarks).

    Not thread-safe: it flips a process-wide switch for the duration of the block.
    """
    global _device_kernels_enabled
    previous, _device_kernels_enabled = _device_kernels_enabled, False
    try:
        yield
    finally:
        _device_kernels_enabled = previous
