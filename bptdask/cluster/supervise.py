"""The Dask shell around the supervisor's state machine (:mod:`bptdask.outer.supervisor`).

:class:`Shell` carries out the machine's actions as Dask calls on the current
:class:`~bptdask.cluster.generation.Generation` (coordinator actor, pinned training
tasks) and turns Dask facts into its observations, four times a second: tasks that
ended, who is in the cluster, the coordinator's progress and silent workers, and the
scores of finished epochs. Whichever way a fit ends (done, failed, or interrupted by
``KeyboardInterrupt``) nothing it started keeps running.
"""

from __future__ import annotations

import contextlib
import time
import uuid
import warnings

from bptdask._typing import Params
from bptdask.cluster.connect import worker_addresses
from bptdask.cluster.generation import Generation
from bptdask.cluster.worker import TaskSpec
from bptdask.errors import CoordinatorLostError
from bptdask.outer import supervisor as rules
from bptdask.report import Evaluation, RunReport

#: Seconds between two looks at the cluster.
POLL_SECONDS = 0.25
#: Seconds a failed or interrupted fit spends on its final checkpoint.
LEAVING_TIMEOUT = 10.0


class Shell:
    """Runs one distributed fit: executes a :class:`~bptdask.outer.supervisor.SupervisorState`'s actions.

    ``chunks`` are the fit's :class:`~bptdask.cluster.chunks.TrainingChunks`; ``run`` the
    run's description (checkpoints store it); ``store`` the run's
    :class:`~bptdask.outer.checkpoint.CheckpointStore` or None; ``evaluate`` and
    ``on_epoch`` as for :func:`~bptdask.cluster.fit_on_cluster`.
    """

    def __init__(self, client, chunks, model, params, config, run, *, store, evaluate, on_epoch):
        self.client, self.chunks, self.model, self.params, self.config = client, chunks, model, params, config
        self.run_description, self.store, self.evaluate, self.on_epoch = run, store, evaluate, on_epoch
        self.run_id = uuid.uuid4().hex[:8]
        self.generation: Generation | None = None
        #: The exception each failed training task raised on its worker, by task name.
        self.task_errors: dict[str, BaseException] = {}

    def run(self, state: rules.SupervisorState) -> tuple[Params, RunReport]:
        """Drive ``state`` to the end: the final global weights and the run's report."""
        try:
            actions = state.start()
            while (result := self._execute(state, actions)) is None:
                actions = state.handle(*self._observe())
            return result
        except BaseException:
            self._checkpoint_before_leaving()
            raise
        finally:
            if self.generation is not None:
                self.generation.release(self.client)

    def _checkpoint_before_leaving(self) -> None:
        """A fit that fails or is interrupted leaves a final checkpoint when it can, within seconds."""
        if self.store is None or self.generation is None:
            return
        quick = self.generation.handle.with_timeout(LEAVING_TIMEOUT)
        with contextlib.suppress(Exception):
            quick.write_checkpoint()

    # ------------------------------------------------------------ actions -> Dask calls
    def _execute(self, state, actions: list[rules.Action]) -> tuple[Params, RunReport] | None:
        """Carry ``actions`` out in order: the final result after ``Complete``, else None.

        What an action observes (a coordinator started or lost) goes to ``state`` at
        once, and its answer is carried out before the rest.
        """
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            try:
                if isinstance(action, rules.Complete):
                    handle = self.generation.handle
                    handle.write_checkpoint()
                    params, _ = handle.pull()
                    report = state.final_report(handle.report())
                    self._warn_of_failed_checkpoints(report)
                    return params, report
                observations = self._do(action)
            except CoordinatorLostError as exc:
                observations, queue = [rules.CoordinatorUnreachable(str(exc))], []
            queue = (state.handle(*observations) if observations else []) + queue
        return None

    def _warn_of_failed_checkpoints(self, report: RunReport) -> None:
        """Warn here, in the client, when checkpoint writes failed on the coordinator's worker.

        The errors stay in ``report.checkpoints.errors``; the previous checkpoints were
        left as they were, so a resume starts from the last one written.
        """
        status = report.checkpoints
        if self.store is None or not status.errors:
            return
        kept = f"the newest is of version {status.version}" if status.written else "none was written"
        warnings.warn(
            f"checkpoints could not be written to {self.store.path} ({'; '.join(status.errors)}); {kept}, so a "
            "resume starts from there; free disk space or fix the directory's permissions "
            "(report_.checkpoints.errors lists the failures)",
            RuntimeWarning,
            stacklevel=2,
        )

    def _do(self, action: rules.Action) -> list[rules.Observation]:
        generation = self.generation
        if isinstance(action, rules.Fail):
            raise action.error
        if isinstance(action, rules.StartCoordinator):
            return self._start_coordinator(action)
        if isinstance(action, rules.StartTask):
            generation.start_task(self.client, action.name, action.address)
        elif isinstance(action, rules.CancelTask):
            generation.cancel_task(action.name)
        elif isinstance(action, rules.ReportLost):
            generation.handle.lose_worker(action.name, action.reason)
        elif isinstance(action, rules.StopTasks) and generation.number == action.generation:
            generation.stop_tasks(self.client)
        elif isinstance(action, rules.RecordEvaluation):
            generation.handle.record_evaluation(action.evaluation)
            if self.on_epoch is not None:
                self.on_epoch(action.evaluation)
        elif isinstance(action, rules.FinishRun):
            generation.handle.finish()
        return []

    def _start_coordinator(self, action: rules.StartCoordinator) -> list[rules.Observation]:
        restore = None
        if action.from_checkpoint and self.store is not None:
            restore = self.store.latest(run=self.run_description)
        if action.from_checkpoint and restore is None:
            return [rules.CheckpointMissing(action.generation)]
        if self.generation is not None:
            self.generation.release(self.client)  # the lost coordinator's
        spec = TaskSpec(
            self.run_id,
            f"bptdask-stop-{self.run_id}-g{action.generation}",
            self.chunks.source,
            self.model.to_config(),
            self.config,
            self.chunks.mean,
            self.chunks.std,
        )
        self.generation = Generation.place(
            self.client,
            action.generation,
            action.home,
            spec,
            params=restore.params if restore else self.params,
            config=self.config,
            chunk_sizes=self.run_description["chunk_sizes"],
            worker_names=action.workers,
            run=self.run_description,
            checkpoint=None if self.store is None else str(self.store.path),
            keep_epoch_weights=self.evaluate is not None,
            restore=restore,
        )
        return [rules.CoordinatorStarted(action.generation, None if restore is None else restore.version)]

    # ------------------------------------------------------------ Dask facts -> observations
    def _observe(self) -> list[rules.Observation]:
        """One look: who is present, the coordinator's progress, tasks that ended, epochs to score."""
        generation = self.generation
        deadline = time.monotonic() + POLL_SECONDS  # or sooner, once a task ends
        while time.monotonic() < deadline and all(f.status == "pending" for f in generation.tasks.values()):
            time.sleep(0.02)
        present = frozenset(worker_addresses(self.client))
        self.chunks.repair(self.client)
        try:
            if generation.home not in present:
                raise CoordinatorLostError(f"its worker {generation.home} left the cluster")
            progress = generation.handle.progress()
            expired = tuple(generation.handle.expire_silent())
            kept = generation.handle.take_epoch_weights() if self.evaluate is not None else []
        except CoordinatorLostError as exc:
            return [rules.CoordinatorUnreachable(str(exc))]
        scored = [
            rules.EpochScored(Evaluation(k.epoch, k.seconds, k.version, float(self.evaluate(k.params)))) for k in kept
        ]
        return [rules.Polled(present, progress, expired), *self._ended_tasks(), *scored]

    def _ended_tasks(self) -> list[rules.Observation]:
        ended: list[rules.Observation] = []
        for name, future in list(self.generation.tasks.items()):
            if future.status == "pending":
                continue
            del self.generation.tasks[name]
            if future.status == "finished":
                ended.append(rules.TaskFinished(name, future.result()))
            else:
                error = future.exception() if future.status == "error" else None
                if error is not None:
                    self.task_errors[name] = error
                ended.append(rules.TaskFailed(name, future.status if error is None else repr(error)))
        return ended
