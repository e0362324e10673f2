"""One training step of one subnetwork: the function every training path calls.

The in-process estimator and each Dask worker call :func:`train_step`; nothing else
re-implements forward, backward or the update. With ``n_threads`` the step runs as a task
graph (:mod:`bptdask.inner.plan`) on bptdask's thread pool (:mod:`bptdask.inner.runner`);
without it, as one sequential pass over the whole batch (the reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from bptdask._typing import Array, Params
from bptdask.inner.memory import retain_freed_memory
from bptdask.inner.plan import Plan, make_plan
from bptdask.inner.runner import run_plan
from bptdask.model import Sequential
from bptdask.optim import SGD


@dataclass(frozen=True)
class StepResult:
    """What one step returns: new parameters and optimizer state, and the batch loss."""

    params: Params
    state: Params
    #: The batch's mean loss: a float, or a 0-d array of the step's array module when the
    #: step ran with ``validate=False`` (``float(result.loss)`` then waits for the device).
    loss: float | Array


@lru_cache(maxsize=64)
def cached_plan(model: Sequential, batch_size: int, optimizer: SGD, micro_batches: int | None) -> Plan:
    """:func:`make_plan`, memoised: steps with the same settings reuse one plan."""
    return make_plan(model, batch_size, optimizer=optimizer, micro_batches=micro_batches)


def step_inputs(plan: Plan, params: Params, state: Params, x: Array, y: Array, seed: int) -> dict:
    """The per-step inputs of ``plan``: the batch, a seed and each stage's parameters and state."""
    inputs = {"x": x, "y": y, "seed": seed}
    for stage in plan.stages:
        inputs[("params", stage.index)] = {name: params[name] for name in stage.param_names}
        inputs[("state", stage.index)] = {name: state[name] for name in stage.param_names}
    return inputs


def train_step(
    model: Sequential,
    params: Params,
    state: Params,
    x: Array,
    y: Array,
    *,
    optimizer: SGD,
    rng=None,
    n_threads: int | None = None,
    micro_batches: int | None = None,
    validate: bool = True,
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
    n_threads : int, optional
        Run the step as a task graph on this many threads. None runs the sequential
        whole-batch reference. Every thread count gives bit-identical results.
    micro_batches : int, optional
        Micro-batches of the task graph (default: about 32 samples each).
    validate : bool, default True
        Check ``x``, ``y`` and the labels' range, and return the loss as a float. False
        skips both, for callers that validated their data once: on CuPy each of them
        would wait for the GPU to finish the previous step.

    Returns
    -------
    StepResult
    """
    model.check_params(params)
    retain_freed_memory()
    if validate:
        model.check_input(x)
        model.check_batch_labels(x, y)
    if n_threads is None:
        loss, grads = model.lazy_loss_and_grads(params, x, y, rng=rng)
        new_params, new_state = optimizer.update(params, grads, state)
        return StepResult(params=new_params, state=new_state, loss=float(loss) if validate else loss)
    plan = cached_plan(model, int(x.shape[0]), optimizer, micro_batches)
    seed = 0 if rng is None else int(rng.integers(2**63))
    outputs = run_plan(plan, step_inputs(plan, params, state, x, y, seed), n_threads=n_threads)
    new_params, new_state = {}, {}
    for stage in plan.stages:
        stage_params, stage_state = outputs[("update", stage.index)]
        new_params.update(stage_params)
        new_state.update(stage_state)
    return StepResult(params={name: new_params[name] for name in params}, state=new_state, loss=outputs["loss"])
