"""Named architectures, built by functions that return a :class:`~bptdask.Sequential`."""

from __future__ import annotations

from collections.abc import Callable

from bptdask._typing import Shape
from bptdask.errors import ConfigurationError
from bptdask.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from bptdask.model import Sequential


def lenet5(
    *, num_classes: int = 10, input_shape: Shape = (1, 28, 28), padding: int = 0, dropout: float = 0.5
) -> Sequential:
    """LeNet-5 as in Caffe's MNIST example, with ReLU after each convolution.

    conv 20@5×5 → ReLU → max-pool 2 → conv 50@5×5 → ReLU → max-pool 2 → dense 500 →
    ReLU → dropout → dense ``num_classes``. ``padding=2`` keeps the spatial size through
    each convolution, which small inputs such as 8×8 digits need. ``dropout=0`` leaves the
    dropout layer out; the default 0.5 gains about half a point of test accuracy when
    training on a few thousand images.
    """
    head = [Dropout(dropout)] if dropout else []
    return Sequential(
        [
            Conv2D(20, 5, padding=padding),
            ReLU(),
            MaxPool2D(2),
            Conv2D(50, 5, padding=padding),
            ReLU(),
            MaxPool2D(2),
            Flatten(),
            Dense(500),
            ReLU(),
            *head,
            Dense(num_classes),
        ],
        input_shape=input_shape,
    )


def vgg_small(*, num_classes: int = 10, input_shape: Shape = (3, 32, 32), width: int = 32) -> Sequential:
    """A VGG-style network for colour images such as CIFAR-10 (3×32×32).

    Two blocks of two 3×3 convolutions (``width`` then ``2*width`` channels, padding 1,
    ReLU) each followed by 2×2 max pooling, then dense 256 → ReLU → dropout 0.5 → dense
    ``num_classes``: six layers with weights and about 11× LeNet-5's FLOPs per image
    (51 MFLOP forward) at the default width.
    """
    return Sequential(
        [
            Conv2D(width, 3, padding=1),
            ReLU(),
            Conv2D(width, 3, padding=1),
            ReLU(),
            MaxPool2D(2),
            Conv2D(2 * width, 3, padding=1),
            ReLU(),
            Conv2D(2 * width, 3, padding=1),
            ReLU(),
            MaxPool2D(2),
            Flatten(),
            Dense(256),
            ReLU(),
            Dropout(0.5),
            Dense(num_classes),
        ],
        input_shape=input_shape,
    )


def mlp(*, num_classes: int = 10, input_shape: Shape = (784, 1, 1), hidden: tuple[int, ...] = (128,)) -> Sequential:
    """A multilayer perceptron: flatten → (dense → ReLU) per ``hidden`` width → dense ``num_classes``.

    It takes any input shape, so :class:`~bptdask.BPTClassifier` can train it on feature
    vectors ``(N, F)`` (seen as ``(N, F, 1, 1)``: one channel per feature, each
    standardised on its own) as well as on images.
    """
    layers = [Flatten()]
    for width in hidden:
        layers += [Dense(width), ReLU()]
    return Sequential([*layers, Dense(num_classes)], input_shape=input_shape)


ARCHITECTURES: dict[str, Callable[..., Sequential]] = {"lenet5": lenet5, "mlp": mlp, "vgg_small": vgg_small}


def build(architecture: str | Callable[..., Sequential], *, num_classes: int, input_shape: Shape) -> Sequential:
    """The model for ``architecture``: a name in :data:`ARCHITECTURES` or a callable.

    A callable is called as ``architecture(num_classes=..., input_shape=...)`` and must
    return a :class:`Sequential`.
    """
    if isinstance(architecture, str):
        if architecture not in ARCHITECTURES:
            raise ConfigurationError(
                f"unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)} "
                "or pass a callable (num_classes=, input_shape=) -> Sequential"
            )
        architecture = ARCHITECTURES[architecture]
    if not callable(architecture):
        raise ConfigurationError(f"architecture must be a name or a callable, got {architecture!r}")
    model = architecture(num_classes=num_classes, input_shape=tuple(input_shape))
    if not isinstance(model, Sequential):
        raise ConfigurationError(f"architecture {architecture!r} returned {type(model).__name__}, not a Sequential")
    return model
