"""Max and average pooling over batch-last ``(C, H, W, N)`` images, NumPy and CuPy alike.

The forward passes loop over the ``size × size`` window offsets and work on one strided
slice per offset; batch-last, each slice is made of contiguous runs of ``N`` values. Max
pooling records which offset won (first maximum wins, as in PyTorch) so the backward pass
puts each gradient at its argmax. Backward, overlapping windows accumulate slice by
slice, and non-overlapping ones are written in one call through a strided view of all
windows. On CuPy, max pooling runs as one CUDA launch each way (:mod:`bptdask.cuda`).
"""

from __future__ import annotations

from collections.abc import Iterator

from bptdask._typing import Array
from bptdask.backend import array_namespace, device_kernels
from bptdask.kernels.layout import window_view


def pool_output_size(size: int, window: int, stride: int) -> int:
    """Output length along one axis for a window without padding."""
    return (size - window) // stride + 1


def offset_dtype(xp, size: int):
    """The integer dtype of max pooling's argmax: int8 when ``size*size <= 128``, else int32."""
    return xp.int8 if size * size <= 128 else xp.int32


def _window_slices(shape: tuple[int, ...], size: int, stride: int) -> Iterator[tuple[int, tuple[slice, slice, slice]]]:
    """Yield ``(offset_index, index)`` for each offset of a ``size × size`` window."""
    _, h, w, _ = shape
    oh, ow = pool_output_size(h, size, stride), pool_output_size(w, size, stride)
    for i in range(size):
        for j in range(size):
            rows = slice(i, i + stride * oh, stride)
            cols = slice(j, j + stride * ow, stride)
            yield i * size + j, (slice(None), rows, cols)


def max_pool2d_forward(x: Array, size: int, stride: int) -> tuple[Array, Array]:
    """Max pooling.

    Parameters
    ----------
    x : array, shape (C, H, W, N)

    Returns
    -------
    y : array, shape (C, OH, OW, N)
    argmax : int array, shape (C, OH, OW, N)
        Window offset ``i*size + j`` of each maximum (the first one on ties), for
        :func:`max_pool2d_backward`; dtype :func:`offset_dtype`.
    """
    xp = array_namespace(x)
    dtype = offset_dtype(xp, size)
    if (fast := device_kernels(xp)) is not None:
        return fast.max_pool2d_forward(x, size, stride, dtype)
    windows = [x[index] for _, index in _window_slices(x.shape, size, stride)]
    y = windows[0].copy()
    for window in windows[1:]:
        xp.maximum(y, window, out=y)
    # The first offset holding the maximum, found from the last offset backwards:
    # first(k) = 0 if window k holds it, else 1 + first(k + 1); first(last) = 0.
    argmax = xp.zeros(y.shape, dtype=dtype)
    for window in reversed(windows[:-1]):
        argmax += dtype(1)
        xp.multiply(argmax, window != y, out=argmax)
    return y, argmax


def max_pool2d_backward(
    dy: Array, argmax: Array, input_shape: tuple[int, int, int, int], size: int, stride: int
) -> Array:
    """Gradient of max pooling: each ``dy`` goes to the input element that was the maximum.

    Parameters
    ----------
    dy, argmax : arrays, shape (C, OH, OW, N)
    input_shape : (C, H, W, N)

    Returns
    -------
    dx : array, shape (C, H, W, N)
    """
    xp = array_namespace(dy)
    if (fast := device_kernels(xp)) is not None:
        return fast.max_pool2d_backward(dy, argmax, input_shape, size, stride)
    dx = xp.zeros(input_shape, dtype=dy.dtype)
    if stride < size:  # overlapping windows: an input may receive several gradients
        for offset, index in _window_slices(input_shape, size, stride):
            dx[index] += dy * (argmax == offset)
        return dx
    offsets = xp.arange(size * size, dtype=argmax.dtype).reshape(1, size, size, 1, 1, 1)
    windows = window_view(dx, (size, size), stride)
    xp.multiply(dy[:, None, None], argmax[:, None, None] == offsets, out=windows)
    return dx


def avg_pool2d_forward(x: Array, size: int, stride: int) -> Array:
    """Average pooling: ``(C, H, W, N)`` -> ``(C, OH, OW, N)``."""
    windows = [x[index] for _, index in _window_slices(x.shape, size, stride)]
    y = windows[0].copy()
    for window in windows[1:]:
        y += window
    y *= x.dtype.type(1.0 / (size * size))
    return y


def avg_pool2d_backward(dy: Array, input_shape: tuple[int, int, int, int], size: int, stride: int) -> Array:
    """Gradient of average pooling: ``(C, OH, OW, N)`` -> ``(C, H, W, N)``."""
    xp = array_namespace(dy)
    share = dy * dy.dtype.type(1.0 / (size * size))
    dx = xp.zeros(input_shape, dtype=dy.dtype)
    if stride < size:
        for _, index in _window_slices(input_shape, size, stride):
            dx[index] += share
    else:
        window_view(dx, (size, size), stride)[...] = share[:, None, None]
    return dx
