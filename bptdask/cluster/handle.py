"""A handle on the coordinator actor: one method per call, none waiting for ever.

A call to an actor whose worker died, froze or released it can stay unanswered (the
caller's ``ActorFuture`` is never set), so every call waits in slices and asks between
slices whether to keep waiting. A call that fails or gets no answer in time raises
:class:`~bptdask.errors.CoordinatorLostError`; errors bptdask raises on purpose inside
the coordinator pass through as they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError
from typing import Any

from bptdask._typing import Params
from bptdask.errors import BptDaskError, CoordinatorLostError
from bptdask.outer.protocol import Assignment, EpochWeights, PartKey, Progress, PushAnswer
from bptdask.report import ChunkSources, Evaluation, RunReport

#: Seconds between the checks of a waiting caller.
SLICE_SECONDS = 0.5
#: Errors of an actor call that mean the coordinator cannot be reached.
_ACTOR_LOST = (OSError, RuntimeError, TimeoutError, CancelledError)


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


class CoordinatorHandle:
    """The calls of a :class:`~bptdask.outer.coordinator.TrainingCoordinator` running as a Dask actor.

    Parameters
    ----------
    actor : distributed.Actor
    timeout : float
        Seconds any one call may take.
    check : callable, optional
        Runs while a call waits; raises to stop waiting (the caller was cancelled, the
        actor's worker left the cluster).
    on_version : callable, optional
        Told the version of every set of weights a call returns.
    """

    def __init__(
        self,
        actor,
        *,
        timeout: float,
        check: Callable[[], None] = lambda: None,
        on_version: Callable[[int], None] = lambda version: None,
    ):
        self._actor, self.timeout, self._check, self._on_version = actor, timeout, check, on_version

    def with_timeout(self, timeout: float) -> CoordinatorHandle:
        """The same handle with calls limited to ``timeout`` seconds."""
        return CoordinatorHandle(self._actor, timeout=timeout, check=self._check, on_version=self._on_version)

    def forget(self) -> None:
        """Let go of the actor (it holds the actor's key on the cluster); later calls raise."""
        self._actor = None

    def _answer(self, method: str, call: Callable[[], Any]) -> Any:
        if self._actor is None:
            raise CoordinatorLostError(f"{method}: the coordinator was released")
        try:
            future = call()  # raises at once once the actor is known lost
            return await_answer(future, method=method, timeout=self.timeout, check=self._check)
        except BptDaskError:
            raise
        except _ACTOR_LOST as exc:
            raise CoordinatorLostError(f"{method} failed: {type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------ a worker's calls
    def next_part(self, worker: str, holdings: Iterable[int] | None = None) -> Assignment:
        return self._answer("next_part", lambda: self._actor.next_part(worker, holdings))

    def pull(self) -> tuple[Params, int]:
        params, version = self._answer("pull", lambda: self._actor.pull())
        self._on_version(version)
        return params, version

    def push_and_next(
        self,
        key: PartKey,
        delta: Params,
        *,
        base_version: int,
        seconds: float,
        sources: ChunkSources | None = None,
        holdings: Iterable[int] | None = None,
    ) -> PushAnswer:
        answer = self._answer(
            "push_and_next",
            lambda: self._actor.push_and_next(
                key, delta, base_version=base_version, seconds=seconds, sources=sources, holdings=holdings
            ),
        )
        self._on_version(answer.version)
        return answer

    def note_seen_version(self, version: int) -> None:
        self._answer("note_seen_version", lambda: self._actor.note_seen_version(version))

    # ------------------------------------------------------------ the supervisor's calls
    def progress(self) -> Progress:
        return self._answer("progress", lambda: self._actor.progress())

    def expire_silent(self) -> list[str]:
        return self._answer("expire_silent", lambda: self._actor.expire_silent())

    def take_epoch_weights(self) -> list[EpochWeights]:
        return self._answer("take_epoch_weights", lambda: self._actor.take_epoch_weights())

    def record_evaluation(self, evaluation: Evaluation) -> None:
        self._answer("record_evaluation", lambda: self._actor.record_evaluation(evaluation))

    def finish(self) -> None:
        self._answer("finish", lambda: self._actor.finish())

    def lose_worker(self, worker: str, reason: str) -> int:
        return self._answer("lose_worker", lambda: self._actor.lose_worker(worker, reason))

    def write_checkpoint(self) -> int | None:
        return self._answer("write_checkpoint", lambda: self._actor.write_checkpoint())

    def report(self) -> RunReport:
        return self._answer("report", lambda: self._actor.report())
