"""The training-step plan: a task graph over micro-batches × stages, as plain data.

For a model split into stages ``0..K-1`` and a batch split into micro-batches
``0..M-1`` the graph has, per micro-batch ``m``:

- ``("x", m)``, ``("y", m)``: the micro-batch's rows of the inputs ``"x"`` (turned
  batch-last, as layers pass images) and ``"y"``;
- ``("forward", k, m)``: stage ``k`` forward (depends on stage ``k-1`` or ``("x", m)``);
- ``("loss", m)``: the micro-batch's share of the loss and its logit gradient;
- ``("backward", k, m)``: error propagation through stage ``k`` (depends on
  ``("forward", k, m)`` and on stage ``k+1``'s backward or the loss);
- ``("weight_grad", k, m)``: the weight-gradient partial sum of stage ``k``'s layer with
  parameters (depends on ``("forward", k, m)`` and ``("backward", k, m)``), off the path
  along which the error travels to earlier stages;

and per stage ``k``: ``("reduce", k)`` summing the weight gradients of all micro-batches
in micro-batch order, and ``("update", k)`` applying the optimizer to that stage as soon
as its gradient is reduced, while earlier stages are still back-propagating. ``"loss"``
sums the micro-batch losses. Inputs supplied per step: ``"x"``, ``"y"``, ``"seed"`` and
``("params", k)``, ``("state", k)`` per stage.

The graph is a Dask graph (``{key: (callable, *args)}``), so ``dask.threaded.get`` runs
it as a reference and ``dask.visualize`` draws it; bptdask's own runner executes it with
critical-path priorities computed here from a FLOP cost model.

The micro-batch count depends on the batch size only (about 32 samples each), never on
the thread count, so every thread count computes bit-identical results.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from bptdask.errors import ConfigurationError
from bptdask.inner import tasks
from bptdask.layers import Conv2D, Dense
from bptdask.model import Sequential
from bptdask.optim import SGD

#: Samples per micro-batch the default split aims for.
MICRO_BATCH_SAMPLES = 32
#: Fixed cost of running one task, in FLOP-equivalents, for the priority model.
TASK_OVERHEAD_FLOPS = 2e5
#: Cost of one pass over one parameter element in FLOP-equivalents (memory-bound
#: element-wise work against GEMMs): the SGD update makes about six passes per parameter,
#: the reduction one per micro-batch.
ELEMENT_PASS_FLOPS = 10.0
SGD_PASSES = 6

Key = Hashable


@dataclass(frozen=True, eq=False)
class Plan:
    """A training-step task graph for one model, batch size and micro-batch split.

    Attributes
    ----------
    graph : dict
        Dask-style graph ``{key: (callable, *args)}`` without the per-step inputs.
    stages : tuple of Stage
    bounds : tuple of (start, stop)
        Row range of each micro-batch.
    priority : dict
        Longest remaining path (cost-model FLOPs) from each task to the end of the step.
    outputs : tuple of keys
        ``("update", k)`` for every stage, then ``"loss"``.
    """

    graph: dict[Key, tuple]
    stages: tuple[tasks.Stage, ...]
    bounds: tuple[tuple[int, int], ...]
    priority: dict[Key, float]
    outputs: tuple[Key, ...]
    dependencies: dict[Key, frozenset] = field(repr=False)

    @property
    def input_keys(self) -> tuple[Key, ...]:
        """Keys the caller supplies each step."""
        per_stage = [(kind, s.index) for s in self.stages for kind in ("params", "state")]
        return ("x", "y", "seed", *per_stage)


def micro_batch_bounds(batch_size: int, micro_batches: int) -> tuple[tuple[int, int], ...]:
    """Split ``batch_size`` rows into ``micro_batches`` contiguous ranges whose sizes differ by ≤ 1."""
    if not 1 <= micro_batches <= batch_size:
        raise ConfigurationError(
            f"micro_batches must be between 1 and the batch size {batch_size}, got {micro_batches}"
        )
    edges = np.linspace(0, batch_size, micro_batches + 1).round().astype(int)
    return tuple((int(a), int(b)) for a, b in itertools.pairwise(edges))


def default_micro_batches(batch_size: int) -> int:
    """About :data:`MICRO_BATCH_SAMPLES` samples per micro-batch, at least one micro-batch."""
    return max(1, round(batch_size / MICRO_BATCH_SAMPLES))


def _layer_flops(layer, shape_in, shape_out) -> float:
    if isinstance(layer, Conv2D):
        kh, kw = layer.kernel_size
        return 2.0 * float(np.prod(shape_out)) * shape_in[0] * kh * kw
    if isinstance(layer, Dense):
        return 2.0 * shape_in[0] * layer.out_features
    return float(np.prod(shape_out))


def split_stages(model: Sequential) -> tuple[tasks.Stage, ...]:
    """Group layers into stages: each layer with parameters starts a new stage."""
    groups: list[list[int]] = []
    seen_params = False
    for i, layer in enumerate(model.layers):
        has_params = bool(layer.param_shapes(model.shapes[i]))
        if not groups or (has_params and seen_params):
            groups.append([])
        groups[-1].append(i)
        seen_params = seen_params or has_params
    names = model.param_shapes()
    stages = []
    for k, group in enumerate(groups):
        flops = [_layer_flops(model.layers[i], model.shapes[i], model.shapes[i + 1]) for i in group]
        with_params = [p for p, i in enumerate(group) if model.layers[i].param_shapes(model.shapes[i])]
        position = with_params[0] if with_params else None
        stage_names = tuple(n for n in names if int(n.split(".")[0]) in group)
        stages.append(
            tasks.Stage(
                index=k,
                layer_indices=tuple(group),
                layers=tuple(model.layers[i] for i in group),
                param_names=stage_names,
                forward_flops=sum(flops),
                param_flops=0.0 if position is None else flops[position],
                param_position=position,
                param_count=sum(int(np.prod(names[n])) for n in stage_names),
            )
        )
    return tuple(stages)


def _costs(stages, bounds) -> dict[Key, float]:
    costs: dict[Key, float] = {"loss": TASK_OVERHEAD_FLOPS}
    for m, (start, stop) in enumerate(bounds):
        n = stop - start
        costs[("x", m)] = costs[("y", m)] = TASK_OVERHEAD_FLOPS
        costs[("loss", m)] = TASK_OVERHEAD_FLOPS
        for stage in stages:
            # The first stage propagates no error into its layer with parameters' input.
            propagated = stage.forward_flops - (stage.param_flops if stage.index == 0 else 0.0)
            costs[("forward", stage.index, m)] = TASK_OVERHEAD_FLOPS + n * stage.forward_flops
            costs[("backward", stage.index, m)] = TASK_OVERHEAD_FLOPS + n * propagated
            costs[("weight_grad", stage.index, m)] = TASK_OVERHEAD_FLOPS + n * stage.param_flops
    for stage in stages:
        element_pass = ELEMENT_PASS_FLOPS * stage.param_count
        costs[("reduce", stage.index)] = TASK_OVERHEAD_FLOPS + len(bounds) * element_pass
        costs[("update", stage.index)] = TASK_OVERHEAD_FLOPS + SGD_PASSES * element_pass
    return costs


def critical_path_priority(dependencies: dict[Key, frozenset], costs: dict[Key, float]) -> dict[Key, float]:
    """For each task, its cost plus the costliest chain of tasks that depend on it."""
    dependents: dict[Key, list[Key]] = {key: [] for key in dependencies}
    for key, deps in dependencies.items():
        for dep in deps:
            if dep in dependents:
                dependents[dep].append(key)
    priority: dict[Key, float] = {}
    for key in reversed(topological_order(dependencies)):
        priority[key] = costs[key] + max((priority[d] for d in dependents[key]), default=0.0)
    return priority


def topological_order(dependencies: dict[Key, frozenset]) -> list[Key]:
    """Tasks ordered so that each comes after every task it depends on; raises on a cycle."""
    remaining = {key: {d for d in deps if d in dependencies} for key, deps in dependencies.items()}
    order: list[Key] = []
    ready = [key for key, deps in remaining.items() if not deps]
    dependents: dict[Key, list[Key]] = {key: [] for key in dependencies}
    for key, deps in remaining.items():
        for dep in deps:
            dependents[dep].append(key)
    while ready:
        key = ready.pop()
        order.append(key)
        for child in dependents[key]:
            remaining[child].discard(key)
            if not remaining[child]:
                ready.append(child)
    if len(order) != len(dependencies):
        raise ConfigurationError("the task graph has a cycle")
    return order


def task_dependencies(task: tuple, keys) -> frozenset:
    """Keys among ``keys`` that the arguments of ``task`` refer to (directly or in lists)."""
    found = set()
    for arg in task[1:]:
        for item in arg if isinstance(arg, list) else [arg]:
            if _is_key(item) and item in keys:
                found.add(item)
    return frozenset(found)


def _is_key(value: Any) -> bool:
    return isinstance(value, (str, tuple)) and not isinstance(value, bool)


def make_plan(
    model: Sequential, batch_size: int, *, optimizer: SGD, micro_batches: int | None = None, train: bool = True
) -> Plan:
    """Build the task graph of one training step of ``model`` on ``batch_size`` samples.

    Parameters
    ----------
    model : Sequential
    batch_size : int
        Rows of ``x`` and ``y`` the plan expects each step.
    optimizer : SGD
        Its settings are baked into the update tasks.
    micro_batches : int, optional
        Number of micro-batches; default :func:`default_micro_batches`.
    train : bool
        Whether dropout is active (always true for a training step; false is for tests).
    """
    bounds = micro_batch_bounds(batch_size, micro_batches or default_micro_batches(batch_size))
    stages = split_stages(model)
    last = len(stages) - 1
    graph: dict[Key, tuple] = {}
    for m, (start, stop) in enumerate(bounds):
        graph[("x", m)] = (tasks.slice_images, "x", start, stop)
        graph[("y", m)] = (tasks.slice_rows, "y", start, stop)
        for stage in stages:
            upstream = ("x", m) if stage.index == 0 else ("forward", stage.index - 1, m)
            graph[("forward", stage.index, m)] = (
                partial(tasks.forward_stage, stage, m, train),
                ("params", stage.index),
                upstream,
                "seed",
            )
        weight = (stop - start) / batch_size
        graph[("loss", m)] = (partial(tasks.loss_gradient, weight), ("forward", last, m), ("y", m))
        for stage in stages:
            downstream = ("loss", m) if stage.index == last else ("backward", stage.index + 1, m)
            graph[("backward", stage.index, m)] = (
                partial(tasks.backward_stage, stage, stage.index == 0),
                ("params", stage.index),
                ("forward", stage.index, m),
                downstream,
            )
            graph[("weight_grad", stage.index, m)] = (
                partial(tasks.weight_grad_stage, stage),
                ("params", stage.index),
                ("forward", stage.index, m),
                ("backward", stage.index, m),
            )
    for stage in stages:
        k = stage.index
        graph[("reduce", k)] = (tasks.reduce_gradients, [("weight_grad", k, m) for m in range(len(bounds))])
        graph[("update", k)] = (partial(tasks.update_stage, optimizer), ("params", k), ("state", k), ("reduce", k))
    graph["loss"] = (tasks.total_loss, [("loss", m) for m in range(len(bounds))])

    dependencies = {key: task_dependencies(task, graph) for key, task in graph.items()}
    priority = critical_path_priority(dependencies, _costs(stages, bounds))
    outputs = (*[("update", s.index) for s in stages], "loss")
    return Plan(
        graph=graph, stages=stages, bounds=bounds, priority=priority, outputs=outputs, dependencies=dependencies
    )
