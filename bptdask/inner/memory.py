"""Keep freed memory in the process instead of handing it back to the OS after every step.

A training step allocates and frees the same large arrays (im2col buffers, activations of
a few MB) again and again. glibc's malloc serves such sizes with ``mmap`` and returns them
on ``free``, so every step page-faults its buffers back in: on LeNet-5, batch 64, that was
about 5,000 page faults and 12–17 ms of system time per step, a third of the step. Raising
glibc's mmap and trim thresholds keeps those pages mapped for reuse; the process then holds
on to its peak working set (tens of MB for LeNet-5). Elsewhere than glibc this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

#: ``mallopt`` parameter numbers from glibc's ``malloc.h``.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: The largest mmap threshold glibc accepts on 64-bit (``HEAP_MAX_SIZE / 2``).
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 512 * 1024 * 1024

_lock = threading.Lock()
_done = False


def retain_freed_memory() -> bool:
    """Raise glibc's mmap/trim thresholds once per process; True if they were set."""
    global _done
    with _lock:
        if _done:
            return True
        _done = True
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name)
            mallopt = libc.mallopt
        except (OSError, AttributeError, TypeError):
            return False
        return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
            mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
        )
