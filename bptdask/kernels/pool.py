"""Max and average pooling over ``(N, C, H, W)`` activations, NumPy and CuPy alike.

Both loop over the ``size × size`` window offsets and work on one strided slice per
offset. Max pooling records which offset won (first maximum wins, as in PyTorch) so
the backward pass puts each gradient at its argmax; overlapping windows accumulate
(added slice by slice), non-overlapping ones are simply assigned. On CuPy, max pooling
runs as one CUDA launch each way (:mod:`bptdask.cuda`).
"""

from __future__ import annotations

from collections.abc import Iterator

from bptdask._typing import Array
from bptdask.backend import array_namespace, device_kernels


def pool_output_size(size: int, window: int, stride: int) -> int:
    """Output length along one axis for a window without padding."""
    return (size - window) // stride + 1


def _window_slices(
    shape: tuple[int, ...], size: int, stride: int
) -> Iterator[tuple[int, tuple[slice, slice, slice, slice]]]:
    """Yield ``(offset_index, index)`` for each offset of a ``size × size`` window."""
    _, _, h, w = shape
    oh, ow = pool_output_size(h, size, stride), pool_output_size(w, size, stride)
    for i in range(size):
        for j in range(size):
            rows = slice(i, i + stride * oh, stride)
            cols = slice(j, j + stride * ow, stride)
            yield i * size + j, (slice(None), slice(None), rows, cols)


def max_pool2d_forward(x: Array, size: int, stride: int) -> tuple[Array, Array]:
    """Max pooling.

    Parameters
    ----------
    x : array, shape (N, C, H, W)

    Returns
    -------
    y : array, shape (N, C, OH, OW)
    argmax : int array, shape (N, C, OH, OW)
        Window offset ``i*size + j`` of each maximum (the first one on ties), for
        :func:`max_pool2d_backward`; int8 when ``size*size <= 128``, else int32.
    """
    xp = array_namespace(x)
    if (fast := device_kernels(xp)) is not None:
        return fast.max_pool2d_forward(x, size, stride)
    windows = [x[index] for _, index in _window_slices(x.shape, size, stride)]
    y = windows[0].copy()
    for window in windows[1:]:
        xp.maximum(y, window, out=y)
    offset_dtype = xp.int8 if len(windows) <= 128 else xp.int32
    argmax = xp.zeros(y.shape, dtype=offset_dtype)
    taken = windows[0] == y
    for offset, window in enumerate(windows[1:], start=1):
        first_hit = (window == y) & ~taken
        argmax += first_hit.astype(offset_dtype) * offset_dtype(offset)
        taken |= first_hit
    return y, argmax


def max_pool2d_backward(
    dy: Array, argmax: Array, input_shape: tuple[int, int, int, int], size: int, stride: int
) -> Array:
    """Gradient of max pooling: each ``dy`` goes to the input element that was the maximum.

    Parameters
    ----------
    dy, argmax : arrays, shape (N, C, OH, OW)
    input_shape : (N, C, H, W)

    Returns
    -------
    dx : array, shape (N, C, H, W)
    """
    xp = array_namespace(dy)
    if (fast := device_kernels(xp)) is not None:
        return fast.max_pool2d_backward(dy, argmax, input_shape, size, stride)
    dx = xp.zeros(input_shape, dtype=dy.dtype)
    overlapping = stride < size
    for offset, index in _window_slices(input_shape, size, stride):
        share = dy * (argmax == offset)
        if overlapping:
            dx[index] += share
        else:
            dx[index] = share
    return dx


def avg_pool2d_forward(x: Array, size: int, stride: int) -> Array:
    """Average pooling: ``(N, C, H, W)`` -> ``(N, C, OH, OW)``."""
    y = None
    for _, index in _window_slices(x.shape, size, stride):
        y = x[index].copy() if y is None else y + x[index]
    return y * x.dtype.type(1.0 / (size * size))


def avg_pool2d_backward(dy: Array, input_shape: tuple[int, int, int, int], size: int, stride: int) -> Array:
    """Gradient of average pooling: ``(N, C, OH, OW)`` -> ``(N, C, H, W)``."""
    xp = array_namespace(dy)
    share = dy * dy.dtype.type(1.0 / (size * size))
    dx = xp.zeros(input_shape, dtype=dy.dtype)
    for _, index in _window_slices(input_shape, size, stride):
        dx[index] += share
    return dx
