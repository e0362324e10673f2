"""Optimizer maths: SGD with momentum, Nesterov and L2 weight decay (PyTorch's rule)."""

from __future__ import annotations

from bptdask._typing import Array
from bptdask.backend import array_namespace, device_kernels


def sgd_momentum_update(
    param: Array,
    grad: Array,
    velocity: Array,
    *,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
) -> tuple[Array, Array]:
    """One SGD step; arrays of one shape in, new arrays out (inputs are not modified).

    ``d = grad + weight_decay * param``; ``v = momentum * v + d``;
    ``param -= lr * (d + momentum * v if nesterov else v)``. With a zero initial
    velocity this matches ``torch.optim.SGD``.

    Returns
    -------
    param, velocity : arrays, the shape of ``param``
    """
    if (fast := device_kernels(array_namespace(param, grad, velocity))) is not None:
        return fast.sgd_momentum_update(
            param, grad, velocity, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
        )
    dtype = param.dtype.type
    direction = grad + dtype(weight_decay) * param if weight_decay else grad
    velocity = dtype(momentum) * velocity + direction
    step = direction + dtype(momentum) * velocity if nesterov else velocity
    return param - dtype(lr) * step, velocity
