"""CRC32C checksums of arrays, as model files and checkpoints record and verify them."""

from __future__ import annotations

import google_crc32c
import numpy as np


def array_crc32c(value: np.ndarray) -> int:
    """The CRC32C of an array's bytes in C order (any shape and dtype)."""
    return google_crc32c.value(np.ascontiguousarray(value).tobytes())
