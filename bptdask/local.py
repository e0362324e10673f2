"""In-process training over arrays held in memory, batch by batch.

The loop feeds :func:`bptdask.inner.train_step`; the estimator's local path and every
cluster worker train through it (prediction lives in :mod:`bptdask.predictor`). A
cluster's coordinator counts the NaN updates its workers push; in this process,
:func:`check_converging` stops a run whose epoch ended with NaN or infinite values.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np
from tqdm.auto import tqdm

from bptdask._typing import Array, Params
from bptdask.backend import array_namespace, to_device
from bptdask.errors import TrainingDivergedError
from bptdask.inner import train_step
from bptdask.model import Sequential
from bptdask.optim import SGD

#: Turns a host batch of raw images ``(B, C, H, W)`` into model input on the device.
Prepare = Callable[[np.ndarray], Array]


def train_epoch(
    model: Sequential,
    params: Params,
    state: Params,
    X: np.ndarray,
    y: np.ndarray,
    *,
    optimizer: SGD,
    batch_size: int,
    prepare: Prepare,
    xp: ModuleType,
    rng: np.random.Generator,
    n_threads: int | None = None,
    progress: bool = False,
    description: str = "train",
) -> tuple[Params, Params, float]:
    """One pass over ``X`` ``(N, C, H, W)`` / ``y`` ``(N,)`` in shuffled mini-batches.

    The last batch may be smaller. Dropout draws come from a device generator seeded
    from ``rng``, so a run is reproducible for a given seed. ``n_threads`` is passed to
    :func:`~bptdask.inner.train_step` (None: the sequential step). Labels are checked
    once, here, so the steps never wait for the device; the loss is read back once, at
    the end.

    Returns
    -------
    params, state : the updated parameters and optimizer state
    mean_loss : float, the sample-weighted mean of the batch losses
    """
    model.check_labels(np.asarray(y))
    order = rng.permutation(len(y))
    batches = [np.sort(order[start : start + batch_size]) for start in range(0, len(order), batch_size)]
    device_rng = xp.random.default_rng(int(rng.integers(2**63)))
    total_loss = 0.0
    for xb, yb in tqdm(
        _prepared_batches(X, y, batches, prepare, xp),
        total=len(batches),
        desc=description,
        disable=not progress,
        leave=False,
    ):
        model.check_input(xb)
        result = train_step(
            model, params, state, xb, yb, optimizer=optimizer, rng=device_rng, n_threads=n_threads, validate=False
        )
        params, state = result.params, result.state
        total_loss = total_loss + result.loss * len(yb)
    return params, state, float(total_loss) / len(order)


def _prepared_batches(X: np.ndarray, y: np.ndarray, batches: list[np.ndarray], prepare: Prepare, xp: ModuleType):
    """Yield ``(model input, labels)`` of each batch (row indices into ``X``) on ``xp``'s device.

    On NumPy each batch is gathered and prepared on its own. On a GPU the epoch's images
    are copied to the device and prepared in one go, then sliced: one host-to-device copy
    per epoch instead of one per step (the device holds the epoch as float).
    """
    if xp is np:
        for index in batches:
            yield prepare(X[index]), y[index]
        return
    order = np.concatenate(batches)
    images, labels = prepare(X[order]), to_device(y[order], xp)
    start = 0
    for index in batches:
        stop = start + len(index)
        yield images[start:stop], labels[start:stop]
        start = stop


def check_converging(params: Params, loss: float, *, epoch: int, lr: float) -> None:
    """Raise if ``epoch`` ended with a non-finite mean ``loss`` or any non-finite parameter.

    Raises
    ------
    TrainingDivergedError
        Naming the epoch, the loss, how many parameter arrays hold NaN or infinity, and
        the fix (a lower learning rate).
    """
    broken = [name for name, value in params.items() if not bool(array_namespace(value).isfinite(value).all())]
    if np.isfinite(loss) and not broken:
        return
    held = f" and {len(broken)} of {len(params)} parameter arrays (such as {broken[0]!r}) hold NaN or infinity"
    raise TrainingDivergedError(
        f"training diverged in epoch {epoch}: the mean loss is {loss:g}{held if broken else ''}; "
        f"lower the learning rate (lr={lr:g} in that epoch) and train again"
    )
