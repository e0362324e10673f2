"""Optimizer settings and state over whole parameter dicts."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bptdask._typing import Params
from bptdask.backend import array_namespace
from bptdask.errors import ConfigurationError
from bptdask.kernels import sgd_momentum_update
from bptdask.validation import check_number


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent with momentum and L2 weight decay (``torch.optim.SGD``).

    The optimizer is plain settings; its state (one velocity array per parameter) is a
    dict the caller owns, created by :meth:`init_state`.
    """

    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False

    def __post_init__(self):
        check_number("lr", self.lr, above=0)
        check_number("momentum", self.momentum, at_least=0, below=1)
        check_number("weight_decay", self.weight_decay, at_least=0)
        if self.nesterov and self.momentum == 0:
            raise ConfigurationError("nesterov=True needs momentum > 0")

    def init_state(self, params: Params) -> Params:
        """Zero velocities shaped like ``params``."""
        return {name: array_namespace(value).zeros_like(value) for name, value in params.items()}

    def update(self, params: Params, grads: Params, state: Params) -> tuple[Params, Params]:
        """New ``(params, state)`` after one step; the inputs are left untouched."""
        new_params, new_state = {}, {}
        for name, value in params.items():
            new_params[name], new_state[name] = sgd_momentum_update(
                value,
                grads[name],
                state[name],
                lr=self.lr,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
                nesterov=self.nesterov,
            )
        return new_params, new_state


def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """Learning rate of 0-based ``epoch`` out of ``epochs`` under cosine decay from ``base_lr``.

    ``base_lr * (1 + cos(pi * epoch / epochs)) / 2``: ``base_lr`` first, falling towards 0.
    """
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
