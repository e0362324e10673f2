"""Element-wise activations: ReLU and inverted dropout."""

from __future__ import annotations

from bptdask._typing import Array
from bptdask.backend import array_namespace, device_kernels


def relu_forward(x: Array) -> tuple[Array, Array]:
    """``max(x, 0)`` and the boolean mask ``x > 0`` that the backward pass needs."""
    xp = array_namespace(x)
    if (fast := device_kernels(xp)) is not None:
        return fast.relu_forward(x)
    mask = x > 0
    # Against a zero array: NumPy's maximum with a scalar operand runs about half as fast.
    y = xp.zeros(x.shape, dtype=x.dtype)
    return xp.maximum(x, y, out=y), mask


def relu_backward(dy: Array, mask: Array) -> Array:
    """Gradient of ReLU: ``dy`` where the input was positive, else 0 (same shape as ``dy``)."""
    return dy * mask


def dropout_mask(shape: tuple[int, ...], p: float, rng, dtype) -> Array:
    """Inverted-dropout multiplier: 0 with probability ``p``, else ``1 / (1 - p)``.

    ``rng`` is a NumPy or CuPy ``Generator``; the mask lives where the generator does.
    """
    keep = rng.random(shape, dtype=dtype) >= p
    return keep.astype(dtype) * (1.0 / (1.0 - p))


def dropout_forward(x: Array, mask: Array) -> Array:
    """Apply a mask from :func:`dropout_mask`: ``x * mask``."""
    return x * mask


def dropout_backward(dy: Array, mask: Array) -> Array:
    """Gradient of dropout: ``dy * mask``."""
    return dy * mask
