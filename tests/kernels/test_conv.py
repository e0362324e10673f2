"""Convolution kernels against naive loops, float64 numerical gradients and properties."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bptdask import kernels
from bptdask.backend import to_numpy
from bptdask.testing import assert_allclose, reference
from bptdask.testing.gradcheck import directional_check, numerical_gradient
from bptdask.testing.strategies import ConvCase, conv_cases

DTYPES = ["float32", "float64"]
EXAMPLES = settings(max_examples=40, deadline=None)

TINY_CASES = [
    ConvCase(1, 2, 2, 4, 5, (3, 2), 2, 1, seed=1),
    ConvCase(2, 1, 1, 3, 3, (2, 2), 1, 0, seed=2),
    ConvCase(1, 1, 2, 5, 4, (3, 3), 3, 2, seed=3),
]
REALISTIC_CASES = [
    ConvCase(4, 3, 8, 13, 11, (3, 3), 2, 1, seed=4),
    ConvCase(2, 4, 6, 12, 12, (5, 5), 1, 2, seed=5),
]


def _case_id(case: ConvCase) -> str:
    return f"{case.input_shape}-k{case.kernel}-s{case.stride}-p{case.padding}"


def _image(xp, x):
    """A batch ``(N, C, H, W)`` as the kernels take it: batch-last, on ``xp``."""
    return kernels.batch_last(xp.asarray(x))


def _batch_last_shape(shape):
    n, c, h, w = shape
    return (c, h, w, n)


def _forward(xp, case, x, weight, bias):
    """Convolution of a batch ``(N, C, H, W)``: output ``(N, O, OH, OW)`` and the columns."""
    y, col = kernels.conv2d_forward(
        _image(xp, x),
        xp.asarray(weight),
        None if bias is None else xp.asarray(bias),
        stride=case.stride,
        padding=case.padding,
    )
    return kernels.batch_first(y), col


def _backward(xp, case, x, weight, dy, **options):
    """``(dx (N, C, H, W) or None, dweight, dbias)`` for ``dy`` ``(N, O, OH, OW)``."""
    _, col = _forward(xp, case, x, weight, None)
    dx, dweight, dbias = kernels.conv2d_backward(
        _image(xp, dy),
        col,
        xp.asarray(weight),
        _batch_last_shape(x.shape),
        stride=case.stride,
        padding=case.padding,
        **options,
    )
    return (None if dx is None else kernels.batch_first(dx)), dweight, dbias


@EXAMPLES
@given(case=conv_cases())
def test_conv_output_size_counts_window_positions(case):
    kh, kw = case.kernel
    assert kernels.conv_output_size(case.height, kh, case.stride, case.padding) == reference.output_length(
        case.height, kh, case.stride, case.padding
    )
    assert kernels.conv_output_size(case.width, kw, case.stride, case.padding) == reference.output_length(
        case.width, kw, case.stride, case.padding
    )


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(case=conv_cases())
def test_im2col_matches_naive(xp, dtype, case):
    x, *_ = case.arrays(dtype)
    col = kernels.im2col(_image(xp, x), case.kernel, case.stride, case.padding)
    assert col.dtype == np.dtype(dtype)
    assert_allclose(col, reference.im2col(x, case.kernel, case.stride, case.padding), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(case=conv_cases(), with_bias=st.booleans())
def test_conv_forward_matches_naive(xp, dtype, case, with_bias):
    x, weight, bias, _ = case.arrays(dtype)
    bias = bias if with_bias else None
    y, _ = _forward(xp, case, x, weight, bias)
    assert y.dtype == np.dtype(dtype)
    expected = reference.conv2d_forward(x, weight, bias, stride=case.stride, padding=case.padding)
    assert_allclose(y, expected, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(case=conv_cases())
def test_conv_backward_matches_naive(xp, dtype, case):
    x, weight, _, dy = case.arrays(dtype)
    dx, dweight, dbias = _backward(xp, case, x, weight, dy)
    expected = reference.conv2d_backward(dy, x, weight, stride=case.stride, padding=case.padding)
    for got, want, name in zip((dx, dweight, dbias), expected, ("dx", "dweight", "dbias"), strict=True):
        assert got.dtype == np.dtype(dtype), name
        assert_allclose(got, want, dtype=dtype, scale=10, err_msg=name)


@pytest.mark.parametrize("case", TINY_CASES, ids=_case_id)
def test_conv_gradients_match_elementwise_differences(xp, case):
    x, weight, bias, dy = case.arrays("float64")

    def loss(x_, weight_, bias_):
        y, _ = _forward(xp, case, x_, weight_, bias_)
        return float((to_numpy(y) * dy).sum())

    dx, dweight, _ = _backward(xp, case, x, weight, dy)
    dbias = np.sum(dy, axis=(0, 2, 3))
    numeric = {
        "dx": numerical_gradient(lambda v: loss(v, weight, bias), x),
        "dweight": numerical_gradient(lambda v: loss(x, v, bias), weight),
        "dbias": numerical_gradient(lambda v: loss(x, weight, v), bias),
    }
    for name, got in (("dx", dx), ("dweight", dweight)):
        np.testing.assert_allclose(to_numpy(got), numeric[name], rtol=1e-6, atol=1e-8, err_msg=name)
    np.testing.assert_allclose(dbias, numeric["dbias"], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", REALISTIC_CASES, ids=_case_id)
def test_conv_gradients_match_directional_derivative(xp, case):
    x, weight, bias, dy = case.arrays("float64")

    def loss(point):
        y, _ = _forward(xp, case, point["x"], point["weight"], point["bias"])
        return float((to_numpy(y) * dy).sum())

    dx, dweight, dbias = _backward(xp, case, x, weight, dy)
    grads = {"x": to_numpy(dx), "weight": to_numpy(dweight), "bias": to_numpy(dbias)}
    numerical, analytic = directional_check(
        loss, {"x": x, "weight": weight, "bias": bias}, grads, np.random.default_rng(case.seed)
    )
    assert numerical == pytest.approx(analytic, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(case=conv_cases())
def test_col2im_is_adjoint_of_im2col(xp, dtype, case):
    x, *_ = case.arrays(dtype)
    col = kernels.im2col(_image(xp, x), case.kernel, case.stride, case.padding)
    c = np.random.default_rng(case.seed + 1).standard_normal(col.shape).astype(dtype)
    folded = kernels.col2im(xp.asarray(c), _batch_last_shape(x.shape), case.stride, case.padding)
    assert folded.shape == _batch_last_shape(x.shape)
    left = float((to_numpy(col).astype(np.float64) * c).sum())
    products = x.astype(np.float64) * to_numpy(kernels.batch_first(folded))
    rounding = 1e-5 if dtype == "float32" else 1e-12
    assert left == pytest.approx(float(products.sum()), abs=rounding * (1 + float(np.abs(products).sum())))


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(case=conv_cases(), a=st.floats(-3, 3), b=st.floats(-3, 3))
def test_conv_is_linear_in_input_and_weight(xp, dtype, case, a, b):
    x1, w1, _, _ = case.arrays(dtype)
    x2, w2, _, _ = replace(case, seed=case.seed + 1).arrays(dtype)
    a, b = np.dtype(dtype).type(a), np.dtype(dtype).type(b)

    def conv(x, w):
        return to_numpy(_forward(xp, case, x, w, None)[0]).astype(np.float64)

    scale = 1 + abs(float(a)) + abs(float(b))
    assert_allclose(conv(a * x1 + b * x2, w1), a * conv(x1, w1) + b * conv(x2, w1), dtype=dtype, scale=10 * scale)
    assert_allclose(conv(x1, a * w1 + b * w2), a * conv(x1, w1) + b * conv(x1, w2), dtype=dtype, scale=10 * scale)


@EXAMPLES
@given(case=conv_cases())
def test_conv_bias_adds_per_output_channel(xp, case):
    x, weight, bias, _ = case.arrays("float64")
    with_bias = to_numpy(_forward(xp, case, x, weight, bias)[0])
    without = to_numpy(_forward(xp, case, x, weight, None)[0])
    np.testing.assert_allclose(with_bias - without, np.broadcast_to(bias[None, :, None, None], with_bias.shape))


def test_conv_kernels_leave_inputs_unchanged(xp):
    case = REALISTIC_CASES[0]
    x, weight, bias, dy = case.arrays("float32")
    arrays = [_image(xp, x), xp.asarray(weight), xp.asarray(bias), _image(xp, dy)]
    before = [to_numpy(a).copy() for a in arrays]
    x, weight, bias, dy = arrays
    _y, col = kernels.conv2d_forward(x, weight, bias, stride=case.stride, padding=case.padding)
    col_before = to_numpy(col).copy()
    kernels.conv2d_backward(dy, col, weight, x.shape, stride=case.stride, padding=case.padding)
    kernels.col2im(col, x.shape, case.stride, case.padding)
    for got, want in zip(arrays, before, strict=True):
        np.testing.assert_array_equal(to_numpy(got), want)
    np.testing.assert_array_equal(to_numpy(col), col_before)


def test_conv_backward_without_input_grad_skips_dx_only(xp):
    case = TINY_CASES[0]
    x, weight, _, dy = case.arrays("float64")
    full = _backward(xp, case, x, weight, dy)
    partial = _backward(xp, case, x, weight, dy, need_input_grad=False)
    assert partial[0] is None
    np.testing.assert_array_equal(to_numpy(partial[1]), to_numpy(full[1]))
    np.testing.assert_array_equal(to_numpy(partial[2]), to_numpy(full[2]))
