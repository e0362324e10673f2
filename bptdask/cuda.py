"""CUDA versions of the kernels whose generic CuPy form launches many small kernels.

The generic kernels in :mod:`bptdask.kernels` work on one strided slice per window
offset: im2col and col2im launch ``kh·kw`` copies or additions (25 for a 5×5 kernel),
max pooling a comparison chain per offset, SGD four element-wise passes per weight,
ReLU two. On a GPU each launch costs a few microseconds of Python and driver time, more
than the arithmetic of LeNet-sized layers. Here each of those functions is one
``cupy.ElementwiseKernel`` launch (im2col and col2im threads each handle
:data:`BATCH_GROUP` samples of the batch-last images) with the same inputs, outputs
and summation order;
:func:`bptdask.backend.device_kernels` hands this module to the kernels when their arrays
are CuPy arrays. CuPy is imported when a kernel is first used, and each kernel is
compiled once per process (CuPy caches the binaries on disk).

Index arithmetic is 32-bit (divisions by runtime sizes dominate these kernels, and
64-bit ones cost several times as much), switching to 64-bit for arrays of 2**31
elements or more.
"""

from __future__ import annotations

from functools import cache

#: Samples of the batch axis one im2col/col2im thread handles: its index arithmetic is
#: shared by ``BATCH_GROUP`` elements, and a warp still writes one contiguous run.
BATCH_GROUP = 4

_IM2COL = """
    const idx_t e = i;
    const idx_t groups = (N + GROUP - 1) / GROUP;
    const idx_t first = (e % groups) * GROUP;
    const idx_t last = first + GROUP < N ? first + GROUP : N;
    idx_t rest = e / groups;
    const idx_t row = rest;
    const idx_t ow = rest % OW; rest /= OW;
    const idx_t oh = rest % OH; rest /= OH;
    const idx_t j = rest % KW; rest /= KW;
    const idx_t k = rest % KH;
    const idx_t c = rest / KH;
    const idx_t h = oh * S - P + k;
    const idx_t w = ow * S - P + j;
    const bool inside = h >= 0 && h < H && w >= 0 && w < W;
    const idx_t source = ((c * H + h) * W + w) * N;
    for (idx_t n = first; n < last; ++n) {
        col[row * N + n] = inside ? x[source + n] : (T)0;
    }
"""

_COL2IM = """
    const idx_t e = i;
    const idx_t groups = (N + GROUP - 1) / GROUP;
    const idx_t first = (e % groups) * GROUP;
    const idx_t count = first + GROUP < N ? GROUP : N - first;
    idx_t rest = e / groups;
    const idx_t w = rest % W; rest /= W;
    const idx_t h = rest % H;
    const idx_t c = rest / H;
    T sum[GROUP] = {};
    for (idx_t k = 0; k < KH; ++k) {
        const idx_t t = h + P - k;
        if (t < 0 || t % S != 0 || t / S >= OH) continue;
        for (idx_t j = 0; j < KW; ++j) {
            const idx_t u = w + P - j;
            if (u < 0 || u % S != 0 || u / S >= OW) continue;
            const idx_t base = ((((c * KH + k) * KW + j) * OH + t / S) * OW + u / S) * N + first;
            for (idx_t q = 0; q < count; ++q) sum[q] += col[base + q];
        }
    }
    const idx_t target = ((c * H + h) * W + w) * N + first;
    for (idx_t q = 0; q < count; ++q) x[target + q] = sum[q];
"""

_MAX_POOL_FORWARD = """
    const idx_t e = i;
    const idx_t n = e % N;
    idx_t rest = e / N;
    const idx_t ow = rest % OW; rest /= OW;
    const idx_t oh = rest % OH;
    const idx_t c = rest / OH;
    const T* window = &x[((c * H + oh * S) * W + ow * S) * N + n];
    T best = window[0];
    int winner = 0;
    for (int k = 0; k < K; ++k) {
        for (int j = 0; j < K; ++j) {
            const T value = window[(k * W + j) * N];
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
    const idx_t e = i;
    const idx_t n = e % N;
    idx_t rest = e / N;
    const idx_t w = rest % W; rest /= W;
    const idx_t h = rest % H;
    const idx_t c = rest / H;
    const idx_t oh_low = h >= K ? (h - K) / S + 1 : 0;
    const idx_t ow_low = w >= K ? (w - K) / S + 1 : 0;
    const idx_t oh_high = h / S < OH - 1 ? h / S : OH - 1;
    const idx_t ow_high = w / S < OW - 1 ? w / S : OW - 1;
    T sum = 0;
    for (idx_t oh = oh_high; oh >= oh_low; --oh) {
        for (idx_t ow = ow_high; ow >= ow_low; --ow) {
            const idx_t out = ((c * OH + oh) * OW + ow) * N + n;
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


#: Arrays of at least this many elements get kernels with 64-bit index arithmetic;
#: smaller ones 32-bit, whose divisions cost a fraction as much on the GPU.
WIDE_INDEX = 2**31


@cache
def _kernel(name: str, wide: bool = False):
    import cupy

    index = "int64" if wide else "int32"
    sizes = ", ".join(f"{index} {n}" for n in ("C", "H", "W", "KH", "KW", "OH", "OW", "N", "S", "P"))
    pool = ", ".join(f"{index} {n}" for n in ("H", "W", "OH", "OW", "N", "K", "S"))
    specs = {
        "im2col": (f"raw T x, {sizes}", "raw T col", _IM2COL),
        "col2im": (f"raw T col, {sizes}", "raw T x", _COL2IM),
        "max_pool_forward": (f"raw T x, {pool}", "T y, I argmax", _MAX_POOL_FORWARD),
        "max_pool_backward": (f"raw T dy, raw I argmax, {pool}", "T dx", _MAX_POOL_BACKWARD),
        "relu": ("T x", "T y, bool mask", _RELU),
        "sgd": (
            "T param, T grad, T velocity, T lr, T momentum, T weight_decay, bool nesterov",
            "T new_param, T new_velocity",
            _SGD,
        ),
    }
    params, outputs, body = specs[name]
    preamble = f"typedef {'long long' if wide else 'int'} idx_t;\n#define GROUP {BATCH_GROUP}\n"
    return cupy.ElementwiseKernel(params, outputs, body, f"bptdask_{name}_{index}", preamble=preamble)


def im2col(x, kernel_size: tuple[int, int], stride: int, padding: int):
    """:func:`bptdask.kernels.im2col`: ``(C, H, W, N)`` -> ``(C, kh, kw, OH, OW, N)``.

    Neighbouring threads write neighbouring samples of a column and read neighbouring
    addresses of the batch-last image.
    """
    import cupy

    c, h, w, n = x.shape
    kh, kw = kernel_size
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (w + 2 * padding - kw) // stride + 1
    col = cupy.empty((c, kh, kw, oh, ow, n), dtype=x.dtype)
    threads = c * kh * kw * oh * ow * -(-n // BATCH_GROUP)
    _kernel("im2col", col.size >= WIDE_INDEX)(
        cupy.ascontiguousarray(x), c, h, w, kh, kw, oh, ow, n, stride, padding, col, size=threads
    )
    return col


def col2im(col, input_shape: tuple[int, int, int, int], stride: int, padding: int):
    """:func:`bptdask.kernels.col2im`: ``(C, kh, kw, OH, OW, N)`` -> ``(C, H, W, N)``.

    Each thread gathers the column entries of ``BATCH_GROUP`` samples of one input
    element (coalesced reads and writes).
    """
    import cupy

    c, kh, kw, oh, ow, n = col.shape
    _, h, w, _ = input_shape
    x = cupy.empty((c, h, w, n), dtype=col.dtype)
    threads = c * h * w * -(-n // BATCH_GROUP)
    _kernel("col2im", col.size >= WIDE_INDEX)(
        cupy.ascontiguousarray(col), c, h, w, kh, kw, oh, ow, n, stride, padding, x, size=threads
    )
    return x


def max_pool2d_forward(x, size: int, stride: int, argmax_dtype):
    """:func:`bptdask.kernels.max_pool2d_forward` in one launch: ``(C, H, W, N)`` -> ``(y, argmax)``."""
    import cupy

    c, h, w, n = x.shape
    oh, ow = (h - size) // stride + 1, (w - size) // stride + 1
    y = cupy.empty((c, oh, ow, n), dtype=x.dtype)
    argmax = cupy.empty((c, oh, ow, n), dtype=argmax_dtype)
    _kernel("max_pool_forward", x.size >= WIDE_INDEX)(
        cupy.ascontiguousarray(x), h, w, oh, ow, n, size, stride, y, argmax
    )
    return y, argmax


def max_pool2d_backward(dy, argmax, input_shape: tuple[int, int, int, int], size: int, stride: int):
    """:func:`bptdask.kernels.max_pool2d_backward` in one launch: ``(C, OH, OW, N)`` -> ``input_shape``."""
    import cupy

    _, h, w, n = input_shape
    oh, ow = dy.shape[1:3]
    dx = cupy.empty(tuple(input_shape), dtype=dy.dtype)
    _kernel("max_pool_backward", dx.size >= WIDE_INDEX)(
        cupy.ascontiguousarray(dy), cupy.ascontiguousarray(argmax), h, w, oh, ow, n, size, stride, dx
    )
    return dx


def relu_forward(x):
    """:func:`bptdask.kernels.relu_forward` in one pass: ``(max(x, 0), x > 0)``."""
    return _kernel("relu")(x)


def sgd_momentum_update(param, grad, velocity, *, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """:func:`bptdask.kernels.sgd_momentum_update` in one launch; returns ``(param, velocity)``."""
    scalar = param.dtype.type
    return _kernel("sgd")(param, grad, velocity, scalar(lr), scalar(momentum), scalar(weight_decay), bool(nesterov))
