"""What runs on a worker: the pinned training task."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from distributed import Event, get_client, get_worker

from bptdask.backend import get_namespace
from bptdask.cluster.chunks import ChunkSource
from bptdask.cluster.handle import CoordinatorHandle
from bptdask.cluster.reader import ChunkReader
from bptdask.cluster.simulation import SIMULATION_PLUGIN
from bptdask.errors import ClusterTrainingError
from bptdask.model import Sequential
from bptdask.outer.run_config import RunConfig
from bptdask.outer.worker_loop import PartTrainer, run_worker
from bptdask.report import WorkerSummary

#: Per worker process: run id -> the highest global-weight version this process saw.
#: After the coordinator is lost, it bounds how many merges the checkpoint misses.
SEEN_VERSIONS: dict[str, int] = {}

#: Worker-side states of a task that is still wanted (not cancelled by the client).
_RUNNING = frozenset({"executing", "long-running", "resumed"})


@dataclass(frozen=True)
class TaskSpec:
    """Everything a training task needs besides the coordinator (plain, picklable values)."""

    run_id: str
    stop_event: str
    source: ChunkSource
    model_config: dict
    config: RunConfig
    mean: tuple[float, ...]
    std: tuple[float, ...]


def train_on_worker(address: str, name: str, coordinator, spec: TaskSpec) -> WorkerSummary:
    """The task pinned to ``address``: train parts as worker ``name`` until told to stop.

    The task stops by itself once the client cancels it or sets the Dask ``Event`` named
    ``spec.stop_event`` (its coordinator was replaced), so a worker declared lost keeps no
    thread busy after it resumes; it gives up on a coordinator call that takes longer
    than ``spec.config.call_timeout`` seconds.
    """
    worker = get_worker()
    if worker.address != address:
        raise ClusterTrainingError(f"training task pinned to {address} runs on {worker.address}")
    key = worker.get_current_task()

    def wanted(*, ask_scheduler: bool = False) -> bool:
        task = worker.state.tasks.get(key)
        running = task is not None and task.state in _RUNNING
        return running and not (ask_scheduler and Event(spec.stop_event).is_set())

    def check() -> None:  # a cancelled task frees its thread at once instead of after call_timeout
        if not wanted(ask_scheduler=True):
            raise ClusterTrainingError(f"{name}: the task was cancelled while it called the coordinator")

    def saw(version: int) -> None:
        SEEN_VERSIONS[spec.run_id] = max(SEEN_VERSIONS.get(spec.run_id, 0), int(version))

    handle = CoordinatorHandle(coordinator, timeout=spec.config.call_timeout, check=check, on_version=saw)
    if spec.run_id in SEEN_VERSIONS:
        handle.note_seen_version(SEEN_VERSIONS[spec.run_id])
    xp = get_namespace(spec.config.device)
    train_part = PartTrainer(
        Sequential.from_config(spec.model_config),
        spec.config,
        np.asarray(spec.mean),
        np.asarray(spec.std),
        xp=xp,
        n_threads=worker.state.nthreads if xp is np else None,
        rng=np.random.default_rng([spec.config.seed, *name.encode()]),
    )
    simulation = worker.plugins.get(SIMULATION_PLUGIN)
    if simulation is not None:
        train_part = simulation.wrap(address, train_part)
    reader = ChunkReader(spec.source, worker, get_client())
    return run_worker(
        name,
        handle,
        read_part=reader.read,
        train_part=train_part,
        device="cpu" if xp is np else "gpu",
        holdings=reader.changed_holdings,
        should_stop=lambda: not wanted(),
    )
