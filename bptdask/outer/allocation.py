"""IDPA's arithmetic: workers' measured powers and a round's power-proportional split.

:class:`PowerEstimator` keeps each worker's power ``P_i`` (samples/s) as an EMA of what
it reported; :func:`allocate_round` splits a round's chunks in proportion to the powers
by largest remainder (an equal split while no power is known). Pure functions and plain
data: :mod:`bptdask.outer.partition` builds epochs on them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Iterable, Mapping, Sequence
from fractions import Fraction

from bptdask.errors import ConfigurationError
from bptdask.validation import check_integer

#: A worker's name; in a cluster, its address such as ``"tcp://10.0.0.5:40331"``.
Worker = str


def _effective_powers(powers: Mapping[Worker, float | None]) -> dict[Worker, Fraction]:
    """Exact powers to split by; an unknown (None) power counts as the mean known one."""
    known = {}
    for worker, power in powers.items():
        if power is not None and not (isinstance(power, numbers.Real) and math.isfinite(power) and power >= 0):
            raise ConfigurationError(
                f"power of worker {worker!r} must be a finite number of samples/s >= 0 "
                f"or None while unmeasured, got {power!r}"
            )
        if power is not None:
            known[worker] = Fraction(float(power))
    positive = [p for p in known.values() if p > 0]
    if not positive and len(known) == len(powers):
        raise ConfigurationError(
            f"no worker can take chunks: every power is 0 ({dict(powers)!r}); "
            "add a worker or pass None for workers not measured yet"
        )
    guess = sum(positive) / len(positive) if positive else Fraction(1)
    return {worker: known.get(worker, guess) for worker in powers}


def _largest_remainder(total: int, weights: Mapping[Worker, Fraction]) -> dict[Worker, int]:
    """Integer counts summing to ``total`` whose distance to ``total * w / sum(w)`` is < 1.

    The leftover after flooring is the sum of the fractional parts, so only workers with
    one (never a zero weight) get a leftover chunk: largest fraction first, then by name.
    """
    weight_sum = sum(weights.values())
    quotas = {worker: total * weight / weight_sum for worker, weight in weights.items()}
    counts = {worker: math.floor(quota) for worker, quota in quotas.items()}
    leftover = total - sum(counts.values())
    for worker in sorted(weights, key=lambda w: (counts[w] - quotas[w], w))[:leftover]:
        counts[worker] += 1
    return counts


def allocate_round(
    chunk_ids: Sequence[int],
    powers: Mapping[Worker, float | None],
    holdings: Mapping[Worker, Collection[int]] | None = None,
) -> dict[Worker, list[int]]:
    """Split one round's chunks between workers in proportion to their power.

    Parameters
    ----------
    chunk_ids : sequence of int
        The round's chunks, already in shuffled order.
    powers : mapping of worker -> float or None
        Measured samples/s per worker. ``None`` marks a worker not measured yet: it counts
        as the mean measured power, so with no power known the split is equal. A worker
        with power 0 gets nothing.
    holdings : mapping of worker -> chunks, optional
        The chunks each worker holds in memory. Counts stay as the powers say; within
        them each worker is given the chunks it holds first (a chunk held by several goes
        to the one with the most room left), so it reads as little as possible.

    Returns
    -------
    dict of worker -> list of int
        Every worker of ``powers``, in name order, with its chunks in round order;
        together they hold each chunk exactly once. Counts are rounded by largest
        remainder (ties to the worker whose name sorts first), so each is within one
        chunk of its exact share ``len(chunk_ids) * P_i / sum(P)``. Without
        ``holdings`` each worker's chunks are a contiguous run of ``chunk_ids``.
    """
    if not powers:
        raise ConfigurationError("cannot allocate chunks to no workers; start at least one worker")
    counts = _largest_remainder(len(chunk_ids), _effective_powers(powers))
    workers = sorted(powers)
    if not holdings:
        allocation, start = {}, 0
        for worker in workers:
            allocation[worker] = list(chunk_ids[start : start + counts[worker]])
            start += counts[worker]
        return allocation
    allocation = {worker: [] for worker in workers}
    unplaced = []
    for chunk in chunk_ids:
        holders = [w for w in workers if chunk in holdings.get(w, ()) and len(allocation[w]) < counts[w]]
        if holders:
            allocation[max(holders, key=lambda w: (counts[w] - len(allocation[w]), -workers.index(w)))].append(chunk)
        else:
            unplaced.append(chunk)
    for worker in workers:
        room = counts[worker] - len(allocation[worker])
        allocation[worker] += unplaced[:room]
        unplaced = unplaced[room:]
    order = {chunk: index for index, chunk in enumerate(chunk_ids)}
    return {worker: sorted(chunks, key=order.__getitem__) for worker, chunks in allocation.items()}


class PowerEstimator:
    """Each worker's computing power in samples/s, smoothed over its reports.

    The first report sets the power; each later one moves it by
    ``P <- smoothing * rate + (1 - smoothing) * P``. The default 0.5 follows a worker whose
    speed changed (a contended node) within two or three parts while halving the noise
    of a single timing.
    """

    def __init__(self, *, smoothing: float = 0.5, powers: Mapping[Worker, float] | None = None):
        if not (isinstance(smoothing, numbers.Real) and 0 < smoothing <= 1):
            raise ConfigurationError(f"smoothing must be in (0, 1] (1 keeps only the last rate), got {smoothing!r}")
        self.smoothing = float(smoothing)
        self._powers: dict[Worker, float] = dict(powers or {})

    @property
    def known(self) -> dict[Worker, float]:
        """Every measured power so far, ``{worker: samples/s}``."""
        return dict(self._powers)

    def report(self, worker: Worker, *, samples: int, seconds: float) -> float:
        """Record that ``worker`` trained ``samples`` samples in ``seconds``; its new power."""
        check_integer("samples", samples, minimum=1)
        if not (isinstance(seconds, numbers.Real) and math.isfinite(seconds) and seconds > 0):
            raise ConfigurationError(f"seconds must be a finite time > 0, got {seconds!r} for worker {worker!r}")
        rate = samples / seconds
        previous = self._powers.get(worker)
        power = rate if previous is None else self.smoothing * rate + (1 - self.smoothing) * previous
        self._powers[worker] = power
        return power

    def power(self, worker: Worker) -> float | None:
        """Samples/s of ``worker``, or None before its first report."""
        return self._powers.get(worker)

    def powers(self, workers: Iterable[Worker]) -> dict[Worker, float | None]:
        """``{worker: power or None}`` for ``workers``, ready for :func:`allocate_round`."""
        return {worker: self._powers.get(worker) for worker in workers}
