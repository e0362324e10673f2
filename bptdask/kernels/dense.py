"""Fully connected layer: ``y = x @ weight.T + bias`` with PyTorch's ``(out, in)`` weights."""

from __future__ import annotations

from bptdask._typing import Array
from bptdask.kernels.gemm import matmul


def dense_forward(x: Array, weight: Array, bias: Array | None) -> Array:
    """``x`` ``(N, in)``, ``weight`` ``(out, in)``, ``bias`` ``(out,)`` -> ``(N, out)``."""
    y = matmul(x, weight.T)
    if bias is not None:
        y += bias
    return y


def dense_weight_grad(dy: Array, x: Array) -> tuple[Array, Array]:
    """``dy`` ``(N, out)``, forward input ``x`` ``(N, in)`` -> ``dweight`` ``(out, in)``, ``dbias`` ``(out,)``."""
    return matmul(dy.T, x), dy.sum(axis=0)


def dense_input_grad(dy: Array, weight: Array) -> Array:
    """``dy`` ``(N, out)``, ``weight`` ``(out, in)`` -> ``dx`` ``(N, in)``."""
    return matmul(dy, weight)


def dense_backward(
    dy: Array, x: Array, weight: Array, *, need_input_grad: bool = True
) -> tuple[Array | None, Array, Array]:
    """Gradients of :func:`dense_forward`: :func:`dense_input_grad` and :func:`dense_weight_grad`.

    Parameters
    ----------
    dy : array, shape (N, out)
    x : array, shape (N, in), the forward input
    weight : array, shape (out, in)

    Returns
    -------
    dx : array, shape (N, in), or None when ``need_input_grad`` is False
    dweight : array, shape (out, in)
    dbias : array, shape (out,)
    """
    dx = dense_input_grad(dy, weight) if need_input_grad else None
    return (dx, *dense_weight_grad(dy, x))
