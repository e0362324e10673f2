"""Which epochs of a run are open, and which part a free worker trains next.

An :class:`EpochSchedule` runs one :class:`~bptdask.outer.partition.EpochPlan` per epoch. With
``lockstep=False`` (AGWU) a worker with nothing left in the open epoch starts on the
next one while the last parts of the current one are still trained (at most two epochs
are open); with ``lockstep=True`` (SGWU) every worker stays inside the round being
synchronised until :meth:`EpochSchedule.round_merged` moves it on. Epochs close in order
once all their chunks are trained. Parts are keyed by :class:`~bptdask.outer.protocol.PartKey`
(rounds numbered across epochs), unique for the whole run. Plain data, no I/O: the
coordinator drives it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from bptdask.outer.allocation import PowerEstimator
from bptdask.outer.partition import EpochPlan, Part
from bptdask.outer.protocol import PartKey


class EpochSchedule:
    """The open epochs of a run of ``epochs`` epochs; see the module docstring.

    Parameters
    ----------
    chunk_sizes, seed, chunks_per_round, balance
        As for :class:`~bptdask.outer.partition.EpochPlan`.
    workers : iterable of str
        The workers present at the start.
    estimator : PowerEstimator
        The workers' powers, shared by every epoch.
    lockstep : bool
        Keep every worker inside the round being synchronised (SGWU).
    epochs_done : int
        Epochs completed before a restart.
    open_epochs : dict, optional
        Epoch -> chunks already trained in it, for epochs open at a restart.
    holdings : mapping, optional
        Worker -> the chunks it holds in memory (IDPA hands those out first).
    """

    def __init__(
        self,
        chunk_sizes: Sequence[int],
        workers: Iterable[str],
        *,
        epochs: int,
        seed: int,
        chunks_per_round: int,
        balance: str,
        estimator: PowerEstimator,
        lockstep: bool,
        epochs_done: int = 0,
        open_epochs: dict[int, list[int]] | None = None,
        holdings: Mapping[str, Collection[int]] | None = None,
    ):
        self.chunk_sizes, self.epochs, self.seed = list(chunk_sizes), epochs, seed
        self.chunks_per_round, self.balance, self.estimator = chunks_per_round, balance, estimator
        self.lockstep, self.epochs_done, self.holdings = lockstep, epochs_done, holdings
        workers = sorted(workers)
        self.plans: list[EpochPlan] = [
            self._plan_for(epoch, workers, done) for epoch, done in sorted((open_epochs or {}).items())
        ] or [self._plan_for(min(epochs_done, epochs - 1), workers)]
        self.synced_round = self._first_round_to_train(self.plans[0], 0)

    def _plan_for(self, epoch: int, workers: Iterable[str], done_chunks: Iterable[int] = ()) -> EpochPlan:
        return EpochPlan(
            self.chunk_sizes,
            sorted(workers),
            epoch=epoch,
            seed=self.seed,
            chunks_per_round=self.chunks_per_round,
            estimator=self.estimator,
            balance=self.balance,
            done_chunks=done_chunks,
            holdings=self.holdings,
        )

    @staticmethod
    def _first_round_to_train(plan: EpochPlan, start: int) -> int:
        """The first round from ``start`` that has chunks to train (restored rounds may have none)."""
        sizes = plan.round_sizes
        while start < len(sizes) - 1 and sizes[start] == 0:
            start += 1
        return start

    @staticmethod
    def key(plan: EpochPlan, part: Part) -> PartKey:
        """The run-wide key of ``part`` of ``plan``'s epoch."""
        return PartKey(part.worker, plan.epoch * plan.n_rounds + part.round_index, part.part_index)

    @property
    def done_chunks(self) -> dict[int, list[int]]:
        """Epoch -> chunks trained so far, for every open epoch."""
        return {plan.epoch: plan.done_chunks for plan in self.plans}

    def next_part(self, worker: str) -> tuple[EpochPlan, Part] | None:
        """The next part for free ``worker`` and the epoch it belongs to, or None for now."""
        if self.lockstep:
            return self._next_in(self.plans[0], worker, through_round=self.synced_round)
        found = next((f for plan in self.plans if (f := self._next_in(plan, worker)) is not None), None)
        if found is None and len(self.plans) == 1 and self.plans[0].epoch + 1 < self.epochs:
            self.plans.append(self._plan_for(self.plans[0].epoch + 1, self.plans[0].workers))
            found = self._next_in(self.plans[1], worker)
        return found

    @staticmethod
    def _next_in(plan: EpochPlan, worker: str, through_round: int | None = None):
        part = plan.next_part(worker, through_round=through_round)
        return None if part is None else (plan, part)

    def round_merged(self, plan: EpochPlan) -> None:
        """Lockstep: the synchronised round of ``plan`` was merged; move on to the next."""
        self.synced_round = self._first_round_to_train(plan, self.synced_round + 1)

    def add_worker(self, worker: str) -> None:
        for plan in self.plans:
            if worker not in plan.workers:
                plan.add_worker(worker)

    def lose_worker(self, worker: str, merged: Callable[[PartKey], bool]) -> tuple[int, list[PartKey]]:
        """Hand ``worker``'s unfinished chunks to the others.

        A part whose update ``merged(key)`` says is already in the weights counts as
        trained. Returns how many parts went back, and the keys of every part the worker
        held (no longer its own).
        """
        returned, released = 0, []
        for plan in self.plans:
            if worker not in plan.workers:  # it never took part in this epoch, or was lost already
                continue
            for part in plan.in_flight(worker):
                key = self.key(plan, part)
                if merged(key):
                    plan.complete(part, seconds=1e-9)
                released.append(key)
            returned += len(plan.lose_worker(worker))
        return returned, released

    def close_finished(self) -> list[EpochPlan]:
        """Close the oldest open epochs whose chunks are all trained, in order; returns them.

        After the last one closes, the next epoch opens if the run has one left.
        """
        closed = []
        while self.plans and self.plans[0].done and self.epochs_done < self.epochs:
            plan = self.plans.pop(0)
            closed.append(plan)
            self.epochs_done += 1
            if not self.plans and self.epochs_done < self.epochs:
                self.plans.append(self._plan_for(plan.epoch + 1, plan.workers))
                self.synced_round = 0
        return closed
