"""The per-worker training loop, over injected callables (no Dask in here).

A worker repeatedly asks for a part, reads the part's chunks, trains on them with
:func:`bptdask.inner.train_step` (through :func:`bptdask.local.train_epoch`) from the
latest global weights and pushes ``delta = W_local - W_base``; the push answers with the
global weights after the merge, which the next part starts from (a worker pulls only at
its start and after waiting). A push rejected as too stale is retrained from those
fresher weights. The ``cluster`` room supplies the callables (actor calls, Zarr
reads); tests supply a plain :class:`~bptdask.coordinator.TrainingCoordinator`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from bptdask._typing import Params
from bptdask.backend import to_device, to_numpy
from bptdask.errors import ConfigurationError
from bptdask.local import train_epoch
from bptdask.model import Sequential
from bptdask.optim import SGD, cosine_lr
from bptdask.preprocess import normalize


@dataclass(frozen=True)
class TrainingSettings:
    """What every worker needs to train its parts the same way (plain, picklable values)."""

    epochs: int
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    lr_schedule: str = "cosine"
    dtype: str = "float32"
    seed: int = 0
    #: ``"auto"``: each worker trains on its GPU when it has one (and CuPy), else on its CPU.
    device: str = "auto"

    def optimizer(self, epoch: int) -> SGD:
        """The SGD settings for ``epoch`` (0-based), with the learning-rate schedule applied."""
        lr = cosine_lr(self.lr, epoch, self.epochs) if self.lr_schedule == "cosine" else self.lr
        return SGD(lr=lr, momentum=self.momentum, weight_decay=self.weight_decay, nesterov=self.nesterov)


@dataclass
class PartTrainer:
    """Trains one worker's parts; keeps the worker's momentum between parts.

    ``slowdown`` stretches each part's wall time by that factor (a simulation of a slower
    machine for tests and benchmarks; 1 means none). ``corrupt_parts`` makes that many
    of the next parts come back with NaN weights (a simulation of diverged training,
    for fault tests).
    """

    model: Sequential
    settings: TrainingSettings
    mean: np.ndarray
    std: np.ndarray
    xp: ModuleType = np
    n_threads: int | None = None
    slowdown: float = 1.0
    corrupt_parts: int = 0
    rng: np.random.Generator = field(default=None)
    state: Params | None = None

    def __post_init__(self):
        if self.rng is None:
            self.rng = np.random.default_rng(self.settings.seed)

    def __call__(self, params: Params, images: np.ndarray, labels: np.ndarray, epoch: int) -> tuple[Params, float]:
        """Train on one part ``images`` ``(n, C, H, W)`` uint8 / ``labels`` ``(n,)``; returns (params, seconds)."""
        started = time.perf_counter()
        optimizer = self.settings.optimizer(epoch)
        params = {name: to_device(value, self.xp) for name, value in params.items()}
        if self.state is None:
            self.state = optimizer.init_state(params)
        params, self.state, _ = train_epoch(
            self.model, params, self.state, images, labels, optimizer=optimizer,
            batch_size=self.settings.batch_size, prepare=self._prepare, xp=self.xp, rng=self.rng,
            n_threads=self.n_threads,
        )
        elapsed = time.perf_counter() - started
        if self.slowdown > 1.0:
            time.sleep((self.slowdown - 1.0) * elapsed)
        if self.corrupt_parts > 0:
            self.corrupt_parts -= 1
            params = {name: value * self.xp.nan for name, value in params.items()}
        return params, time.perf_counter() - started

    def _prepare(self, images: np.ndarray):
        return normalize(to_device(images, self.xp), self.mean, self.std, dtype=self.settings.dtype)


@dataclass
class WorkerSummary:
    """What one worker's loop did: parts trained, pushes rejected, time spent waiting."""

    worker: str
    device: str = "cpu"
    parts: int = 0
    samples: int = 0
    busy_seconds: float = 0.0
    wait_seconds: float = 0.0
    stale_retries: int = 0
    invalid_retries: int = 0
    revoked: int = 0
    dropped: bool = False


def run_worker(
    worker: str,
    *,
    device: str = "cpu",
    next_part: Callable,
    pull: Callable,
    push: Callable,
    read_part: Callable[[tuple[int, ...]], tuple[np.ndarray, np.ndarray]],
    train_part: Callable[[Params, np.ndarray, np.ndarray, int], tuple[Params, float]],
    poll_seconds: float = 0.02,
    max_stale_retries: int = 3,
) -> WorkerSummary:
    """Pull parts until the coordinator says ``finished`` or ``dropped``; returns the summary.

    A push rejected as stale or invalid (NaN/inf) is retrained from fresh weights, up
    to ``max_stale_retries`` times; a revoked one (the part was given to others) is
    dropped.

    Parameters
    ----------
    device : str
        Where ``train_part`` computes (``"cpu"`` or ``"gpu"``), for the summary.
    next_part : () -> Assignment
    pull : () -> (params, version)
    push : (round_index, part_index, delta, base_version, seconds) -> (PushResult, params or None, version)
        Offers the update and returns the global weights as they are right after it, so
        the next part starts from them without another round trip (None: pull first).
    read_part : chunks -> (images uint8 (n, C, H, W), labels int64 (n,))
    train_part : (params, images, labels, epoch) -> (params, seconds)
    """
    summary = WorkerSummary(worker, device)
    latest = None  # (params, version) returned by the last push; None: pull before training
    while True:
        assignment = next_part()
        if assignment.status in ("finished", "dropped"):
            summary.dropped = assignment.status == "dropped"
            return summary
        if assignment.status == "wait":
            time.sleep(poll_seconds)
            summary.wait_seconds += poll_seconds
            latest = None
            continue
        images, labels = read_part(assignment.chunks)
        for _ in range(max_stale_retries + 1):
            base, version = latest if latest is not None else pull()
            trained, seconds = train_part(base, images, labels, assignment.epoch)
            delta = {name: to_numpy(trained[name]) - base[name] for name in base}
            result, params, version = push(assignment.round_index, assignment.part_index, delta, version, seconds)
            latest = None if params is None else (params, version)
            summary.busy_seconds += seconds
            if result.accepted or result.status == "revoked":
                break
            if result.status == "invalid":
                summary.invalid_retries += 1
                latest = None
            else:
                summary.stale_retries += 1
        else:
            fix = "lower the learning rate" if result.status == "invalid" else "raise max_staleness or use fewer workers"
            raise ConfigurationError(
                f"{worker}: the update of part {assignment.part_index} of round {assignment.round_index} was "
                f"rejected as {result.status} {max_stale_retries + 1} times; {fix}"
            )
        if result.status == "revoked":
            summary.revoked += 1
            continue
        summary.parts += 1
        summary.samples += len(labels)
