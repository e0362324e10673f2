"""Dense kernels against naive loops, float64 numerical gradients and linearity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bptdask import kernels
from bptdask.backend import to_numpy
from bptdask.testing import assert_allclose, reference
from bptdask.testing.gradcheck import directional_check, numerical_gradient
from bptdask.testing.strategies import DenseCase, dense_cases

DTYPES = ["float32", "float64"]
EXAMPLES = settings(max_examples=40, deadline=None)


def _forward(xp, x, weight, bias):
    return kernels.dense_forward(xp.asarray(x), xp.asarray(weight), None if bias is None else xp.asarray(bias))


def _backward(xp, dy, x, weight, **options):
    return kernels.dense_backward(xp.asarray(dy), xp.asarray(x), xp.asarray(weight), **options)


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(case=dense_cases(), with_bias=st.booleans())
def test_dense_matches_naive(xp, dtype, case, with_bias):
    x, weight, bias, dy = case.arrays(dtype)
    bias = bias if with_bias else None
    y = _forward(xp, x, weight, bias)
    assert y.dtype == np.dtype(dtype)
    assert_allclose(y, reference.dense_forward(x, weight, bias), dtype=dtype)
    grads = _backward(xp, dy, x, weight)
    for got, want, name in zip(grads, reference.dense_backward(dy, x, weight), ("dx", "dweight", "dbias"), strict=True):
        assert got.dtype == np.dtype(dtype), name
        assert_allclose(got, want, dtype=dtype, err_msg=name)


def test_dense_gradients_match_elementwise_differences(xp):
    x, weight, bias, dy = DenseCase(3, 4, 5, seed=7).arrays("float64")

    def loss(x_, weight_, bias_):
        return float((to_numpy(_forward(xp, x_, weight_, bias_)) * dy).sum())

    dx, dweight, dbias = (to_numpy(g) for g in _backward(xp, dy, x, weight))
    np.testing.assert_allclose(dx, numerical_gradient(lambda v: loss(v, weight, bias), x), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(dweight, numerical_gradient(lambda v: loss(x, v, bias), weight), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(dbias, numerical_gradient(lambda v: loss(x, weight, v), bias), rtol=1e-7, atol=1e-9)


def test_dense_gradients_match_directional_derivative(xp):
    x, weight, bias, dy = DenseCase(32, 800, 500, seed=8).arrays("float64")
    dx, dweight, dbias = (to_numpy(g) for g in _backward(xp, dy, x, weight))
    numerical, analytic = directional_check(
        lambda p: float((to_numpy(_forward(xp, p["x"], p["weight"], p["bias"])) * dy).sum()),
        {"x": x, "weight": weight, "bias": bias},
        {"x": dx, "weight": dweight, "bias": dbias},
        np.random.default_rng(8),
    )
    assert numerical == pytest.approx(analytic, rel=1e-6, abs=1e-8)


@EXAMPLES
@given(case=dense_cases(), a=st.floats(-3, 3), b=st.floats(-3, 3))
def test_dense_is_linear_in_input(xp, case, a, b):
    x1, weight, _, _ = case.arrays("float64")
    x2 = np.random.default_rng(case.seed + 1).standard_normal(x1.shape)
    combined = to_numpy(_forward(xp, a * x1 + b * x2, weight, None))
    separate = a * to_numpy(_forward(xp, x1, weight, None)) + b * to_numpy(_forward(xp, x2, weight, None))
    np.testing.assert_allclose(combined, separate, rtol=1e-10, atol=1e-10)


def test_dense_leaves_inputs_unchanged_and_can_skip_dx(xp):
    arrays = [xp.asarray(a) for a in DenseCase(4, 6, 3, seed=9).arrays("float32")]
    before = [to_numpy(a).copy() for a in arrays]
    x, weight, bias, dy = arrays
    kernels.dense_forward(x, weight, bias)
    full = kernels.dense_backward(dy, x, weight)
    partial = kernels.dense_backward(dy, x, weight, need_input_grad=False)
    for got, want in zip(arrays, before, strict=True):
        np.testing.assert_array_equal(to_numpy(got), want)
    assert partial[0] is None
    np.testing.assert_array_equal(to_numpy(partial[1]), to_numpy(full[1]))
    np.testing.assert_array_equal(to_numpy(partial[2]), to_numpy(full[2]))
