"""Clients and local clusters, whether a client can still be used, and who is in the cluster now."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dask
from distributed import Client, LocalCluster, get_worker
from distributed.comm import get_address_host_port, parse_address

from bptdask.errors import ClusterTrainingError, ConfigurationError
from bptdask.inner.runner import available_cores


@contextmanager
def connect(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    security=None,
    worker_ttl: str | float | None = None,
    **cluster_options,
) -> Iterator[Client]:
    """A client of the cluster at ``scheduler``, or of a new ``LocalCluster`` on loopback.

    The local cluster (the embedded default) runs ``n_workers`` Nanny processes of
    ``threads_per_worker`` threads (default: as many workers as fit the cores available to
    this process), binds 127.0.0.1 only and has no dashboard unless
    ``dashboard_address`` is passed; it is closed on exit. A cluster found at
    ``scheduler`` is left running.

    Parameters
    ----------
    security : distributed.security.Security, optional
        TLS settings: for a ``tls://`` scheduler, or to run the local cluster over TLS
        (``Security.temporary()`` makes a throw-away certificate).
    worker_ttl : str or float, optional
        The local scheduler's ``distributed.scheduler.worker-ttl``: how long a worker
        may miss heartbeats (a frozen process) before the scheduler restarts it (its
        Nanny starts a fresh one). Dask's default is 5 minutes.
    """
    if threads_per_worker < 1 or (n_workers is not None and n_workers < 1):
        raise ConfigurationError(
            f"need at least one worker of at least one thread, got n_workers={n_workers!r}, "
            f"threads_per_worker={threads_per_worker!r}"
        )
    if scheduler is not None:
        with _client_of(scheduler, security) as client:
            yield client
        return
    workers = n_workers or max(1, available_cores() // threads_per_worker)
    host = "tls://127.0.0.1" if security is not None and security.require_encryption else "127.0.0.1"
    options = {"processes": True, "host": host, "dashboard_address": None, **cluster_options}
    if security is not None:
        options["security"] = security
    settings = {} if worker_ttl is None else {"distributed.scheduler.worker-ttl": worker_ttl}
    with (
        dask.config.set(settings),
        LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, **options) as cluster,
        Client(cluster, security=security) as client,
    ):
        yield client


@contextmanager
def _client_of(scheduler: str, security) -> Iterator[Client]:
    """A client of the running scheduler at ``scheduler``, this process's default while it is open.

    It becomes the default only once connected: a client that fails to connect would
    otherwise stay registered as the default and take every later Dask computation.

    Raises
    ------
    ClusterTrainingError
        No scheduler answers at that address within Dask's connect timeout
        (``distributed.comm.timeouts.connect``), or the address is malformed.
    """
    try:
        # A malformed address fails before a Client exists (whose __del__ would print);
        # an in-process scheduler's address has no port to check.
        if parse_address(scheduler)[0] != "inproc":
            get_address_host_port(scheduler)
        client = Client(scheduler, security=security, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterTrainingError(
            f"cannot reach a Dask scheduler at {scheduler!r} ({type(exc).__name__}: {exc}); check the address "
            "(tcp://host:port) and that the scheduler is running and reachable from here"
        ) from None
    with client, client.as_current(), dask.config.set(scheduler=client):
        yield client


def check_open(client: Client) -> None:
    """Raise unless ``client`` is a client connected to its scheduler (not closed, not reconnecting).

    Raises
    ------
    ConfigurationError
        ``client`` is not a ``distributed.Client``.
    ClusterTrainingError
        Naming the client's state and the fix.
    """
    if not isinstance(client, Client):
        raise ConfigurationError(f"client must be a distributed.Client or None, got {client!r}")
    if client.status != "running":
        raise ClusterTrainingError(
            f"the Dask client is {client.status}, so it cannot train (was it or its cluster closed?); "
            "start a new Client, or pass client=None to train in this process"
        )


def memory_kills(client: Client, *, since: float) -> dict[str, int]:
    """Workers their Nanny killed for exceeding the memory limit after time ``since`` (``time.time()``).

    Returns
    -------
    dict
        Worker address -> its resident memory in bytes when it was killed, from the
        scheduler's ``worker-restart-memory`` events.
    """
    events = client.get_events("worker-restart-memory")
    return {event["worker"]: int(event["rss"]) for stamp, event in events if stamp >= since}


def worker_addresses(client: Client) -> list[str]:
    """The addresses of the cluster's workers now, sorted, asked of the scheduler.

    ``client.scheduler_info()`` can return a copy that the client's periodic refresh,
    which asks for no workers, has just replaced: a membership check must not use it.
    """
    return sorted(client.sync(client.scheduler.identity, n_workers=-1)["workers"])


def current_client() -> Client | None:
    """The active Dask client of this process, or None when there is none.

    Inside a Dask task (a fit run by joblib's Dask backend, by dask-ml, or by a user's
    ``client.submit``) it is None: that fit trains in the task's own process, instead of
    starting a distributed fit from within a task that holds a worker's thread.
    """
    try:
        get_worker()
    except ValueError:
        pass
    else:
        return None
    try:
        return Client.current()
    except ValueError:
        return None
