"""The one-launch CUDA kernels (:mod:`bptdask.cuda`) against the generic slice-per-offset ones.

Both run on CuPy, on the same inputs; the generic path is forced with
:func:`bptdask.backend.generic_kernels`. The generic kernels are themselves checked
against naive loops and numerical gradients in the other kernel tests, on NumPy and CuPy.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from bptdask import kernels
from bptdask.backend import device_kernels, generic_kernels, gpu_available, to_numpy
from bptdask.testing import assert_allclose
from bptdask.testing.strategies import conv_cases, pool_cases

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy")
if not gpu_available():
    pytest.skip("needs CuPy and a CUDA device", allow_module_level=True)

DTYPES = ["float32", "float64"]
EXAMPLES = settings(max_examples=60, deadline=None)


def test_cuda_kernels_are_used_for_cupy_only():
    assert device_kernels(np) is None
    assert device_kernels(cupy) is not None
    with generic_kernels():
        assert device_kernels(cupy) is None
    assert device_kernels(cupy) is not None


@EXAMPLES
@given(case=conv_cases(max_batch=4, max_channels=4, max_size=11, max_kernel=5))
@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_and_col2im_equal_the_generic_kernels(case, dtype):
    x, _, _, _ = case.arrays(dtype)
    x = kernels.batch_last(cupy.asarray(x))
    fast = kernels.im2col(x, case.kernel, case.stride, case.padding)
    with generic_kernels():
        generic = kernels.im2col(x, case.kernel, case.stride, case.padding)
    assert fast.shape == generic.shape and fast.dtype == generic.dtype
    np.testing.assert_array_equal(to_numpy(fast), to_numpy(generic))
    dcol = cupy.asarray(np.random.default_rng(case.seed).standard_normal(fast.shape).astype(dtype))
    folded = kernels.col2im(dcol, x.shape, case.stride, case.padding)
    with generic_kernels():
        expected = kernels.col2im(dcol, x.shape, case.stride, case.padding)
    assert folded.shape == x.shape and folded.flags.c_contiguous
    assert_allclose(folded, to_numpy(expected), dtype=dtype, scale=case.kernel[0] * case.kernel[1])


@EXAMPLES
@given(case=pool_cases(max_batch=3, max_channels=4, max_size=12, max_window=4, max_stride=4))
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pooling_equals_the_generic_kernels(case, dtype):
    x, dy = (kernels.batch_last(cupy.asarray(a)) for a in case.arrays(dtype))
    y, argmax = kernels.max_pool2d_forward(x, case.size, case.stride)
    with generic_kernels():
        y_ref, argmax_ref = kernels.max_pool2d_forward(x, case.size, case.stride)
        dx_ref = kernels.max_pool2d_backward(dy, argmax_ref, x.shape, case.size, case.stride)
    dx = kernels.max_pool2d_backward(dy, argmax, x.shape, case.size, case.stride)
    assert argmax.dtype == argmax_ref.dtype
    np.testing.assert_array_equal(to_numpy(y), to_numpy(y_ref))
    np.testing.assert_array_equal(to_numpy(argmax), to_numpy(argmax_ref))
    assert_allclose(dx, to_numpy(dx_ref), dtype=dtype, scale=case.size**2)


def test_max_pooling_takes_the_first_of_tied_maxima():
    x = cupy.zeros((1, 4, 4, 1), dtype=cupy.float32)
    _, argmax = kernels.max_pool2d_forward(x, 2, 2)
    assert (to_numpy(argmax) == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_relu_equals_the_generic_kernel(dtype):
    x = cupy.asarray(np.random.default_rng(3).standard_normal((5, 3, 7, 9)).astype(dtype))
    x[0, 0, 0, :3] = 0
    y, mask = kernels.relu_forward(x)
    with generic_kernels():
        y_ref, mask_ref = kernels.relu_forward(x)
    assert y.dtype == y_ref.dtype and mask.dtype == mask_ref.dtype
    np.testing.assert_array_equal(to_numpy(y), to_numpy(y_ref))
    np.testing.assert_array_equal(to_numpy(mask), to_numpy(mask_ref))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov", [False, True])
def test_fused_sgd_equals_the_generic_update(dtype, nesterov):
    rng = np.random.default_rng(7)
    param, grad, velocity = (cupy.asarray(rng.standard_normal((33, 17)).astype(dtype)) for _ in range(3))
    options = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": nesterov}
    fast = kernels.sgd_momentum_update(param, grad, velocity, **options)
    with generic_kernels():
        generic = kernels.sgd_momentum_update(param, grad, velocity, **options)
    for got, want in zip(fast, generic, strict=True):
        assert got.dtype == want.dtype
        assert_allclose(got, to_numpy(want), dtype=dtype)


def test_a_lenet_step_on_the_gpu_matches_numpy():
    import bptdask

    model = bptdask.models.lenet5(dropout=0)
    params = model.init_params(0, dtype="float64")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 1, 28, 28))
    y = rng.integers(0, 10, 16)
    optimizer = bptdask.SGD(lr=0.05, momentum=0.9, weight_decay=5e-4)
    cpu = bptdask.train_step(model, params, optimizer.init_state(params), x, y, optimizer=optimizer)
    gpu_params = {k: cupy.asarray(v) for k, v in params.items()}
    gpu = bptdask.train_step(
        model, gpu_params, optimizer.init_state(gpu_params), cupy.asarray(x), cupy.asarray(y), optimizer=optimizer
    )
    assert abs(gpu.loss - cpu.loss) < 1e-10
    for name in params:
        assert isinstance(gpu.params[name], cupy.ndarray)
        assert_allclose(gpu.params[name], cpu.params[name], dtype="float64")
