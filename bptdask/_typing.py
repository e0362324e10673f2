"""Type aliases shared across bptdask."""

from __future__ import annotations

from typing import Any, TypeAlias

#: A NumPy or CuPy array; kernels find their namespace from the array itself.
Array: TypeAlias = Any

#: Parameters, gradients and optimizer state: ``"{layer_index}.weight"`` -> array.
Params: TypeAlias = dict[str, Array]

#: A per-sample shape without the batch axis, e.g. ``(1, 28, 28)`` or ``(500,)``.
Shape: TypeAlias = tuple[int, ...]
