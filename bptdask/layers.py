"""Layer specifications: frozen dataclasses holding only hyperparameters.

A layer knows its output shape, the shapes and initial values of its parameters, and how
to call the kernels forward and backward. It holds no arrays: parameters come in as a
dict (``{"weight": ..., "bias": ...}``) and the forward pass returns the cache that the
backward pass consumes.

Layers pass images batch-last, ``(C, H, W, N)`` (:mod:`bptdask.kernels.layout`; the
model converts its ``(N, C, H, W)`` input once), and flat activations as ``(N, F)``;
shapes given to and returned by :meth:`Layer.output_shape` are per sample.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from bptdask import kernels
from bptdask._typing import Array, Params, Shape
from bptdask.errors import ConfigurationError, ShapeError


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ConfigurationError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return pair


def _require_positive(value: int, name: str) -> None:
    if not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")


def _require_image(layer: Layer, shape: Shape) -> None:
    if len(shape) != 3:
        raise ShapeError(
            f"{layer!r} needs an image input (C, H, W), got shape {shape}; "
            "put it before Flatten() or give the model an image input_shape"
        )


@dataclass(frozen=True)
class Layer:
    """Base class: a parameter-free layer that passes shapes through unchanged."""

    registry: ClassVar[dict[str, type[Layer]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            Layer.registry[cls.__name__] = cls

    def output_shape(self, input_shape: Shape) -> Shape:
        """Per-sample output shape for a per-sample ``input_shape``; raises ShapeError."""
        return input_shape

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        """Shapes of this layer's parameters, by local name (``"weight"``, ``"bias"``)."""
        return {}

    def init_params(self, input_shape: Shape, rng: np.random.Generator, dtype) -> Params:
        """Initial parameter values on the host (NumPy), drawn from ``rng``."""
        return {}

    def forward(self, params: Params, x: Array, *, train: bool, rng) -> tuple[Array, Any]:
        """``(y, cache)``; ``cache`` is whatever :meth:`backward` needs."""
        raise NotImplementedError

    def backward(self, params: Params, cache: Any, dy: Array, *, need_input_grad: bool) -> tuple[Array | None, Params]:
        """``(dx, grads)``: input gradient (None if not needed) and parameter gradients."""
        raise NotImplementedError

    def input_grad(self, params: Params, cache: Any, dy: Array) -> Array:
        """The input gradient alone (layers with parameters compute it without their weight gradients)."""
        return self.backward(params, cache, dy, need_input_grad=True)[0]

    def param_grads(self, params: Params, cache: Any, dy: Array) -> Params:
        """The parameter gradients alone, by local name (``{}`` for a parameter-free layer)."""
        return self.backward(params, cache, dy, need_input_grad=False)[1]

    def to_config(self) -> dict[str, Any]:
        """Plain, JSON-ready description: ``{"type": "Conv2D", ...hyperparameters}``."""
        return {"type": type(self).__name__, **asdict(self)}

    @staticmethod
    def from_config(config: dict[str, Any]) -> Layer:
        """Rebuild a layer from :meth:`to_config` output; only known layer types load."""
        config = dict(config)
        name = config.pop("type", None)
        cls = Layer.registry.get(name)
        if cls is None:
            raise ConfigurationError(f"unknown layer type {name!r}; known types: {sorted(Layer.registry)}")
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
        except TypeError as exc:
            raise ConfigurationError(f"bad settings for layer type {name!r}: {exc}") from None


def _fan_in_uniform(rng: np.random.Generator, shape: Shape, fan_in: int, dtype) -> np.ndarray:
    """``U(-1/sqrt(fan_in), +1/sqrt(fan_in))``: PyTorch's default for conv and linear layers.

    (``kaiming_uniform_(a=sqrt(5))`` for weights, the same bound for biases), so a network
    initialised here behaves like the same network freshly built in PyTorch.
    """
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


@dataclass(frozen=True)
class Conv2D(Layer):
    """2-D convolution; weight ``(out_channels, in_channels, kh, kw)``, bias ``(out_channels,)``."""

    out_channels: int
    kernel_size: int | tuple[int, int]
    stride: int = 1
    padding: int = 0

    def __post_init__(self):
        _require_positive(self.out_channels, "Conv2D out_channels")
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, "Conv2D kernel_size"))
        _require_positive(self.stride, "Conv2D stride")
        if not isinstance(self.padding, int) or self.padding < 0:
            raise ConfigurationError(f"Conv2D padding must be an int >= 0, got {self.padding!r}")

    def output_shape(self, input_shape):
        _require_image(self, input_shape)
        _c, h, w = input_shape
        kh, kw = self.kernel_size
        if h + 2 * self.padding < kh or w + 2 * self.padding < kw:
            need = max(kh - h, kw - w)
            raise ShapeError(
                f"kernel {self.kernel_size} does not fit input {h}×{w} with padding {self.padding}; "
                f"pad by ≥{-(-need // 2)} or use a smaller kernel"
            )
        return (
            self.out_channels,
            kernels.conv_output_size(h, kh, self.stride, self.padding),
            kernels.conv_output_size(w, kw, self.stride, self.padding),
        )

    def param_shapes(self, input_shape):
        return {"weight": (self.out_channels, input_shape[0], *self.kernel_size), "bias": (self.out_channels,)}

    def init_params(self, input_shape, rng, dtype):
        shapes = self.param_shapes(input_shape)
        fan_in = int(np.prod(shapes["weight"][1:]))
        return {
            "weight": _fan_in_uniform(rng, shapes["weight"], fan_in, dtype),
            "bias": _fan_in_uniform(rng, shapes["bias"], fan_in, dtype),
        }

    def forward(self, params, x, *, train, rng):
        y, col = kernels.conv2d_forward(x, params["weight"], params["bias"], stride=self.stride, padding=self.padding)
        return y, (col, x.shape)

    def backward(self, params, cache, dy, *, need_input_grad):
        dx = self.input_grad(params, cache, dy) if need_input_grad else None
        return dx, self.param_grads(params, cache, dy)

    def input_grad(self, params, cache, dy):
        col, input_shape = cache
        return kernels.conv2d_input_grad(
            dy, params["weight"], col.shape, input_shape, stride=self.stride, padding=self.padding
        )

    def param_grads(self, params, cache, dy):
        col, _ = cache
        dw, db = kernels.conv2d_weight_grad(dy, col, params["weight"].shape)
        return {"weight": dw, "bias": db}


@dataclass(frozen=True)
class _Pool2D(Layer):
    """Shared shape logic of the pooling layers (square window, no padding)."""

    size: int
    stride: int | None = None

    def __post_init__(self):
        _require_positive(self.size, f"{type(self).__name__} size")
        if self.stride is not None:
            _require_positive(self.stride, f"{type(self).__name__} stride")

    @property
    def step(self) -> int:
        """The stride actually used: ``stride`` or, when None, the window size."""
        return self.size if self.stride is None else self.stride

    def output_shape(self, input_shape):
        _require_image(self, input_shape)
        c, h, w = input_shape
        if h < self.size or w < self.size:
            raise ShapeError(
                f"{type(self).__name__} window {self.size} does not fit input {h}×{w}; "
                "use a smaller window or remove a pooling layer"
            )
        return (c, kernels.pool_output_size(h, self.size, self.step), kernels.pool_output_size(w, self.size, self.step))


@dataclass(frozen=True)
class MaxPool2D(_Pool2D):
    """Max pooling over ``size × size`` windows (stride defaults to ``size``)."""

    def forward(self, params, x, *, train, rng):
        y, argmax = kernels.max_pool2d_forward(x, self.size, self.step)
        return y, (argmax, x.shape)

    def backward(self, params, cache, dy, *, need_input_grad):
        argmax, input_shape = cache
        return kernels.max_pool2d_backward(dy, argmax, input_shape, self.size, self.step), {}


@dataclass(frozen=True)
class AvgPool2D(_Pool2D):
    """Average pooling over ``size × size`` windows (stride defaults to ``size``)."""

    def forward(self, params, x, *, train, rng):
        return kernels.avg_pool2d_forward(x, self.size, self.step), x.shape

    def backward(self, params, cache, dy, *, need_input_grad):
        return kernels.avg_pool2d_backward(dy, cache, self.size, self.step), {}


@dataclass(frozen=True)
class ReLU(Layer):
    """Rectified linear unit, ``max(x, 0)``."""

    def forward(self, params, x, *, train, rng):
        return kernels.relu_forward(x)

    def backward(self, params, cache, dy, *, need_input_grad):
        return kernels.relu_backward(dy, cache), {}


@dataclass(frozen=True)
class Flatten(Layer):
    """A batch-last image ``(C, H, W, N)`` -> rows ``(N, C*H*W)`` in PyTorch's feature order.

    The rows are a transposed view of the image (no copy); a flat ``(N, F)`` input passes
    through.
    """

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, params, x, *, train, rng):
        if x.ndim == 2:
            return x, None
        return x.reshape(-1, x.shape[-1]).T, x.shape

    def backward(self, params, cache, dy, *, need_input_grad):
        return (dy if cache is None else dy.T.reshape(cache)), {}


@dataclass(frozen=True)
class Dense(Layer):
    """Fully connected layer; weight ``(out_features, in_features)``, bias ``(out_features,)``."""

    out_features: int

    def __post_init__(self):
        _require_positive(self.out_features, "Dense out_features")

    def output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ShapeError(
                f"Dense needs a flat input (features,), got per-sample shape {input_shape}; insert Flatten() before it"
            )
        return (self.out_features,)

    def param_shapes(self, input_shape):
        return {"weight": (self.out_features, input_shape[0]), "bias": (self.out_features,)}

    def init_params(self, input_shape, rng, dtype):
        shapes = self.param_shapes(input_shape)
        return {
            "weight": _fan_in_uniform(rng, shapes["weight"], input_shape[0], dtype),
            "bias": _fan_in_uniform(rng, shapes["bias"], input_shape[0], dtype),
        }

    def forward(self, params, x, *, train, rng):
        return kernels.dense_forward(x, params["weight"], params["bias"]), x

    def backward(self, params, cache, dy, *, need_input_grad):
        dx = self.input_grad(params, cache, dy) if need_input_grad else None
        return dx, self.param_grads(params, cache, dy)

    def input_grad(self, params, cache, dy):
        return kernels.dense_input_grad(dy, params["weight"])

    def param_grads(self, params, cache, dy):
        dw, db = kernels.dense_weight_grad(dy, cache)
        return {"weight": dw, "bias": db}


@dataclass(frozen=True)
class Dropout(Layer):
    """Inverted dropout with drop probability ``p`` while training; identity at inference."""

    p: float = 0.5

    def __post_init__(self):
        if not 0.0 <= self.p < 1.0:
            raise ConfigurationError(f"Dropout p must be in [0, 1), got {self.p!r}")

    def forward(self, params, x, *, train, rng):
        if not train or self.p == 0.0:
            return x, None
        if rng is None:
            raise ConfigurationError("Dropout in training needs a random generator; pass rng=")
        mask = kernels.dropout_mask(x.shape, self.p, rng, x.dtype)
        return kernels.dropout_forward(x, mask), mask

    def backward(self, params, cache, dy, *, need_input_grad):
        return (dy if cache is None else kernels.dropout_backward(dy, cache)), {}


__all__ = ["AvgPool2D", "Conv2D", "Dense", "Dropout", "Flatten", "Layer", "MaxPool2D", "ReLU"]
