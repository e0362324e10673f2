"""ReLU and inverted dropout against element-wise references and statistics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bptdask import kernels
from bptdask.backend import to_numpy
from bptdask.testing import reference
from bptdask.testing.gradcheck import numerical_gradient
from bptdask.testing.strategies import SEEDS

DTYPES = ["float32", "float64"]
EXAMPLES = settings(max_examples=40, deadline=None)
SHAPES = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(shape=SHAPES, seed=SEEDS)
def test_relu_matches_elementwise_max(xp, dtype, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[0] = 0.0
    dy = rng.standard_normal(shape).astype(dtype)
    y, mask = kernels.relu_forward(xp.asarray(x))
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(to_numpy(y), reference.relu(x).astype(dtype))
    dx = kernels.relu_backward(xp.asarray(dy), mask)
    assert dx.dtype == np.dtype(dtype)
    expected = np.array([g if v > 0 else 0.0 for v, g in zip(x.ravel(), dy.ravel(), strict=True)]).reshape(shape)
    np.testing.assert_array_equal(to_numpy(dx), expected.astype(dtype))


def test_relu_gradient_matches_elementwise_differences(xp):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2, 4))
    x[np.abs(x) < 1e-3] = 0.5
    dy = rng.standard_normal(x.shape)
    _, mask = kernels.relu_forward(xp.asarray(x))
    dx = to_numpy(kernels.relu_backward(xp.asarray(dy), mask))
    numeric = numerical_gradient(lambda v: float((to_numpy(kernels.relu_forward(xp.asarray(v))[0]) * dy).sum()), x)
    np.testing.assert_allclose(dx, numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 0.9])
def test_dropout_mask_values_and_keep_rate(xp, dtype, p):
    shape = (50, 40, 10)
    mask = to_numpy(kernels.dropout_mask(shape, p, xp.random.default_rng(0), np.dtype(dtype)))
    assert mask.shape == shape and mask.dtype == np.dtype(dtype)
    scale = np.dtype(dtype).type(1.0 / (1.0 - p))
    assert set(np.unique(mask).tolist()) <= {0.0, float(scale)}
    kept = float((mask != 0).mean())
    standard_error = np.sqrt(p * (1 - p) / mask.size)
    assert abs(kept - (1 - p)) <= 5 * standard_error + 1e-12
    assert float(mask.astype(np.float64).mean()) == pytest.approx(1.0, abs=5 * standard_error / (1 - p) + 1e-6)


def test_dropout_mask_is_reproducible_for_a_seed(xp):
    shape, dtype = (7, 9), np.dtype("float32")
    first = to_numpy(kernels.dropout_mask(shape, 0.5, xp.random.default_rng(11), dtype))
    second = to_numpy(kernels.dropout_mask(shape, 0.5, xp.random.default_rng(11), dtype))
    other = to_numpy(kernels.dropout_mask(shape, 0.5, xp.random.default_rng(12), dtype))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


@EXAMPLES
@given(shape=SHAPES, seed=SEEDS)
def test_dropout_forward_and_backward_multiply_by_the_mask(xp, shape, seed):
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape)
    mask = (rng.random(shape) >= 0.3) / 0.7
    x_before = x.copy()
    y = to_numpy(kernels.dropout_forward(xp.asarray(x), xp.asarray(mask)))
    dx = to_numpy(kernels.dropout_backward(xp.asarray(dy), xp.asarray(mask)))
    np.testing.assert_allclose(y, np.where(mask == 0, 0.0, x / 0.7), rtol=1e-14, atol=0)
    np.testing.assert_allclose(dx, np.where(mask == 0, 0.0, dy / 0.7), rtol=1e-14, atol=0)
    np.testing.assert_array_equal(x, x_before)
