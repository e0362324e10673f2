"""The supervisor's decisions as a state machine: observations in, actions out.

A distributed fit runs *generations*: a coordinator and one training task per worker.
:class:`SupervisorState` decides what happens next from what the shell
(:mod:`bptdask.cluster.supervise`) observes, and never calls anything itself:

- a task finished: keep its summary; a task failed, or its worker left the cluster: it
  is lost, and the coordinator hands its chunks to the others;
- the coordinator declared silent workers lost: cancel their tasks;
- a worker without a task (new, restarted by its Nanny, or whose task ended): start
  one, under a new name after the first (``addr#2``), at most
  :data:`TASKS_PER_ADDRESS` per generation so a task that keeps failing stops there;
- an epoch was scored: record it, and end the run once the target is reached;
- the coordinator cannot be reached: stop its generation and start the next on a
  surviving worker from the newest checkpoint; without a checkpoint, or a survivor,
  the fit fails;
- the run is finished and every task has ended: complete (or fail, if training
  diverged); tasks still running ``call_timeout`` seconds after the end are stopped;
- the fit ran longer than ``timeout``, or lost every worker: fail.

Time comes from an injected ``clock``. Every rule is unit-tested without a cluster.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bptdask.errors import BptDaskError, ClusterTrainingError, TrainingDivergedError
from bptdask.outer.protocol import Progress
from bptdask.report import Evaluation, Recovery, RunReport, WorkerSummary

#: Tasks one address may be given in one generation (a task that keeps failing stops there).
TASKS_PER_ADDRESS = 3


# ------------------------------------------------------------------ observations
@dataclass(frozen=True)
class Polled:
    """One look at the cluster and the coordinator: who is present and how the run stands.

    ``expired`` names the workers the coordinator has just declared lost for silence.
    """

    present: frozenset[str]
    progress: Progress
    expired: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskFinished:
    """Task ``name`` returned: its loop ended (the run finished, or it was dropped)."""

    name: str
    summary: WorkerSummary


@dataclass(frozen=True)
class TaskFailed:
    """Task ``name`` raised, or was cancelled by someone else."""

    name: str
    reason: str


@dataclass(frozen=True)
class EpochScored:
    """The global weights of a closed epoch were scored."""

    evaluation: Evaluation


@dataclass(frozen=True)
class CoordinatorUnreachable:
    """A call of the coordinator failed or timed out, or its worker left the cluster."""

    reason: str


@dataclass(frozen=True)
class CoordinatorStarted:
    """The coordinator of ``generation`` is up; ``restored_version`` is its checkpoint's (None: fresh)."""

    generation: int
    restored_version: int | None


@dataclass(frozen=True)
class CheckpointMissing:
    """A coordinator was to start from a checkpoint, and none could be loaded."""

    generation: int


Observation = (
    Polled | TaskFinished | TaskFailed | EpochScored | CoordinatorUnreachable | CoordinatorStarted | CheckpointMissing
)


# ------------------------------------------------------------------ actions
@dataclass(frozen=True)
class StartCoordinator:
    """Start ``generation``'s coordinator on ``home`` for ``workers``, from the newest checkpoint if asked."""

    generation: int
    home: str
    workers: tuple[str, ...]
    from_checkpoint: bool


@dataclass(frozen=True)
class StartTask:
    """Start training task ``name`` on the worker at ``address``, against the current coordinator."""

    name: str
    address: str


@dataclass(frozen=True)
class CancelTask:
    """Cancel task ``name``."""

    name: str


@dataclass(frozen=True)
class ReportLost:
    """Tell the coordinator that task ``name`` is lost: its chunks go to the others."""

    name: str
    reason: str


@dataclass(frozen=True)
class StopTasks:
    """Cancel every task of ``generation`` and tell their threads to stop."""

    generation: int


@dataclass(frozen=True)
class RecordEvaluation:
    """Store an epoch's score with the coordinator (and show it)."""

    evaluation: Evaluation


@dataclass(frozen=True)
class FinishRun:
    """Tell the coordinator to end the run now (the target accuracy was reached)."""


@dataclass(frozen=True)
class Complete:
    """The run is over and every task has ended: collect the final weights and report."""


@dataclass(frozen=True)
class Fail:
    """The fit cannot go on: raise ``error``."""

    error: BptDaskError


Action = (
    StartCoordinator | StartTask | CancelTask | ReportLost | StopTasks | RecordEvaluation | FinishRun | Complete | Fail
)


@dataclass(frozen=True)
class _PendingRecovery:
    seconds: float
    lost_coordinator: str
    reason: str
    version: int


class SupervisorState:
    """What a distributed fit does next; see the module docstring for the rules.

    Parameters
    ----------
    workers : sequence of str
        Worker addresses at the start; the first holds the coordinator.
    only : collection of str, optional
        The addresses that may train (default: any worker, joiners included).
    resume : bool
        The first coordinator starts from the newest checkpoint (a resumed run).
    checkpointing : bool
        The run writes checkpoints, so a lost coordinator can be recreated.
    target_accuracy : float, optional
        End the run once an epoch scores this much.
    call_timeout : float
        Seconds tasks may go on after the run finished before they are stopped.
    timeout : float, optional
        Seconds the whole fit may take.
    clock : callable
        Monotonic seconds.
    """

    def __init__(
        self,
        workers: Sequence[str],
        *,
        only: frozenset[str] | None = None,
        resume: bool = False,
        checkpointing: bool = False,
        target_accuracy: float | None = None,
        call_timeout: float = 60.0,
        timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.workers = sorted(workers)
        self.only, self.resume, self.checkpointing = only, resume, checkpointing
        self.target_accuracy, self.call_timeout, self.timeout = target_accuracy, call_timeout, timeout
        self.clock = clock
        self.started = clock()
        self.generation = 0
        self.home = self.workers[0] if self.workers else ""
        self.former_homes: set[str] = set()
        self.present = frozenset(self.workers)
        self.tasks: dict[str, str] = {}
        self.tasks_started: dict[str, int] = {}
        self.progress = Progress(0, 0, False, None)
        self.finished_at: float | None = None
        self.target_reached = False
        self.summaries: dict[str, WorkerSummary] = {}
        self.lost: dict[str, str] = {}
        self.restarted: list[str] = []
        self.recoveries: list[Recovery] = []
        self.pending_recovery: _PendingRecovery | None = None
        self.resumed_from: int | None = None

    # ------------------------------------------------------------ entry points
    def start(self) -> list[Action]:
        """The first actions: the coordinator on the first worker, a task on every worker."""
        if not self.workers:
            return [Fail(ClusterTrainingError("the cluster has no workers; start some or scale it up"))]
        return self._start_generation(self.workers, from_checkpoint=self.resume)

    def handle(self, *observations: Observation) -> list[Action]:
        """The actions that follow ``observations`` (taken in order), then the run's end checks."""
        actions: list[Action] = []
        for observation in observations:
            actions += self._dispatch(observation)
            if any(isinstance(action, Fail) for action in actions):
                return actions
        return actions + self._decide()

    def final_report(self, report: RunReport) -> RunReport:
        """``report`` (the coordinator's) with the supervisor's fields filled in."""
        recoveries = list(self.recoveries)
        if recoveries and report.seen_version > recoveries[-1].checkpoint_version:
            last = recoveries[-1]
            seen_lost = report.seen_version - last.checkpoint_version
            recoveries[-1] = dataclasses.replace(last, merges_lost=max(last.merges_lost, seen_lost))
        return dataclasses.replace(
            report,
            coordinator=self.home,
            worker_loops=dict(self.summaries),
            lost_workers=dict(self.lost),
            restarted_tasks=list(self.restarted),
            recoveries=recoveries,
            merges_lost=sum(recovery.merges_lost for recovery in recoveries),
            resumed_from=self.resumed_from,
        )

    # ------------------------------------------------------------ observations
    def _dispatch(self, observation: Observation) -> list[Action]:
        if isinstance(observation, Polled):
            return self._on_polled(observation)
        if isinstance(observation, TaskFinished):
            self.summaries[observation.name] = observation.summary
            self.tasks.pop(observation.name, None)
            return []
        if isinstance(observation, TaskFailed):
            return self._lose_task(observation.name, observation.reason)
        if isinstance(observation, EpochScored):
            return self._on_scored(observation.evaluation)
        if isinstance(observation, CoordinatorUnreachable):
            return self._recover(observation.reason)
        if isinstance(observation, CoordinatorStarted):
            return self._on_started(observation)
        if isinstance(observation, CheckpointMissing):
            return [
                Fail(
                    ClusterTrainingError(
                        f"{self._loss_text()} before any checkpoint was written; "
                        "lower checkpoint_every to checkpoint sooner"
                    )
                )
            ]
        raise TypeError(f"unknown observation {observation!r}")

    def _on_polled(self, polled: Polled) -> list[Action]:
        self.present = polled.present
        actions: list[Action] = []
        for name in polled.expired:
            if name in self.tasks:
                del self.tasks[name]
                self.lost[name] = "silent: treated as frozen"
                actions.append(CancelTask(name))
        self.progress = polled.progress
        if self.progress.finished and self.finished_at is None:
            self.finished_at = self.clock()
        for name, address in sorted(self.tasks.items()):
            if address not in self.present:
                actions += [CancelTask(name), *self._lose_task(name, "the worker left the cluster")]
        return actions

    def _lose_task(self, name: str, reason: str) -> list[Action]:
        if self.tasks.pop(name, None) is None:
            return []
        self.lost[name] = reason
        return [ReportLost(name, reason)]

    def _on_scored(self, evaluation: Evaluation) -> list[Action]:
        actions: list[Action] = [RecordEvaluation(evaluation)]
        target = self.target_accuracy
        if target is not None and evaluation.accuracy >= target and not self.target_reached:
            self.target_reached = True
            actions.append(FinishRun())
        return actions

    def _on_started(self, started: CoordinatorStarted) -> list[Action]:
        if started.generation != self.generation:
            return []
        if started.generation == 0:
            self.resumed_from = started.restored_version
        pending, self.pending_recovery = self.pending_recovery, None
        if pending is not None and started.restored_version is not None:
            self.recoveries.append(
                Recovery(
                    seconds=pending.seconds,
                    lost_coordinator=pending.lost_coordinator,
                    reason=pending.reason,
                    checkpoint_version=started.restored_version,
                    merges_lost=max(0, pending.version - started.restored_version),
                    new_coordinator=self.home,
                )
            )
            self.progress = self.progress._replace(version=started.restored_version)
        return []

    # ------------------------------------------------------------ recovery
    def _loss_text(self) -> str:
        pending = self.pending_recovery
        reason = pending.reason if pending is not None else "unknown"
        lost = pending.lost_coordinator if pending is not None else self.home
        return f"the coordinator on {lost} was lost ({reason})"

    def _recover(self, reason: str) -> list[Action]:
        """Stop the generation whose coordinator is lost and start the next from a checkpoint."""
        previous = self.pending_recovery
        self.pending_recovery = _PendingRecovery(
            seconds=previous.seconds if previous else self.clock() - self.started,
            lost_coordinator=self.home,
            reason=reason,
            version=previous.version if previous else self.progress.version,
        )
        if not self.checkpointing:
            return [
                Fail(
                    ClusterTrainingError(
                        f"{self._loss_text()}; pass checkpoint=DIRECTORY so that training can recreate it and go on"
                    )
                )
            ]
        actions: list[Action] = [StopTasks(self.generation)]
        for name, address in sorted(self.tasks.items()):
            if address == self.home:
                self.lost[name] = f"its worker held the lost coordinator ({reason})"
            else:
                self.restarted.append(name)
        self.tasks = {}
        self.former_homes.add(self.home)
        self.present = self.present - {self.home}  # until a poll sees it again
        # The next coordinator starts from a checkpoint, which may predate the end or the target.
        self.progress = self.progress._replace(finished=False, failure=None)
        self.finished_at, self.target_reached = None, False
        survivors = [a for a in sorted(self.present) if a not in self.former_homes and self._may_train(a)]
        if not survivors:
            return [*actions, Fail(ClusterTrainingError(f"{self._loss_text()} and no other worker is left"))]
        self.generation += 1
        return actions + self._start_generation(survivors, from_checkpoint=True)

    def _start_generation(self, workers: list[str], *, from_checkpoint: bool) -> list[Action]:
        self.home = workers[0]
        self.tasks_started = {}
        actions: list[Action] = [StartCoordinator(self.generation, self.home, tuple(workers), from_checkpoint)]
        return actions + [self._start_task(address) for address in workers]

    # ------------------------------------------------------------ staffing and the end
    def _may_train(self, address: str) -> bool:
        return self.only is None or address in self.only

    def _start_task(self, address: str) -> StartTask:
        count = self.tasks_started.get(address, 0) + 1
        self.tasks_started[address] = count
        name = address if count == 1 else f"{address}#{count}"
        self.tasks[name] = address
        return StartTask(name, address)

    def _decide(self) -> list[Action]:
        """Staff idle workers, or end the run: complete, stop stragglers, or fail."""
        now = self.clock()
        if self.timeout is not None and now - self.started > self.timeout:
            return [
                Fail(
                    ClusterTrainingError(
                        f"distributed fit did not finish within {self.timeout} s; still running: {sorted(self.tasks)}"
                    )
                )
            ]
        if self.finished_at is not None:
            if self.tasks and now - self.finished_at <= self.call_timeout:
                return []
            actions: list[Action] = []
            if self.tasks:  # frozen after the end
                actions.append(StopTasks(self.generation))
                self.lost.update(dict.fromkeys(self.tasks, "still running after the run finished"))
                self.tasks = {}
            if self.progress.failure is not None:
                return [*actions, Fail(TrainingDivergedError(self.progress.failure))]
            return [*actions, Complete()]
        busy = set(self.tasks.values())
        actions = [
            self._start_task(address)
            for address in sorted(self.present - busy)
            if self._may_train(address) and self.tasks_started.get(address, 0) < TASKS_PER_ADDRESS
        ]
        if not self.tasks:
            return [*actions, Fail(ClusterTrainingError(f"every worker failed: {self.lost}"))]
        return actions
