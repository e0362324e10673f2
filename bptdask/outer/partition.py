"""IDPA: handing an epoch's Zarr chunks to workers in proportion to their measured power.

The unit of allocation is one chunk of the training array along the sample axis. An
epoch runs like this:

1. :func:`chunk_order` shuffles the chunk ids by ``(seed, epoch)``. Samples are shuffled
   later, inside a chunk in memory: whole-chunk reads are many times faster than random ones.
2. The shuffled ids are cut into *rounds* (increments) of ``chunks_per_round`` chunks. A
   round is allocated when the first worker needs it, by :func:`allocate_round`: each live
   worker's share is proportional to its power ``P_i`` (samples/s, an EMA kept by
   :class:`PowerEstimator` from what it reported for earlier parts), an equal split while
   no power is known, largest-remainder rounding.
3. :class:`EpochPlan` hands work out on demand (work pulling). A free worker calling
   :meth:`EpochPlan.next_part` gets, in this order: its own unstarted share of the oldest
   round that still holds one; its share of the next round, which this call opens; and,
   once every round is open, a power-proportional piece of the largest unstarted share of
   another worker (stealing at the epoch's tail). A part is started when it is handed out
   and is never split afterwards. A synchronous loop passes ``through_round`` to keep
   every worker inside the current round.
4. :meth:`EpochPlan.lose_worker` takes a lost worker's started-but-unfinished parts and
   its unstarted shares back and re-allocates those chunks, within their rounds, over the
   remaining workers by power; with no worker left they wait for :meth:`EpochPlan.add_worker`.

``EpochPlan(..., balance="even")`` is the baseline: equal shares, no stealing.

Every chunk of an epoch is completed exactly once. Within its epoch a part is named
``(round_index, part_index)``; :class:`~bptdask.outer.schedule.EpochSchedule` turns that
into the run-wide :class:`~bptdask.outer.protocol.PartKey` that keys its merge.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bptdask.errors import ConfigurationError
from bptdask.outer.allocation import PowerEstimator, Worker, allocate_round
from bptdask.report import RoundReport
from bptdask.validation import check_integer


def chunk_sizes(n_samples: int, chunk_size: int) -> list[int]:
    """Samples in each chunk of an ``(n_samples, ...)`` array chunked by ``chunk_size``.

    All chunks hold ``chunk_size`` samples except possibly the last one.
    """
    check_integer("n_samples", n_samples, minimum=0)
    check_integer("chunk_size", chunk_size, minimum=1)
    return [min(chunk_size, n_samples - start) for start in range(0, n_samples, chunk_size)]


def chunk_order(n_chunks: int, *, epoch: int, seed: int) -> list[int]:
    """The chunk ids ``0 .. n_chunks-1`` in the shuffled order of ``epoch`` under ``seed``.

    The same ``(n_chunks, epoch, seed)`` always gives the same order; each epoch a new one.
    """
    check_integer("n_chunks", n_chunks, minimum=0)
    check_integer("epoch", epoch, minimum=0)
    check_integer("seed", seed, minimum=0)
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n_chunks).tolist()


@dataclass(frozen=True)
class Part:
    """Chunks handed to one worker at once: the unit of training, pushing and merging.

    ``samples`` is the part's sample count ``n_j``, ``round_samples`` the round's ``N_round``
    and ``n_workers`` the ``m`` workers the round was first split between: the inputs of
    the data share ``n_j * m / N_round`` that weighs the part's weight update.
    """

    worker: Worker
    round_index: int
    part_index: int
    chunks: tuple[int, ...]
    samples: int
    round_samples: int
    n_workers: int


@dataclass
class _Round:
    index: int
    n_chunks: int
    samples: int
    n_workers: int
    shares: dict[Worker, list[int]]
    pool: list[int] = field(default_factory=list)
    parts_issued: int = 0
    completed: list[tuple[Part, float]] = field(default_factory=list)


class EpochPlan:
    """Who trains which chunks in one epoch: work pulling, stealing and losses.

    Parameters
    ----------
    chunk_sizes : sequence of int
        Samples in chunk ``i`` of the training array (see :func:`chunk_sizes`).
    workers : iterable of worker
        The workers present at the start; others join with :meth:`add_worker`.
    epoch, seed : int
        Select the chunk order (:func:`chunk_order`).
    chunks_per_round : int
        Chunks per round (increment); the last round may hold fewer.
    estimator : PowerEstimator, optional
        Powers carried over from earlier epochs; fed by :meth:`complete`. A fresh one
        (every power unknown, so the first round splits equally) by default.
    balance : {"power", "even"}
        ``"power"`` is IDPA. ``"even"`` is the baseline IDPA is measured against: every
        round split equally whatever the powers, and no stealing, so fast workers wait
        for slow ones (losses are still re-allocated).
    done_chunks : iterable of int
        Chunks already trained in this epoch before a restart (from a checkpoint): they
        are left out of their rounds, which keep their indices.
    holdings : mapping of worker -> chunks, optional
        The chunks each worker holds in memory, kept up to date by the caller; every
        split gives a worker the chunks it holds first (:func:`allocate_round`).
    """

    def __init__(
        self,
        chunk_sizes: Sequence[int],
        workers: Iterable[Worker],
        *,
        epoch: int,
        seed: int,
        chunks_per_round: int,
        estimator: PowerEstimator | None = None,
        balance: str = "power",
        done_chunks: Iterable[int] = (),
        holdings: Mapping[Worker, Collection[int]] | None = None,
    ):
        if balance not in ("power", "even"):
            raise ConfigurationError(f"balance must be 'power' (IDPA) or 'even', got {balance!r}")
        if isinstance(workers, str):
            raise ConfigurationError(f"workers must be a collection of worker names, got the string {workers!r}")
        self._sizes = [check_integer("chunk size", size, minimum=1) for size in chunk_sizes]
        step = check_integer("chunks_per_round", chunks_per_round, minimum=1)
        order = chunk_order(len(self._sizes), epoch=epoch, seed=seed)
        self._done_chunks = set(map(int, done_chunks))
        if not self._done_chunks <= set(order):
            raise ConfigurationError(
                f"done_chunks name chunks outside 0..{len(order) - 1}: {sorted(self._done_chunks - set(order))}"
            )
        self._round_chunks = [
            [chunk for chunk in order[start : start + step] if chunk not in self._done_chunks]
            for start in range(0, len(order), step)
        ]
        self.epoch = epoch
        self.balance = balance
        self.estimator = estimator if estimator is not None else PowerEstimator()
        self.holdings = holdings
        self._live = set(workers)
        self._lost: set[Worker] = set()
        self._rounds: list[_Round] = []
        self._in_flight: dict[tuple[int, int], Part] = {}

    @property
    def workers(self) -> tuple[Worker, ...]:
        """The live workers, in name order."""
        return tuple(sorted(self._live))

    @property
    def n_rounds(self) -> int:
        return len(self._round_chunks)

    @property
    def done(self) -> bool:
        """True once every chunk of the epoch has been completed."""
        return len(self._done_chunks) == len(self._sizes)

    @property
    def round_sizes(self) -> list[int]:
        """Chunks to train in each round (0 for a round completed before a restart)."""
        return [len(chunks) for chunks in self._round_chunks]

    @property
    def done_chunks(self) -> list[int]:
        """The chunks completed so far in this epoch, sorted."""
        return sorted(self._done_chunks)

    def next_part(self, worker: Worker, *, through_round: int | None = None) -> Part | None:
        """The next part for free ``worker``, or None when nothing is left for it.

        None for a lost worker, and for a live one once every round is open and no other
        worker's unstarted share has a piece that fits its power (more may come if a
        worker is lost later). ``through_round`` confines the search to rounds up to that
        index: a synchronous (SGWU) loop passes the round it is in, so nobody runs ahead.
        """
        if worker in self._lost:
            return None
        self._check_live(worker)
        last = self.n_rounds if through_round is None else min(through_round + 1, self.n_rounds)
        for rnd in self._rounds[:last]:
            if worker in rnd.shares:
                return self._issue(worker, rnd, rnd.shares.pop(worker))
        while len(self._rounds) < last:
            rnd = self._open_next_round()
            if worker in rnd.shares:
                return self._issue(worker, rnd, rnd.shares.pop(worker))
        return self._steal(worker, self._rounds[:last])

    def complete(self, part: Part, *, seconds: float) -> bool:
        """Record that ``part`` was trained in ``seconds``; False if it no longer counts.

        A part counts once: a repeated call, or a part whose worker was lost meanwhile
        (its chunks went back to the others), returns False and changes nothing.
        """
        key = (part.round_index, part.part_index)
        if self._in_flight.get(key) != part:
            return False
        self.estimator.report(part.worker, samples=part.samples, seconds=seconds)
        del self._in_flight[key]
        self._rounds[part.round_index].completed.append((part, float(seconds)))
        self._done_chunks.update(part.chunks)
        return True

    def in_flight(self, worker: Worker) -> list[Part]:
        """Parts handed to ``worker`` and not completed yet."""
        return [part for part in self._in_flight.values() if part.worker == worker]

    def lose_worker(self, worker: Worker) -> list[Part]:
        """Take ``worker`` out; its unfinished parts and unstarted shares go to the others.

        Returns the cancelled parts (handed out, not completed). A worker lost twice
        loses nothing more.
        """
        if worker in self._lost:
            return []
        self._check_live(worker)
        self._live.remove(worker)
        self._lost.add(worker)
        cancelled = self.in_flight(worker)
        for part in cancelled:
            del self._in_flight[(part.round_index, part.part_index)]
            self._rounds[part.round_index].pool.extend(part.chunks)
        for rnd in self._rounds:
            rnd.pool.extend(rnd.shares.pop(worker, []))
        self._share_out_pools()
        return cancelled

    def add_worker(self, worker: Worker) -> None:
        """Let ``worker`` (new, or back after a loss) take part from now on."""
        self._lost.discard(worker)
        self._live.add(worker)
        self._share_out_pools()

    def round_reports(self) -> list[RoundReport]:
        """A :class:`RoundReport` for each round whose chunks are all completed."""
        finished = [
            rnd for rnd in self._rounds if rnd.n_chunks and sum(len(p.chunks) for p, _ in rnd.completed) == rnd.n_chunks
        ]
        return [self._report(rnd) for rnd in finished]

    def _check_live(self, worker: Worker) -> None:
        if worker not in self._live:
            raise ConfigurationError(f"unknown worker {worker!r}; known: {sorted(self._live)}; call add_worker first")

    def _issue(self, worker: Worker, rnd: _Round, chunks: list[int]) -> Part:
        part = Part(
            worker=worker,
            round_index=rnd.index,
            part_index=rnd.parts_issued,
            chunks=tuple(chunks),
            samples=sum(self._sizes[chunk] for chunk in chunks),
            round_samples=rnd.samples,
            n_workers=rnd.n_workers,
        )
        rnd.parts_issued += 1
        self._in_flight[(rnd.index, part.part_index)] = part
        return part

    def _split_powers(self, workers: Iterable[Worker]) -> dict[Worker, float | None]:
        """Powers to split by: measured ones (IDPA), or all unknown (an equal split)."""
        if self.balance == "even":
            return dict.fromkeys(workers)
        return self.estimator.powers(workers)

    def _open_next_round(self) -> _Round:
        chunks = self._round_chunks[len(self._rounds)]
        allocation = allocate_round(chunks, self._split_powers(sorted(self._live)), self.holdings)
        shares = {worker: share for worker, share in allocation.items() if share}
        rnd = _Round(
            index=len(self._rounds),
            n_chunks=len(chunks),
            samples=sum(self._sizes[chunk] for chunk in chunks),
            n_workers=len(shares),
            shares=shares,
        )
        self._rounds.append(rnd)
        return rnd

    def _steal(self, thief: Worker, rounds: list[_Round]) -> Part | None:
        if self.balance == "even":
            return None
        for rnd in rounds:
            for victim in sorted(rnd.shares, key=lambda w: (-len(rnd.shares[w]), w)):
                split = allocate_round(rnd.shares[victim], self.estimator.powers([thief, victim]), self.holdings)
                if split[thief]:
                    if split[victim]:
                        rnd.shares[victim] = split[victim]
                    else:
                        del rnd.shares[victim]
                    return self._issue(thief, rnd, split[thief])
        return None

    def _share_out_pools(self) -> None:
        if not self._live:
            return
        for rnd in self._rounds:
            if rnd.pool:
                allocation = allocate_round(rnd.pool, self._split_powers(sorted(self._live)), self.holdings)
                for worker, share in allocation.items():
                    if share:
                        rnd.shares.setdefault(worker, []).extend(share)
                rnd.pool = []

    def _report(self, rnd: _Round) -> RoundReport:
        busy: dict[Worker, float] = {}
        samples: dict[Worker, int] = {}
        for part, seconds in rnd.completed:
            busy[part.worker] = busy.get(part.worker, 0.0) + seconds
            samples[part.worker] = samples.get(part.worker, 0) + part.samples
        makespan = max(busy.values())
        idle = 1.0 - sum(busy.values()) / (len(busy) * makespan)
        return RoundReport(self.epoch, rnd.index, busy, samples, makespan, idle)
