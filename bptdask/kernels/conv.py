"""2-D convolution by im2col + GEMM on batch-last images, written once for NumPy and CuPy.

Layouts: images ``(C, H, W, N)`` (batch-last, see :mod:`bptdask.kernels.layout`), weights
``(O, C, kh, kw)`` (PyTorch's), and the column buffer ``(C, kh, kw, OH, OW, N)``, so that
one GEMM with the weights reshaped to ``(O, C*kh*kw)`` computes the whole batch and
writes the output image ``(O, OH, OW, N)`` with no transpose. im2col is one copy of a
strided view of all windows: one NumPy call, which two threads ran 1.7× as fast as one,
where a copy per kernel offset ran no faster on two (its Python-level slicing holds the
GIL); col2im adds one slice per kernel
offset back, so overlapping windows accumulate without fancy-index assignment (which
CuPy leaves undefined for repeated indices). On CuPy both are handed to one-launch CUDA
versions (:mod:`bptdask.cuda`).
"""

from __future__ import annotations

from bptdask._typing import Array
from bptdask.backend import array_namespace, device_kernels
from bptdask.kernels.gemm import matmul
from bptdask.kernels.layout import window_view


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length along one spatial axis: ``(size + 2*padding - kernel) // stride + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def _padded(x: Array, padding: int) -> Array:
    """``x`` ``(C, H, W, N)`` zero-padded to ``(C, H + 2p, W + 2p, N)``; ``x`` itself when ``p == 0``."""
    if not padding:
        return x
    xp = array_namespace(x)
    c, h, w, n = x.shape
    out = xp.zeros((c, h + 2 * padding, w + 2 * padding, n), dtype=x.dtype)
    out[:, padding : padding + h, padding : padding + w] = x
    return out


def im2col(x: Array, kernel_size: tuple[int, int], stride: int, padding: int) -> Array:
    """Unfold the sliding windows of ``x``.

    Parameters
    ----------
    x : array, shape (C, H, W, N)
    kernel_size : (kh, kw)
    stride, padding : int

    Returns
    -------
    col : array, shape (C, kh, kw, OH, OW, N)
        ``col[c, i, j, oh, ow, n] == x_padded[c, i + stride*oh, j + stride*ow, n]``.
    """
    xp = array_namespace(x)
    if (fast := device_kernels(xp)) is not None:
        return fast.im2col(x, kernel_size, stride, padding)
    return window_view(_padded(x, padding), kernel_size, stride).copy()


def col2im(col: Array, input_shape: tuple[int, int, int, int], stride: int, padding: int) -> Array:
    """Fold columns back into an image, summing where windows overlap (adjoint of im2col).

    Parameters
    ----------
    col : array, shape (C, kh, kw, OH, OW, N)
    input_shape : (C, H, W, N) of the image that was unfolded
    stride, padding : int

    Returns
    -------
    x : array, shape (C, H, W, N)
    """
    xp = array_namespace(col)
    if (fast := device_kernels(xp)) is not None:
        return fast.col2im(col, input_shape, stride, padding)
    c, kh, kw, oh, ow, n = col.shape
    _, h, w, _ = input_shape
    padded = xp.zeros((c, h + 2 * padding, w + 2 * padding, n), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            padded[:, i : i + stride * oh : stride, j : j + stride * ow : stride] += col[:, i, j]
    if not padding:
        return padded
    return xp.ascontiguousarray(padded[:, padding : padding + h, padding : padding + w])


def conv2d_forward(
    x: Array, weight: Array, bias: Array | None, *, stride: int = 1, padding: int = 0
) -> tuple[Array, Array]:
    """Cross-correlation of ``x`` with ``weight`` (PyTorch's ``conv2d``), batch-last.

    Parameters
    ----------
    x : array, shape (C, H, W, N)
    weight : array, shape (O, C, kh, kw)
    bias : array, shape (O,), or None

    Returns
    -------
    y : array, shape (O, OH, OW, N)
    col : array, shape (C, kh, kw, OH, OW, N)
        The unfolded input, kept for :func:`conv2d_backward`.
    """
    o, c, kh, kw = weight.shape
    col = im2col(x, (kh, kw), stride, padding)
    oh, ow, n = col.shape[3:]
    y = matmul(weight.reshape(o, c * kh * kw), col.reshape(c * kh * kw, oh * ow * n))
    if bias is not None:
        y += bias[:, None]
    return y.reshape(o, oh, ow, n), col


def conv2d_weight_grad(dy: Array, col: Array, weight_shape: tuple[int, int, int, int]) -> tuple[Array, Array]:
    """Weight and bias gradients of :func:`conv2d_forward`.

    Parameters
    ----------
    dy : array, shape (O, OH, OW, N)
        Gradient of the loss with respect to the output.
    col : array, shape (C, kh, kw, OH, OW, N)
        The unfolded input returned by the forward pass.
    weight_shape : (O, C, kh, kw)

    Returns
    -------
    dweight : array, shape (O, C, kh, kw)
    dbias : array, shape (O,)
    """
    o = weight_shape[0]
    dy_rows = dy.reshape(o, -1)
    dweight = matmul(dy_rows, col.reshape(-1, dy_rows.shape[1]).T).reshape(weight_shape)
    return dweight, dy_rows.sum(axis=1)


def conv2d_input_grad(
    dy: Array,
    weight: Array,
    col_shape: tuple[int, ...],
    input_shape: tuple[int, int, int, int],
    *,
    stride: int = 1,
    padding: int = 0,
) -> Array:
    """Input gradient of :func:`conv2d_forward`.

    Parameters
    ----------
    dy : array, shape (O, OH, OW, N)
    weight : array, shape (O, C, kh, kw)
    col_shape : (C, kh, kw, OH, OW, N), the shape of the forward pass's columns
    input_shape : (C, H, W, N)

    Returns
    -------
    dx : array, shape (C, H, W, N)
    """
    o = weight.shape[0]
    dcol = matmul(weight.reshape(o, -1).T, dy.reshape(o, -1))
    return col2im(dcol.reshape(col_shape), input_shape, stride, padding)


def conv2d_backward(
    dy: Array,
    col: Array,
    weight: Array,
    input_shape: tuple[int, int, int, int],
    *,
    stride: int = 1,
    padding: int = 0,
    need_input_grad: bool = True,
) -> tuple[Array | None, Array, Array]:
    """Gradients of :func:`conv2d_forward`: :func:`conv2d_input_grad` and :func:`conv2d_weight_grad`.

    Parameters
    ----------
    dy : array, shape (O, OH, OW, N)
        Gradient of the loss with respect to the output.
    col : array, shape (C, kh, kw, OH, OW, N)
        The unfolded input returned by the forward pass.
    weight : array, shape (O, C, kh, kw)
    input_shape : (C, H, W, N)
    need_input_grad : bool
        False skips ``dx`` (the first layer has no use for it).

    Returns
    -------
    dx : array, shape (C, H, W, N), or None
    dweight : array, shape (O, C, kh, kw)
    dbias : array, shape (O,)
    """
    dweight, dbias = conv2d_weight_grad(dy, col, weight.shape)
    dx = None
    if need_input_grad:
        dx = conv2d_input_grad(dy, weight, col.shape, input_shape, stride=stride, padding=padding)
    return dx, dweight, dbias
