"""The same network in PyTorch, for oracle tests and side-by-side benchmarks.

Importing this module needs ``torch`` (the ``peer`` extra); bptdask itself never does.
"""

from __future__ import annotations

import numpy as np
import torch

from bptdask import layers
from bptdask._typing import Params
from bptdask.model import Sequential


def torch_layer(layer: layers.Layer, input_shape: tuple[int, ...]) -> torch.nn.Module:
    """The ``torch.nn`` module equivalent to ``layer`` receiving per-sample ``input_shape``."""
    if isinstance(layer, layers.Conv2D):
        return torch.nn.Conv2d(
            input_shape[0], layer.out_channels, layer.kernel_size, stride=layer.stride, padding=layer.padding
        )
    if isinstance(layer, layers.Dense):
        return torch.nn.Linear(input_shape[0], layer.out_features)
    if isinstance(layer, layers.MaxPool2D):
        return torch.nn.MaxPool2d(layer.size, layer.step)
    if isinstance(layer, layers.AvgPool2D):
        return torch.nn.AvgPool2d(layer.size, layer.step)
    if isinstance(layer, layers.ReLU):
        return torch.nn.ReLU()
    if isinstance(layer, layers.Flatten):
        return torch.nn.Flatten()
    if isinstance(layer, layers.Dropout):
        return torch.nn.Dropout(layer.p)
    raise TypeError(f"no torch equivalent for {layer!r}")


def torch_network(model: Sequential, params: Params, *, dtype=torch.float32, modules=None) -> torch.nn.Sequential:
    """A ``torch.nn.Sequential`` equivalent to ``model`` holding a copy of ``params``.

    Parameter names line up one to one (``"{i}.weight"``), so ``state_dict`` loads strictly.
    ``modules`` may replace individual layers' modules by index (e.g. a dropout that
    replays recorded random draws).
    """
    replacements = modules or {}
    built = [replacements.get(i) or torch_layer(layer, model.shapes[i]) for i, layer in enumerate(model.layers)]
    network = torch.nn.Sequential(*built).to(dtype)
    state = {name: torch.tensor(np.asarray(value), dtype=dtype) for name, value in params.items()}
    network.load_state_dict(state, strict=True)
    return network
