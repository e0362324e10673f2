"""Softmax and softmax cross-entropy against a row-by-row ``math`` reference and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bptdask import kernels
from bptdask.backend import to_numpy
from bptdask.testing import assert_allclose, reference
from bptdask.testing.gradcheck import numerical_gradient
from bptdask.testing.strategies import SEEDS

DTYPES = ["float32", "float64"]
EXAMPLES = settings(max_examples=40, deadline=None)


@st.composite
def batches(draw):
    """``(logits (N, K), labels (N,))`` with logits of random scale."""
    n, k = draw(st.integers(1, 8)), draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(SEEDS))
    scale = draw(st.sampled_from([0.01, 1.0, 10.0, 50.0]))
    return rng.standard_normal((n, k)) * scale, rng.integers(0, k, size=n)


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(batch=batches())
def test_softmax_cross_entropy_matches_naive(xp, tol, dtype, batch):
    logits, labels = batch
    logits = logits.astype(dtype)
    want_loss, want_grad, want_prob = reference.softmax_cross_entropy(logits, labels)
    loss, dlogits = kernels.softmax_cross_entropy(xp.asarray(logits), xp.asarray(labels))
    assert dlogits.dtype == np.dtype(dtype)
    assert float(loss) == pytest.approx(want_loss, rel=tol(dtype)["rtol"], abs=tol(dtype)["atol"])
    assert_allclose(dlogits, want_grad, dtype=dtype)
    assert_allclose(kernels.softmax(xp.asarray(logits)), want_prob, dtype=dtype)
    assert_allclose(
        kernels.log_softmax(xp.asarray(logits)), np.log(np.maximum(want_prob, 1e-300)), dtype=dtype, scale=10
    )


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(batch=batches())
def test_cross_entropy_gradient_rows_sum_to_zero(xp, tol, dtype, batch):
    logits, labels = batch
    _, dlogits = kernels.softmax_cross_entropy(xp.asarray(logits.astype(dtype)), xp.asarray(labels))
    rows = to_numpy(dlogits).astype(np.float64).sum(axis=1)
    np.testing.assert_allclose(rows, 0.0, atol=tol(dtype)["atol"])


@EXAMPLES
@given(batch=batches(), shift=st.floats(-100, 100))
def test_cross_entropy_is_invariant_to_a_row_shift(xp, batch, shift):
    logits, labels = batch
    loss, dlogits = kernels.softmax_cross_entropy(xp.asarray(logits), xp.asarray(labels))
    shifted_loss, shifted_grad = kernels.softmax_cross_entropy(xp.asarray(logits + shift), xp.asarray(labels))
    assert float(shifted_loss) == pytest.approx(float(loss), rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(to_numpy(shifted_grad), to_numpy(dlogits), rtol=1e-8, atol=1e-12)


def test_cross_entropy_gradient_matches_elementwise_differences(xp):
    rng = np.random.default_rng(5)
    logits, labels = rng.standard_normal((4, 6)) * 3, np.array([0, 5, 2, 2])
    _, dlogits = kernels.softmax_cross_entropy(xp.asarray(logits), xp.asarray(labels))
    numeric = numerical_gradient(
        lambda v: float(kernels.softmax_cross_entropy(xp.asarray(v), xp.asarray(labels))[0]), logits
    )
    np.testing.assert_allclose(to_numpy(dlogits), numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_is_stable_for_huge_logits(xp, dtype):
    logits = np.array([[1e4, 0.0, -1e4], [-3e4, 3e4, 0.0]], dtype=dtype)
    labels = np.array([1, 1])
    loss, dlogits = kernels.softmax_cross_entropy(xp.asarray(logits), xp.asarray(labels))
    assert float(loss) == pytest.approx(1e4 / 2, rel=1e-6)
    np.testing.assert_allclose(to_numpy(dlogits), [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-7)
    assert np.isfinite(to_numpy(kernels.log_softmax(xp.asarray(logits)))).all()


def test_loss_kernels_leave_inputs_unchanged(xp):
    rng = np.random.default_rng(6)
    logits, labels = xp.asarray(rng.standard_normal((5, 4))), xp.asarray(rng.integers(0, 4, 5))
    before = to_numpy(logits).copy(), to_numpy(labels).copy()
    kernels.softmax_cross_entropy(logits, labels)
    kernels.softmax(logits)
    np.testing.assert_array_equal(to_numpy(logits), before[0])
    np.testing.assert_array_equal(to_numpy(labels), before[1])
