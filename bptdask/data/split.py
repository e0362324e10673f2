"""The seeded train/test split stored with every dataset: pure functions of sizes and a seed."""

from __future__ import annotations

import math
import numbers

import numpy as np

from bptdask.errors import ConfigurationError
from bptdask.validation import check_integer


def num_test_samples(num_samples: int, test_size: float | int) -> int:
    """How many of ``num_samples`` go to the test set.

    Parameters
    ----------
    num_samples : int
    test_size : float in [0, 1) or int in [0, num_samples)
        A fraction (rounded to the nearest count) or a count of test samples; at least
        one sample must stay for training.
    """
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real) or not math.isfinite(test_size):
        raise ConfigurationError(f"test_size must be a fraction in [0, 1) or a sample count, got {test_size!r}")
    if isinstance(test_size, numbers.Integral):
        count = int(test_size)
        valid = 0 <= count < num_samples
    else:
        count = round(float(test_size) * num_samples)
        valid = 0.0 <= float(test_size) < 1.0 and count < num_samples
    if not valid:
        raise ConfigurationError(
            f"test_size={test_size!r} leaves no training samples out of {num_samples} (or is negative); "
            f"pass a fraction in [0, 1) or a count below {num_samples}"
        )
    return count


def draw_test_mask(num_samples: int, num_test: int, seed: int) -> np.ndarray:
    """Boolean ``(num_samples,)``, True for the ``num_test`` test samples drawn with ``seed``."""
    seed = check_integer("seed", seed)
    mask = np.zeros(num_samples, dtype=bool)
    mask[np.random.default_rng(seed).choice(num_samples, size=num_test, replace=False)] = True
    return mask
