"""``Sequential``: a stack of layers with parameters held outside, in a plain dict.

The model object is immutable configuration. Parameters are a ``dict[str, array]``
named ``"{layer_index}.weight"`` / ``"{layer_index}.bias"`` in PyTorch's layouts, owned
by the caller; :meth:`Sequential.forward_train` returns the caches that
:meth:`Sequential.backward` consumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bptdask import kernels
from bptdask._typing import Array, Params, Shape
from bptdask.backend import to_device
from bptdask.errors import ConfigurationError, DataError, ShapeError
from bptdask.layers import Layer


class Sequential:
    """A feed-forward network: ``layers`` applied in order to inputs of ``input_shape``.

    Parameters
    ----------
    layers : sequence of Layer
    input_shape : (C, H, W)
        Per-sample input shape; every layer's shape is checked here, at construction.

    Raises
    ------
    ShapeError
        When a layer does not fit the shape it receives (a kernel larger than the padded
        input, Dense without Flatten, ...); the message names the layer index.
    """

    def __init__(self, layers: Sequence[Layer], input_shape: Shape):
        self.layers = tuple(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise ConfigurationError(
                    f"layer {i} is {layer!r}, not a bptdask layer; use the classes in bptdask.layers"
                )
        if not self.layers:
            raise ConfigurationError("Sequential needs at least one layer")
        self.input_shape = tuple(int(v) for v in input_shape)
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ShapeError(f"input_shape must be (C, H, W) with positive sizes, got {tuple(input_shape)}")
        shapes = [self.input_shape]
        for i, layer in enumerate(self.layers):
            try:
                shapes.append(tuple(layer.output_shape(shapes[-1])))
            except ShapeError as exc:
                raise ShapeError(f"layer {i} ({type(layer).__name__}): {exc}") from None
        self.shapes: tuple[Shape, ...] = tuple(shapes)
        if len(self.output_shape) != 1:
            raise ShapeError(
                f"the model must end in class scores (K,), but its output is {self.output_shape}; "
                "end it with Flatten() and Dense(num_classes)"
            )

    @property
    def output_shape(self) -> Shape:
        """Per-sample output shape, ``(num_classes,)``."""
        return self.shapes[-1]

    @property
    def num_classes(self) -> int:
        return self.output_shape[0]

    def __repr__(self) -> str:
        body = ",\n    ".join(repr(layer) for layer in self.layers)
        return f"Sequential([\n    {body},\n], input_shape={self.input_shape})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequential) and self.to_config() == other.to_config()

    def __hash__(self) -> int:
        return hash((self.layers, self.input_shape))

    # ----------------------------------------------------------------- parameters
    def param_shapes(self) -> dict[str, Shape]:
        """``{"{i}.weight": shape, ...}`` for every layer with parameters, in layer order."""
        return {
            f"{i}.{name}": tuple(shape)
            for i, layer in enumerate(self.layers)
            for name, shape in layer.param_shapes(self.shapes[i]).items()
        }

    def init_params(self, seed: int = 0, *, dtype="float32", xp=np) -> Params:
        """Seeded initial parameters, ``U(±1/sqrt(fan_in))`` as PyTorch initialises them.

        The same seed gives bit-identical values on every machine: values are drawn on
        the host with NumPy's PCG64 and then moved to ``xp``.
        """
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ConfigurationError(f"parameter dtype must be floating point, got {dtype}")
        rng = np.random.default_rng(seed)
        params = {}
        for i, layer in enumerate(self.layers):
            for name, value in layer.init_params(self.shapes[i], rng, dtype).items():
                params[f"{i}.{name}"] = to_device(value, xp)
        return params

    def check_params(self, params: Params) -> None:
        """Raise ShapeError unless ``params`` has exactly this model's names and shapes."""
        expected = self.param_shapes()
        missing = sorted(set(expected) - set(params))
        extra = sorted(set(params) - set(expected))
        if missing or extra:
            raise ShapeError(f"parameter names do not match the model: missing {missing}, unexpected {extra}")
        for name, shape in expected.items():
            if tuple(params[name].shape) != shape:
                raise ShapeError(f"parameter {name!r} has shape {tuple(params[name].shape)}, the model needs {shape}")

    def layer_params(self, params: Params, index: int) -> Params:
        """Layer ``index``'s parameters under their local names (``"weight"``, ``"bias"``)."""
        prefix = f"{index}."
        return {name[len(prefix) :]: value for name, value in params.items() if name.startswith(prefix)}

    # ----------------------------------------------------------------- passes
    def check_input(self, x: Array) -> None:
        """Raise ShapeError unless ``x`` is a batch ``(N, *input_shape)`` of floats."""
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            hint = "; add a channel axis with x[:, None]" if x.ndim == 3 else ""
            raise ShapeError(
                f"expected input of shape (N, {', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}{hint}"
            )
        if x.dtype.kind != "f":
            raise DataError(
                f"model input must be floating point, got dtype {x.dtype}; convert with x.astype('float32')"
            )

    def forward_train(self, params: Params, x: Array, *, train: bool = True, rng=None) -> tuple[Array, list[Any]]:
        """Forward pass that keeps what :meth:`backward` needs.

        Parameters
        ----------
        params : dict of arrays
        x : array, shape (N, C, H, W)
        train : bool
            True enables dropout, which then draws from ``rng``.

        Returns
        -------
        logits : array, shape (N, num_classes)
        caches : list, one entry per layer
        """
        self.check_input(x)
        x = kernels.batch_last(x)
        caches = []
        for i, layer in enumerate(self.layers):
            x, cache = layer.forward(self.layer_params(params, i), x, train=train, rng=rng)
            caches.append(cache)
        return x, caches

    def forward(self, params: Params, x: Array) -> Array:
        """Inference logits ``(N, num_classes)`` for a batch ``(N, C, H, W)``."""
        logits, _ = self.forward_train(params, x, train=False)
        return logits

    def backward(self, params: Params, caches: list[Any], dlogits: Array) -> Params:
        """Parameter gradients from the output gradient ``(N, num_classes)``."""
        grads: Params = {}
        dy = dlogits
        first_with_params = min(
            (i for i, layer in enumerate(self.layers) if layer.param_shapes(self.shapes[i])), default=0
        )
        for i in range(len(self.layers) - 1, -1, -1):
            need_input_grad = i > first_with_params
            dy, layer_grads = self.layers[i].backward(
                self.layer_params(params, i), caches[i], dy, need_input_grad=need_input_grad
            )
            grads.update({f"{i}.{name}": g for name, g in layer_grads.items()})
            if not need_input_grad:
                break
        return {name: grads[name] for name in self.param_shapes()}

    def check_batch_labels(self, x: Array, y: Array) -> None:
        """Raise unless ``y`` holds one label in ``[0, num_classes)`` per sample of ``x``."""
        if tuple(y.shape) != (x.shape[0],):
            raise ShapeError(
                f"labels have shape {tuple(y.shape)}; expected ({x.shape[0]},), one integer label "
                "per sample of x (flatten column vectors with y.ravel())"
            )
        self.check_labels(y)

    def check_labels(self, y: Array) -> None:
        """Raise DataError unless ``y`` is integer labels in ``[0, num_classes)``."""
        if y.dtype.kind not in "iu":
            raise DataError(f"labels must be integers, got dtype {y.dtype}")
        if y.size and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise DataError(
                f"label {bad} is out of range for a model with {self.num_classes} classes "
                f"(labels must lie in [0, {self.num_classes - 1}]); encode labels as 0..K-1 "
                f"or build the model with more classes"
            )

    def loss_and_grads(self, params: Params, x: Array, y: Array, *, rng=None) -> tuple[float, Params]:
        """Mean softmax cross-entropy of a training batch and its parameter gradients.

        Parameters
        ----------
        x : array, shape (N, C, H, W)
        y : int array, shape (N,)
        rng : NumPy/CuPy Generator, used by dropout layers

        Returns
        -------
        loss : float
        grads : dict of arrays, named and shaped like ``params``
        """
        self.check_input(x)
        self.check_batch_labels(x, y)
        loss, grads = self.lazy_loss_and_grads(params, x, y, rng=rng)
        return float(loss), grads

    def lazy_loss_and_grads(self, params: Params, x: Array, y: Array, *, rng=None) -> tuple[Array, Params]:
        """:meth:`loss_and_grads` without input checks, the loss left as a 0-d array.

        Nothing here waits for the device: on CuPy the step's kernels stay queued while
        Python moves on. For callers that validated their data once up front.
        """
        logits, caches = self.forward_train(params, x, train=True, rng=rng)
        loss, dlogits = kernels.softmax_cross_entropy(logits, y)
        return loss, self.backward(params, caches, dlogits)

    # ----------------------------------------------------------------- description
    def to_config(self) -> dict[str, Any]:
        """A JSON-ready description from which :meth:`from_config` rebuilds the model."""
        return {"input_shape": list(self.input_shape), "layers": [layer.to_config() for layer in self.layers]}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        """Rebuild a model from :meth:`to_config` output."""
        return cls([Layer.from_config(c) for c in config["layers"]], input_shape=tuple(config["input_shape"]))
