"""What runs on a worker: reading parts, the training task, simulated slowdowns and faults."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
from distributed import Client, Event, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from bptdask.backend import get_namespace
from bptdask.cluster.calls import await_answer
from bptdask.coordinator import Assignment
from bptdask.data import Dataset
from bptdask.errors import BptDaskError, ConfigurationError
from bptdask.loop import PartTrainer, TrainingSettings, run_worker
from bptdask.model import Sequential

SIMULATION_PLUGIN = "bptdask-simulation"

#: Per worker process: run id -> the highest global-weight version this process saw.
#: After the coordinator is lost, it bounds how many merges the checkpoint misses.
SEEN_VERSIONS: dict[str, int] = {}

#: Worker-side states of a task that is still wanted (not cancelled by the client).
_RUNNING = frozenset({"executing", "long-running", "resumed"})


class ClusterTrainingError(BptDaskError, RuntimeError):
    """Distributed training could not finish (every worker lost, the coordinator gone, a timeout)."""


class Simulation(WorkerPlugin):
    """SIMULATION of slow machines and diverging training on one machine, for tests and benchmarks.

    After training each part, a slowed worker sleeps ``(factor - 1)`` times the time the
    part took, so its measured power drops by ``factor``. A worker given ``corrupt_parts``
    returns NaN weights for that many parts (once, whichever of its tasks trains them).
    It changes nothing else.

    Parameters
    ----------
    slowdown : dict
        Worker address -> slowdown factor (≥ 1). Workers not named run at full speed.
    corrupt_parts : dict
        Worker address -> how many of its next parts come back as NaN.
    """

    name = SIMULATION_PLUGIN

    def __init__(self, slowdown: dict[str, float] | None = None, corrupt_parts: dict[str, int] | None = None):
        slowdown, corrupt_parts = dict(slowdown or {}), dict(corrupt_parts or {})
        bad = {addr: f for addr, f in slowdown.items() if not f >= 1.0}
        bad |= {addr: n for addr, n in corrupt_parts.items() if not (isinstance(n, int) and n >= 0)}
        if bad:
            raise ConfigurationError(f"slowdown factors must be >= 1 and corrupt_parts counts >= 0, got {bad}")
        self.slowdown, self.corrupt_parts = slowdown, corrupt_parts

    def factor(self, address: str) -> float:
        return float(self.slowdown.get(address, 1.0))

    def take_corrupt_parts(self, address: str) -> int:
        """How many parts to corrupt on ``address``; later tasks there get none."""
        return self.corrupt_parts.pop(address, 0)


def simulate_slowdown(client: Client, factors: dict[str, float]) -> None:
    """Register a :class:`Simulation` of slower workers (replacing an earlier simulation)."""
    client.register_plugin(Simulation(slowdown=factors), name=SIMULATION_PLUGIN)


def simulate_divergence(client: Client, corrupt_parts: dict[str, int]) -> None:
    """Register a :class:`Simulation` of workers whose next parts come back as NaN (replacing an earlier one)."""
    client.register_plugin(Simulation(corrupt_parts=corrupt_parts), name=SIMULATION_PLUGIN)


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


def train_on_worker(
    address: str, name: str, run_id: str, coordinator, stop: str, dataset: Dataset, model_config: dict,
    settings: TrainingSettings, mean: list[float], std: list[float], call_timeout: float,
) -> dict:
    """The task pinned to ``address``: train parts as worker ``name`` until told to stop.

    The task stops by itself once the client cancels it or sets the Dask ``Event``
    named ``stop`` (its coordinator was replaced), so a worker declared lost keeps no
    thread busy after it resumes; it gives up on an actor call that takes longer than
    ``call_timeout`` seconds.
    """
    worker = get_worker()
    if worker.address != address:
        raise ClusterTrainingError(f"training task pinned to {address} runs on {worker.address}")
    key = worker.get_current_task()
    plugin = worker.plugins.get(SIMULATION_PLUGIN)
    xp = get_namespace(settings.device)
    trainer = PartTrainer(
        Sequential.from_config(model_config), settings, np.asarray(mean), np.asarray(std), xp=xp,
        n_threads=worker.state.nthreads if xp is np else None,
        slowdown=plugin.factor(address) if plugin else 1.0,
        corrupt_parts=plugin.take_corrupt_parts(address) if plugin else 0,
        rng=np.random.default_rng([settings.seed, *name.encode()]),
    )

    def wanted(*, ask_scheduler: bool = False) -> bool:
        task = worker.state.tasks.get(key)
        running = task is not None and task.state in _RUNNING
        return running and not (ask_scheduler and Event(stop).is_set())

    def call(method, *args, **kwargs):
        # A cancelled task frees its thread at once instead of after call_timeout.
        def check():
            if not wanted(ask_scheduler=True):
                raise ClusterTrainingError(f"{name}: the task was cancelled while it called {method}")

        future = getattr(coordinator, method)(*args, **kwargs)
        return await_answer(future, method=method, timeout=call_timeout, check=check)

    def saw(version: int) -> None:
        SEEN_VERSIONS[run_id] = max(SEEN_VERSIONS.get(run_id, 0), int(version))

    def next_part():
        return call("next_part", name) if wanted() else Assignment("dropped")

    def pull():
        params, version = call("pull")
        saw(version)
        return params, version

    def push(round_index, part_index, delta, version, seconds):
        result, params, latest = call(
            "push_and_pull", name, round_index, part_index, delta, base_version=version, seconds=seconds
        )
        saw(latest)
        return result, params, latest

    if run_id in SEEN_VERSIONS:
        call("note_seen_version", SEEN_VERSIONS[run_id])
    summary = run_worker(
        name, device="cpu" if xp is np else "gpu", next_part=next_part, pull=pull, push=push,
        read_part=lambda chunks: read_chunks(dataset, chunks), train_part=trainer,
    )
    return asdict(summary)
