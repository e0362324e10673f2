"""The coordinator as a Dask actor: its calls run on the worker's event loop, one at a time.

A Dask actor's plain methods run on a thread of their own; each call then costs a hop to
that thread and back, and on a busy worker that hop costs more than the merge itself.
:class:`CoordinatorActor` wraps a :class:`~bptdask.outer.coordinator.TrainingCoordinator`
in ``async`` methods that never await while they change its state, so each call runs
whole on the event loop, in arrival order, as the coordinator expects. Only the disk
write of a checkpoint leaves the loop, after its snapshot was taken on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from bptdask._typing import Params
from bptdask.outer.coordinator import TrainingCoordinator
from bptdask.outer.protocol import Assignment, EpochWeights, PartKey, Progress, PushAnswer
from bptdask.report import ChunkSources, Evaluation, RunReport


class CoordinatorActor:
    """A :class:`TrainingCoordinator` built from the same arguments, with one ``async`` method per call."""

    def __init__(self, *args, **kwargs):
        self._coordinator = TrainingCoordinator(*args, **kwargs)

    async def next_part(self, worker: str, holdings: Iterable[int] | None = None) -> Assignment:
        return self._coordinator.next_part(worker, holdings)

    async def pull(self) -> tuple[Params, int]:
        return self._coordinator.pull()

    async def push_and_next(
        self,
        key: PartKey,
        delta: Params,
        *,
        base_version: int,
        seconds: float,
        sources: ChunkSources | None = None,
        holdings: Iterable[int] | None = None,
    ) -> PushAnswer:
        return self._coordinator.push_and_next(
            key, delta, base_version=base_version, seconds=seconds, sources=sources, holdings=holdings
        )

    async def note_seen_version(self, version: int) -> None:
        self._coordinator.note_seen_version(version)

    async def progress(self) -> Progress:
        return self._coordinator.progress()

    async def expire_silent(self) -> list[str]:
        return self._coordinator.expire_silent()

    async def take_epoch_weights(self) -> list[EpochWeights]:
        return self._coordinator.take_epoch_weights()

    async def record_evaluation(self, evaluation: Evaluation) -> None:
        self._coordinator.record_evaluation(evaluation)

    async def finish(self) -> None:
        self._coordinator.finish()

    async def lose_worker(self, worker: str, reason: str) -> int:
        return self._coordinator.lose_worker(worker, reason)

    async def write_checkpoint(self) -> int | None:
        """Snapshot here, write on a thread: the loop keeps serving calls while the disk works."""
        writer = self._coordinator.writer
        if writer is None:
            return None
        return await asyncio.to_thread(writer.write, self._coordinator.snapshot())

    async def report(self) -> RunReport:
        return self._coordinator.report()
