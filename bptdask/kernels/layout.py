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


def window_view(x: Array, kernel_size: tuple[int, int], stride: int) -> Array:
    """Every sliding window of a batch-last image as one strided view, no copy.

    ``x`` ``(C, H, W, N)`` -> ``(C, kh, kw, OH, OW, N)`` with element ``[c, i, j, oh, ow, n]``
    equal to ``x[c, stride*oh + i, stride*ow + j, n]`` (windows inside ``x``, no padding).
    Writing through the view is safe only where windows do not overlap (``stride >= k``).
    """
    c, h, w, n = x.shape
    kh, kw = kernel_size
    step_c, step_h, step_w, step_n = x.strides
    shape = (c, kh, kw, (h - kh) // stride + 1, (w - kw) // stride + 1, n)
    steps = (step_c, step_h, step_w, stride * step_h, stride * step_w, step_n)
    return array_namespace(x).lib.stride_tricks.as_strided(x, shape, steps)
