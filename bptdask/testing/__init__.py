"""Test oracles shared by the CPU and GPU test runs.

``reference`` holds naive nested-loop implementations in plain NumPy, ``gradcheck``
float64 numerical gradients, and ``strategies`` Hypothesis strategies for conv and pool
configurations (importing it needs ``hypothesis``). This module holds the per-dtype
tolerances used when comparing a kernel with an oracle.
"""

from __future__ import annotations

import numpy as np

from bptdask.backend import to_numpy

#: ``(rtol, atol)`` for comparing a kernel's output with an oracle, by dtype name.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (2e-4, 2e-5),
    "float64": (1e-10, 1e-12),
}


def tolerance(dtype) -> dict[str, float]:
    """Keyword arguments ``rtol``/``atol`` for ``numpy.testing.assert_allclose`` at ``dtype``.

    Parameters
    ----------
    dtype : str or numpy dtype
        ``float32`` or ``float64``.

    Returns
    -------
    dict
        ``{"rtol": ..., "atol": ...}``.
    """
    rtol, atol = TOLERANCES[np.dtype(dtype).name]
    return {"rtol": rtol, "atol": atol}


def assert_allclose(actual, desired, *, dtype, scale: float = 1.0, err_msg: str = "") -> None:
    """Compare a NumPy or CuPy ``actual`` with a NumPy ``desired`` at ``dtype``'s tolerance.

    Parameters
    ----------
    actual : array, any shape
        Kernel output, on host or device.
    desired : numpy.ndarray, the shape of ``actual``
        Oracle value.
    dtype : str or numpy dtype
        Precision the kernel ran at; chooses the tolerance.
    scale : float
        Multiplies ``atol`` for results that are sums of many terms of size ``scale``.
    """
    actual = to_numpy(actual)
    desired = np.asarray(desired)
    assert actual.shape == desired.shape, f"shape {actual.shape} != {desired.shape}. {err_msg}"
    tol = tolerance(dtype)
    np.testing.assert_allclose(actual, desired, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=err_msg)


__all__ = ["TOLERANCES", "assert_allclose", "tolerance"]
