"""The global-weight server: AGWU and SGWU merges, versions, history and idempotence.

:class:`WeightServer` is a plain class (the cluster layer runs it as a Dask actor). It
holds the global weights ``W`` and a version ``v``. A worker pulls ``(W, v)``, trains one
part (see :mod:`bptdask.partition`) and pushes ``delta = W_j - W(v_j)`` with its base
version ``v_j``, its sample count ``n_j``, the round's ``N_round`` samples and the ``m``
workers the round was split between.

AGWU (``mode="agwu"``) merges each push at once. With staleness ``s = v - v_j``::

    W <- W + alpha * delta,    alpha = alpha0 * w_j * gamma**s,    v <- v + 1

where ``w_j = n_j * m / N_round`` is the part's data share (1 for an equal split). The
share, not the local step count, weighs a push: a bigger share already makes a bigger
delta, so the two are never combined. A push staler than ``max_staleness`` is rejected
and the worker re-pulls. ``alpha0 = 1`` by default: with ``gamma = 0.5``, ``m`` equal
shares pushed at staleness ``0 .. m-1`` add ``sum(gamma**s) < 2`` deltas' worth per round,
the order of SGWU's one average delta, while ``alpha0 = 1/m`` would shrink that to under
``2/m`` of a delta. Benchmarks of time-to-accuracy settle the value per setting.

SGWU (``mode="sgwu"``, the synchronous baseline) holds the pushes of a round until they
cover its ``N_round`` samples, then applies their data-share average
``sum(n_j * delta_j) / N_round`` in one merge, so ``v`` grows once per round.

A push is keyed by ``(worker, round_index, part_index)``. An accepted key is
remembered for good: repeating it returns the recorded result and changes nothing, so
a retried task never applies twice. A rejected (stale) push is not remembered, so the
worker retries the same part under the same key after re-pulling. Arrays are copied in
and out; a lock guards every read and update; nothing here does I/O.
"""

from __future__ import annotations

import numbers
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from bptdask._typing import Params
from bptdask.backend import to_numpy
from bptdask.errors import ConfigurationError, DataError, ShapeError

PushKey = tuple[str, int, int]


@dataclass(frozen=True)
class PushResult:
    """What the server did with a push.

    ``status`` is ``"merged"`` (applied; ``version`` is the version it produced),
    ``"pending"`` (SGWU: held until its round is complete), ``"stale"`` (rejected because
    ``staleness > max_staleness``: pull and push again), ``"invalid"`` (rejected because
    the delta holds NaN or infinite values: the worker's training diverged) or
    ``"revoked"`` (rejected because the part is no longer the worker's: it was declared
    lost and its chunks went to others). ``alpha`` is the weight the delta got or will
    get (0 when rejected).
    """

    status: Literal["merged", "pending", "stale", "invalid", "revoked"]
    version: int
    staleness: int
    alpha: float

    @property
    def accepted(self) -> bool:
        return self.status in ("merged", "pending")


@dataclass(frozen=True)
class MergeRecord:
    """One pushed delta applied to ``W``: who, which part, how stale, how weighted, when.

    ``version`` is the version the merge produced (shared by a whole round in SGWU),
    ``seconds`` the worker's reported training time, ``merged_at`` the server's
    ``time.time()`` at the merge.
    """

    worker: str
    round_index: int
    part_index: int
    staleness: int
    alpha: float
    base_version: int
    version: int
    n_samples: int
    seconds: float
    merged_at: float


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
    held: dict[PushKey, _Held] = field(default_factory=dict)

    @property
    def collected(self) -> int:
        return sum(entry.n_samples for entry in self.held.values())


def _check_options(mode: str, alpha0: float, gamma: float, max_staleness: int | None, history: int) -> None:
    if mode not in ("agwu", "sgwu"):
        raise ConfigurationError(f"mode must be 'agwu' or 'sgwu', got {mode!r}")
    if not (isinstance(alpha0, numbers.Real) and 0 < alpha0 <= 1):
        raise ConfigurationError(
            f"alpha0 must be in (0, 1] (1/m averages like FedAvg at zero staleness, 1 sums every "
            f"worker's progress), got {alpha0!r}"
        )
    if not (isinstance(gamma, numbers.Real) and 0 < gamma <= 1):
        raise ConfigurationError(f"gamma must be in (0, 1] (1 means no staleness decay), got {gamma!r}")
    bounded = isinstance(max_staleness, numbers.Integral) and not isinstance(max_staleness, bool)
    if max_staleness is not None and not (bounded and max_staleness >= 0):
        raise ConfigurationError(f"max_staleness must be None (no bound) or an integer >= 0, got {max_staleness!r}")
    if isinstance(history, bool) or not isinstance(history, numbers.Integral) or history < 1:
        raise ConfigurationError(f"history must be an integer >= 1 (merge records kept), got {history!r}")


def _check_counts(n_samples: int, round_samples: int, n_workers: int) -> None:
    for name, value in (("n_samples", n_samples), ("round_samples", round_samples), ("n_workers", n_workers)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")
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
    mode : {"agwu", "sgwu"}
        Merge each push at once, or average each round's pushes in one merge.
    alpha0 : float in (0, 1]
        Base merge weight of AGWU.
    gamma : float in (0, 1]
        Staleness decay of AGWU; 1 means none.
    max_staleness : int or None
        Pushes with ``staleness > max_staleness`` are rejected; None accepts any.
    history : int
        How many merge records to keep.
    version, records
        Where a restored server starts (:mod:`bptdask.checkpoint`): the version ``W``
        had, and the merge records kept until then.
    """

    def __init__(
        self,
        params: Params,
        *,
        mode: Literal["agwu", "sgwu"] = "agwu",
        alpha0: float = 1.0,
        gamma: float = 0.5,
        max_staleness: int | None = None,
        history: int = 1024,
        version: int = 0,
        records: Iterable[MergeRecord] = (),
    ):
        _check_options(mode, alpha0, gamma, max_staleness, history)
        if not params:
            raise ConfigurationError("params is empty; pass the model's initial weights (model.init_params(seed))")
        self.mode = mode
        self.alpha0 = float(alpha0)
        self.gamma = float(gamma)
        self.max_staleness = None if max_staleness is None else int(max_staleness)
        self._weights = {name: np.array(to_numpy(value), copy=True) for name, value in params.items()}
        for name, value in self._weights.items():
            if not np.issubdtype(value.dtype, np.floating):
                raise ConfigurationError(f"weight {name!r} has dtype {value.dtype}; weights must be floating point")
            if not np.isfinite(value).all():
                raise DataError(f"initial weight {name!r} holds NaN or infinite values")
        self._version = int(version)
        self._results: dict[PushKey, PushResult] = {}
        self._rounds: dict[int, _RoundBuffer] = {}
        self._records: deque[MergeRecord] = deque(records, maxlen=int(history))
        self._rejected = 0
        self._invalid = 0
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
        worker: str,
        round_index: int,
        part_index: int,
        delta: Mapping[str, np.ndarray],
        *,
        base_version: int,
        n_samples: int,
        round_samples: int,
        n_workers: int,
        seconds: float = 0.0,
    ) -> PushResult:
        """Offer ``delta = W_j - W(base_version)`` for part ``(round_index, part_index)`` of ``worker``.

        Parameters
        ----------
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
        """
        key = (worker, int(round_index), int(part_index))
        with self._lock:
            if key in self._results:
                return self._results[key]
            _check_counts(n_samples, round_samples, n_workers)
            staleness = self._staleness(base_version)
            clean = self._copied_delta(key, delta)
            if clean is None:
                self._invalid += 1
                return PushResult("invalid", self._version, staleness, 0.0)
            if self.max_staleness is not None and staleness > self.max_staleness:
                self._rejected += 1
                return PushResult("stale", self._version, staleness, 0.0)
            held = _Held(clean, staleness, int(base_version), int(n_samples), float(seconds))
            if self.mode == "sgwu":
                return self._hold(key, held, int(round_samples))
            alpha = self.alpha0 * (n_samples * n_workers / round_samples) * self.gamma**staleness
            self._apply({key: (held, alpha)})
            return self._results[key]

    def push_result(self, worker: str, round_index: int, part_index: int) -> PushResult | None:
        """The recorded result of an accepted push, or None if none was accepted."""
        with self._lock:
            return self._results.get((worker, int(round_index), int(part_index)))

    def merge_records(self, *, since_version: int = 0) -> list[MergeRecord]:
        """The kept merge records that produced a version above ``since_version``, oldest first."""
        with self._lock:
            return [record for record in self._records if record.version > since_version]

    def _staleness(self, base_version: int) -> int:
        if isinstance(base_version, bool) or not isinstance(base_version, numbers.Integral):
            raise ConfigurationError(f"base_version must be an integer, got {base_version!r}")
        if not 0 <= base_version <= self._version:
            raise ConfigurationError(
                f"base_version={base_version} is outside 0..{self._version} (the server's version); "
                "pass the version that pull() returned"
            )
        return self._version - int(base_version)

    def _copied_delta(self, key: PushKey, delta: Mapping[str, np.ndarray]) -> Params | None:
        """The delta as NumPy copies in the weights' dtypes; None if it holds NaN or inf."""
        if set(delta) != set(self._weights):
            raise DataError(
                f"delta of push {key} names {sorted(delta)} but the server holds {sorted(self._weights)}; "
                "push one array per pulled weight"
            )
        clean = {}
        for name, weight in self._weights.items():
            with np.errstate(over="ignore"):  # values too large for the dtype become inf, refused below
                value = np.array(to_numpy(delta[name]), dtype=weight.dtype, copy=True)
            if value.shape != weight.shape:
                raise ShapeError(f"delta {name!r} of push {key} has shape {value.shape}, weight has {weight.shape}")
            if not np.isfinite(value).all():
                return None
            clean[name] = value
        return clean

    def _hold(self, key: PushKey, held: _Held, round_samples: int) -> PushResult:
        buffer = self._rounds.setdefault(key[1], _RoundBuffer(round_samples))
        if buffer.round_samples != round_samples:
            raise ConfigurationError(
                f"push {key} says round {key[1]} has {round_samples} samples, earlier pushes said "
                f"{buffer.round_samples}; pass Part.round_samples"
            )
        if buffer.collected + held.n_samples > round_samples:
            raise DataError(
                f"push {key} brings round {key[1]} to {buffer.collected + held.n_samples} of its {round_samples} "
                "samples: a part was trained twice; complete a lost worker's parts that the server already "
                "holds (push_result) instead of re-queueing them"
            )
        buffer.held[key] = held
        self._results[key] = PushResult("pending", self._version, held.staleness, held.n_samples / round_samples)
        if buffer.collected == round_samples:
            del self._rounds[key[1]]
            self._apply({k: (entry, entry.n_samples / round_samples) for k, entry in sorted(buffer.held.items())})
        return self._results[key]

    def _apply(self, weighted: dict[PushKey, tuple[_Held, float]]) -> None:
        """Add ``sum(alpha * delta)`` to ``W`` as one new version, then record it."""
        for name, weight in self._weights.items():
            weight += sum(alpha * held.delta[name] for held, alpha in weighted.values())
        self._version += 1
        now = time.time()
        for key, (held, alpha) in weighted.items():
            self._results[key] = PushResult("merged", self._version, held.staleness, alpha)
            self._records.append(
                MergeRecord(
                    *key, held.staleness, alpha, held.base_version, self._version, held.n_samples, held.seconds, now
                )
            )
