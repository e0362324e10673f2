"""Naive nested-loop reference implementations in plain NumPy, computed in float64.

Each function is written from the textbook definition, one output element at a time,
and never calls :mod:`bptdask.kernels`. They are slow and meant for small shapes.
Layouts follow bptdask and PyTorch: activations ``(N, C, H, W)``, conv weights
``(O, C, kh, kw)``, dense weights ``(out, in)``.
"""

from __future__ import annotations

import math

import numpy as np


def _padded(x: np.ndarray, padding: int) -> np.ndarray:
    """``x`` ``(N, C, H, W)`` zero-padded to ``(N, C, H + 2p, W + 2p)`` in float64."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + 2 * padding, w + 2 * padding))
    for a in range(n):
        for b in range(c):
            for i in range(h):
                for j in range(w):
                    out[a, b, i + padding, j + padding] = x[a, b, i, j]
    return out


def output_length(size: int, window: int, stride: int, padding: int = 0) -> int:
    """Number of window positions along one axis, counted one position at a time."""
    count = 0
    start = 0
    while start + window <= size + 2 * padding:
        count += 1
        start += stride
    return count


def im2col(x: np.ndarray, kernel_size: tuple[int, int], stride: int, padding: int) -> np.ndarray:
    """Unfolded windows ``col[c, i, j, oh, ow, n] = x_padded[n, c, i + s*oh, j + s*ow]``.

    Parameters
    ----------
    x : array, shape (N, C, H, W)

    Returns
    -------
    col : float64 array, shape (C, kh, kw, OH, OW, N)
    """
    kh, kw = kernel_size
    n, c, h, w = x.shape
    oh = output_length(h, kh, stride, padding)
    ow = output_length(w, kw, stride, padding)
    padded = _padded(x, padding)
    col = np.zeros((c, kh, kw, oh, ow, n))
    for b in range(c):
        for i in range(kh):
            for j in range(kw):
                for a in range(n):
                    for p in range(oh):
                        for q in range(ow):
                            col[b, i, j, p, q, a] = padded[a, b, i + stride * p, j + stride * q]
    return col


def conv2d_forward(x, weight, bias, *, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Cross-correlation (PyTorch's ``conv2d``) by explicit sums.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    weight : array, shape (O, C, kh, kw)
    bias : array, shape (O,), or None

    Returns
    -------
    y : float64 array, shape (N, O, OH, OW)
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    oh = output_length(h, kh, stride, padding)
    ow = output_length(w, kw, stride, padding)
    padded = _padded(x, padding)
    y = np.zeros((n, o, oh, ow))
    for a in range(n):
        for f in range(o):
            for p in range(oh):
                for q in range(ow):
                    total = 0.0 if bias is None else float(bias[f])
                    for b in range(c):
                        for i in range(kh):
                            for j in range(kw):
                                total += float(weight[f, b, i, j]) * padded[a, b, stride * p + i, stride * q + j]
                    y[a, f, p, q] = total
    return y


def conv2d_backward(dy, x, weight, *, stride: int = 1, padding: int = 0):
    """Gradients of :func:`conv2d_forward` by scattering each output's gradient.

    Parameters
    ----------
    dy : array, shape (N, O, OH, OW)
    x : array, shape (N, C, H, W)
    weight : array, shape (O, C, kh, kw)

    Returns
    -------
    dx : float64 array, shape (N, C, H, W)
    dweight : float64 array, shape (O, C, kh, kw)
    dbias : float64 array, shape (O,)
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    padded = _padded(x, padding)
    dpadded = np.zeros_like(padded)
    dweight = np.zeros(weight.shape)
    dbias = np.zeros(o)
    for a in range(n):
        for f in range(o):
            for p in range(dy.shape[2]):
                for q in range(dy.shape[3]):
                    g = float(dy[a, f, p, q])
                    dbias[f] += g
                    for b in range(c):
                        for i in range(kh):
                            for j in range(kw):
                                r, s = stride * p + i, stride * q + j
                                dweight[f, b, i, j] += g * padded[a, b, r, s]
                                dpadded[a, b, r, s] += g * float(weight[f, b, i, j])
    return dpadded[:, :, padding : padding + h, padding : padding + w], dweight, dbias


def _windows(h: int, w: int, size: int, stride: int):
    """Yield ``(p, q, cells)``: each output position and its input cells in row-major order."""
    for p in range(output_length(h, size, stride)):
        for q in range(output_length(w, size, stride)):
            cells = [(stride * p + i, stride * q + j) for i in range(size) for j in range(size)]
            yield p, q, cells


def max_pool2d_forward(x, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling without padding; the first maximum in row-major order wins ties.

    Parameters
    ----------
    x : array, shape (N, C, H, W)

    Returns
    -------
    y : float64 array, shape (N, C, OH, OW)
    where : int array, shape (N, C, OH, OW, 2)
        Input row and column of each maximum.
    """
    n, c, h, w = x.shape
    oh, ow = output_length(h, size, stride), output_length(w, size, stride)
    y = np.zeros((n, c, oh, ow))
    where = np.zeros((n, c, oh, ow, 2), dtype=np.int64)
    for a in range(n):
        for b in range(c):
            for p, q, cells in _windows(h, w, size, stride):
                best = cells[0]
                for cell in cells[1:]:
                    if x[a, b, cell[0], cell[1]] > x[a, b, best[0], best[1]]:
                        best = cell
                y[a, b, p, q] = x[a, b, best[0], best[1]]
                where[a, b, p, q] = best
    return y, where


def max_pool2d_backward(dy, x, size: int, stride: int) -> np.ndarray:
    """Gradient of :func:`max_pool2d_forward`: each ``dy`` added at its window's maximum.

    Parameters
    ----------
    dy : array, shape (N, C, OH, OW)
    x : array, shape (N, C, H, W), the forward input

    Returns
    -------
    dx : float64 array, shape (N, C, H, W)
    """
    _, where = max_pool2d_forward(x, size, stride)
    dx = np.zeros(x.shape)
    n, c, oh, ow = dy.shape
    for a in range(n):
        for b in range(c):
            for p in range(oh):
                for q in range(ow):
                    r, s = where[a, b, p, q]
                    dx[a, b, r, s] += float(dy[a, b, p, q])
    return dx


def avg_pool2d_forward(x, size: int, stride: int) -> np.ndarray:
    """Average pooling without padding: ``(N, C, H, W)`` -> float64 ``(N, C, OH, OW)``."""
    n, c, h, w = x.shape
    y = np.zeros((n, c, output_length(h, size, stride), output_length(w, size, stride)))
    for a in range(n):
        for b in range(c):
            for p, q, cells in _windows(h, w, size, stride):
                y[a, b, p, q] = sum(float(x[a, b, r, s]) for r, s in cells) / len(cells)
    return y


def avg_pool2d_backward(dy, input_shape: tuple[int, int, int, int], size: int, stride: int) -> np.ndarray:
    """Gradient of :func:`avg_pool2d_forward`: ``(N, C, OH, OW)`` -> float64 ``(N, C, H, W)``."""
    n, c, h, w = input_shape
    dx = np.zeros(input_shape)
    for a in range(n):
        for b in range(c):
            for p, q, cells in _windows(h, w, size, stride):
                for r, s in cells:
                    dx[a, b, r, s] += float(dy[a, b, p, q]) / len(cells)
    return dx


def dense_forward(x, weight, bias) -> np.ndarray:
    """``y[n, o] = sum_i x[n, i] * weight[o, i] + bias[o]``; ``(N, in)`` -> float64 ``(N, out)``."""
    n, d = x.shape
    o = weight.shape[0]
    y = np.zeros((n, o))
    for a in range(n):
        for f in range(o):
            total = 0.0 if bias is None else float(bias[f])
            for i in range(d):
                total += float(x[a, i]) * float(weight[f, i])
            y[a, f] = total
    return y


def dense_backward(dy, x, weight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`dense_forward`.

    Parameters
    ----------
    dy : array, shape (N, out)
    x : array, shape (N, in)
    weight : array, shape (out, in)

    Returns
    -------
    dx : float64 (N, in), dweight : float64 (out, in), dbias : float64 (out,)
    """
    n, d = x.shape
    o = weight.shape[0]
    dx, dweight, dbias = np.zeros((n, d)), np.zeros((o, d)), np.zeros(o)
    for a in range(n):
        for f in range(o):
            g = float(dy[a, f])
            dbias[f] += g
            for i in range(d):
                dx[a, i] += g * float(weight[f, i])
                dweight[f, i] += g * float(x[a, i])
    return dx, dweight, dbias


def relu(x) -> np.ndarray:
    """``max(v, 0)`` element by element, float64, the shape of ``x``."""
    flat = [max(float(v), 0.0) for v in np.asarray(x).ravel()]
    return np.array(flat).reshape(np.shape(x))


def softmax_cross_entropy(logits, labels) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean cross-entropy, its gradient and the softmax, one row at a time with ``math``.

    Parameters
    ----------
    logits : array, shape (N, K)
    labels : int array, shape (N,)

    Returns
    -------
    loss : float
    dlogits : float64 array, shape (N, K)
    probabilities : float64 array, shape (N, K)
    """
    n, k = logits.shape
    probabilities = np.zeros((n, k))
    loss = 0.0
    for a in range(n):
        row = [float(v) for v in logits[a]]
        top = max(row)
        log_total = top + math.log(sum(math.exp(v - top) for v in row))
        for b in range(k):
            probabilities[a, b] = math.exp(row[b] - log_total)
        loss -= row[int(labels[a])] - log_total
    dlogits = probabilities.copy()
    for a in range(n):
        dlogits[a, int(labels[a])] -= 1.0
    return loss / n, dlogits / n, probabilities


def torch_sgd_steps(param, grads, *, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """Parameters after ``torch.optim.SGD`` steps, following its documented algorithm.

    For step ``t`` (dampening 0): ``g = grad_t + weight_decay * p``; if momentum is
    nonzero, ``b = g`` at ``t == 0`` else ``b = momentum * b + g``, and ``g = g +
    momentum * b`` with Nesterov or ``g = b`` without; then ``p = p - lr * g``.

    Parameters
    ----------
    param : array, any shape
        Initial parameter.
    grads : sequence of arrays, the shape of ``param``
        Gradient at each step.

    Returns
    -------
    history : list of float64 arrays, the shape of ``param``
        The parameter after each step.
    """
    p = np.array(param, dtype=np.float64)
    buf = None
    history = []
    for grad in grads:
        g = np.array(grad, dtype=np.float64)
        if weight_decay != 0:
            g = g + weight_decay * p
        if momentum != 0:
            buf = g.copy() if buf is None else momentum * buf + g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
        history.append(p.copy())
    return history
