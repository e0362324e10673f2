"""2-D convolution by im2col + GEMM, written once for NumPy and CuPy.

Layouts: activations ``(N, C, H, W)``, weights ``(O, C, kh, kw)`` (PyTorch's), and the
column buffer ``(C, kh, kw, OH, OW, N)`` so that one GEMM with the weights reshaped to
``(O, C*kh*kw)`` computes the whole batch. im2col copies one strided slice per kernel
offset; col2im adds the slices back, so overlapping windows accumulate without
fancy-index assignment (which CuPy leaves undefined for repeated indices); on CuPy both
are handed to one-launch CUDA versions (:mod:`bptdask.cuda`). The batch axis
is innermost in the column buffer and in the padded image the slices are cut from, so
each slice copy moves contiguous runs of ``OW·N`` values rather than ``OW``.
"""

from __future__ import annotations

from bptdask._typing import Array
from bptdask.backend import array_namespace, device_kernels
from bptdask.kernels.gemm import matmul


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length along one spatial axis: ``(size + 2*padding - kernel) // stride + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def _pad_batch_last(x: Array, padding: int) -> Array:
    """``x`` ``(N, C, H, W)`` as a contiguous ``(C, H + 2p, W + 2p, N)`` array, zero-padded."""
    xp = array_namespace(x)
    n, c, h, w = x.shape
    out = xp.empty((c, h + 2 * padding, w + 2 * padding, n), dtype=x.dtype)
    if padding:
        out[:, :padding] = 0
        out[:, -padding:] = 0
        out[:, :, :padding] = 0
        out[:, :, -padding:] = 0
    out[:, padding : padding + h, padding : padding + w] = x.transpose(1, 2, 3, 0)
    return out


def im2col(x: Array, kernel_size: tuple[int, int], stride: int, padding: int) -> Array:
    """Unfold the sliding windows of ``x``.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    kernel_size : (kh, kw)
    stride, padding : int

    Returns
    -------
    col : array, shape (C, kh, kw, OH, OW, N)
        ``col[c, i, j, oh, ow, n] == x_padded[n, c, i + stride*oh, j + stride*ow]``.
    """
    xp = array_namespace(x)
    if (fast := device_kernels(xp)) is not None:
        return fast.im2col(x, kernel_size, stride, padding)
    kh, kw = kernel_size
    n, c, h, w = x.shape
    oh = conv_output_size(h, kh, stride, padding)
    ow = conv_output_size(w, kw, stride, padding)
    xt = _pad_batch_last(x, padding)
    col = xp.empty((c, kh, kw, oh, ow, n), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, i, j] = xt[:, i : i + stride * oh : stride, j : j + stride * ow : stride]
    return col


def col2im(col: Array, input_shape: tuple[int, int, int, int], stride: int, padding: int) -> Array:
    """Fold columns back into an image, summing where windows overlap (adjoint of im2col).

    Parameters
    ----------
    col : array, shape (C, kh, kw, OH, OW, N)
    input_shape : (N, C, H, W) of the image that was unfolded
    stride, padding : int

    Returns
    -------
    x : array, shape (N, C, H, W)
    """
    xp = array_namespace(col)
    if (fast := device_kernels(xp)) is not None:
        return fast.col2im(col, input_shape, stride, padding)
    c, kh, kw, oh, ow, n = col.shape
    _, _, h, w = input_shape
    padded = xp.zeros((c, h + 2 * padding, w + 2 * padding, n), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            padded[:, i : i + stride * oh : stride, j : j + stride * ow : stride] += col[:, i, j]
    inner = padded[:, padding : padding + h, padding : padding + w]
    return xp.ascontiguousarray(inner.transpose(3, 0, 1, 2))


def conv2d_forward(
    x: Array, weight: Array, bias: Array | None, *, stride: int = 1, padding: int = 0
) -> tuple[Array, Array]:
    """Cross-correlation of ``x`` with ``weight`` (PyTorch's ``conv2d``).

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    weight : array, shape (O, C, kh, kw)
    bias : array, shape (O,), or None

    Returns
    -------
    y : array, shape (N, O, OH, OW)
    col : array, shape (C, kh, kw, OH, OW, N)
        The unfolded input, kept for :func:`conv2d_backward`.
    """
    xp = array_namespace(x, weight)
    o, c, kh, kw = weight.shape
    col = im2col(x, (kh, kw), stride, padding)
    oh, ow, n = col.shape[3:]
    y = matmul(weight.reshape(o, c * kh * kw), col.reshape(c * kh * kw, oh * ow * n))
    if bias is not None:
        y += bias[:, None]
    y = y.reshape(o, oh, ow, n).transpose(3, 0, 1, 2)
    return xp.ascontiguousarray(y), col


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
    """Gradients of :func:`conv2d_forward`.

    Parameters
    ----------
    dy : array, shape (N, O, OH, OW)
        Gradient of the loss with respect to the output.
    col : array, shape (C, kh, kw, OH, OW, N)
        The unfolded input returned by the forward pass.
    weight : array, shape (O, C, kh, kw)
    input_shape : (N, C, H, W)
    need_input_grad : bool
        False skips ``dx`` (the first layer has no use for it).

    Returns
    -------
    dx : array, shape (N, C, H, W), or None
    dweight : array, shape (O, C, kh, kw)
    dbias : array, shape (O,)
    """
    o = weight.shape[0]
    k = col.shape[0] * col.shape[1] * col.shape[2]
    dy_rows = dy.transpose(1, 2, 3, 0).reshape(o, -1)
    col_rows = col.reshape(k, -1)
    dweight = matmul(dy_rows, col_rows.T).reshape(weight.shape)
    dbias = dy_rows.sum(axis=1)
    dx = None
    if need_input_grad:
        dcol = matmul(weight.reshape(o, k).T, dy_rows)
        dx = col2im(dcol.reshape(col.shape), input_shape, stride, padding)
    return dx, dweight, dbias
