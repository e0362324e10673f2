"""Checks before a distributed fit starts: enough workers, and storage the workers can reach.

A cluster's workers may not share this process's disk (any multi-node cluster), so a
dataset path or checkpoint directory that works here can be missing or private there.
:func:`preflight` asks one worker to open the dataset and to write into the checkpoint
directory, and checks that this process sees what the worker wrote: it fails within
seconds, with the path and the fix, instead of in the middle of training.
"""

from __future__ import annotations

import uuid
from concurrent.futures import CancelledError
from pathlib import Path

from distributed import Client, KilledWorker

from bptdask.cluster.chunks import TrainingChunks
from bptdask.cluster.connect import worker_addresses
from bptdask.data.dataset import DatasetRef
from bptdask.errors import (
    BptDaskError,
    ClusterTrainingError,
    ConfigurationError,
    CorruptChunkError,
    DatasetChangedError,
    DatasetError,
    DatasetFormatError,
    IncompleteDatasetError,
)

#: Errors that mean a worker reached the dataset and found it damaged or changed: raised as they are.
_FOUND_DAMAGED = (CorruptChunkError, DatasetChangedError, DatasetFormatError, IncompleteDatasetError)

#: Seconds a fit waits for its first workers (a batch system may take minutes to start them).
START_TIMEOUT = 600.0


def wait_for_workers(client: Client, n_workers: int, *, timeout: float = START_TIMEOUT) -> list[str]:
    """The workers' addresses once the cluster has at least ``n_workers`` (a queued job may take a while).

    Raises
    ------
    ClusterTrainingError
        Fewer workers than that after ``timeout`` seconds.
    """
    try:
        client.wait_for_workers(n_workers, timeout=timeout)
    except TimeoutError:
        have = len(worker_addresses(client))
        raise ClusterTrainingError(
            f"the cluster has {have} of the {n_workers} workers the fit waits for after {timeout:g} s; start "
            "workers or scale the cluster up (are its jobs still queued?), or lower min_workers"
        ) from None
    return worker_addresses(client)


def preflight(client: Client, chunks: TrainingChunks, checkpoint: Path | None, *, worker: str, timeout: float) -> None:
    """Check on ``worker`` that it can open the dataset of ``chunks`` and write ``checkpoint`` as this process sees it.

    Raises
    ------
    DatasetError
        The worker cannot open the dataset.
    ConfigurationError
        The worker cannot write the checkpoint directory, or does not share it with this
        process.
    ClusterTrainingError
        The worker died or gave no answer within ``timeout`` seconds.
    """
    probe = None if checkpoint is None else f".bptdask-probe-{uuid.uuid4().hex[:12]}"
    dataset = chunks.source.dataset
    future = client.submit(_check_on_worker, dataset, checkpoint, probe, workers=[worker], pure=False)
    try:
        problem = future.result(timeout=timeout)
    except (TimeoutError, KilledWorker, CancelledError) as exc:
        future.cancel()
        raise ClusterTrainingError(
            f"worker {worker} did not finish checking the storage before training ({type(exc).__name__}: {exc}); "
            "is it alive and not overloaded? Check the cluster and fit again"
        ) from None
    if problem is not None and problem[0] == "dataset":
        cause = problem[1]
        if isinstance(cause, _FOUND_DAMAGED):
            raise type(cause)(f"on the worker {worker}: {cause}") from cause
        raise DatasetError(
            f"the workers cannot open the dataset at {dataset.location} ({type(cause).__name__}: {cause}); "
            "pass arrays to fit (fit(X, y) puts them on the cluster) or a path or URL every worker can open"
        )
    if problem is not None:
        raise ConfigurationError(
            f"the workers cannot write the checkpoint directory {checkpoint} ({problem[1]}); pass a directory on "
            "storage the workers and this process share"
        )
    if probe is not None:
        written = checkpoint / probe
        if not written.exists():
            raise ConfigurationError(
                f"the workers and this process do not share the checkpoint directory {checkpoint}: a file a worker "
                "wrote there is not visible here; pass a directory on storage both see (a shared file system)"
            )
        written.unlink()


def _check_on_worker(
    dataset: DatasetRef | None, checkpoint: Path | None, probe: str | None
) -> tuple[str, str | Exception] | None:
    """Runs on a worker: ``None``, or ``(what, why)`` for the first thing it cannot reach (the error, for a dataset)."""
    if dataset is not None:
        try:
            dataset.open()
        except (BptDaskError, OSError) as exc:
            return "dataset", exc
    if checkpoint is not None:
        try:
            checkpoint.mkdir(parents=True, exist_ok=True)
            (checkpoint / probe).write_text("bptdask checks that this directory is shared\n")
        except OSError as exc:
            return "checkpoint", f"{type(exc).__name__}: {exc}"
    return None
