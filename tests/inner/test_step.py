"""The task-graph step against the sequential step, across thread counts and schedulers."""

from __future__ import annotations

import threading

import dask.threaded
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from bptdask.errors import ShapeError
from bptdask.inner import run_plan, train_step
from bptdask.inner.step import cached_plan, step_inputs
from bptdask.layers import AvgPool2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from bptdask.model import Sequential
from bptdask.models import lenet5, vgg_small
from bptdask.optim import SGD

OPT = SGD(lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)


def _problem(model, batch, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *model.input_shape)).astype(dtype)
    return model.init_params(seed, dtype=dtype), x, rng.integers(0, model.num_classes, batch)


def _without_dropout(model):
    """The sequential step cannot replay the graph's per-micro-batch dropout draws."""
    return Sequential(
        [layer for layer in model.layers if not isinstance(layer, Dropout)], input_shape=model.input_shape
    )


def _state(params):
    rng = np.random.default_rng(9)
    return {name: rng.standard_normal(v.shape).astype(v.dtype) * 0.01 for name, v in params.items()}


@pytest.mark.parametrize(
    ("build", "batch"),
    [
        (lambda: lenet5(dropout=0), 64),
        (lambda: lenet5(dropout=0), 37),
        (lambda: _without_dropout(vgg_small(input_shape=(3, 16, 16), width=8)), 24),
        (
            lambda: Sequential(
                [
                    AvgPool2D(2, stride=1),
                    Conv2D(3, 3, padding=1),
                    ReLU(),
                    MaxPool2D(3, stride=2),
                    Flatten(),
                    Dense(5),
                    ReLU(),
                    Dense(4),
                ],
                input_shape=(2, 9, 9),
            ),
            20,
        ),
    ],
    ids=["lenet5-64", "lenet5-37", "vgg-small-24", "leading-pool-overlapping-windows-20"],
)
def test_graph_step_equals_sequential_step_in_float64(build, batch):
    model = build()
    params, x, y = _problem(model, batch, "float64")
    state = _state(params)
    reference = train_step(model, params, state, x, y, optimizer=OPT)
    graph = train_step(model, params, state, x, y, optimizer=OPT, n_threads=2)
    assert graph.loss == pytest.approx(reference.loss, rel=1e-12)
    for name in params:
        for new, ref in ((graph.params[name], reference.params[name]), (graph.state[name], reference.state[name])):
            np.testing.assert_allclose(new, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max(), err_msg=name)
        assert not np.array_equal(graph.params[name], params[name]), f"{name} was not updated"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bit_identical_across_thread_counts_with_dropout(dtype):
    model = lenet5()
    params, x, y = _problem(model, 64, dtype)
    state = _state(params)
    results = [
        train_step(model, params, state, x, y, optimizer=OPT, rng=np.random.default_rng(5), n_threads=n)
        for n in (1, 2, 4)
    ]
    for other in results[1:]:
        assert other.loss == results[0].loss
        for name in params:
            assert np.array_equal(other.params[name], results[0].params[name]), name
            assert np.array_equal(other.state[name], results[0].state[name]), name


def test_dropout_masks_differ_between_steps_and_micro_batches():
    model = lenet5()
    params, x, y = _problem(model, 32, "float64")
    state = _state(params)
    a = train_step(model, params, state, x, y, optimizer=OPT, rng=np.random.default_rng(1), n_threads=2)
    b = train_step(model, params, state, x, y, optimizer=OPT, rng=np.random.default_rng(2), n_threads=2)
    assert a.loss != b.loss


def test_dask_threaded_scheduler_runs_the_same_graph():
    model = lenet5()
    params, x, y = _problem(model, 48, "float64")
    state = _state(params)
    plan = cached_plan(model, 48, OPT, None)
    inputs = step_inputs(plan, params, state, x, y, seed=11)
    ours = run_plan(plan, inputs, n_threads=2)
    with threadpool_limits(limits=1, user_api="blas"):
        values = dask.threaded.get({**plan.graph, **inputs}, list(plan.outputs), num_workers=2)
    theirs = dict(zip(plan.outputs, values, strict=True))
    assert ours["loss"] == theirs["loss"]
    for stage in plan.stages:
        for mine, reference in zip(ours[("update", stage.index)], theirs[("update", stage.index)], strict=True):
            for name in mine:
                assert np.array_equal(mine[name], reference[name]), name


class FailingReLU(ReLU):
    """A ReLU whose backward pass fails, to see a task's error reach the caller."""

    def backward(self, params, cache, dy, *, need_input_grad):
        raise FloatingPointError("backward failed on purpose")


def test_task_failure_reaches_the_caller_and_stops_the_threads():
    model = Sequential([Conv2D(4, 3), FailingReLU(), Flatten(), Dense(3)], input_shape=(1, 6, 6))
    params, x, y = _problem(model, 32, "float32")
    state = SGD(lr=0.1).init_state(params)
    for _ in range(2):
        with pytest.raises(FloatingPointError, match="on purpose"):
            train_step(model, params, state, x, y, optimizer=OPT, n_threads=3, micro_batches=4)
    pool_threads = [t for t in threading.enumerate() if t.name.startswith("bptdask-step-")]
    assert len(pool_threads) >= 2, "helpers are kept for the next step"
    healthy = lenet5(dropout=0)
    params, x, y = _problem(healthy, 32, "float32")
    train_step(healthy, params, SGD(lr=0.1).init_state(params), x, y, optimizer=OPT, n_threads=3)


def test_parameters_of_the_wrong_shape_are_rejected():
    model = lenet5(dropout=0)
    params, x, y = _problem(model, 32, "float32")
    params["3.weight"] = params["3.weight"][:, :, :4, :4]
    with pytest.raises(
        ShapeError, match=r"parameter '3.weight' has shape \(50, 20, 4, 4\), the model needs \(50, 20, 5, 5\)"
    ):
        train_step(model, params, SGD(lr=0.1).init_state(params), x, y, optimizer=OPT, n_threads=2)


def test_blas_threads_are_restored_after_a_step():
    before = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    model = lenet5(dropout=0)
    params, x, y = _problem(model, 16, "float32")
    train_step(model, params, SGD(lr=0.1).init_state(params), x, y, optimizer=OPT, n_threads=2)
    after = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    assert before == after


def test_bad_thread_count():
    model = lenet5(dropout=0)
    params, x, y = _problem(model, 8, "float32")
    with pytest.raises(ValueError, match="n_threads must be a positive integer, got 0"):
        train_step(model, params, SGD(lr=0.1).init_state(params), x, y, optimizer=OPT, n_threads=0)
