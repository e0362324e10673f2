"""The global-weight server: AGWU and SGWU merges, versions, the merge log and idempotence.

:class:`WeightServer` is a plain class (the coordinator holds one; the cluster layer runs
the coordinator as a Dask actor). It holds the global weights ``W`` and a version ``v``.
A worker pulls ``(W, v)``, trains one part (see :mod:`bptdask.outer.partition`) and pushes
``delta = W_j - W(v_j)`` with its base version ``v_j``, its sample count ``n_j``, the
round's ``N_round`` samples and the ``m`` workers the round was split between.

AGWU (``update="agwu"``) merges each push at once. With staleness ``s = v - v_j``::

    W <- W + alpha * delta,    v <- v + 1

where ``alpha`` follows the run's merge rule (:mod:`bptdask.outer.merge_rules`) from the
part's data share ``w_j = n_j * m / N_round`` (1 for an equal split), its staleness and
the ``m`` workers of its round. The share, not the local step count, weighs a push: a
bigger share already makes a bigger delta, so the two are never combined. A push staler
than ``max_staleness`` is rejected and the worker re-pulls.

SGWU (``update="sgwu"``, the synchronous baseline) holds the pushes of a round until
they cover its ``N_round`` samples, then applies their data-share average
``sum(n_j * delta_j) / N_round`` in one merge, so ``v`` grows once per round.

A push is keyed by its :class:`~bptdask.outer.protocol.PartKey`. An accepted key is
remembered for good: repeating it returns the recorded result and changes nothing, so a
retried task never applies twice. A rejected (stale or invalid) push is not remembered,
so the worker retries the same part under the same key. Every merge is kept in a
:class:`~bptdask.report.MergeLog`. Arrays are copied in and out; a lock guards every
read and update; nothing here does I/O.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from bptdask._typing import Params
from bptdask.backend import to_numpy
from bptdask.errors import ConfigurationError, DataError, ProtocolError, ShapeError
from bptdask.outer.merge_rules import merge_alpha
from bptdask.outer.protocol import PartKey, PushResult
from bptdask.outer.run_config import RunConfig
from bptdask.report import MergeLog, MergeRecord
from bptdask.validation import check_integer


@dataclass
class _Held:
    """A push SGWU keeps until its round is complete."""

    delta: Params
    staleness: int
    base_version: int
    n_samples: int
    seconds: float


@dataclass
class _RoundBuffer:
    round_samples: int
    held: dict[PartKey, _Held] = field(default_factory=dict)

    @property
    def collected(self) -> int:
        return sum(entry.n_samples for entry in self.held.values())


def _check_counts(n_samples: int, round_samples: int, n_workers: int) -> None:
    for name, value in (("n_samples", n_samples), ("round_samples", round_samples), ("n_workers", n_workers)):
        check_integer(name, value, minimum=1)
    if n_samples > round_samples:
        raise ConfigurationError(
            f"n_samples={n_samples} exceeds round_samples={round_samples}; pass the part's and the round's "
            "sample counts (Part.samples, Part.round_samples)"
        )


class WeightServer:
    """Global weights with AGWU/SGWU merges; see the module docstring for the rules.

    Parameters
    ----------
    params : dict of str -> array
        Initial weights ``W`` (floating point, finite); copied, and kept as NumPy arrays.
    config : RunConfig
        The merge rule: ``update``, ``merge_weight``, ``staleness_decay``, ``max_staleness``.
    version, merges
        Where a restored server starts (:mod:`bptdask.outer.checkpoint`): the version
        ``W`` had, and the merges until then.
    clock : callable
        Seconds since the start of the run, stamped on each merge record.
    """

    def __init__(
        self,
        params: Params,
        config: RunConfig,
        *,
        version: int = 0,
        merges: MergeLog | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not params:
            raise ConfigurationError("params is empty; pass the model's initial weights (model.init_params(seed))")
        self.config = config
        self._weights = {name: np.array(to_numpy(value), copy=True) for name, value in params.items()}
        for name, value in self._weights.items():
            if not np.issubdtype(value.dtype, np.floating):
                raise ConfigurationError(f"weight {name!r} has dtype {value.dtype}; weights must be floating point")
            if not np.isfinite(value).all():
                raise DataError(f"initial weight {name!r} holds NaN or infinite values")
        self._version = check_integer("version", version, minimum=0)
        self._results: dict[PartKey, PushResult] = {}
        self._rounds: dict[int, _RoundBuffer] = {}
        self._merges = MergeLog(merges or ())
        self._rejected = 0
        self._invalid = 0
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def version(self) -> int:
        """How many merges ``W`` has seen."""
        return self._version

    @property
    def rejected(self) -> int:
        """How many pushes were rejected as too stale."""
        return self._rejected

    @property
    def invalid(self) -> int:
        """How many pushes were rejected for holding NaN or infinite values."""
        return self._invalid

    def pull(self) -> tuple[Params, int]:
        """``(copy of W, v)``: arrays the caller owns."""
        with self._lock:
            return {name: value.copy() for name, value in self._weights.items()}, self._version

    def push(
        self,
        key: PartKey,
        delta: Mapping[str, np.ndarray],
        *,
        base_version: int,
        n_samples: int,
        round_samples: int,
        n_workers: int,
        seconds: float = 0.0,
    ) -> PushResult:
        """Offer ``delta = W_j - W(base_version)`` for the part named ``key``.

        Parameters
        ----------
        key : PartKey
            ``(worker, round_index, part_index)``; ``round_index`` is the round SGWU
            collects the push into.
        delta : dict of str -> array
            One array per weight, shaped like it; copied and cast to the weight's dtype.
        base_version : int
            The version the worker pulled before training.
        n_samples, round_samples, n_workers : int
            The part's samples ``n_j``, the round's ``N_round`` and its ``m`` workers
            (``Part.samples``, ``Part.round_samples``, ``Part.n_workers``).
        seconds : float
            The worker's training time, kept in the merge record.

        Returns
        -------
        PushResult
            The recorded result when this key was accepted before.

        A delta holding NaN or infinite values is rejected as ``"invalid"`` (counted in
        :attr:`invalid`) and ``W`` is left unchanged; like a stale push it is not
        remembered, so the worker may retrain the part and push it again.

        Raises
        ------
        DataError
            ``delta`` names other weights; ``W`` is left unchanged.
        ShapeError
            A delta array's shape differs from its weight's.
        ProtocolError
            SGWU: the push disagrees with its round's sample count, or overfills it.
        """
        key = PartKey(str(key[0]), int(key[1]), int(key[2]))
        with self._lock:
            if key in self._results:
                return self._results[key]
            _check_counts(n_samples, round_samples, n_workers)
            staleness = self._staleness(base_version)
            clean = self._copied_delta(key, delta)
            if clean is None:
                self._invalid += 1
                return PushResult("invalid", self._version, staleness, 0.0)
            if self.config.max_staleness is not None and staleness > self.config.max_staleness:
                self._rejected += 1
                return PushResult("stale", self._version, staleness, 0.0)
            held = _Held(clean, staleness, int(base_version), int(n_samples), float(seconds))
            if self.config.update == "sgwu":
                return self._hold(key, held, int(round_samples))
            alpha = merge_alpha(
                self.config.merge_rule,
                merge_weight=self.config.merge_weight,
                share=n_samples * n_workers / round_samples,
                staleness=staleness,
                n_workers=n_workers,
                staleness_decay=self.config.staleness_decay,
            )
            self._apply({key: (held, alpha)})
            return self._results[key]

    def push_result(self, key: PartKey) -> PushResult | None:
        """The recorded result of an accepted push of ``key``, or None if none was accepted."""
        with self._lock:
            return self._results.get(PartKey(*key))

    def merge_log(self) -> MergeLog:
        """A copy of every merge so far, oldest first."""
        with self._lock:
            return MergeLog.from_table(*self._merges.to_table())

    def _staleness(self, base_version: int) -> int:
        if not 0 <= check_integer("base_version", base_version) <= self._version:
            raise ConfigurationError(
                f"base_version={base_version} is outside 0..{self._version} (the server's version); "
                "pass the version that pull() returned"
            )
        return self._version - int(base_version)

    def _copied_delta(self, key: PartKey, delta: Mapping[str, np.ndarray]) -> Params | None:
        """The delta as NumPy copies in the weights' dtypes; None if it holds NaN or inf."""
        if set(delta) != set(self._weights):
            raise DataError(
                f"delta of push {tuple(key)} names {sorted(delta)} but the server holds {sorted(self._weights)}; "
                "push one array per pulled weight"
            )
        clean = {}
        for name, weight in self._weights.items():
            with np.errstate(over="ignore"):  # values too large for the dtype become inf, refused below
                value = np.array(to_numpy(delta[name]), dtype=weight.dtype, copy=True)
            if value.shape != weight.shape:
                raise ShapeError(
                    f"delta {name!r} of push {tuple(key)} has shape {value.shape}, weight has {weight.shape}"
                )
            if not np.isfinite(value).all():
                return None
            clean[name] = value
        return clean

    def _hold(self, key: PartKey, held: _Held, round_samples: int) -> PushResult:
        buffer = self._rounds.setdefault(key.round_index, _RoundBuffer(round_samples))
        if buffer.round_samples != round_samples:
            raise ProtocolError(
                f"push {tuple(key)} says round {key.round_index} has {round_samples} samples, earlier pushes said "
                f"{buffer.round_samples}; pass Part.round_samples"
            )
        if buffer.collected + held.n_samples > round_samples:
            raise ProtocolError(
                f"push {tuple(key)} brings round {key.round_index} to {buffer.collected + held.n_samples} of its "
                f"{round_samples} samples: a part was trained twice; complete a lost worker's parts that the server "
                "already holds (push_result) instead of re-queueing them"
            )
        buffer.held[key] = held
        self._results[key] = PushResult("pending", self._version, held.staleness, held.n_samples / round_samples)
        if buffer.collected == round_samples:
            del self._rounds[key.round_index]
            self._apply({k: (entry, entry.n_samples / round_samples) for k, entry in sorted(buffer.held.items())})
        return self._results[key]

    def _apply(self, weighted: dict[PartKey, tuple[_Held, float]]) -> None:
        """Add ``sum(alpha * delta)`` to ``W`` as one new version, then record it."""
        for name, weight in self._weights.items():
            weight += sum(alpha * held.delta[name] for held, alpha in weighted.values())
        self._version += 1
        now = self._clock()
        for key, (held, alpha) in weighted.items():
            self._results[key] = PushResult("merged", self._version, held.staleness, alpha)
            self._merges.append(
                MergeRecord(
                    *key, held.staleness, alpha, held.base_version, self._version, held.n_samples, held.seconds, now
                )
            )
