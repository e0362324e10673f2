"""Every ``distributed`` call of bptdask: the coordinator actor, pinned worker tasks, failures.

:func:`fit_on_cluster` starts a :class:`~bptdask.coordinator.TrainingCoordinator` as a Dask
actor on one worker, then one long-running task pinned to each worker
(``workers=[address]``, ``pure=False``) that runs :func:`bptdask.loop.run_worker` against
the actor and reads its chunks straight from the Zarr store (only the dataset's location
travels). The client watches the tasks: a task that fails because its worker died has its
unfinished chunks handed back to the others. Every wait has a timeout.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict

import numpy as np
from distributed import Client, Future, LocalCluster, get_worker, wait
from distributed.diagnostics.plugin import WorkerPlugin

from bptdask._typing import Params
from bptdask.backend import get_namespace
from bptdask.coordinator import TrainingCoordinator
from bptdask.data import Dataset
from bptdask.errors import BptDaskError, ConfigurationError
from bptdask.inner.runner import available_cores
from bptdask.loop import PartTrainer, TrainingSettings, run_worker
from bptdask.model import Sequential

SLOWDOWN_PLUGIN = "bptdask-simulated-slowdown"

#: Default IDPA round size, per worker taking part.
CHUNKS_PER_WORKER_PER_ROUND = 4


class ClusterTrainingError(BptDaskError, RuntimeError):
    """Distributed training could not finish (every worker lost, the coordinator gone, a timeout)."""


class SimulatedSlowdown(WorkerPlugin):
    """SIMULATION: make chosen workers train ``factor`` times slower, to test heterogeneity on one machine.

    After training each part, a slowed worker sleeps ``(factor - 1)`` times the time the
    part took, so its measured power drops by ``factor``. It changes nothing else.

    Parameters
    ----------
    factors : dict
        Worker address -> slowdown factor (≥ 1). Workers not named run at full speed.
    """

    name = SLOWDOWN_PLUGIN

    def __init__(self, factors: dict[str, float]):
        bad = {addr: f for addr, f in factors.items() if not f >= 1.0}
        if bad:
            raise ConfigurationError(f"slowdown factors must be >= 1, got {bad}")
        self.factors = dict(factors)

    def factor(self, address: str) -> float:
        return float(self.factors.get(address, 1.0))


def simulate_slowdown(client: Client, factors: dict[str, float]) -> None:
    """Register :class:`SimulatedSlowdown` on the cluster (replacing an earlier one)."""
    client.register_plugin(SimulatedSlowdown(factors), name=SLOWDOWN_PLUGIN)


@contextmanager
def connect(
    scheduler: str | None = None, *, n_workers: int | None = None, threads_per_worker: int = 1, **cluster_options
) -> Iterator[Client]:
    """A client of the cluster at ``scheduler``, or of a new ``LocalCluster`` on loopback.

    The local cluster (the embedded default) runs ``n_workers`` Nanny processes of
    ``threads_per_worker`` threads (default: as many workers as fit the cores available to
    this process), binds 127.0.0.1 only and has no dashboard unless
    ``dashboard_address`` is passed; it is closed on exit. A cluster found at
    ``scheduler`` is left running.
    """
    if threads_per_worker < 1 or (n_workers is not None and n_workers < 1):
        raise ConfigurationError(
            f"need at least one worker of at least one thread, got n_workers={n_workers!r}, "
            f"threads_per_worker={threads_per_worker!r}"
        )
    if scheduler is not None:
        with Client(scheduler) as client:
            yield client
        return
    workers = n_workers or max(1, available_cores() // threads_per_worker)
    options = {"processes": True, "host": "127.0.0.1", "dashboard_address": None, **cluster_options}
    with LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, **options) as cluster, \
            Client(cluster) as client:
        yield client


def worker_addresses(client: Client) -> list[str]:
    """The addresses of the cluster's workers now, sorted, asked of the scheduler.

    ``client.scheduler_info()`` can return a copy that the client's periodic refresh,
    which asks for no workers, has just replaced: a membership check must not use it.
    """
    return sorted(client.sync(client.scheduler.identity, n_workers=-1)["workers"])


def current_client() -> Client | None:
    """The active Dask client, or None when there is none."""
    try:
        return Client.current()
    except ValueError:
        return None


def read_chunks(dataset: Dataset, chunks: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Training samples of ``chunks`` (runs of consecutive chunks read in one go), in order given."""
    images, labels = [], []
    start = 0
    ordered = list(chunks)
    while start < len(ordered):
        stop = start + 1
        while stop < len(ordered) and ordered[stop] == ordered[stop - 1] + 1:
            stop += 1
        x, y = dataset.read(ordered[start], ordered[stop - 1] + 1, subset="train")
        images.append(x)
        labels.append(y)
        start = stop
    return np.concatenate(images), np.concatenate(labels)


def _train_on_worker(
    address: str, coordinator, dataset: Dataset, model_config: dict, settings: TrainingSettings,
    mean: list[float], std: list[float], call_timeout: float,
) -> dict:
    """The long-running task pinned to ``address``: the worker's whole share of training."""
    worker = get_worker()
    if worker.address != address:
        raise ClusterTrainingError(f"training task pinned to {address} runs on {worker.address}")
    plugin = worker.plugins.get(SLOWDOWN_PLUGIN)
    xp = get_namespace(settings.device)
    trainer = PartTrainer(
        Sequential.from_config(model_config), settings, np.asarray(mean), np.asarray(std), xp=xp,
        n_threads=worker.state.nthreads if xp is np else None, slowdown=plugin.factor(address) if plugin else 1.0,
        rng=np.random.default_rng([settings.seed, abs(hash(address)) % 2**32]),
    )

    def call(method, *args, **kwargs):
        return getattr(coordinator, method)(*args, **kwargs).result(timeout=call_timeout)

    summary = run_worker(
        address,
        device="cpu" if xp is np else "gpu",
        next_part=lambda: call("next_part", address),
        pull=lambda: call("pull"),
        push=lambda r, p, delta, version, seconds: call(
            "push_and_pull", address, r, p, delta, base_version=version, seconds=seconds
        ),
        read_part=lambda chunks: read_chunks(dataset, chunks),
        train_part=trainer,
    )
    return asdict(summary)


def fit_on_cluster(
    client: Client,
    dataset: Dataset,
    model: Sequential,
    params: Params,
    settings: TrainingSettings,
    *,
    mode: str = "agwu",
    alpha0: float = 1.0,
    gamma: float = 0.5,
    max_staleness: int | None = None,
    chunks_per_round: int | None = None,
    balance: str = "power",
    workers: list[str] | None = None,
    evaluate: Callable[[Params], float] | None = None,
    target_accuracy: float | None = None,
    call_timeout: float = 300.0,
    timeout: float | None = None,
) -> tuple[Params, dict]:
    """Train ``model`` from ``params`` on the training chunks of ``dataset`` across the cluster.

    Parameters
    ----------
    client : distributed.Client
    dataset : Dataset
        Opened from a location every worker can read (a shared path or an object-store URL).
    settings : TrainingSettings
    mode, alpha0, gamma, max_staleness
        Global weight update rule (:class:`~bptdask.ps.WeightServer`).
    chunks_per_round : int, optional
        Chunks per IDPA round; default four per worker. Larger rounds mean fewer,
        larger parts: less time in actor calls and reads per sample trained (with 3
        workers on the MNIST sample, 4 per worker measured 6% idle against 11% for 2),
        at the cost of fewer merges per epoch.
    balance : {"power", "even"}
        IDPA, or the equal-split baseline it is measured against.
    workers : list of str, optional
        Worker addresses to use; default all. The coordinator lives on the first.
    evaluate : callable, optional
        ``evaluate(params) -> accuracy``, run here on the global weights as they were at
        the end of every epoch (recorded in the report's ``"evaluations"``).
    target_accuracy : float, optional
        End the run once ``evaluate`` reaches it (needs ``evaluate``).
    call_timeout : float
        Seconds any single actor call may take before the worker's task fails.
    timeout : float, optional
        Seconds the whole fit may take.

    Returns
    -------
    params : dict of NumPy arrays
        The final global weights.
    report : dict
        The coordinator's report (rounds, per-worker totals, merges) plus ``"worker_loops"``
        (each worker's summary), ``"lost_workers"`` and ``"evaluations"`` (epoch, seconds
        since the coordinator started, version, accuracy).
    """
    if target_accuracy is not None and evaluate is None:
        raise ConfigurationError("target_accuracy needs evaluate (a function scoring the weights); pass both")
    addresses = sorted(workers or worker_addresses(client))
    if not addresses:
        raise ClusterTrainingError("the cluster has no workers; start some or scale it up")
    chunk_sizes = [int(n) for n in dataset.chunk_sizes("train")]
    if not any(chunk_sizes):
        raise ConfigurationError(f"{dataset.location} has no training samples")
    per_round = chunks_per_round or CHUNKS_PER_WORKER_PER_ROUND * len(addresses)
    placed = client.submit(
        TrainingCoordinator, {k: np.asarray(v) for k, v in params.items()},
        chunk_sizes=chunk_sizes, worker_names=addresses, epochs=settings.epochs, seed=settings.seed,
        chunks_per_round=per_round, mode=mode, alpha0=alpha0, gamma=gamma, max_staleness=max_staleness,
        balance=balance, keep_epoch_weights=evaluate is not None, actor=True, workers=[addresses[0]], pure=False,
    )
    coordinator = placed.result(timeout=call_timeout)
    home = sorted(client.who_has(placed)[placed.key])
    if home != [addresses[0]]:
        raise ClusterTrainingError(f"the coordinator was placed on {home}, not on {addresses[0]} as asked")
    run_id = uuid.uuid4().hex[:8]
    tasks: dict[str, Future] = {
        address: client.submit(
            _train_on_worker, address, coordinator, dataset, model.to_config(), settings,
            list(map(float, dataset.mean)), list(map(float, dataset.std)), call_timeout,
            workers=[address], allow_other_workers=False, pure=False, key=f"bptdask-train-{run_id}-{address}",
        )
        for address in addresses
    }
    monitor = _EpochMonitor(coordinator, evaluate, target_accuracy, call_timeout)
    summaries, lost = _watch(client, coordinator, tasks, monitor, call_timeout=call_timeout, timeout=timeout)
    monitor.check()
    final, _ = coordinator.pull().result(timeout=call_timeout)
    report = coordinator.report().result(timeout=call_timeout)
    report["worker_loops"] = summaries
    report["lost_workers"] = lost
    report["coordinator"] = addresses[0]
    report["evaluations"] = monitor.records
    return final, report


class _EpochMonitor:
    """Scores the global weights of every epoch and ends the run at a target accuracy.

    Workers keep training while an epoch is scored, so the run ends up to about one
    epoch after the one that reached the target; that epoch is scored too.
    """

    def __init__(self, coordinator, evaluate, target_accuracy: float | None, call_timeout: float):
        self.coordinator, self.evaluate, self.target = coordinator, evaluate, target_accuracy
        self.call_timeout = call_timeout
        self.records: list[dict] = []
        self.reached = False

    def check(self) -> None:
        """Score the epochs that ended since the last call (one short actor call otherwise)."""
        if self.evaluate is None:
            return
        for kept in self.coordinator.take_epoch_weights().result(timeout=self.call_timeout):
            record = {key: kept[key] for key in ("epoch", "seconds", "version")}
            record["accuracy"] = float(self.evaluate(kept["params"]))
            self.records.append(record)
            if self.target is not None and record["accuracy"] >= self.target and not self.reached:
                self.reached = True
                self.coordinator.finish().result(timeout=self.call_timeout)


def _watch(
    client: Client, coordinator, tasks: dict[str, Future], monitor: _EpochMonitor, *,
    call_timeout: float, timeout: float | None,
):
    """Wait for every worker task; hand a failed or departed worker's chunks back to the others.

    A task pinned to a worker that left the cluster never fails by itself (the scheduler
    keeps it waiting for a worker of that address), so the cluster's membership is checked
    on every pass too.
    """
    started = time.monotonic()
    pending = dict(tasks)
    summaries: dict[str, dict] = {}
    lost: dict[str, str] = {}
    while pending:
        if timeout is not None and time.monotonic() - started > timeout:
            raise ClusterTrainingError(f"distributed fit did not finish within {timeout} s; still running: {sorted(pending)}")
        try:
            wait(list(pending.values()), timeout=0.25, return_when="FIRST_COMPLETED")
        except TimeoutError:
            pass
        monitor.check()
        present = set(worker_addresses(client))
        for address, future in list(pending.items()):
            if future.status == "finished":
                summaries[address] = future.result()
            elif future.status != "pending":
                lost[address] = repr(future.exception()) if future.status == "error" else future.status
            elif address not in present:
                lost[address] = "the worker left the cluster"
                future.cancel()
            else:
                continue
            del pending[address]
            if address not in lost:
                continue
            if len(lost) == len(tasks):
                raise ClusterTrainingError(f"every worker failed: {lost}")
            try:
                coordinator.lose_worker(address).result(timeout=call_timeout)
            except Exception as exc:
                raise ClusterTrainingError(
                    f"worker {address} failed ({lost[address]}) and the coordinator could not take its "
                    f"chunks back ({exc!r}); if the coordinator's worker died, restart the fit"
                ) from exc
    return summaries, lost
