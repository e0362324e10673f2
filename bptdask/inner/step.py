"""One training step of one subnetwork: the function every training path calls.

The in-process estimator and (later) each Dask worker call :func:`train_step`; nothing
else re-implements forward, backward or the update.
"""

from __future__ import annotations

from dataclasses import dataclass

from bptdask._typing import Array, Params
from bptdask.model import Sequential
from bptdask.optim import SGD


@dataclass(frozen=True)
class StepResult:
    """What one step returns: new parameters and optimizer state, and the batch loss."""

    params: Params
    state: Params
    loss: float


def train_step(
    model: Sequential,
    params: Params,
    state: Params,
    x: Array,
    y: Array,
    *,
    optimizer: SGD,
    rng=None,
) -> StepResult:
    """Forward, backward and update on one mini-batch.

    Parameters
    ----------
    model : Sequential
    params, state : dict of arrays
        Current parameters and optimizer state (not modified).
    x : float array, shape (N, C, H, W)
    y : int array, shape (N,)
    optimizer : SGD
    rng : NumPy/CuPy Generator for dropout

    Returns
    -------
    StepResult
    """
    loss, grads = model.loss_and_grads(params, x, y, rng=rng)
    new_params, new_state = optimizer.update(params, grads, state)
    return StepResult(params=new_params, state=new_state, loss=loss)
