"""CUDA versions of the kernels whose generic CuPy form launches many small kernels.

The generic kernels in :mod:`bptdask.kernels` work on one strided slice per window
offset: im2col and col2im launch ``kh·kw`` copies or additions (25 for a 5×5 kernel),
max pooling a comparison chain per offset, SGD four element-wise passes per weight,
ReLU two. On a GPU each launch costs a few microseconds of Python and driver time, more
than the arithmetic of LeNet-sized layers. Here each of those functions is one
``cupy.ElementwiseKernel`` launch (im2col and col2im add one layout copy each) with the
same inputs, outputs and summation order;
:func:`bptdask.backend.device_kernels` hands this module to the kernels when their arrays
are CuPy arrays. CuPy is imported when a kernel is first used, and each kernel is
compiled once per process (CuPy caches the binaries on disk).

Index arithmetic is done in 64-bit integers, so arrays of more than 2**31 elements work.
"""

from __future__ import annotations

from functools import cache

_IM2COL = """
    long long rest = i;
    const long long n = rest % N; rest /= N;
    const long long ow = rest % OW; rest /= OW;
    const long long oh = rest % OH; rest /= OH;
    const long long j = rest % KW; rest /= KW;
    const long long k = rest % KH;
    const long long c = rest / KH;
    const long long h = oh * S - P + k;
    const long long w = ow * S - P + j;
    col = (h >= 0 && h < H && w >= 0 && w < W) ? x_batch_last[((c * H + h) * W + w) * N + n] : (T)0;
"""

_COL2IM = """
    long long rest = i;
    rest /= N;
    const long long w = rest % W; rest /= W;
    const long long h = rest % H;
    const long long c = rest / H;
    const long long n = i % N;
    T sum = 0;
    for (long long k = 0; k < KH; ++k) {
        const long long t = h + P - k;
        if (t < 0 || t % S != 0 || t / S >= OH) continue;
        for (long long j = 0; j < KW; ++j) {
            const long long u = w + P - j;
            if (u < 0 || u % S != 0 || u / S >= OW) continue;
            sum += col[((((c * KH + k) * KW + j) * OH + t / S) * OW + u / S) * N + n];
        }
    }
    x_batch_last = sum;
"""

_MAX_POOL_FORWARD = """
    const long long ow = i % OW;
    const long long oh = (i / OW) % OH;
    const long long plane = i / (OW * OH);
    const T* window = &x[(plane * H + oh * S) * W + ow * S];
    T best = window[0];
    int winner = 0;
    for (int k = 0; k < K; ++k) {
        for (int j = 0; j < K; ++j) {
            const T value = window[k * W + j];
            if (value > best) {
                best = value;
                winner = k * K + j;
            }
        }
    }
    y = best;
    argmax = winner;
"""

_MAX_POOL_BACKWARD = """
    const long long w = i % W;
    const long long h = (i / W) % H;
    const long long plane = i / (W * H);
    const long long oh_low = h >= K ? (h - K) / S + 1 : 0;
    const long long ow_low = w >= K ? (w - K) / S + 1 : 0;
    const long long oh_high = h / S < OH - 1 ? h / S : OH - 1;
    const long long ow_high = w / S < OW - 1 ? w / S : OW - 1;
    T sum = 0;
    for (long long oh = oh_high; oh >= oh_low; --oh) {
        for (long long ow = ow_high; ow >= ow_low; --ow) {
            const long long out = (plane * OH + oh) * OW + ow;
            if (argmax[out] == (h - oh * S) * K + (w - ow * S)) sum += dy[out];
        }
    }
    dx = sum;
"""

_RELU = """
    mask = x > (T)0;
    y = mask ? x : (T)0;
"""

_SGD = """
    const T direction = grad + weight_decay * param;
    const T v = momentum * velocity + direction;
    new_param = param - lr * (nesterov ? direction + momentum * v : v);
    new_velocity = v;
"""


@cache
def _kernel(name: str):
    import cupy

    sizes = "int64 C, int64 H, int64 W, int64 KH, int64 KW, int64 OH, int64 OW, int64 N, int64 S, int64 P"
    pool = "int64 H, int64 W, int64 OH, int64 OW, int64 K, int64 S"
    specs = {
        "im2col": (f"raw T x_batch_last, {sizes}", "T col", _IM2COL),
        "col2im": (f"raw T col, {sizes}", "T x_batch_last", _COL2IM),
        "max_pool_forward": (f"raw T x, {pool}", "T y, I argmax", _MAX_POOL_FORWARD),
        "max_pool_backward": (f"raw T dy, raw I argmax, {pool}", "T dx", _MAX_POOL_BACKWARD),
        "relu": ("T x", "T y, bool mask", _RELU),
        "sgd": ("T param, T grad, T velocity, T lr, T momentum, T weight_decay, bool nesterov",
                "T new_param, T new_velocity", _SGD),
    }
    params, outputs, body = specs[name]
    return cupy.ElementwiseKernel(params, outputs, body, f"bptdask_{name}")


def im2col(x, kernel_size: tuple[int, int], stride: int, padding: int):
    """:func:`bptdask.kernels.im2col`: ``(N, C, H, W)`` -> ``(C, kh, kw, OH, OW, N)``.

    ``x`` is first copied batch-last, ``(C, H, W, N)`` (one pass over the input), so that
    neighbouring threads, which write neighbouring samples of a column, also read
    neighbouring addresses.
    """
    import cupy

    n, c, h, w = x.shape
    kh, kw = kernel_size
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (w + 2 * padding - kw) // stride + 1
    col = cupy.empty((c, kh, kw, oh, ow, n), dtype=x.dtype)
    x_batch_last = cupy.ascontiguousarray(x.transpose(1, 2, 3, 0))
    _kernel("im2col")(x_batch_last, c, h, w, kh, kw, oh, ow, n, stride, padding, col)
    return col


def col2im(col, input_shape: tuple[int, int, int, int], stride: int, padding: int):
    """:func:`bptdask.kernels.col2im`: ``(C, kh, kw, OH, OW, N)`` -> ``(N, C, H, W)``.

    Each thread gathers the column entries of one input element, written batch-last
    ``(C, H, W, N)`` (coalesced reads and writes), then one copy restores ``(N, C, H, W)``.
    """
    import cupy

    c, kh, kw, oh, ow, n = col.shape
    _, _, h, w = input_shape
    x_batch_last = cupy.empty((c, h, w, n), dtype=col.dtype)
    _kernel("col2im")(cupy.ascontiguousarray(col), c, h, w, kh, kw, oh, ow, n, stride, padding, x_batch_last)
    return cupy.ascontiguousarray(x_batch_last.transpose(3, 0, 1, 2))


def max_pool2d_forward(x, size: int, stride: int):
    """:func:`bptdask.kernels.max_pool2d_forward` in one launch; returns ``(y, argmax)``."""
    import cupy

    n, c, h, w = x.shape
    oh, ow = (h - size) // stride + 1, (w - size) // stride + 1
    y = cupy.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = cupy.empty((n, c, oh, ow), dtype=cupy.int8 if size * size <= 128 else cupy.int32)
    _kernel("max_pool_forward")(cupy.ascontiguousarray(x), h, w, oh, ow, size, stride, y, argmax)
    return y, argmax


def max_pool2d_backward(dy, argmax, input_shape: tuple[int, int, int, int], size: int, stride: int):
    """:func:`bptdask.kernels.max_pool2d_backward` in one launch: ``(N, C, OH, OW)`` -> ``input_shape``."""
    import cupy

    _, _, h, w = input_shape
    oh, ow = dy.shape[2:]
    dx = cupy.empty(tuple(input_shape), dtype=dy.dtype)
    _kernel("max_pool_backward")(
        cupy.ascontiguousarray(dy), cupy.ascontiguousarray(argmax), h, w, oh, ow, size, stride, dx
    )
    return dx


def relu_forward(x):
    """:func:`bptdask.kernels.relu_forward` in one pass: ``(max(x, 0), x > 0)``."""
    return _kernel("relu")(x)


def sgd_momentum_update(param, grad, velocity, *, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """:func:`bptdask.kernels.sgd_momentum_update` in one launch; returns ``(param, velocity)``."""
    scalar = param.dtype.type
    return _kernel("sgd")(
        param, grad, velocity, scalar(lr), scalar(momentum), scalar(weight_decay), bool(nesterov)
    )
