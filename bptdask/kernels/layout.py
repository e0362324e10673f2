"""Image layouts: batch-first where users hand images in, batch-last between layers.

Users and PyTorch hold images as ``(N, C, H, W)``. Between bptdask's layers images travel
*batch-last*, ``(C, H, W, N)``: a convolution's GEMM writes that layout directly, im2col
cuts its windows from it without a transpose, col2im folds back into it, and pooling's
strided windows keep contiguous runs of ``N`` values. A model converts its input once
(:func:`batch_last`), and ``Flatten`` turns a batch-last image into rows ``(N, C*H*W)`` in
PyTorch's feature order (a transposed view, no copy).
"""

from __future__ import annotations

from bptdask._typing import Array
from bptdask.backend import array_namespace


def batch_last(x: Array) -> Array:
    """``(N, C, H, W)`` -> a contiguous ``(C, H, W, N)`` copy."""
    return array_namespace(x).ascontiguousarray(x.transpose(1, 2, 3, 0))


def batch_first(x: Array) -> Array:
    """``(C, H, W, N)`` -> a contiguous ``(N, C, H, W)`` copy (the inverse of :func:`batch_last`)."""
    return array_namespace(x).ascontiguousarray(x.transpose(3, 0, 1, 2))
