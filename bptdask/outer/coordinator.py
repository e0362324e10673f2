"""The training coordinator: IDPA allocation and the global weights behind one object.

A :class:`TrainingCoordinator` runs the epochs of an
:class:`~bptdask.outer.schedule.EpochSchedule` (AGWU lets a free worker start the next
epoch; SGWU keeps every worker in the round being synchronised) and holds a
:class:`~bptdask.outer.weights.WeightServer`. Workers call :meth:`~TrainingCoordinator.next_part`
(work pulling), :meth:`~TrainingCoordinator.pull` and
:meth:`~TrainingCoordinator.push_and_next` (push an update, get the weights and the next
part back in the same round trip). Workers say which chunks they hold in memory, and
IDPA hands them those first. It is a plain class, tested without a cluster; the ``cluster`` room
runs it as a Dask actor, whose sync methods execute one at a time.

Faults: the coordinator writes a checkpoint (:mod:`bptdask.outer.checkpoint`) every
``checkpoint_every`` merges, and a new coordinator can start from one (``restore``). A
worker declared lost (its process died, or it held a part without a word for longer than
``worker_timeout``) is *dropped*: its chunks go to the others, a push it makes later is
answered ``"revoked"`` and its next ``next_part`` ``"dropped"``, so a frozen process that
resumes changes nothing. A push holding NaN or infinite values is rejected; after
``max_invalid`` such pushes in a row without a merge between them, the run stops with
:attr:`TrainingCoordinator.failure` set and the last good checkpoint kept.

Time comes from an injected ``clock`` (seconds, monotonic), so tests drive it by hand.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from bptdask._typing import Params
from bptdask.errors import ProtocolError
from bptdask.outer.allocation import PowerEstimator
from bptdask.outer.checkpoint import CheckpointState, CheckpointStore, CheckpointWriter
from bptdask.outer.partition import EpochPlan, Part
from bptdask.outer.protocol import Assignment, EpochWeights, PartKey, Progress, PushAnswer, PushResult
from bptdask.outer.run_config import RunConfig
from bptdask.outer.schedule import EpochSchedule
from bptdask.outer.weights import WeightServer
from bptdask.report import (
    CheckpointStatus,
    ChunkSources,
    EpochMerges,
    Evaluation,
    RoundReport,
    RunReport,
    WorkerTotals,
)


class TrainingCoordinator:
    """Hands out parts, merges updates and keeps the per-round report.

    Parameters
    ----------
    params : dict of arrays
        Initial global weights.
    config : RunConfig
        The run's settings (epochs, seed, merge rule, round size, balance, timeouts).
    chunk_sizes : sequence of int
        Training samples in each chunk of the dataset.
    worker_names : iterable of str
        Worker names (addresses) present at the start.
    run : dict, optional
        The run's description, stored in every checkpoint (a resume checks it).
    checkpoint : str, optional
        Directory to write checkpoints to every ``config.checkpoint_every`` merges.
    background_checkpoints : bool
        Write periodic checkpoints on a thread of their own
        (:class:`~bptdask.outer.checkpoint.CheckpointWriter`).
    keep_epoch_weights : bool
        Keep a copy of ``W`` at the end of every epoch until :meth:`take_epoch_weights`
        collects it, so that each epoch can be scored however fast epochs pass.
    restore : CheckpointState, optional
        Start from this checkpoint instead of ``params``: its weights, version, epochs,
        completed chunks, powers and merge log; the generation is one more than its.
    clock : callable
        Monotonic seconds (``time.monotonic``); injected by tests.
    """

    def __init__(
        self,
        params: Params,
        config: RunConfig,
        *,
        chunk_sizes: Sequence[int],
        worker_names: Iterable[str],
        run: dict[str, Any] | None = None,
        checkpoint: str | None = None,
        background_checkpoints: bool = True,
        keep_epoch_weights: bool = False,
        restore: CheckpointState | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        state = restore or CheckpointState(params, 0, -1, 0, {0: []}, {}, run or {}, config.seed)
        self.config = config
        self.clock = clock
        self.started = clock() - state.counts.get("elapsed_ms", 0) / 1000
        self.server = WeightServer(state.params, config, version=state.version, merges=state.merges, clock=self.elapsed)
        self.chunk_sizes = [int(size) for size in chunk_sizes]
        self.generation = state.generation + 1
        self.run = run or state.run
        self.estimator = PowerEstimator(powers=state.powers)
        self.workers: dict[str, WorkerTotals] = {worker: WorkerTotals() for worker in worker_names}
        self.holdings: dict[str, frozenset[int]] = {}
        self.chunk_sources: dict[int, ChunkSources] = {}
        self.epoch_merges: dict[int, EpochMerges] = {}
        self.schedule = EpochSchedule(
            self.chunk_sizes,
            self.workers,
            epochs=config.epochs,
            seed=config.seed,
            chunks_per_round=config.round_size(len(self.workers)),
            balance=config.balance,
            estimator=self.estimator,
            lockstep=config.update == "sgwu",
            epochs_done=state.epochs_done,
            open_epochs=state.open_epochs,
            holdings=self.holdings,
        )
        self.epoch_ends: list[float] = list(state.epoch_ends)
        self.evaluations: list[Evaluation] = list(state.evaluations)
        self.issued: dict[PartKey, tuple[EpochPlan, Part]] = {}
        self.round_reports: list[RoundReport] = []
        self.finished_at: float | None = self.elapsed() if state.epochs_done >= config.epochs else None
        self.keep_epoch_weights = keep_epoch_weights
        self._epoch_weights: list[EpochWeights] = []
        self.dropped: dict[str, str] = {}
        self.last_seen: dict[str, float] = {}
        self.invalid_streak, self.failure = 0, None
        self.store = CheckpointStore(checkpoint) if checkpoint is not None else None
        self.writer = (
            None
            if self.store is None
            else CheckpointWriter(
                self.store, every=config.checkpoint_every, background=background_checkpoints, version=state.version
            )
        )
        self.restored_version = state.version if restore is not None else None
        self.seen_version = state.version
        if restore is None:
            self.write_checkpoint()

    def elapsed(self) -> float:
        """Seconds since the run started (across restarts)."""
        return self.clock() - self.started

    @property
    def epochs_done(self) -> int:
        return self.schedule.epochs_done

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    # ------------------------------------------------------------ worker calls
    def next_part(self, worker: str, holdings: Iterable[int] | None = None) -> Assignment:
        """The next part for ``worker`` (work pulling), or ``wait`` / ``finished`` / ``dropped``.

        ``holdings`` are the chunks the worker now holds in memory (None: as last said).
        """
        if worker in self.dropped:
            return Assignment("dropped")
        if holdings is not None:
            self.holdings[worker] = frozenset(holdings)
        self.last_seen[worker] = self.clock()
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
        return Assignment("train", key, plan.epoch, part.chunks)

    def pull(self) -> tuple[Params, int]:
        """``(copy of W, version)``."""
        return self.server.pull()

    def push(
        self, key: PartKey, delta: Params, *, base_version: int, seconds: float, sources: ChunkSources | None = None
    ) -> PushResult:
        """Offer the update of the issued part ``key``; see :meth:`WeightServer.push`.

        ``sources`` says where the part's chunks came from (counted for its epoch once
        the part counts). A dropped worker's push, and any push after the run failed, is
        answered ``"revoked"`` and changes nothing.

        Raises
        ------
        ProtocolError
            No part ``key`` was handed out.
        """
        key = PartKey(*key)
        totals = self.workers.setdefault(key.worker, WorkerTotals())
        if key.worker in self.dropped or self.failure is not None:
            totals.revoked += 1
            return PushResult("revoked", self.server.version, 0, 0.0)
        if key not in self.issued:
            raise ProtocolError(f"no part {tuple(key)} was handed out; ask next_part for work first")
        self.last_seen[key.worker] = self.clock()
        plan, part = self.issued[key]
        result = self.server.push(
            key,
            delta,
            base_version=base_version,
            n_samples=part.samples,
            round_samples=part.round_samples,
            n_workers=part.n_workers,
            seconds=seconds,
        )
        if result.status == "invalid":
            totals.invalid += 1
            self._count_invalid(key)
            return result
        if not result.accepted:
            totals.rejected += 1
            return result
        self.invalid_streak = 0
        del self.issued[key]
        if plan.complete(part, seconds=max(seconds, 1e-9)):
            totals.parts += 1
            totals.samples += part.samples
            totals.busy_seconds += seconds
            totals.staleness.append(result.staleness)
            if sources is not None:
                self.chunk_sources.setdefault(plan.epoch, ChunkSources()).add(sources)
            self._count_merge(plan, result)
        if self.config.update == "sgwu" and result.status == "merged":
            self.schedule.round_merged(plan)
        self._close_finished_epochs()
        if result.status == "merged" and self.writer is not None and not self.finished:
            self.writer.merged(self.server.version, self.snapshot)  # a finished run's last write is explicit
        return result

    def _count_merge(self, plan: EpochPlan, result: PushResult) -> None:
        """Add an accepted update to its epoch's :class:`EpochMerges`."""
        merges = self.epoch_merges.setdefault(plan.epoch, EpochMerges())
        merges.mean_staleness = (merges.mean_staleness * merges.merges + result.staleness) / (merges.merges + 1)
        merges.merges += 1
        merges.max_staleness = max(merges.max_staleness, result.staleness)
        merges.total_alpha += result.alpha
        merges.effective_lr = self.config.optimizer(plan.epoch).lr * merges.total_alpha / plan.n_rounds

    def _count_invalid(self, key: PartKey) -> None:
        self.invalid_streak += 1
        if self.invalid_streak >= self.config.max_invalid and self.failure is None:
            self.failure = (
                f"{self.invalid_streak} updates in a row held NaN or infinite values (the last from {key.worker}, "
                f"part {key.part_index} of round {key.round_index}), so training diverged; the weights of version "
                f"{self.server.version} are the last good ones"
                + (f" (checkpoint {self.store.path})" if self.store is not None else "")
                + "; lower the learning rate and resume or start again"
            )
            self.finish()

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
        """:meth:`push`, :meth:`pull` and :meth:`next_part` in one round trip, for a worker that trains on.

        The weights are None when the push is held for its round (SGWU): they would be
        out of date as soon as the round merges, so the worker pulls after that. The next
        assignment is None when the worker should retrain the same part (stale, invalid).
        """
        result = self.push(key, delta, base_version=base_version, seconds=seconds, sources=sources)
        following = self.next_part(key.worker, holdings) if result.accepted or result.status == "revoked" else None
        if result.status == "pending":
            return PushAnswer(result, None, self.server.version, following)
        return PushAnswer(result, *self.server.pull(), following)

    # ------------------------------------------------------------ supervisor calls
    def progress(self) -> Progress:
        """Where the run stands; cheap enough to poll."""
        return Progress(self.epochs_done, self.server.version, self.finished, self.failure)

    def take_epoch_weights(self) -> list[EpochWeights]:
        """The kept end-of-epoch weights not collected yet, oldest first; forgets them."""
        taken, self._epoch_weights = self._epoch_weights, []
        return taken

    def finish(self) -> None:
        """End the run now (a target was reached): every later ``next_part`` says ``finished``.

        Parts already handed out may still be pushed and merged.
        """
        if not self.finished:
            for plan in self.schedule.plans:
                self.round_reports += plan.round_reports()
            self.finished_at = self.elapsed()

    def record_evaluation(self, evaluation: Evaluation) -> None:
        """Keep an epoch's score for the report and the checkpoints."""
        self.evaluations.append(evaluation)

    def note_seen_version(self, version: int) -> None:
        """A worker saw ``W`` at ``version`` before a restart: bounds the merges lost."""
        self.seen_version = max(self.seen_version, int(version))

    # ------------------------------------------------------------ checkpoints
    def snapshot(self) -> CheckpointState:
        """The run's state now, as a checkpoint (weights, version, IDPA state, merge log)."""
        params, version = self.server.pull()
        return CheckpointState(
            params=params,
            version=version,
            generation=self.generation,
            epochs_done=self.epochs_done,
            open_epochs=self.schedule.done_chunks,
            powers=self.estimator.known,
            run=self.run,
            seed=self.config.seed,
            merges=self.server.merge_log(),
            epoch_ends=list(self.epoch_ends),
            evaluations=list(self.evaluations),
            counts={
                "elapsed_ms": int(1000 * self.elapsed()),
                "rejected": self.server.rejected,
                "invalid": self.server.invalid,
            },
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
        if self.finished:
            return []
        now, expired = self.clock(), []
        for worker in list(self.workers):
            if worker in self.dropped:
                continue
            held = [part for plan in self.schedule.plans for part in plan.in_flight(worker)]
            power = self.estimator.power(worker)
            expected = 4 * max(part.samples for part in held) / power if held and power else 0.0
            limit = max(self.config.worker_timeout, expected)
            if now - self.last_seen.get(worker, now) > limit:
                self.lose_worker(worker, reason=f"silent for over {limit:.3g} s")
                expired.append(worker)
        return expired

    def add_worker(self, worker: str) -> None:
        """A worker joined: it gets work from the next allocation on.

        Raises
        ------
        ProtocolError
            ``worker`` was dropped: a process that resumes must join under a new name.
        """
        if worker in self.dropped:
            raise ProtocolError(f"worker {worker!r} was dropped ({self.dropped[worker]}); join under a new name")
        self.workers.setdefault(worker, WorkerTotals())
        self.schedule.add_worker(worker)

    def lose_worker(self, worker: str, reason: str = "lost") -> int:
        """A worker is gone: its unfinished chunks go back to the others. Returns how many parts.

        The worker is dropped for good: its later pushes are revoked.
        """
        self.dropped.setdefault(worker, reason)
        self.holdings.pop(worker, None)
        returned, released = self.schedule.lose_worker(worker, lambda key: self.server.push_result(key) is not None)
        for key in released:
            self.issued.pop(key, None)
        self._close_finished_epochs()
        return returned

    # ------------------------------------------------------------ bookkeeping
    def _close_finished_epochs(self) -> None:
        """Close the oldest open epochs whose chunks are all trained; finish after the last."""
        if self.finished:
            return
        for plan in self.schedule.close_finished():
            self.round_reports += plan.round_reports()
            self.epoch_ends.append(self.elapsed())
            if self.keep_epoch_weights:
                params, version = self.server.pull()
                self._epoch_weights.append(EpochWeights(plan.epoch + 1, version, self.epoch_ends[-1], params))
        if self.epochs_done >= self.config.epochs:
            self.finished_at = self.elapsed()

    def _rule_description(self) -> str:
        config = self.config
        if config.update == "sgwu":
            return "sgwu (each round's data-share average)"
        return f"{config.merge_rule}(merge_weight={config.merge_weight:g}, staleness_decay={config.staleness_decay:g})"

    def report(self) -> RunReport:
        """The run so far: rounds, per-worker totals, merges, scores, checkpoints.

        Times count from the start of the run. The supervisor's fields (lost workers,
        recoveries, the tasks' summaries) are left at their defaults.
        """
        workers = {
            worker: dataclasses.replace(totals, staleness=list(totals.staleness), power=self.estimator.power(worker))
            for worker, totals in self.workers.items()
        }
        checkpoints = self.writer.status if self.writer is not None else CheckpointStatus()
        checkpoints = dataclasses.replace(checkpoints, errors=list(checkpoints.errors))
        return RunReport(
            epochs_done=self.epochs_done,
            epoch_ends=list(self.epoch_ends),
            seconds=self.finished_at if self.finished_at is not None else self.elapsed(),
            version=self.server.version,
            generation=self.generation,
            rounds=list(self.round_reports),
            workers=workers,
            merges=self.server.merge_log(),
            evaluations=list(self.evaluations),
            rejected=self.server.rejected,
            invalid=self.server.invalid,
            failure=self.failure,
            dropped=dict(self.dropped),
            checkpoints=checkpoints,
            restored_version=self.restored_version,
            seen_version=self.seen_version,
            chunk_sources={epoch: dataclasses.replace(c) for epoch, c in self.chunk_sources.items()},
            merge_rule=self._rule_description(),
            max_staleness=self.config.max_staleness,
            epoch_merges={epoch: dataclasses.replace(m) for epoch, m in self.epoch_merges.items()},
        )
