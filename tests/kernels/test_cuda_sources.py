"""The index arithmetic of :mod:`bptdask.cuda`'s kernels, checked on the CPU.

The CUDA kernels only run where a GPU is (``test_cuda.py``). Their bodies are C++, so
here each body is compiled with the machine's C++ compiler inside a loop that plays
``cupy.ElementwiseKernel``'s part (``i`` counts the threads; a non-raw output names the
thread's own element), and the results must equal the NumPy kernels on batch-last images,
ties and every padding, stride and batch-group remainder included. This checks which
element each thread reads and writes, not CUDA itself.
"""

from __future__ import annotations

import ctypes
import itertools
import shutil
import subprocess

import numpy as np
import pytest

from bptdask import cuda, kernels

COMPILER = shutil.which("g++") or shutil.which("c++")
pytestmark = pytest.mark.skipif(COMPILER is None, reason="needs a C++ compiler")

HARNESS = """
extern "C" {{
typedef float T;
typedef int idx_t;
typedef signed char I;
#define GROUP {group}
void im2col(const T* x, int C, int H, int W, int KH, int KW, int OH, int OW, int N, int S, int P,
            T* col, long threads) {{
    for (long i = 0; i < threads; ++i) {{ {im2col} }}
}}
void col2im(const T* col, int C, int H, int W, int KH, int KW, int OH, int OW, int N, int S, int P,
            T* x, long threads) {{
    for (long i = 0; i < threads; ++i) {{ {col2im} }}
}}
void max_pool_forward(const T* x, int H, int W, int OH, int OW, int N, int K, int S,
                      T* y_out, I* argmax_out, long threads) {{
    for (long i = 0; i < threads; ++i) {{
#define y y_out[i]
#define argmax argmax_out[i]
        {pool_forward}
#undef y
#undef argmax
    }}
}}
void max_pool_backward(const T* dy, const I* argmax, int H, int W, int OH, int OW, int N, int K, int S,
                       T* dx_out, long threads) {{
    for (long i = 0; i < threads; ++i) {{
#define dx dx_out[i]
        {pool_backward}
#undef dx
    }}
}}
}}
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cuda_sources")
    source, binary = directory / "kernels.cpp", directory / "kernels.so"
    source.write_text(
        HARNESS.format(
            group=cuda.BATCH_GROUP,
            im2col=cuda._IM2COL,
            col2im=cuda._COL2IM,
            pool_forward=cuda._MAX_POOL_FORWARD,
            pool_backward=cuda._MAX_POOL_BACKWARD,
        )
    )
    subprocess.run([COMPILER, "-O1", "-shared", "-fPIC", "-o", str(binary), str(source)], check=True)
    return ctypes.CDLL(str(binary))


def _pointer(array: np.ndarray):
    return array.ctypes.data_as(ctypes.c_void_p)


# (C, H, W, N, window, stride, padding): N spans batch groups with and without a remainder.
CONV_CASES = [
    case
    for case in itertools.product([1, 3], [5, 8], [4, 7], [1, 4, 6], [1, 2, 3], [1, 2], [0, 1, 2])
    if case[1] + 2 * case[6] >= case[4] and case[2] + 2 * case[6] >= case[4]
]
POOL_CASES = [
    case
    for case in itertools.product([1, 3], [5, 8], [4, 7], [1, 5], [1, 2, 3], [1, 2, 3])
    if case[4] <= min(case[1], case[2])
]


def test_im2col_and_col2im_bodies_equal_the_numpy_kernels(library):
    rng = np.random.default_rng(0)
    for c, h, w, n, k, s, p in CONV_CASES:
        x = rng.standard_normal((c, h, w, n)).astype(np.float32)
        expected = kernels.im2col(x, (k, k), s, p)
        oh, ow = expected.shape[3:5]
        groups = -(-n // cuda.BATCH_GROUP)
        col = np.full(expected.shape, np.nan, np.float32)
        threads = ctypes.c_long(c * k * k * oh * ow * groups)
        library.im2col(_pointer(x), c, h, w, k, k, oh, ow, n, s, p, _pointer(col), threads)
        np.testing.assert_array_equal(col, expected, err_msg=f"im2col {(c, h, w, n, k, s, p)}")

        dcol = rng.standard_normal(expected.shape).astype(np.float32)
        folded = np.full(x.shape, np.nan, np.float32)
        threads = ctypes.c_long(c * h * w * groups)
        library.col2im(_pointer(dcol), c, h, w, k, k, oh, ow, n, s, p, _pointer(folded), threads)
        np.testing.assert_allclose(folded, kernels.col2im(dcol, x.shape, s, p), rtol=1e-6, atol=1e-6)


def test_max_pool_bodies_equal_the_numpy_kernels(library):
    rng = np.random.default_rng(1)
    for c, h, w, n, k, s in POOL_CASES:
        x = (np.round(rng.standard_normal((c, h, w, n)) * 2) / 2).astype(np.float32)  # many ties
        y_expected, argmax_expected = kernels.max_pool2d_forward(x, k, s)
        _, oh, ow, _ = y_expected.shape
        y = np.full(y_expected.shape, np.nan, np.float32)
        argmax = np.full(y_expected.shape, -1, np.int8)
        library.max_pool_forward(
            _pointer(x), h, w, oh, ow, n, k, s, _pointer(y), _pointer(argmax), ctypes.c_long(y.size)
        )
        np.testing.assert_array_equal(y, y_expected, err_msg=f"pool {(c, h, w, n, k, s)}")
        np.testing.assert_array_equal(argmax, argmax_expected, err_msg=f"argmax {(c, h, w, n, k, s)}")

        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = np.full(x.shape, np.nan, np.float32)
        library.max_pool_backward(
            _pointer(dy), _pointer(argmax), h, w, oh, ow, n, k, s, _pointer(dx), ctypes.c_long(dx.size)
        )
        np.testing.assert_allclose(dx, kernels.max_pool2d_backward(dy, argmax, x.shape, k, s), rtol=1e-6, atol=1e-6)
