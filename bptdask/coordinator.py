"""The training coordinator: IDPA allocation and the global weights behind one object.

A :class:`TrainingCoordinator` runs an epoch after epoch of :class:`~bptdask.partition.EpochPlan`
and holds a :class:`~bptdask.ps.WeightServer`. Workers call three methods:
:meth:`~TrainingCoordinator.next_part` (work pulling), :meth:`~TrainingCoordinator.pull`
and :meth:`~TrainingCoordinator.push`. It is a plain class, tested without a cluster; the
``cluster`` room runs it as a Dask actor, whose sync methods execute one at a time.

Rounds are numbered across epochs (``epoch * rounds_per_epoch + round``) so that every
merge key ``(worker, round, part)`` is unique for the whole run. In SGWU mode no worker
gets a part of round ``r + 1`` before round ``r`` has been merged.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from bptdask._typing import Params
from bptdask.errors import ConfigurationError
from bptdask.partition import EpochPlan, Part, PowerEstimator
from bptdask.ps import PushResult, WeightServer


@dataclass(frozen=True)
class Assignment:
    """What :meth:`TrainingCoordinator.next_part` tells a worker.

    ``status`` is ``"train"`` (train on ``chunks`` then push), ``"wait"`` (nothing free
    right now, ask again shortly) or ``"finished"`` (the run is over).
    """

    status: str
    epoch: int = -1
    round_index: int = -1
    part_index: int = -1
    chunks: tuple[int, ...] = ()


@dataclass
class WorkerRecord:
    """Per-worker totals for the report."""

    parts: int = 0
    samples: int = 0
    busy_seconds: float = 0.0
    staleness: list[int] = field(default_factory=list)
    rejected: int = 0


class TrainingCoordinator:
    """Hands out parts, merges updates and keeps the per-round report.

    Parameters
    ----------
    params : dict of arrays
        Initial global weights.
    chunk_sizes : sequence of int
        Training samples in each chunk of the dataset.
    worker_names : iterable of str
        Worker names (addresses) present at the start.
    epochs : int
    seed : int
        Seeds the chunk order of every epoch.
    chunks_per_round : int
        Chunks in one allocation round (increment).
    mode, alpha0, gamma, max_staleness
        The weight server's rule (:class:`~bptdask.ps.WeightServer`).
    balance : {"power", "even"}
        IDPA, or the equal-split baseline (:class:`~bptdask.partition.EpochPlan`).
    keep_epoch_weights : bool
        Keep a copy of ``W`` at the end of every epoch until :meth:`take_epoch_weights`
        collects it, so that each epoch can be scored however fast epochs pass.
    """

    def __init__(
        self,
        params: Params,
        *,
        chunk_sizes: Sequence[int],
        worker_names: Iterable[str],
        epochs: int,
        seed: int = 0,
        chunks_per_round: int,
        mode: str = "agwu",
        alpha0: float = 1.0,
        gamma: float = 0.5,
        max_staleness: int | None = None,
        balance: str = "power",
        keep_epoch_weights: bool = False,
    ):
        if not isinstance(epochs, int) or epochs < 1:
            raise ConfigurationError(f"epochs must be a positive integer, got {epochs!r}")
        self.server = WeightServer(params, mode=mode, alpha0=alpha0, gamma=gamma, max_staleness=max_staleness)
        self.mode = mode
        self.chunk_sizes = [int(size) for size in chunk_sizes]
        self.epochs, self.seed, self.chunks_per_round, self.balance = epochs, seed, chunks_per_round, balance
        self.estimator = PowerEstimator()
        self.workers: dict[str, WorkerRecord] = {worker: WorkerRecord() for worker in worker_names}
        self.epoch = 0
        self.epochs_done = 0
        self.epoch_ends: list[float] = []
        self.plan = self._plan_for(0, self.workers)
        self.synced_round = 0
        self.issued: dict[tuple[str, int, int], Part] = {}
        self.round_reports: list[dict] = []
        self.started = time.time()
        self.finished_at: float | None = None
        self.keep_epoch_weights = keep_epoch_weights
        self._epoch_weights: list[dict] = []

    def _plan_for(self, epoch: int, workers: Iterable[str]) -> EpochPlan:
        return EpochPlan(
            self.chunk_sizes, sorted(workers), epoch=epoch, seed=self.seed,
            chunks_per_round=self.chunks_per_round, estimator=self.estimator, balance=self.balance,
        )

    def _global_round(self, local_round: int) -> int:
        return self.epoch * self.plan.n_rounds + local_round

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    # ------------------------------------------------------------ worker calls
    def next_part(self, worker: str) -> Assignment:
        """The next part for ``worker`` (work pulling), or ``wait`` / ``finished``."""
        if self.finished:
            return Assignment("finished")
        if worker not in self.workers:
            self.add_worker(worker)
        through = self.synced_round if self.mode == "sgwu" else None
        part = self.plan.next_part(worker, through_round=through)
        if part is None and self.plan.done:
            self._close_epoch()
            if self.finished:
                return Assignment("finished")
            part = self.plan.next_part(worker, through_round=self.synced_round if self.mode == "sgwu" else None)
        if part is None:
            return Assignment("wait")
        key = (worker, self._global_round(part.round_index), part.part_index)
        self.issued[key] = part
        return Assignment("train", self.epoch, key[1], part.part_index, part.chunks)

    def pull(self) -> tuple[Params, int]:
        """``(copy of W, version)``."""
        return self.server.pull()

    def push(
        self, worker: str, round_index: int, part_index: int, delta: Params, *, base_version: int, seconds: float
    ) -> PushResult:
        """Offer the update of an issued part; see :meth:`WeightServer.push`."""
        key = (worker, int(round_index), int(part_index))
        part = self.issued.get(key)
        if part is None:
            raise ConfigurationError(f"no part {key} was handed out; ask next_part for work first")
        result = self.server.push(
            worker, key[1], key[2], delta, base_version=base_version, n_samples=part.samples,
            round_samples=part.round_samples, n_workers=part.n_workers, seconds=seconds,
        )
        record = self.workers.setdefault(worker, WorkerRecord())
        if not result.accepted:
            record.rejected += 1
            return result
        if self.issued.pop(key, None) is not None and self.plan.complete(part, seconds=max(seconds, 1e-9)):
            record.parts += 1
            record.samples += part.samples
            record.busy_seconds += seconds
            record.staleness.append(result.staleness)
        if self.mode == "sgwu" and result.status == "merged":
            self.synced_round += 1
        return result

    def progress(self) -> tuple[int, int, bool]:
        """``(epochs completed, version, finished)``, cheap enough to poll."""
        return self.epochs_done, self.server.version, self.finished

    def take_epoch_weights(self) -> list[dict]:
        """The kept end-of-epoch weights not collected yet, oldest first; forgets them.

        Each is ``{"epoch": epochs completed, "version", "seconds": since the start, "params"}``.
        """
        taken, self._epoch_weights = self._epoch_weights, []
        return taken

    def finish(self) -> None:
        """End the run now (a target was reached): every later ``next_part`` says ``finished``.

        Parts already handed out may still be pushed and merged.
        """
        if not self.finished:
            self._record_rounds()
            self.finished_at = time.time()

    # ------------------------------------------------------------ membership
    def add_worker(self, worker: str) -> None:
        """A worker joined: it gets work from the next allocation on."""
        self.workers.setdefault(worker, WorkerRecord())
        if worker not in self.plan.workers:
            self.plan.add_worker(worker)

    def lose_worker(self, worker: str) -> int:
        """A worker is gone: its unfinished chunks go back to the others. Returns how many parts."""
        for part in self.plan.in_flight(worker):
            key = (worker, self._global_round(part.round_index), part.part_index)
            if self.server.push_result(*key) is not None:
                self.plan.complete(part, seconds=1e-9)
            self.issued.pop(key, None)
        returned = self.plan.lose_worker(worker)
        return len(returned)

    # ------------------------------------------------------------ bookkeeping
    def _record_rounds(self) -> None:
        for report in self.plan.round_reports():
            entry = asdict(report)
            entry["epoch"] = self.epoch
            self.round_reports.append(entry)

    def _close_epoch(self) -> None:
        self._record_rounds()
        self.epochs_done += 1
        self.epoch_ends.append(time.time() - self.started)
        if self.keep_epoch_weights:
            params, version = self.server.pull()
            self._epoch_weights.append(
                {"epoch": self.epochs_done, "version": version, "seconds": self.epoch_ends[-1], "params": params}
            )
        if self.epoch + 1 >= self.epochs:
            self.finished_at = time.time()
            return
        self.epoch += 1
        self.plan = self._plan_for(self.epoch, self.plan.workers)
        self.synced_round = 0

    def report(self) -> dict:
        """Rounds (busy time, makespan, idle fraction), per-worker totals, merges and powers.

        ``epoch_ends`` and ``seconds`` count from the coordinator's start.
        """
        return {
            "epochs_done": self.epochs_done,
            "epoch_ends": list(self.epoch_ends),
            "version": self.server.version,
            "rejected": self.server.rejected,
            "rounds": list(self.round_reports),
            "workers": {
                worker: {**asdict(record), "power": self.estimator.power(worker)}
                for worker, record in self.workers.items()
            },
            "merges": [asdict(record) for record in self.server.merge_records()],
            "seconds": (self.finished_at or time.time()) - self.started,
        }
