"""Waiting for an actor call's answer without trusting that one comes.

A call to an actor whose worker died, froze or released it can stay unanswered (the
caller's ``ActorFuture`` is never set), so both sides of a run wait in slices and ask
between slices whether to keep waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: Seconds between the checks of a waiting caller.
SLICE_SECONDS = 0.5


def await_answer(future, *, method: str, timeout: float, check: Callable[[], None]) -> Any:
    """The result of actor call ``future`` (to ``method``), waited for at most ``timeout`` seconds.

    ``check()`` runs between slices and raises to stop waiting (the caller was cancelled,
    the actor's worker left). Raises ``TimeoutError`` when no answer came in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return future.result(timeout=min(SLICE_SECONDS, max(deadline - time.monotonic(), 0.001)))
        except TimeoutError:
            check()
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{method} got no answer in {timeout} s") from None
