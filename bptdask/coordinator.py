"""The training coordinator: IDPA allocation and the global weights behind one object.

A :class:`TrainingCoordinator` runs the epochs of an :class:`~bptdask.schedule.EpochSchedule`
(AGWU lets a free worker start the next epoch; SGWU keeps every worker in the round being
synchronised) and holds a :class:`~bptdask.ps.WeightServer`. Workers call
:meth:`~TrainingCoordinator.next_part` (work pulling), :meth:`~TrainingCoordinator.pull`
and :meth:`~TrainingCoordinator.push_and_pull` (push an update, get the weights back in
the same round trip). It is a plain class, tested without a cluster; the
``cluster`` room runs it as a Dask actor, whose sync methods execute one at a time.

Faults: the coordinator writes a checkpoint (:mod:`bptdask.checkpoint`) every
``checkpoint_every`` merges, and a new coordinator can start from one (``restore``). A
worker declared lost (its process died, or it held a part without a word for longer than
``worker_timeout``) is *dropped*: its chunks go to the others, a push it makes later is
answered ``"revoked"`` and its next ``next_part`` ``"dropped"``, so a frozen process that
resumes changes nothing. A push holding NaN or infinite values is rejected; after
``max_invalid`` such pushes in a row without a merge between them, the run stops with
:attr:`TrainingCoordinator.failure` set and the last good checkpoint kept.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bptdask._typing import Params
from bptdask.allocation import PowerEstimator
from bptdask.checkpoint import CheckpointState, CheckpointStore, CheckpointWriter
from bptdask.errors import ConfigurationError
from bptdask.partition import EpochPlan, Part
from bptdask.ps import PushResult, WeightServer
from bptdask.schedule import EpochSchedule


@dataclass(frozen=True)
class Assignment:
    """What :meth:`TrainingCoordinator.next_part` tells a worker.

    ``status`` is ``"train"`` (train on ``chunks`` then push), ``"wait"`` (nothing free
    right now, ask again shortly), ``"finished"`` (the run is over) or ``"dropped"`` (this
    worker was declared lost: stop).
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
    invalid: int = 0
    revoked: int = 0


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
    checkpoint, checkpoint_every, background_checkpoints
        Directory to write checkpoints to every ``checkpoint_every`` merges, on a
        thread of their own if ``background_checkpoints``
        (:class:`~bptdask.checkpoint.CheckpointWriter`).
    config : dict
        JSON description of the run, stored in every checkpoint (a resume checks it).
    restore : CheckpointState, optional
        Start from this checkpoint instead of ``params``: its weights, version, epochs,
        completed chunks, powers and merge log; the generation is one more than its.
    worker_timeout : float, optional
        Seconds a worker may hold a part without calling before :meth:`expire_silent`
        declares it lost (at least four times the part's expected training time).
    max_invalid : int
        NaN/inf pushes in a row, with no merge between them, that stop the run.
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
        checkpoint: str | None = None,
        checkpoint_every: int = 50,
        background_checkpoints: bool = True,
        config: dict[str, Any] | None = None,
        restore: CheckpointState | None = None,
        worker_timeout: float | None = None,
        max_invalid: int = 3,
    ):
        if not isinstance(epochs, int) or epochs < 1:
            raise ConfigurationError(f"epochs must be a positive integer, got {epochs!r}")
        if isinstance(max_invalid, bool) or not isinstance(max_invalid, int) or max_invalid < 1:
            raise ConfigurationError(f"max_invalid must be an integer >= 1, got {max_invalid!r}")
        if worker_timeout is not None and not worker_timeout > 0:
            raise ConfigurationError(f"worker_timeout must be None or a number of seconds > 0, got {worker_timeout!r}")
        state = restore or CheckpointState(params, 0, -1, 0, {0: []}, {}, config or {})
        self.server = WeightServer(
            state.params, mode=mode, alpha0=alpha0, gamma=gamma, max_staleness=max_staleness,
            version=state.version, records=state.merges,
        )
        self.mode = mode
        self.chunk_sizes = [int(size) for size in chunk_sizes]
        self.epochs, self.seed, self.chunks_per_round, self.balance = epochs, seed, chunks_per_round, balance
        self.generation = state.generation + 1
        self.config = config or state.config
        self.estimator = PowerEstimator(powers=state.powers)
        self.workers: dict[str, WorkerRecord] = {worker: WorkerRecord() for worker in worker_names}
        self.schedule = EpochSchedule(
            self.chunk_sizes, self.workers, epochs=epochs, seed=seed, chunks_per_round=chunks_per_round,
            balance=balance, estimator=self.estimator, lockstep=mode == "sgwu", epochs_done=state.epochs_done,
            open_epochs=state.open_epochs,
        )
        self.epoch_ends: list[float] = list(state.epoch_ends)
        self.evaluations: list[dict] = list(state.evaluations)
        self.issued: dict[tuple[str, int, int], tuple[EpochPlan, Part]] = {}
        self.round_reports: list[dict] = []
        self.started = time.time() - state.counts.get("elapsed_ms", 0) / 1000
        self.finished_at: float | None = time.time() if state.epochs_done >= epochs else None
        self.keep_epoch_weights = keep_epoch_weights
        self._epoch_weights: list[dict] = []
        self.dropped: dict[str, str] = {}
        self.last_seen: dict[str, float] = {}
        self.worker_timeout = worker_timeout
        self.max_invalid, self.invalid_streak, self.failure = max_invalid, 0, None
        self.store = CheckpointStore(checkpoint) if checkpoint is not None else None
        self.writer = None if self.store is None else CheckpointWriter(
            self.store, every=checkpoint_every, background=background_checkpoints, version=state.version
        )
        self.restored_version = state.version if restore is not None else None
        self.seen_version = state.version
        if restore is None:
            self.write_checkpoint()

    @property
    def epochs_done(self) -> int:
        return self.schedule.epochs_done

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    # ------------------------------------------------------------ worker calls
    def next_part(self, worker: str) -> Assignment:
        """The next part for ``worker`` (work pulling), or ``wait`` / ``finished`` / ``dropped``."""
        if worker in self.dropped:
            return Assignment("dropped")
        self.last_seen[worker] = time.monotonic()
        if self.finished:
            return Assignment("finished")
        if worker not in self.workers:
            self.add_worker(worker)
        found = self.schedule.next_part(worker)
        if found is None:
            return Assignment("wait")
        plan, part = found
        key = self.schedule.key(plan, part)
        self.issued[key] = (plan, part)
        return Assignment("train", plan.epoch, key[1], part.part_index, part.chunks)

    def pull(self) -> tuple[Params, int]:
        """``(copy of W, version)``."""
        return self.server.pull()

    def push(
        self, worker: str, round_index: int, part_index: int, delta: Params, *, base_version: int, seconds: float
    ) -> PushResult:
        """Offer the update of an issued part; see :meth:`WeightServer.push`.

        A dropped worker's push, and any push after the run failed, is answered
        ``"revoked"`` and changes nothing.
        """
        key = (worker, int(round_index), int(part_index))
        record = self.workers.setdefault(worker, WorkerRecord())
        if worker in self.dropped or self.failure is not None:
            record.revoked += 1
            return PushResult("revoked", self.server.version, 0, 0.0)
        if key not in self.issued:
            raise ConfigurationError(f"no part {key} was handed out; ask next_part for work first")
        self.last_seen[worker] = time.monotonic()
        plan, part = self.issued[key]
        result = self.server.push(
            worker, key[1], key[2], delta, base_version=base_version, n_samples=part.samples,
            round_samples=part.round_samples, n_workers=part.n_workers, seconds=seconds,
        )
        if result.status == "invalid":
            record.invalid += 1
            self._count_invalid(worker, key)
            return result
        if not result.accepted:
            record.rejected += 1
            return result
        self.invalid_streak = 0
        del self.issued[key]
        if plan.complete(part, seconds=max(seconds, 1e-9)):
            record.parts += 1
            record.samples += part.samples
            record.busy_seconds += seconds
            record.staleness.append(result.staleness)
        if self.mode == "sgwu" and result.status == "merged":
            self.schedule.round_merged(plan)
        self._close_finished_epochs()
        if result.status == "merged" and self.writer is not None:
            self.writer.merged(self.server.version, self.snapshot)
        return result

    def _count_invalid(self, worker: str, key: tuple[str, int, int]) -> None:
        self.invalid_streak += 1
        if self.invalid_streak >= self.max_invalid and self.failure is None:
            self.failure = (
                f"{self.invalid_streak} updates in a row held NaN or infinite values (the last from {worker}, "
                f"part {key[2]} of round {key[1]}), so training diverged; the weights of version "
                f"{self.server.version} are the last good ones"
                + (f" (checkpoint {self.store.path})" if self.store is not None else "")
                + "; lower the learning rate and resume or start again"
            )
            self.finish()

    def push_and_pull(
        self, worker: str, round_index: int, part_index: int, delta: Params, *, base_version: int, seconds: float
    ) -> tuple[PushResult, Params | None, int]:
        """:meth:`push`, then :meth:`pull`: one round trip for a worker that trains on.

        The weights are None when the push is held for its round (SGWU): they would be
        out of date as soon as the round merges, so the worker pulls after that.
        """
        result = self.push(worker, round_index, part_index, delta, base_version=base_version, seconds=seconds)
        if result.status == "pending":
            return result, None, self.server.version
        return (result, *self.server.pull())

    def progress(self) -> tuple[int, int, bool, str | None]:
        """``(epochs completed, version, finished, failure or None)``, cheap enough to poll."""
        return self.epochs_done, self.server.version, self.finished, self.failure

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
            for plan in self.schedule.plans:
                self._record_rounds(plan)
            self.finished_at = time.time()

    def record_evaluation(self, record: dict) -> None:
        """Keep an epoch's score (JSON-able) for the report and the checkpoints."""
        self.evaluations.append(dict(record))

    def note_seen_version(self, version: int) -> None:
        """A worker saw ``W`` at ``version`` before a restart: bounds the merges lost."""
        self.seen_version = max(self.seen_version, int(version))

    # ------------------------------------------------------------ checkpoints
    def snapshot(self) -> CheckpointState:
        """The run's state now, as a checkpoint (weights, version, IDPA state, merge log)."""
        params, version = self.server.pull()
        return CheckpointState(
            params=params, version=version, generation=self.generation, epochs_done=self.epochs_done,
            open_epochs=self.schedule.done_chunks, powers=self.estimator.known,
            config=self.config, merges=self.server.merge_records(), epoch_ends=list(self.epoch_ends),
            evaluations=list(self.evaluations),
            counts={"elapsed_ms": int(1000 * (time.time() - self.started)), "rejected": self.server.rejected,
                    "invalid": self.server.invalid},
        )

    def write_checkpoint(self) -> int | None:
        """Write a checkpoint now (if a directory was given) and wait for it; its version.

        None when there is no directory or the write failed (recorded in the report).
        """
        return None if self.writer is None else self.writer.write(self.snapshot())

    # ------------------------------------------------------------ membership
    def expire_silent(self) -> list[str]:
        """Declare lost, and return, every worker silent for too long.

        Silent: no call for ``worker_timeout`` seconds or, holding a part, for four times
        its expected training time at the worker's measured power if longer. A waiting
        worker asks every few milliseconds, so it too is silent only when frozen.
        """
        if self.worker_timeout is None or self.finished:
            return []
        now, expired = time.monotonic(), []
        for worker in list(self.workers):
            if worker in self.dropped:
                continue
            held = [part for plan in self.schedule.plans for part in plan.in_flight(worker)]
            power = self.estimator.power(worker)
            expected = 4 * max(part.samples for part in held) / power if held and power else 0.0
            if now - self.last_seen.get(worker, now) > max(self.worker_timeout, expected):
                self.lose_worker(worker, reason=f"silent for over {max(self.worker_timeout, expected):.3g} s")
                expired.append(worker)
        return expired

    def add_worker(self, worker: str) -> None:
        """A worker joined: it gets work from the next allocation on."""
        if worker in self.dropped:
            raise ConfigurationError(f"worker {worker!r} was dropped ({self.dropped[worker]}); join under a new name")
        self.workers.setdefault(worker, WorkerRecord())
        self.schedule.add_worker(worker)

    def lose_worker(self, worker: str, reason: str = "lost") -> int:
        """A worker is gone: its unfinished chunks go back to the others. Returns how many parts.

        The worker is dropped for good: its later pushes are revoked.
        """
        self.dropped.setdefault(worker, reason)
        returned, released = self.schedule.lose_worker(worker, lambda key: self.server.push_result(*key) is not None)
        for key in released:
            self.issued.pop(key, None)
        self._close_finished_epochs()
        return returned

    # ------------------------------------------------------------ bookkeeping
    def _record_rounds(self, plan: EpochPlan) -> None:
        for report in plan.round_reports():
            entry = asdict(report)
            entry["epoch"] = plan.epoch
            self.round_reports.append(entry)

    def _close_finished_epochs(self) -> None:
        """Close the oldest open epochs whose chunks are all trained; finish after the last."""
        if self.finished:
            return
        for plan in self.schedule.close_finished():
            self._record_rounds(plan)
            self.epoch_ends.append(time.time() - self.started)
            if self.keep_epoch_weights:
                params, version = self.server.pull()
                self._epoch_weights.append(
                    {"epoch": plan.epoch + 1, "version": version, "seconds": self.epoch_ends[-1], "params": params}
                )
        if self.epochs_done >= self.epochs:
            self.finished_at = time.time()

    def report(self) -> dict:
        """Rounds (busy time, makespan, idle fraction), per-worker totals, merges and powers.

        ``epoch_ends`` and ``seconds`` count from the coordinator's start.
        """
        return {
            "epochs_done": self.epochs_done,
            "epoch_ends": list(self.epoch_ends),
            "version": self.server.version,
            "generation": self.generation,
            "restored_version": self.restored_version,
            "seen_version": self.seen_version,
            "rejected": self.server.rejected,
            "invalid": self.server.invalid,
            "failure": self.failure,
            "dropped": dict(self.dropped),
            "checkpoints": dict(self.writer.status) if self.writer is not None else {"written": 0, "errors": []},
            "evaluations": list(self.evaluations),
            "rounds": list(self.round_reports),
            "workers": {
                worker: {**asdict(record), "power": self.estimator.power(worker)}
                for worker, record in self.workers.items()
            },
            "merges": [asdict(record) for record in self.server.merge_records()],
            "seconds": (self.finished_at or time.time()) - self.started,
        }
