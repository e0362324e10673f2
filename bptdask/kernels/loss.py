"""Softmax and softmax cross-entropy over logits ``(N, K)``."""

from __future__ import annotations

from bptdask._typing import Array
from bptdask.backend import array_namespace


def log_softmax(logits: Array) -> Array:
    """Row-wise ``log(softmax(logits))``, stable for large logits; ``(N, K)`` -> ``(N, K)``."""
    xp = array_namespace(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: Array) -> Array:
    """Row-wise softmax; ``(N, K)`` -> ``(N, K)``, rows sum to 1."""
    xp = array_namespace(logits)
    return xp.exp(log_softmax(logits))


def softmax_cross_entropy(logits: Array, labels: Array) -> tuple[Array, Array]:
    """Mean cross-entropy of ``softmax(logits)`` against integer ``labels``.

    Parameters
    ----------
    logits : array, shape (N, K)
    labels : int array, shape (N,), values in ``[0, K)``

    Returns
    -------
    loss : 0-d array
        ``-mean(log_softmax(logits)[n, labels[n]])``.
    dlogits : array, shape (N, K)
        Gradient of the loss; each row sums to zero.
    """
    xp = array_namespace(logits, labels)
    n, k = logits.shape
    logp = log_softmax(logits)
    onehot = labels[:, None] == xp.arange(k)[None, :]
    loss = -(logp * onehot).sum() / n
    dlogits = (xp.exp(logp) - onehot) * logits.dtype.type(1.0 / n)
    return loss, dlogits
