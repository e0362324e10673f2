"""Real Dask clusters for tests: Nanny worker processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster


@contextmanager
def nanny_cluster(n_workers: int) -> Iterator[tuple[LocalCluster, Client]]:
    """A ``LocalCluster`` of ``n_workers`` one-thread Nanny processes on loopback, and its client.

    Nanny processes can be killed and frozen for real, and come back (the Nanny restarts them).
    """
    with (
        LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield cluster, client
