"""The step plan as plain data: structure, dependencies and critical-path priorities."""

from __future__ import annotations

import itertools

import pytest

from bptdask.errors import ConfigurationError
from bptdask.inner.plan import (
    critical_path_priority,
    default_micro_batches,
    make_plan,
    micro_batch_bounds,
    split_stages,
    topological_order,
)
from bptdask.layers import Conv2D, Dense, Dropout, Flatten, ReLU
from bptdask.model import Sequential
from bptdask.models import lenet5
from bptdask.optim import SGD

OPT = SGD(lr=0.1)


def test_stages_start_at_each_layer_with_parameters():
    stages = split_stages(lenet5())
    assert [s.layer_indices for s in stages] == [(0, 1, 2), (3, 4, 5, 6), (7, 8, 9), (10,)]
    assert stages[1].param_names == ("3.weight", "3.bias")
    assert [s.has_dropout for s in stages] == [False, False, True, False]


def test_leading_parameter_free_layers_join_the_first_stage():
    model = Sequential([Dropout(0.1), Conv2D(2, 3), ReLU(), Flatten(), Dense(3)], input_shape=(1, 5, 5))
    assert [s.layer_indices for s in split_stages(model)] == [(0, 1, 2, 3), (4,)]


@pytest.mark.parametrize(("batch", "parts", "sizes"), [(64, 4, [16] * 4), (10, 3, [3, 4, 3]), (5, 5, [1] * 5)])
def test_micro_batches_cover_the_batch_evenly(batch, parts, sizes):
    bounds = micro_batch_bounds(batch, parts)
    assert [b - a for a, b in bounds] == sizes
    assert bounds[0][0] == 0 and bounds[-1][1] == batch
    assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(bounds))


def test_micro_batch_count_depends_on_batch_size_only():
    assert [default_micro_batches(b) for b in (1, 8, 64, 128, 100)] == [1, 1, 2, 4, 3]
    with pytest.raises(ConfigurationError, match="micro_batches must be between 1 and the batch size 4, got 5"):
        micro_batch_bounds(4, 5)


def test_every_task_once_and_dependencies_as_specified():
    plan = make_plan(lenet5(), 128, optimizer=OPT)
    m_count, k_count = 4, 4
    expected = (
        {("x", m) for m in range(m_count)}
        | {("y", m) for m in range(m_count)}
        | {("forward", k, m) for k in range(k_count) for m in range(m_count)}
        | {("backward", k, m) for k in range(k_count) for m in range(m_count)}
        | {("weight_grad", k, m) for k in range(k_count) for m in range(m_count)}
        | {("loss", m) for m in range(m_count)}
        | {("reduce", k) for k in range(k_count)}
        | {("update", k) for k in range(k_count)}
        | {"loss"}
    )
    assert set(plan.graph) == expected
    deps = plan.dependencies
    assert deps[("forward", 0, 2)] == {("x", 2)}
    assert deps[("forward", 2, 1)] == {("forward", 1, 1)}
    assert deps[("loss", 3)] == {("forward", 3, 3), ("y", 3)}
    assert deps[("backward", 3, 0)] == {("forward", 3, 0), ("loss", 0)}
    assert deps[("backward", 1, 0)] == {("forward", 1, 0), ("backward", 2, 0)}
    assert deps[("weight_grad", 1, 0)] == {("forward", 1, 0), ("backward", 1, 0)}
    assert deps[("reduce", 2)] == {("weight_grad", 2, m) for m in range(m_count)}
    assert deps[("update", 2)] == {("reduce", 2)}, "an update waits for its own stage only"
    assert deps["loss"] == {("loss", m) for m in range(m_count)}
    assert plan.outputs == (("update", 0), ("update", 1), ("update", 2), ("update", 3), "loss")
    assert set(plan.input_keys) == {"x", "y", "seed"} | {(kind, k) for kind in ("params", "state") for k in range(4)}


def test_reduction_order_is_fixed_by_micro_batch():
    plan = make_plan(lenet5(), 64, optimizer=OPT, micro_batches=5)
    assert plan.graph[("reduce", 1)][1] == [("weight_grad", 1, m) for m in range(5)]


def test_graph_is_acyclic():
    plan = make_plan(lenet5(), 100, optimizer=OPT)
    order = topological_order(plan.dependencies)
    position = {key: i for i, key in enumerate(order)}
    assert len(order) == len(plan.graph)
    for key, deps in plan.dependencies.items():
        assert all(position[d] < position[key] for d in deps)


def test_cycle_is_detected():
    with pytest.raises(ConfigurationError, match="cycle"):
        topological_order({"a": frozenset({"b"}), "b": frozenset({"a"})})


def test_critical_path_on_a_hand_checked_graph():
    #   a(1) -> b(5) -> d(1)
    #   a(1) -> c(2) -> d(1)
    #   e(10)           (independent)
    deps = {
        "a": frozenset(),
        "b": frozenset({"a"}),
        "c": frozenset({"a"}),
        "d": frozenset({"b", "c"}),
        "e": frozenset(),
    }
    costs = {"a": 1.0, "b": 5.0, "c": 2.0, "d": 1.0, "e": 10.0}
    assert critical_path_priority(deps, costs) == {"a": 7.0, "b": 6.0, "c": 3.0, "d": 1.0, "e": 10.0}


def test_priorities_favour_the_longest_remaining_path():
    plan = make_plan(lenet5(), 64, optimizer=OPT)
    p = plan.priority
    assert p[("x", 0)] > p[("forward", 0, 0)] > p[("forward", 1, 0)] > p[("loss", 0)]
    assert p[("backward", 1, 0)] > p[("backward", 0, 0)] > p[("reduce", 0)] > p[("update", 0)]
    # back-propagating into the conv layers is the longer road than the updates of later stages
    assert p[("backward", 2, 0)] > p[("update", 3)]
    # and than a stage's own weight gradient, which nothing upstream waits for
    assert p[("backward", 1, 0)] > p[("weight_grad", 1, 0)] > p[("reduce", 1)]
    assert p[("backward", 2, 0)] > p[("weight_grad", 2, 0)]
    assert p[("loss", 0)] > p[("update", 3)]
