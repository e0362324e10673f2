"""The per-worker training loop, against any object that answers the coordinator's calls.

A worker repeatedly asks for a part, reads the part's chunks, trains on them with
:func:`bptdask.inner.train_step` (through :func:`bptdask.local.train_epoch`) from the
latest global weights and pushes ``delta = W_local - W_base``; the push answers with the
global weights after the merge and the worker's next part, which it starts from (a
worker pulls only at its start and after waiting). A push rejected as stale or invalid
is retrained from fresher weights. The ``cluster`` room passes a handle on the
coordinator actor and a chunk reader; tests pass a plain
:class:`~bptdask.outer.coordinator.TrainingCoordinator` and arrays.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Protocol

import numpy as np

from bptdask._typing import Params
from bptdask.backend import to_device, to_numpy
from bptdask.errors import ClusterTrainingError, TrainingDivergedError
from bptdask.local import train_epoch
from bptdask.model import Sequential
from bptdask.outer.protocol import Assignment, PartKey, PushAnswer, PushResult
from bptdask.outer.run_config import RunConfig
from bptdask.preprocess import normalize
from bptdask.report import ChunkSources, WorkerSummary

#: ``(params, images uint8 (n, C, H, W), labels int64 (n,), epoch) -> (trained params, seconds)``.
TrainPart = Callable[[Params, np.ndarray, np.ndarray, int], tuple[Params, float]]
#: ``chunks -> (images uint8 (n, C, H, W), labels int64 (n,), where the chunks came from)``.
ReadPart = Callable[[tuple[int, ...]], tuple[np.ndarray, np.ndarray, ChunkSources]]


class CoordinatorCalls(Protocol):
    """The coordinator's calls a worker makes (a plain coordinator, or a handle on the actor)."""

    def next_part(self, worker: str, holdings: Iterable[int] | None = None) -> Assignment: ...

    def pull(self) -> tuple[Params, int]: ...

    def push_and_next(
        self,
        key: PartKey,
        delta: Params,
        *,
        base_version: int,
        seconds: float,
        sources: ChunkSources | None = None,
        holdings: Iterable[int] | None = None,
    ) -> PushAnswer: ...


@dataclass
class PartTrainer:
    """Trains one worker's parts (a :data:`TrainPart`); keeps the worker's momentum between parts."""

    model: Sequential
    config: RunConfig
    mean: np.ndarray
    std: np.ndarray
    xp: ModuleType = np
    n_threads: int | None = None
    rng: np.random.Generator = field(default=None)
    state: Params | None = None

    def __post_init__(self):
        if self.rng is None:
            self.rng = np.random.default_rng(self.config.seed)

    def __call__(self, params: Params, images: np.ndarray, labels: np.ndarray, epoch: int) -> tuple[Params, float]:
        """Train on one part ``images`` ``(n, C, H, W)`` uint8 / ``labels`` ``(n,)``; returns (params, seconds)."""
        started = time.perf_counter()
        optimizer = self.config.optimizer(epoch)
        params = {name: to_device(value, self.xp) for name, value in params.items()}
        if self.state is None:
            self.state = optimizer.init_state(params)
        params, self.state, _ = train_epoch(
            self.model,
            params,
            self.state,
            images,
            labels,
            optimizer=optimizer,
            batch_size=self.config.batch_size,
            prepare=self._prepare,
            xp=self.xp,
            rng=self.rng,
            n_threads=self.n_threads,
        )
        return params, time.perf_counter() - started

    def _prepare(self, images: np.ndarray):
        return normalize(to_device(images, self.xp), self.mean, self.std, dtype=self.config.dtype)


def run_worker(
    worker: str,
    coordinator: CoordinatorCalls,
    *,
    read_part: ReadPart,
    train_part: TrainPart,
    device: str = "cpu",
    holdings: Callable[[], Iterable[int] | None] = lambda: None,
    should_stop: Callable[[], bool] = lambda: False,
    poll_seconds: float = 0.02,
    max_retries: int = 3,
) -> WorkerSummary:
    """Train parts until the coordinator says ``finished`` or ``dropped``; returns the summary.

    Each push carries where the part's chunks came from and the chunks this worker
    holds, and its answer brings the next assignment, so a part costs one round trip. A
    push rejected as stale or invalid (NaN/inf) is retrained from fresh weights, up to
    ``max_retries`` times; a revoked one (the part was given to others) is dropped.

    Parameters
    ----------
    worker : str
        This worker's name at the coordinator.
    coordinator : CoordinatorCalls
    read_part : ReadPart
    train_part : TrainPart
    device : str
        Where ``train_part`` computes (``"cpu"`` or ``"gpu"``), for the summary.
    holdings : () -> chunks or None
        The chunks this worker holds in memory, or None when unchanged since last asked.
    should_stop : () -> bool
        Asked before each request for work; True ends the loop as if dropped (the
        task was cancelled).

    Raises
    ------
    TrainingDivergedError
        The same part came back NaN/inf ``max_retries + 1`` times.
    ClusterTrainingError
        The same part was rejected as stale ``max_retries + 1`` times.
    """
    summary = WorkerSummary(worker, device)
    latest = None  # (params, version) returned by the last push; None: pull before training
    assignment = None  # the next assignment, when the last push brought it
    while True:
        if should_stop():
            assignment = Assignment("dropped")
        elif assignment is None:
            assignment = coordinator.next_part(worker, holdings())
        if assignment.status in ("finished", "dropped"):
            summary.dropped = assignment.status == "dropped"
            return summary
        if assignment.status == "wait":
            time.sleep(poll_seconds)
            summary.wait_seconds += poll_seconds
            latest = assignment = None
            continue
        images, labels, sources = read_part(assignment.chunks)
        for _ in range(max_retries + 1):
            base, version = latest if latest is not None else coordinator.pull()
            trained, seconds = train_part(base, images, labels, assignment.epoch)
            delta = {name: to_numpy(trained[name]) - base[name] for name in base}
            answer = coordinator.push_and_next(
                assignment.part, delta, base_version=version, seconds=seconds, sources=sources, holdings=holdings()
            )
            latest = None if answer.params is None else (answer.params, answer.version)
            summary.busy_seconds += seconds
            if answer.result.accepted or answer.result.status == "revoked":
                break
            if answer.result.status == "invalid":
                summary.invalid_retries += 1
                latest = None
            else:
                summary.stale_retries += 1
        else:
            _give_up(worker, assignment, answer.result, max_retries)
        if answer.result.status == "revoked":
            summary.revoked += 1
        else:
            summary.parts += 1
            summary.samples += len(labels)
        assignment = answer.next


def _give_up(worker: str, assignment: Assignment, result: PushResult, max_retries: int) -> None:
    where = f"{worker}: the update of part {assignment.part.part_index} of round {assignment.part.round_index}"
    if result.status == "invalid":
        raise TrainingDivergedError(
            f"{where} held NaN or infinite values {max_retries + 1} times; lower the learning rate"
        )
    raise ClusterTrainingError(
        f"{where} was rejected as stale {max_retries + 1} times; raise max_staleness or use fewer workers"
    )
