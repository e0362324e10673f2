"""Hypothesis strategies for convolution, pooling and dense configurations that fit.

Strategies draw shapes and hyperparameters plus a ``seed``; array values come from
:meth:`numpy.random.Generator` seeded by it, which keeps shrinking cheap while the data
stays dense and tie-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


@dataclass(frozen=True)
class ConvCase:
    """One convolution: input ``(batch, in_channels, height, width)``, weight ``(out, in, kh, kw)``."""

    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel: tuple[int, int]
    stride: int
    padding: int
    seed: int

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.in_channels, self.height, self.width)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels, *self.kernel)

    @property
    def output_hw(self) -> tuple[int, int]:
        """``(OH, OW)`` from PyTorch's formula ``floor((size + 2p - k) / s) + 1``."""
        kh, kw = self.kernel
        return (
            (self.height + 2 * self.padding - kh) // self.stride + 1,
            (self.width + 2 * self.padding - kw) // self.stride + 1,
        )

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.out_channels, *self.output_hw)

    def arrays(self, dtype="float64") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(x, weight, bias, dy)`` drawn from ``seed``: shapes input, weight, ``(out,)``, output."""
        rng = np.random.default_rng(self.seed)
        return tuple(
            rng.standard_normal(shape).astype(dtype)
            for shape in (self.input_shape, self.weight_shape, (self.out_channels,), self.output_shape)
        )


@dataclass(frozen=True)
class PoolCase:
    """One pooling: input ``(batch, channels, height, width)``, square ``size`` window, ``stride``."""

    batch: int
    channels: int
    height: int
    width: int
    size: int
    stride: int
    seed: int

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, self.height, self.width)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (
            self.batch,
            self.channels,
            (self.height - self.size) // self.stride + 1,
            (self.width - self.size) // self.stride + 1,
        )

    def arrays(self, dtype="float64") -> tuple[np.ndarray, np.ndarray]:
        """``(x, dy)`` drawn from ``seed``, shaped input and output; ``x`` has no ties."""
        rng = np.random.default_rng(self.seed)
        x = rng.permutation(int(np.prod(self.input_shape))).reshape(self.input_shape)
        x = (x - x.size / 2) / max(x.size, 1)
        return x.astype(dtype), rng.standard_normal(self.output_shape).astype(dtype)


@dataclass(frozen=True)
class DenseCase:
    """One dense layer: input ``(batch, in_features)``, weight ``(out_features, in_features)``."""

    batch: int
    in_features: int
    out_features: int
    seed: int

    def arrays(self, dtype="float64") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(x, weight, bias, dy)`` drawn from ``seed``."""
        rng = np.random.default_rng(self.seed)
        shapes = (
            (self.batch, self.in_features),
            (self.out_features, self.in_features),
            (self.out_features,),
            (self.batch, self.out_features),
        )
        return tuple(rng.standard_normal(shape).astype(dtype) for shape in shapes)


@st.composite
def conv_cases(
    draw,
    *,
    max_batch: int = 3,
    max_channels: int = 3,
    max_size: int = 8,
    max_kernel: int = 4,
    max_stride: int = 3,
    max_padding: int = 2,
) -> ConvCase:
    """Convolutions whose kernel fits the padded input; sizes may be odd and non-square."""
    kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    padding = draw(st.integers(0, max_padding))
    height = draw(st.integers(max(1, kernel[0] - 2 * padding), max(1, kernel[0] - 2 * padding, max_size)))
    width = draw(st.integers(max(1, kernel[1] - 2 * padding), max(1, kernel[1] - 2 * padding, max_size)))
    return ConvCase(
        batch=draw(st.integers(1, max_batch)),
        in_channels=draw(st.integers(1, max_channels)),
        out_channels=draw(st.integers(1, max_channels + 1)),
        height=height,
        width=width,
        kernel=kernel,
        stride=draw(st.integers(1, max_stride)),
        padding=padding,
        seed=draw(SEEDS),
    )


@st.composite
def pool_cases(
    draw,
    *,
    max_batch: int = 2,
    max_channels: int = 3,
    max_size: int = 9,
    max_window: int = 4,
    max_stride: int = 4,
) -> PoolCase:
    """Poolings whose window fits the input; strides may be below, at or above the window."""
    size = draw(st.integers(1, max_window))
    return PoolCase(
        batch=draw(st.integers(1, max_batch)),
        channels=draw(st.integers(1, max_channels)),
        height=draw(st.integers(size, max(size, max_size))),
        width=draw(st.integers(size, max(size, max_size))),
        size=size,
        stride=draw(st.integers(1, max_stride)),
        seed=draw(SEEDS),
    )


@st.composite
def dense_cases(draw, *, max_batch: int = 4, max_features: int = 9) -> DenseCase:
    """Dense layers of small random widths."""
    return DenseCase(
        batch=draw(st.integers(1, max_batch)),
        in_features=draw(st.integers(1, max_features)),
        out_features=draw(st.integers(1, max_features)),
        seed=draw(SEEDS),
    )


__all__ = ["SEEDS", "ConvCase", "DenseCase", "PoolCase", "conv_cases", "dense_cases", "pool_cases"]
