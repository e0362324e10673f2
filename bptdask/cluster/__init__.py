"""Every ``distributed`` call of bptdask: the coordinator actor, pinned worker tasks, failures.

:func:`fit_on_cluster` starts a :class:`~bptdask.coordinator.TrainingCoordinator` as a Dask
actor on one worker, then one task pinned to each worker (``workers=[address]``,
``pure=False``) that runs :func:`bptdask.loop.run_worker` against the actor and reads its
chunks straight from the Zarr store (only the dataset's location travels). A supervisor
on the client watches the tasks and the actor (:mod:`bptdask.cluster.supervise`): a
worker that dies or freezes has its chunks handed to the others, a worker that joins
gets work, and a lost actor is recreated on a surviving worker from the newest
checkpoint. Every wait has a timeout.

- :mod:`~bptdask.cluster.connect`: clients, local clusters, membership;
- :mod:`~bptdask.cluster.worker`: what runs on a worker (reading parts, the training task,
  simulated slowdowns and faults);
- :mod:`~bptdask.cluster.supervise`: :func:`fit_on_cluster` and its recovery rules.
"""

from bptdask.cluster.connect import connect, current_client, worker_addresses
from bptdask.cluster.supervise import CHUNKS_PER_WORKER_PER_ROUND, ClusterTrainingError, fit_on_cluster
from bptdask.cluster.worker import Simulation, read_chunks, simulate_divergence, simulate_slowdown

__all__ = [
    "CHUNKS_PER_WORKER_PER_ROUND", "ClusterTrainingError", "Simulation", "connect", "current_client",
    "fit_on_cluster", "read_chunks", "simulate_divergence", "simulate_slowdown", "worker_addresses",
]
