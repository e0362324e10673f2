"""The functions a training-step graph's tasks call, one micro-batch and one stage at a time.

A *stage* is one layer with parameters plus the parameter-free layers after it (ReLU,
pooling, flatten, dropout), so each task does enough work to outweigh its scheduling.
Values passed between tasks are small named tuples; parameters arrive as the global
``"{layer_index}.weight"`` dict restricted to the stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from bptdask import kernels
from bptdask._typing import Array, Params
from bptdask.backend import array_namespace
from bptdask.layers import Dropout, Layer
from bptdask.optim import SGD


@dataclass(frozen=True)
class Stage:
    """Consecutive layers ``layer_indices`` of a model, the first of which may hold parameters."""

    index: int
    layer_indices: tuple[int, ...]
    layers: tuple[Layer, ...]
    param_names: tuple[str, ...]
    forward_flops: float
    """Multiply-add FLOPs of one sample's forward pass through the stage (cost model)."""
    param_flops: float = 0.0
    """The part of ``forward_flops`` spent in the layer with parameters."""
    param_position: int | None = None
    """Position in ``layers`` of the layer with parameters (0 in every stage but the first), or None."""
    param_count: int = 0
    """Number of parameter elements (cost model of the reduction and the update)."""

    @property
    def has_dropout(self) -> bool:
        return any(isinstance(layer, Dropout) for layer in self.layers)


class Activation(NamedTuple):
    """A stage's output for one micro-batch and the caches its backward pass needs."""

    value: Array
    caches: tuple[Any, ...]


class Gradient(NamedTuple):
    """Gradient flowing backwards out of a stage (or the loss) for one micro-batch.

    ``at_params`` is the gradient at the output of the stage's layer with parameters,
    from which :func:`weight_grad_stage` computes that layer's weight gradients.
    """

    dx: Array | None
    at_params: Array | None = None
    loss: float = 0.0


def _local(params: Params, layer_index: int) -> Params:
    prefix = f"{layer_index}."
    return {name[len(prefix) :]: value for name, value in params.items() if name.startswith(prefix)}


def slice_rows(array: Array, start: int, stop: int) -> Array:
    """Rows ``start:stop`` of ``array`` (a micro-batch of labels)."""
    return array[start:stop]


def slice_images(images: Array, start: int, stop: int) -> Array:
    """Images ``start:stop`` of a batch ``(N, C, H, W)``, batch-last ``(C, H, W, stop - start)``."""
    return kernels.batch_last(images[start:stop])


def dropout_seed(step_seed: int, stage: int, micro_batch: int) -> int:
    """A seed for one stage and micro-batch of one step, independent of scheduling order."""
    # Python's hash of a tuple of ints is the same in every process (only str and bytes
    # hashes are salted); the generator then mixes it through its SeedSequence. A
    # SeedSequence here cost 10 µs of GIL-held time per task.
    return hash((step_seed, stage, micro_batch)) & (2**63 - 1)


def forward_stage(stage: Stage, micro_batch: int, train: bool, params: Params, upstream, step_seed: int) -> Activation:
    """Run ``stage`` forward on micro-batch ``micro_batch``.

    ``upstream`` is the micro-batch input ``(C, H, W, n)`` or the previous stage's
    :class:`Activation`; dropout (when ``train``) draws from a generator seeded by
    ``step_seed``, the stage and the micro-batch, so results do not depend on which
    thread runs the task or when.
    """
    x = upstream.value if isinstance(upstream, Activation) else upstream
    rng = None
    if train and stage.has_dropout:
        rng = array_namespace(x).random.default_rng(dropout_seed(step_seed, stage.index, micro_batch))
    caches = []
    for index, layer in zip(stage.layer_indices, stage.layers, strict=True):
        x, cache = layer.forward(_local(params, index), x, train=train, rng=rng)
        caches.append(cache)
    return Activation(x, tuple(caches))


def loss_gradient(weight: float, activation: Activation, labels: Array) -> Gradient:
    """Softmax cross-entropy of one micro-batch, scaled by its share ``weight`` of the batch.

    The scaled losses and logit gradients of all micro-batches sum to those of the whole batch.
    """
    loss, dlogits = kernels.softmax_cross_entropy(activation.value, labels)
    return Gradient(dx=dlogits * dlogits.dtype.type(weight), loss=float(loss) * weight)


def backward_stage(
    stage: Stage, is_first: bool, params: Params, activation: Activation, downstream: Gradient
) -> Gradient:
    """Propagate one micro-batch's error back through ``stage`` (no weight gradients).

    Keeps the gradient at the output of the stage's layer with parameters for
    :func:`weight_grad_stage`, a separate task off the critical path. In the first stage
    nothing upstream needs an input gradient, so the walk stops at that layer.
    """
    dy, at_params = downstream.dx, None
    for position in reversed(range(len(stage.layers))):
        index, layer = stage.layer_indices[position], stage.layers[position]
        if position == stage.param_position:
            at_params = dy
            if is_first:
                break
        elif is_first and (stage.param_position is None or position < stage.param_position):
            break
        dy = layer.input_grad(_local(params, index), activation.caches[position], dy)
    return Gradient(dx=None if is_first else dy, at_params=at_params)


def weight_grad_stage(stage: Stage, params: Params, activation: Activation, propagated: Gradient) -> Params:
    """Weight gradients of ``stage``'s layer with parameters for one micro-batch (``{}`` if it has none)."""
    if stage.param_position is None:
        return {}
    index, layer = stage.layer_indices[stage.param_position], stage.layers[stage.param_position]
    grads = layer.param_grads(_local(params, index), activation.caches[stage.param_position], propagated.at_params)
    return {f"{index}.{name}": value for name, value in grads.items()}


def reduce_gradients(parts: list[Params]) -> Params:
    """Sum the micro-batches' weight gradients in list order (a fixed, reproducible order)."""
    if len(parts) == 1:
        return {name: value.copy() for name, value in parts[0].items()}
    total = {name: value + parts[1][name] for name, value in parts[0].items()}
    for part in parts[2:]:
        for name, value in part.items():
            total[name] += value
    return total


def update_stage(optimizer: SGD, params: Params, state: Params, grads: Params) -> tuple[Params, Params]:
    """Apply the optimizer to one stage's parameters as soon as its gradient is reduced."""
    return optimizer.update(params, grads, state)


def total_loss(parts: list[Gradient]) -> float:
    """The batch loss: the micro-batches' weighted losses summed in list order."""
    return float(sum(part.loss for part in parts))
