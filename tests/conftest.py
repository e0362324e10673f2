"""Shared fixtures: the array backend(s) kernels run on, and per-dtype tolerances."""

from __future__ import annotations

import importlib

import pytest

from bptdask.backend import gpu_available
from bptdask.testing import tolerance

_CUDA = gpu_available()

BACKENDS = [
    pytest.param("numpy", id="numpy"),
    pytest.param(
        "cupy",
        id="cupy",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not _CUDA, reason="needs CuPy and a CUDA device")],
    ),
]


@pytest.fixture(params=BACKENDS, scope="session")
def xp(request):
    """The array module kernels run on: ``numpy``, and ``cupy`` where a GPU exists."""
    return importlib.import_module(request.param)


@pytest.fixture(scope="session")
def tol():
    """``tol(dtype)`` -> ``{"rtol": ..., "atol": ...}`` for comparing with an oracle."""
    return tolerance
