"""One generation of a distributed fit on Dask: a coordinator actor and the tasks training against it.

A generation places the coordinator on the worker it is given (and checks it landed
there), starts training tasks pinned to workers, cancels them, and stops them all,
setting a Dask ``Event`` that tells a task thread still running (a task whose
coordinator was lost can go on executing after its cancellation) to return.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import CancelledError
from dataclasses import dataclass, field

from distributed import Client, Event, Future, KilledWorker

from bptdask.cluster.actor import CoordinatorActor
from bptdask.cluster.connect import worker_addresses
from bptdask.cluster.handle import CoordinatorHandle
from bptdask.cluster.worker import TaskSpec, train_on_worker
from bptdask.errors import ClusterTrainingError, CoordinatorLostError

#: Errors of placing the coordinator that mean its worker is gone.
_PLACEMENT_LOST = (OSError, TimeoutError, CancelledError, KilledWorker)


@dataclass
class Generation:
    """A coordinator actor on ``home``, its handle, and the tasks training against it (by name)."""

    number: int
    home: str
    placed: Future
    actor: object
    handle: CoordinatorHandle
    spec: TaskSpec
    tasks: dict[str, Future] = field(default_factory=dict)

    @classmethod
    def place(cls, client: Client, number: int, home: str, spec: TaskSpec, **coordinator) -> Generation:
        """Start the coordinator actor (:class:`~bptdask.cluster.actor.CoordinatorActor`) on ``home``.

        ``coordinator`` are the arguments of its :class:`~bptdask.outer.coordinator.TrainingCoordinator`.

        Raises
        ------
        CoordinatorLostError
            ``home`` died or left before the coordinator started.
        ClusterTrainingError
            The scheduler placed the coordinator elsewhere.
        """
        key = f"bptdask-coordinator-{spec.run_id}-g{number}"
        placed = client.submit(CoordinatorActor, **coordinator, actor=True, workers=[home], pure=False, key=key)
        timeout = spec.config.call_timeout
        try:
            actor = placed.result(timeout=timeout)
        except _PLACEMENT_LOST as exc:
            placed.cancel()
            raise CoordinatorLostError(f"it could not start on {home}: {type(exc).__name__}: {exc}") from exc
        placed_on = sorted(client.who_has(placed)[placed.key])
        if placed_on != [home]:
            raise ClusterTrainingError(f"the coordinator was placed on {placed_on}, not on {home} as asked")

        def check() -> None:
            if home not in worker_addresses(client):
                raise CoordinatorLostError(f"its worker {home} left the cluster")

        return cls(number, home, placed, actor, CoordinatorHandle(actor, timeout=timeout, check=check), spec)

    def start_task(self, client: Client, name: str, address: str) -> None:
        """Start training task ``name`` pinned to the worker at ``address``."""
        self.tasks[name] = client.submit(
            train_on_worker,
            address,
            name,
            self.actor,
            self.spec,
            workers=[address],
            allow_other_workers=False,
            pure=False,
            key=f"bptdask-train-{self.spec.run_id}-g{self.number}-{name}",
        )

    def cancel_task(self, name: str) -> None:
        if name in self.tasks:
            self.tasks.pop(name).cancel()

    def stop_tasks(self, client: Client) -> None:
        """Cancel every task and set the generation's stop event."""
        tasks, self.tasks = self.tasks, {}
        for future in tasks.values():
            future.cancel()
        with contextlib.suppress(Exception):  # the client is closing: its tasks go with it
            Event(self.spec.stop_event, client=client).set()

    def release(self, client: Client) -> None:
        """Stop every task and let the coordinator actor go (every reference to it, so its key goes too)."""
        self.stop_tasks(client)
        # force: a traceback kept after an interrupt (sys.last_traceback) still holds the actor
        client.cancel([self.placed], force=True)
        self.handle.forget()
        self.actor = None
