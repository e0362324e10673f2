"""Float64 numerical gradients by central differences.

Element-wise differences (:func:`numerical_gradient`) check every entry of a gradient
and suit tiny shapes; a directional derivative along one random direction
(:func:`directional_check`) checks a whole gradient, or a dict of them, at the cost of
two function evaluations, and suits realistic shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from bptdask.backend import to_numpy


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, *, eps: float = 1e-6) -> np.ndarray:
    """Gradient of a scalar function by element-wise central differences.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``; must not keep a reference to ``x``.
    x : float64 array, any shape
        Point of evaluation; left unchanged.
    eps : float
        Step of the central difference.

    Returns
    -------
    grad : float64 array, the shape of ``x``
        ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`` for each unit vector ``e_i``.
    """
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, flat_grad = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        upper = float(f(x.copy()))
        flat[i] = original - eps
        lower = float(f(x.copy()))
        flat[i] = original
        flat_grad[i] = (upper - lower) / (2 * eps)
    return grad


def random_direction(shapes: Mapping[str, tuple[int, ...]], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A random unit direction over a dict of arrays.

    Parameters
    ----------
    shapes : mapping of name to shape
    rng : numpy Generator

    Returns
    -------
    direction : dict of float64 arrays, one per name and shape, with total norm 1
    """
    direction = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
    norm = np.sqrt(sum(float((d * d).sum()) for d in direction.values()))
    return {name: d / norm for name, d in direction.items()}


def directional_check(
    f: Callable[[dict[str, np.ndarray]], float],
    point: Mapping[str, np.ndarray],
    grads: Mapping[str, np.ndarray],
    rng: np.random.Generator,
    *,
    eps: float = 1e-6,
) -> tuple[float, float]:
    """Numerical and analytic derivatives of ``f`` along one random direction.

    Parameters
    ----------
    f : callable
        ``f(point) -> float`` for a dict of float64 arrays.
    point : mapping of name to float64 array
        Where to differentiate; left unchanged.
    grads : mapping of name to array, the names and shapes of ``point``
        Analytic gradient of ``f`` at ``point``, on host or device.
    rng : numpy Generator
        Draws the direction.
    eps : float

    Returns
    -------
    numerical, analytic : float
        ``(f(p + eps d) - f(p - eps d)) / (2 eps)`` and ``<grads, d>``.
    """
    direction = random_direction({name: np.shape(v) for name, v in point.items()}, rng)
    shifted = {
        sign: {name: np.asarray(v, dtype=np.float64) + sign * eps * direction[name] for name, v in point.items()}
        for sign in (1.0, -1.0)
    }
    numerical = (float(f(shifted[1.0])) - float(f(shifted[-1.0]))) / (2 * eps)
    analytic = sum(float((to_numpy(grads[name]).astype(np.float64) * d).sum()) for name, d in direction.items())
    return numerical, analytic


__all__ = ["directional_check", "numerical_gradient", "random_direction"]
