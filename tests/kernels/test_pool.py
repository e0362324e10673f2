"""Max and average pooling against naive loops, float64 numerical gradients and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from bptdask import kernels
from bptdask.backend import to_numpy
from bptdask.testing import assert_allclose, reference
from bptdask.testing.gradcheck import directional_check, numerical_gradient
from bptdask.testing.strategies import PoolCase, pool_cases

DTYPES = ["float32", "float64"]
EXAMPLES = settings(max_examples=40, deadline=None)

TINY_CASES = [
    PoolCase(1, 2, 4, 5, 2, 2, seed=1),
    PoolCase(2, 1, 5, 5, 3, 1, seed=2),
    PoolCase(1, 1, 6, 4, 2, 3, seed=3),
]
REALISTIC_CASES = [PoolCase(4, 8, 24, 24, 2, 2, seed=4), PoolCase(3, 5, 17, 13, 3, 2, seed=5)]


def _case_id(case: PoolCase) -> str:
    return f"{case.input_shape}-size{case.size}-s{case.stride}"


def _image(xp, x):
    """A batch ``(N, C, H, W)`` as the kernels take it: batch-last, on ``xp``."""
    return kernels.batch_last(xp.asarray(x))


def _batch_last_shape(shape):
    n, c, h, w = shape
    return (c, h, w, n)


def _max_pool(xp, case, x):
    """Max pooling of ``x`` ``(N, C, H, W)``: ``y`` ``(N, C, OH, OW)`` and the batch-last argmax."""
    y, argmax = kernels.max_pool2d_forward(_image(xp, x), case.size, case.stride)
    return kernels.batch_first(y), argmax


def _max_pool_grad(xp, case, x, dy):
    _, argmax = _max_pool(xp, case, x)
    dx = kernels.max_pool2d_backward(_image(xp, dy), argmax, _batch_last_shape(x.shape), case.size, case.stride)
    return kernels.batch_first(dx)


def _avg_pool(xp, case, x):
    return kernels.batch_first(kernels.avg_pool2d_forward(_image(xp, x), case.size, case.stride))


def _avg_pool_grad(xp, case, dy):
    dx = kernels.avg_pool2d_backward(_image(xp, dy), _batch_last_shape(case.input_shape), case.size, case.stride)
    return kernels.batch_first(dx)


@EXAMPLES
@given(case=pool_cases())
def test_pool_output_size_counts_window_positions(case):
    assert kernels.pool_output_size(case.height, case.size, case.stride) == reference.output_length(
        case.height, case.size, case.stride
    )


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(case=pool_cases())
def test_max_pool_matches_naive(xp, dtype, case):
    x, dy = case.arrays(dtype)
    y, _ = _max_pool(xp, case, x)
    dx = _max_pool_grad(xp, case, x, dy)
    assert y.dtype == dx.dtype == np.dtype(dtype)
    assert_allclose(y, reference.max_pool2d_forward(x, case.size, case.stride)[0], dtype=dtype)
    assert_allclose(dx, reference.max_pool2d_backward(dy, x, case.size, case.stride), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(case=pool_cases())
def test_avg_pool_matches_naive(xp, dtype, case):
    x, dy = case.arrays(dtype)
    y = _avg_pool(xp, case, x)
    dx = _avg_pool_grad(xp, case, dy)
    assert y.dtype == dx.dtype == np.dtype(dtype)
    assert_allclose(y, reference.avg_pool2d_forward(x, case.size, case.stride), dtype=dtype)
    assert_allclose(dx, reference.avg_pool2d_backward(dy, case.input_shape, case.size, case.stride), dtype=dtype)


@EXAMPLES
@given(case=pool_cases())
def test_max_pool_backward_puts_each_value_at_the_argmax(xp, case):
    x, dy = case.arrays("float64")
    y = to_numpy(_max_pool(xp, case, x)[0])
    dx = to_numpy(_max_pool_grad(xp, case, x, dy))
    expected = np.zeros(x.shape)
    n, c, oh, ow = y.shape
    for a in range(n):
        for b in range(c):
            for p in range(oh):
                for q in range(ow):
                    rows = slice(p * case.stride, p * case.stride + case.size)
                    cols = slice(q * case.stride, q * case.stride + case.size)
                    window = x[a, b, rows, cols]
                    hits = np.argwhere(window == y[a, b, p, q])
                    assert len(hits) == 1, "the pooled value is not exactly one of its window's inputs"
                    r, s = hits[0]
                    assert window[r, s] == window.max()
                    expected[a, b, rows.start + r, cols.start + s] += dy[a, b, p, q]
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=1e-12)
    assert dx.sum() == pytest.approx(dy.sum(), abs=1e-9)


def test_max_pool_ties_go_to_the_first_maximum(xp):
    x = np.ones((1, 1, 4, 4))
    dy = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    dx = to_numpy(_max_pool_grad(xp, PoolCase(1, 1, 4, 4, 2, 2, seed=0), x, dy))
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, ::2, ::2] = dy[0, 0]
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("size", [11, 12, 16])
def test_max_pool_handles_large_windows(xp, size):
    case = PoolCase(2, 2, size + 1, size, size, 1, seed=size)
    x, dy = case.arrays("float64")
    y, _ = _max_pool(xp, case, x)
    np.testing.assert_array_equal(to_numpy(y), reference.max_pool2d_forward(x, size, 1)[0])
    np.testing.assert_array_equal(
        to_numpy(_max_pool_grad(xp, case, x, dy)), reference.max_pool2d_backward(dy, x, size, 1)
    )


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(case=pool_cases())
def test_avg_pool_backward_conserves_the_sum(xp, dtype, case):
    _, dy = case.arrays(dtype)
    dx = to_numpy(_avg_pool_grad(xp, case, dy)).astype(np.float64)
    total = float(dy.astype(np.float64).sum())
    assert dx.sum() == pytest.approx(total, rel=1e-5, abs=1e-5 * (1 + float(np.abs(dy).sum())))


@pytest.mark.parametrize("case", TINY_CASES, ids=_case_id)
def test_pool_gradients_match_elementwise_differences(xp, case):
    x, dy = case.arrays("float64")
    x = x * 10

    def max_loss(v):
        return float((to_numpy(_max_pool(xp, case, v)[0]) * dy).sum())

    def avg_loss(v):
        return float((to_numpy(_avg_pool(xp, case, v)) * dy).sum())

    np.testing.assert_allclose(
        to_numpy(_max_pool_grad(xp, case, x, dy)), numerical_gradient(max_loss, x), rtol=1e-6, atol=1e-8
    )
    np.testing.assert_allclose(
        to_numpy(_avg_pool_grad(xp, case, dy)), numerical_gradient(avg_loss, x), rtol=1e-6, atol=1e-8
    )


@pytest.mark.parametrize("case", REALISTIC_CASES, ids=_case_id)
def test_pool_gradients_match_directional_derivative(xp, case):
    x, dy = case.arrays("float64")
    x = np.random.default_rng(case.seed).standard_normal(x.shape)
    rng = np.random.default_rng(case.seed + 1)
    for forward, grad in (
        (lambda v: _max_pool(xp, case, v)[0], _max_pool_grad(xp, case, x, dy)),
        (lambda v: _avg_pool(xp, case, v), _avg_pool_grad(xp, case, dy)),
    ):
        numerical, analytic = directional_check(
            lambda point, forward=forward: float((to_numpy(forward(point["x"])) * dy).sum()),
            {"x": x},
            {"x": to_numpy(grad)},
            rng,
            eps=1e-7,
        )
        assert numerical == pytest.approx(analytic, rel=1e-6, abs=1e-8)


def test_pool_kernels_leave_inputs_unchanged(xp):
    case = REALISTIC_CASES[1]
    x, dy = (_image(xp, a) for a in case.arrays("float32"))
    x_before, dy_before = to_numpy(x).copy(), to_numpy(dy).copy()
    _, argmax = kernels.max_pool2d_forward(x, case.size, case.stride)
    argmax_before = to_numpy(argmax).copy()
    kernels.max_pool2d_backward(dy, argmax, x.shape, case.size, case.stride)
    kernels.avg_pool2d_forward(x, case.size, case.stride)
    kernels.avg_pool2d_backward(dy, x.shape, case.size, case.stride)
    np.testing.assert_array_equal(to_numpy(x), x_before)
    np.testing.assert_array_equal(to_numpy(dy), dy_before)
    np.testing.assert_array_equal(to_numpy(argmax), argmax_before)
