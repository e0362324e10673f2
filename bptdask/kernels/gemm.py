"""The one matrix product every kernel uses.

NumPy's ``@`` (the ``matmul`` ufunc) keeps the GIL for some shapes: a float32
``(20, 18432) @ (18432, 25)`` product, LeNet-5's first weight gradient on a micro-batch
of 32, ran at the same total rate on one thread as on two (NumPy 2.4), while ``dot`` on
the same operands released the GIL and ran 1.93× faster on two threads. Kernels call
:func:`matmul` so that the inner layer's threads compute their GEMMs in parallel.
"""

from __future__ import annotations

from bptdask._typing import Array
from bptdask.backend import array_namespace


def matmul(a: Array, b: Array) -> Array:
    """``a @ b`` for 2-D ``a`` ``(m, k)`` and ``b`` ``(k, n)`` -> ``(m, n)``, through BLAS without the GIL."""
    return array_namespace(a).dot(a, b)
