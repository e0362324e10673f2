"""The Dask shell: every ``distributed`` call of bptdask lives in this room.

- :mod:`~bptdask.cluster.connect`: clients, local clusters, membership;
- :mod:`~bptdask.cluster.fit`: :func:`fit_on_cluster`, a distributed fit;
- :mod:`~bptdask.cluster.supervise`: the shell that carries out the supervisor's
  decisions (:mod:`bptdask.outer.supervisor`) with Dask;
- :mod:`~bptdask.cluster.generation`: one coordinator actor and its pinned training tasks;
- :mod:`~bptdask.cluster.handle`: the coordinator actor's calls, each with a timeout;
- :mod:`~bptdask.cluster.worker`: what runs on a worker (reading parts, the training task);
- :mod:`~bptdask.cluster.simulation`: simulated slow workers and NaN updates, for tests
  and benchmarks.
"""

from bptdask.cluster.connect import connect, current_client, worker_addresses
from bptdask.cluster.fit import fit_on_cluster
from bptdask.cluster.simulation import Simulation, simulate_divergence, simulate_slowdown
from bptdask.cluster.worker import read_chunks
from bptdask.errors import ClusterTrainingError

__all__ = [
    "ClusterTrainingError",
    "Simulation",
    "connect",
    "current_client",
    "fit_on_cluster",
    "read_chunks",
    "simulate_divergence",
    "simulate_slowdown",
    "worker_addresses",
]
