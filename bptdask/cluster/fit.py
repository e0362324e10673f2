""":func:`fit_on_cluster`: train a model across a Dask cluster with IDPA and AGWU/SGWU.

It waits for the workers it needs, checks that they reach the data and the checkpoint
directory (:mod:`~bptdask.cluster.preflight`), starts a
:class:`~bptdask.outer.coordinator.TrainingCoordinator` as a Dask actor on one worker,
then one task pinned to each worker that trains parts against it; the workers reach
the chunks through Dask or read them from the dataset's store
(:mod:`~bptdask.cluster.chunks`). The supervisor (:mod:`~bptdask.cluster.supervise`)
watches them until the run ends, and the fit's chunks are released from the cluster
however it ends. A fit that fails says what went wrong on the cluster: the client or
its cluster closed, a worker killed for memory, the error a training task raised on
its worker, or the coordinator's worker gone.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable

import numpy as np
from distributed import Client, KilledWorker

from bptdask._typing import Params
from bptdask.cluster.chunks import TrainingChunks, dataset_chunks
from bptdask.cluster.connect import check_open, memory_kills, worker_addresses
from bptdask.cluster.preflight import START_TIMEOUT, preflight, wait_for_workers
from bptdask.cluster.reader import forget_cache
from bptdask.cluster.supervise import Shell
from bptdask.data import Dataset
from bptdask.errors import BptDaskError, ClusterTrainingError, ConfigurationError
from bptdask.model import Sequential
from bptdask.outer.checkpoint import resume_run
from bptdask.outer.run_config import RunConfig, describe_run
from bptdask.outer.supervisor import SupervisorState
from bptdask.report import Evaluation, RunReport
from bptdask.validation import check_integer

#: Seconds a cluster that lost the coordinator's worker gets to show whether it is closing.
SETTLE_SECONDS = 6.0


def fit_on_cluster(
    client: Client,
    data: Dataset | TrainingChunks,
    model: Sequential,
    params: Params,
    config: RunConfig,
    *,
    workers: list[str] | None = None,
    evaluate: Callable[[Params], float] | None = None,
    target_accuracy: float | None = None,
    on_epoch: Callable[[Evaluation], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    timeout: float | None = None,
    min_workers: int = 1,
    start_timeout: float = START_TIMEOUT,
    seed_fixed: bool = True,
) -> tuple[Params, RunReport]:
    """Train ``model`` from ``params`` on the training data ``data`` across the cluster.

    Parameters
    ----------
    client : distributed.Client
    data : Dataset or TrainingChunks
        A dataset's training split (its location must open on every worker: a shared
        path or an object-store URL), or arrays already put on the cluster
        (:func:`~bptdask.cluster.chunks.scatter_chunks`, :func:`~bptdask.cluster.chunks.persist_chunks`).
    model : Sequential
    params : dict of arrays
        The initial weights (ignored when resuming from a checkpoint).
    config : RunConfig
        Training settings, merge rule, IDPA round size and balance, timeouts.
    workers : list of str, optional
        Worker addresses to use; default all, including workers that join during the
        run. The coordinator lives on the first.
    evaluate : callable, optional
        ``evaluate(params) -> accuracy``, run here on the global weights as they were at
        the end of every epoch (recorded in the report's ``evaluations``).
    target_accuracy : float, optional
        End the run once ``evaluate`` reaches it (needs ``evaluate``).
    on_epoch : callable, optional
        Called here with each epoch's :class:`~bptdask.report.Evaluation` as soon as it
        is scored, for progress output.
    checkpoint : str or PathLike, optional
        Directory on a file system the workers and this process share. Checkpoints are
        written there every ``config.checkpoint_every`` merges and at the end; if it
        already holds one of this run, training resumes from it (to the same final
        epoch); if the coordinator's worker dies, the coordinator is recreated from it.
    timeout : float, optional
        Seconds the whole fit may take.
    min_workers : int
        Workers to wait for before starting, at most ``start_timeout`` seconds (a
        cluster whose jobs are still queued); workers that join later get work too.
    seed_fixed : bool
        ``config.seed`` was chosen by the caller: a resume needs the same seed. False
        when it was drawn for this fit; a resume then takes the checkpoint's.

    Returns
    -------
    params : dict of NumPy arrays
        The final global weights.
    report : RunReport

    Raises
    ------
    TrainingDivergedError
        Updates held NaN/inf ``config.max_invalid`` times in a row; the last good
        checkpoint is kept.
    ClusterTrainingError
        Every worker was lost, the coordinator was lost without a checkpoint, a timeout,
        or the client or its cluster was closed; the message names the cause found on
        the cluster (a worker killed for memory, the coordinator's worker gone).
    BptDaskError
        The bptdask error a training task raised on its worker (a damaged chunk, say),
        of the same class, its message prefixed with the worker.
    CheckpointError
        ``checkpoint`` holds a checkpoint of another run (model, settings, seed, data),
        or checkpoints none of which is intact.
    DatasetError, ConfigurationError
        The workers cannot open the dataset, or cannot share or write the checkpoint
        directory.
    """
    if target_accuracy is not None and evaluate is None:
        raise ConfigurationError("target_accuracy needs evaluate (a function scoring the weights); pass both")
    check_open(client)
    started, shell = time.time(), None
    present = wait_for_workers(client, check_integer("min_workers", min_workers, minimum=1), timeout=start_timeout)
    chunks = data if isinstance(data, TrainingChunks) else dataset_chunks(client, data)
    try:
        if not any(chunks.chunk_sizes):
            raise ConfigurationError(f"{chunks.description} has no training samples")
        run = describe_run(
            config, model.to_config(), chunks.chunk_sizes, mean=chunks.mean, std=chunks.std, seed_fixed=seed_fixed
        )
        store, resume, config = resume_run(checkpoint, config, run)
        addresses = sorted(workers or present)
        preflight(client, chunks, store and store.path, worker=addresses[0], timeout=config.call_timeout)
        state = SupervisorState(
            addresses,
            only=frozenset(workers) if workers else None,
            resume=resume is not None,
            checkpointing=store is not None,
            target_accuracy=target_accuracy,
            call_timeout=config.call_timeout,
            timeout=timeout,
        )
        initial = {name: np.asarray(value) for name, value in params.items()}
        shell = Shell(client, chunks, model, initial, config, run, store=store, evaluate=evaluate, on_epoch=on_epoch)
        return shell.run(state)
    except Exception as exc:
        cause = _cause_on_the_cluster(client, exc, shell, since=started)
        if cause is None:
            raise
        raise cause from exc
    finally:
        if _reachable(client):  # a closed client has nothing left to release
            chunks.release(client)
            with contextlib.suppress(Exception):  # a worker that left has no cache to drop
                client.run(forget_cache, chunks.source.token)


def _reachable(client: Client) -> bool:
    """Whether ``client`` is open and its scheduler answers."""
    try:
        check_open(client)
        worker_addresses(client)
    except Exception:  # closed, or the scheduler is gone: whatever the comm layer raises
        return False
    return True


def _settle(client: Client) -> bool:
    """Wait up to :data:`SETTLE_SECONDS` while the cluster keeps losing workers; False if it closed meanwhile.

    A cluster being closed loses its workers one by one, the coordinator's first at
    times: waiting until the membership holds still tells that from one worker dying.
    """
    deadline = time.monotonic() + SETTLE_SECONDS
    before = None
    while time.monotonic() < deadline:
        if not _reachable(client):
            return False
        now = worker_addresses(client)
        if now == before or not now:
            return True
        before = now
        time.sleep(1.0)
    return _reachable(client)


def _lost(error: BaseException) -> bool:
    """Whether a training task's ``error`` says only that it lost its worker or coordinator, not why."""
    return isinstance(error, (KilledWorker, ClusterTrainingError))


def _cause_on_the_cluster(client: Client, error: Exception, shell: Shell | None, *, since: float) -> Exception | None:
    """The error to raise instead of ``error``, naming what went wrong on the cluster; None keeps ``error``.

    Looked for in this order: the client or its cluster was closed; a Nanny killed a
    worker for exceeding its memory limit after ``since`` (``time.time()``); a training
    task raised an error on its worker (a bptdask error keeps its class); every worker
    left; the worker holding the coordinator left the cluster.
    """
    closed = ClusterTrainingError(
        f"the Dask client or its cluster was closed while the fit ran ({type(error).__name__}: {error}); "
        "keep both open until fit returns, and start a new cluster to train again"
    )
    if not _reachable(client):
        return closed
    if not isinstance(error, ClusterTrainingError):
        return None
    killed = memory_kills(client, since=since)
    if killed:
        address, rss = next(iter(killed.items()))
        return ClusterTrainingError(
            f"worker {address} was killed by its Nanny for exceeding its memory limit ({rss / 2**20:.0f} MiB in use), "
            f"so {error}; give the workers more memory (the cluster's memory_limit) or use a smaller batch_size"
        )
    raised = [] if shell is None else [item for item in shell.task_errors.items() if not _lost(item[1])]
    if raised:
        name, first = raised[0]
        if isinstance(first, BptDaskError):
            return type(first)(f"on worker {name}: {first}")
        return ClusterTrainingError(
            f"training raised {type(first).__name__} on worker {name}: {first}; "
            "fix that on the workers (their logs hold the traceback), then fit again"
        )
    home = None if shell is None or shell.generation is None else shell.generation.home
    present = worker_addresses(client)
    if home is not None and home not in present:
        if not _settle(client):
            return closed
        present = worker_addresses(client)
    if home is not None and not present:
        return ClusterTrainingError(
            f"every worker left the cluster while the fit ran, {home} with the coordinator among them (was the "
            "cluster closed or scaled down?); keep the workers running until fit returns"
        )
    if home is not None and home not in present:
        return ClusterTrainingError(f"worker {home}, which held the coordinator, died or left the cluster: {error}")
    return None
