""":func:`fit_on_cluster`: start the coordinator and the worker tasks, then watch over them.

The supervisor runs on the client and checks, four times a second:

- the coordinator: a progress call with a timeout; if it fails, or the coordinator's
  worker left, the coordinator is recreated on a surviving worker from the newest
  checkpoint (every task is restarted against it) — without a checkpoint the fit fails;
- silent workers: the coordinator drops any worker that held a part without a word for
  longer than ``worker_timeout`` (a frozen process), and its task is cancelled;
- the tasks: one that finished is done, one that failed or whose worker left the
  cluster is lost, and its chunks go back to the others;
- membership: a worker with no task (new, or restarted by its Nanny) gets one, under a
  new name if this coordinator dropped its address before.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import CancelledError
from dataclasses import asdict, dataclass, field

import numpy as np
from distributed import Client, Event, Future, wait

from bptdask._typing import Params
from bptdask.checkpoint import CheckpointState, CheckpointStore, describe_run
from bptdask.cluster.calls import await_answer
from bptdask.cluster.connect import worker_addresses
from bptdask.cluster.worker import ClusterTrainingError, train_on_worker
from bptdask.coordinator import TrainingCoordinator
from bptdask.data import Dataset
from bptdask.errors import BptDaskError, ConfigurationError, TrainingDivergedError
from bptdask.loop import TrainingSettings
from bptdask.model import Sequential

#: Default IDPA round size, per worker taking part.
CHUNKS_PER_WORKER_PER_ROUND = 4
#: Tasks one address may be given by one coordinator (a task that keeps failing stops there).
TASKS_PER_ADDRESS = 3
#: Errors of an actor call that mean the coordinator cannot be reached.
_ACTOR_LOST = (OSError, RuntimeError, TimeoutError, CancelledError)


class _CoordinatorLost(Exception):
    """The coordinator actor cannot be reached: its worker died, left or froze."""
_POLL_SECONDS = 0.25


@dataclass
class _Task:
    address: str
    future: Future


@dataclass
class _Generation:
    """One coordinator actor and the tasks training against it."""

    coordinator: object
    future: Future
    home: str
    number: int
    stop: str
    tasks: dict[str, _Task] = field(default_factory=dict)
    started_per_address: dict[str, int] = field(default_factory=dict)


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
    on_epoch: Callable[[dict], None] | None = None,
    checkpoint: str | None = None,
    checkpoint_every: int = 50,
    worker_timeout: float = 60.0,
    max_invalid: int = 3,
    call_timeout: float = 60.0,
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
        Worker addresses to use; default all, including workers that join during the
        run. The coordinator lives on the first.
    evaluate : callable, optional
        ``evaluate(params) -> accuracy``, run here on the global weights as they were at
        the end of every epoch (recorded in the report's ``"evaluations"``).
    target_accuracy : float, optional
        End the run once ``evaluate`` reaches it (needs ``evaluate``).
    on_epoch : callable, optional
        Called here with each epoch's evaluation (epoch, seconds, version, accuracy)
        as soon as it is scored, for progress output.
    checkpoint : str or PathLike, optional
        Directory on a file system the workers and this process share. Checkpoints are
        written there every ``checkpoint_every`` merges and at the end; if it already
        holds one of this run, training resumes from it (to the same final epoch); if
        the coordinator's worker dies, the coordinator is recreated from it.
    worker_timeout : float
        Seconds a worker may hold a part without calling the coordinator (at least four
        times the part's expected time) before it is treated as lost.
    max_invalid : int
        NaN/inf updates in a row that stop the run with :class:`TrainingDivergedError`.
    call_timeout : float
        Seconds any single actor call may take (a frozen coordinator is lost after it).
    timeout : float, optional
        Seconds the whole fit may take.

    Returns
    -------
    params : dict of NumPy arrays
        The final global weights.
    report : dict
        The coordinator's report (rounds, per-worker totals, merges, evaluations,
        checkpoints, dropped workers) plus ``"worker_loops"`` (each task's summary),
        ``"lost_workers"`` (task name -> why), ``"restarted_tasks"`` (tasks of surviving
        workers restarted against a recreated coordinator), ``"recoveries"`` (each
        recreated coordinator: when, why, the checkpoint's version and the merges lost)
        and ``"merges_lost"``.

    Raises
    ------
    TrainingDivergedError
        Updates held NaN/inf ``max_invalid`` times in a row; the last good checkpoint is kept.
    ClusterTrainingError
        Every worker was lost, the coordinator was lost without a checkpoint, or a timeout.
    """
    if target_accuracy is not None and evaluate is None:
        raise ConfigurationError("target_accuracy needs evaluate (a function scoring the weights); pass both")
    chunk_sizes = [int(n) for n in dataset.chunk_sizes("train")]
    if not any(chunk_sizes):
        raise ConfigurationError(f"{dataset.location} has no training samples")
    store = CheckpointStore(checkpoint) if checkpoint is not None else None
    config = describe_run(model.to_config(), asdict(settings), chunk_sizes, mode)
    resume = store.latest() if store is not None else None
    if resume is not None:
        store.check_resumable(resume, config)
        settings = TrainingSettings(**{**asdict(settings), "seed": int(resume.config.get("seed", settings.seed))})
    config["seed"] = settings.seed
    addresses = sorted(workers or worker_addresses(client))
    if not addresses:
        raise ClusterTrainingError("the cluster has no workers; start some or scale it up")
    options = dict(
        chunk_sizes=chunk_sizes, epochs=settings.epochs, seed=settings.seed,
        chunks_per_round=chunks_per_round or CHUNKS_PER_WORKER_PER_ROUND * len(addresses), mode=mode, alpha0=alpha0,
        gamma=gamma, max_staleness=max_staleness, balance=balance, keep_epoch_weights=evaluate is not None,
        checkpoint=None if store is None else str(store.path), checkpoint_every=checkpoint_every, config=config,
        worker_timeout=worker_timeout, max_invalid=max_invalid,
    )
    supervisor = _Supervisor(
        client, dataset, model, settings, options, store=store, only=workers, evaluate=evaluate,
        target_accuracy=target_accuracy, on_epoch=on_epoch, call_timeout=call_timeout,
    )
    return supervisor.run({k: np.asarray(v) for k, v in params.items()}, resume, addresses, timeout=timeout)


class _Supervisor:
    """Runs one fit: generations of coordinator + tasks, recoveries, the final report."""

    def __init__(self, client, dataset, model, settings, options, *, store, only, evaluate, target_accuracy,
                 on_epoch, call_timeout):
        self.client, self.dataset, self.model, self.settings = client, dataset, model, settings
        self.options, self.store, self.only, self.call_timeout = options, store, only, call_timeout
        self.evaluate, self.target_accuracy, self.target_reached = evaluate, target_accuracy, False
        self.on_epoch = on_epoch
        self.run_id = uuid.uuid4().hex[:8]
        self.summaries: dict[str, dict] = {}
        self.lost: dict[str, str] = {}
        self.recoveries: list[dict] = []
        self.restarted: list[str] = []
        self.version = 0
        self.started = time.monotonic()

    # ------------------------------------------------------------ the loop
    def run(self, params: Params, resume: CheckpointState | None, addresses: list[str], *, timeout: float | None):
        generation = self._start(params, resume, addresses, number=0)
        resumed_from = None if resume is None else resume.version
        finished_at = None
        while True:
            if timeout is not None and time.monotonic() - self.started > timeout:
                raise ClusterTrainingError(
                    f"distributed fit did not finish within {timeout} s; still running: {sorted(generation.tasks)}"
                )
            pending = [task.future for task in generation.tasks.values()]
            if pending:
                try:
                    wait(pending, timeout=_POLL_SECONDS, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    pass
            present = set(worker_addresses(self.client))
            try:
                if generation.home not in present:
                    raise _CoordinatorLost(f"its worker {generation.home} left the cluster")
                finished, failure = self._poll(generation)
                self._collect(generation, present)
                if not finished:
                    self._staff(generation, present)
            except _CoordinatorLost as exc:
                generation = self._recover(generation, present, exc)
                continue
            if finished:
                finished_at = finished_at or time.monotonic()
                if not generation.tasks:
                    break
                if time.monotonic() - finished_at > self.call_timeout:  # a task frozen after the end
                    for name in self._stop_tasks(generation):
                        self.lost[name] = "still running after the run finished"
                    break
            elif not generation.tasks:
                raise ClusterTrainingError(f"every worker failed: {self.lost}")
        if failure is not None:
            raise TrainingDivergedError(failure)
        return self._finish(generation, resumed_from)

    def _stop_tasks(self, generation: _Generation) -> dict[str, _Task]:
        """Cancel every task of ``generation``, tell their threads to stop; returns them.

        Cancelling is not always enough: a task whose coordinator was lost may go on
        executing on its worker, so the generation's stop event is set too.
        """
        Event(generation.stop, client=self.client).set()
        stopped, generation.tasks = generation.tasks, {}
        for task in stopped.values():
            task.future.cancel()
        return stopped

    def _ask(self, generation: _Generation, method: str, *args):
        """Call the coordinator and wait for the answer, failing fast if its worker left.

        A call to an actor whose worker died can stay unanswered, so the wait is cut
        into slices between which the cluster's membership is checked.
        """
        def check():
            if generation.home not in worker_addresses(self.client):
                raise _CoordinatorLost(f"its worker {generation.home} left the cluster")

        try:
            future = getattr(generation.coordinator, method)(*args)  # raises at once once the actor is known lost
            return await_answer(future, method=method, timeout=self.call_timeout, check=check)
        except (BptDaskError, _CoordinatorLost):
            raise
        except _ACTOR_LOST as exc:
            raise _CoordinatorLost(f"{method} failed: {type(exc).__name__}: {exc}") from exc

    def _poll(self, generation: _Generation) -> tuple[bool, str | None]:
        """Score finished epochs, drop silent workers; ``(finished, failure)``."""
        self._score_epochs(generation)
        for name in self._ask(generation, "expire_silent"):
            task = generation.tasks.pop(name, None)
            if task is not None:
                task.future.cancel()
                self.lost[name] = "silent: treated as frozen"
        _, self.version, finished, failure = self._ask(generation, "progress")
        return finished, failure

    def _score_epochs(self, generation: _Generation) -> None:
        if self.evaluate is None:
            return
        for kept in self._ask(generation, "take_epoch_weights"):
            record = {key: kept[key] for key in ("epoch", "seconds", "version")}
            record["accuracy"] = float(self.evaluate(kept["params"]))
            self._ask(generation, "record_evaluation", record)
            if self.on_epoch is not None:
                self.on_epoch(record)
            if self.target_accuracy is not None and record["accuracy"] >= self.target_accuracy and not self.target_reached:
                self.target_reached = True
                self._ask(generation, "finish")

    def _collect(self, generation: _Generation, present: set[str]) -> None:
        """Take in finished tasks; hand the chunks of failed or departed ones back."""
        for name, task in list(generation.tasks.items()):
            if task.future.status == "finished":
                self.summaries[name] = task.future.result()
            elif task.future.status != "pending":
                self.lost[name] = repr(task.future.exception()) if task.future.status == "error" else task.future.status
            elif task.address not in present:
                self.lost[name] = "the worker left the cluster"
                task.future.cancel()
            else:
                continue
            del generation.tasks[name]
            if name in self.lost:
                self._ask(generation, "lose_worker", name, self.lost[name])

    def _staff(self, generation: _Generation, present: set[str]) -> None:
        """Give a task to every eligible worker that has none (new, restarted, or back)."""
        busy = {task.address for task in generation.tasks.values()}
        for address in sorted(present - busy):
            if self.only is not None and address not in self.only:
                continue
            if generation.started_per_address.get(address, 0) < TASKS_PER_ADDRESS:
                self._start_task(generation, address)

    # ------------------------------------------------------------ generations
    def _start(self, params: Params, restore: CheckpointState | None, addresses: list[str], *, number: int):
        home = addresses[0]
        placed = self.client.submit(
            TrainingCoordinator, params, worker_names=addresses, restore=restore, **self.options,
            actor=True, workers=[home], pure=False,
        )
        coordinator = placed.result(timeout=self.call_timeout)
        placed_on = sorted(self.client.who_has(placed)[placed.key])
        if placed_on != [home]:
            raise ClusterTrainingError(f"the coordinator was placed on {placed_on}, not on {home} as asked")
        generation = _Generation(coordinator, placed, home, number, f"bptdask-stop-{self.run_id}-g{number}")
        for address in addresses:
            self._start_task(generation, address)
        return generation

    def _start_task(self, generation: _Generation, address: str) -> None:
        count = generation.started_per_address.get(address, 0)
        generation.started_per_address[address] = count + 1
        name = address if count == 0 else f"{address}#{count + 1}"
        generation.tasks[name] = _Task(address, self.client.submit(
            train_on_worker, address, name, self.run_id, generation.coordinator, generation.stop, self.dataset,
            self.model.to_config(), self.settings, list(map(float, self.dataset.mean)),
            list(map(float, self.dataset.std)), self.call_timeout, workers=[address], allow_other_workers=False,
            pure=False, key=f"bptdask-train-{self.run_id}-g{generation.number}-{name}",
        ))

    def _recover(self, generation: _Generation, present: set[str], error: BaseException) -> _Generation:
        """Recreate the coordinator on a surviving worker from the newest checkpoint."""
        reason = str(error)
        if self.store is None:
            raise ClusterTrainingError(
                f"the coordinator on {generation.home} was lost ({reason}); pass checkpoint=DIRECTORY so that "
                "training can recreate it and go on"
            ) from error
        for name, task in self._stop_tasks(generation).items():
            if task.address == generation.home:
                self.lost[name] = f"its worker held the lost coordinator ({reason})"
            else:
                self.restarted.append(name)
        generation.future.cancel()
        survivors = sorted(present - {generation.home})
        if self.only is not None:
            survivors = [address for address in survivors if address in self.only]
        if not survivors:
            raise ClusterTrainingError(f"the coordinator was lost ({reason}) and no other worker is left") from error
        state = self.store.latest()
        if state is None:
            raise ClusterTrainingError(f"the coordinator was lost ({reason}) before any checkpoint was written") from error
        lost_merges = max(0, self.version - state.version)
        self.recoveries.append({
            "seconds": time.monotonic() - self.started, "lost_coordinator": generation.home, "reason": reason,
            "checkpoint_version": state.version, "merges_lost": lost_merges, "new_coordinator": survivors[0],
        })
        self.version = state.version
        return self._start(state.params, state, survivors, number=generation.number + 1)

    def _finish(self, generation: _Generation, resumed_from: int | None) -> tuple[Params, dict]:
        self._score_epochs(generation)
        self._ask(generation, "write_checkpoint")
        final, _ = self._ask(generation, "pull")
        report = self._ask(generation, "report")
        if self.recoveries and report["seen_version"] > self.recoveries[-1]["checkpoint_version"]:
            last = self.recoveries[-1]
            last["merges_lost"] = max(last["merges_lost"], report["seen_version"] - last["checkpoint_version"])
        report.update(
            worker_loops=self.summaries, lost_workers=self.lost, restarted_tasks=self.restarted,
            coordinator=generation.home, recoveries=self.recoveries, merges_lost=sum(r["merges_lost"] for r in self.recoveries),
            resumed_from=resumed_from,
        )
        return final, report
