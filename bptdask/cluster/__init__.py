"""The Dask shell: every ``distributed`` call of bptdask lives in this room.

- :mod:`~bptdask.cluster.connect`: clients, local clusters, membership;
- :mod:`~bptdask.cluster.fit`: :func:`fit_on_cluster`, a distributed fit;
- :mod:`~bptdask.cluster.supervise`: the shell that carries out the supervisor's
  decisions (:mod:`bptdask.outer.supervisor`) with Dask;
- :mod:`~bptdask.cluster.generation`: one coordinator actor and its pinned training tasks;
- :mod:`~bptdask.cluster.handle`: the coordinator actor's calls, each with a timeout;
- :mod:`~bptdask.cluster.chunks`: a fit's training data on the cluster (scattered,
  persisted, or read from a dataset's store);
- :mod:`~bptdask.cluster.reader`: reading chunks on a worker (memory, peer, store), its cache;
- :mod:`~bptdask.cluster.preflight`: waiting for workers, checking they reach the storage;
- :mod:`~bptdask.cluster.worker`: the pinned training task;
- :mod:`~bptdask.cluster.simulation`: simulated slow workers and NaN updates, for tests
  and benchmarks.
"""

from bptdask.cluster.chunks import TrainingChunks, dataset_chunks, persist_chunks, scatter_chunks
from bptdask.cluster.connect import connect, current_client, worker_addresses
from bptdask.cluster.fit import fit_on_cluster
from bptdask.cluster.simulation import Simulation, simulate_divergence, simulate_slowdown
from bptdask.errors import ClusterTrainingError

__all__ = [
    "ClusterTrainingError",
    "Simulation",
    "TrainingChunks",
    "connect",
    "current_client",
    "dataset_chunks",
    "fit_on_cluster",
    "persist_chunks",
    "scatter_chunks",
    "simulate_divergence",
    "simulate_slowdown",
    "worker_addresses",
]
