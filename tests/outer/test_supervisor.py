"""The supervisor's recovery rules, one by one, without a cluster: observations in, actions out."""

from __future__ import annotations

import pytest

from bptdask.errors import ClusterTrainingError, TrainingDivergedError
from bptdask.outer.protocol import Progress
from bptdask.outer.supervisor import (
    TASKS_PER_ADDRESS,
    CancelTask,
    CheckpointMissing,
    Complete,
    CoordinatorStarted,
    CoordinatorUnreachable,
    EpochScored,
    Fail,
    FinishRun,
    Polled,
    RecordEvaluation,
    ReportLost,
    StartCoordinator,
    StartTask,
    StopTasks,
    SupervisorState,
    TaskFailed,
    TaskFinished,
)
from bptdask.report import CheckpointStatus, Evaluation, MergeLog, RunReport, WorkerSummary

A, B, C = "tcp://a:1", "tcp://b:1", "tcp://c:1"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def machine(workers=(A, B, C), **options):
    """A started supervisor whose first coordinator came up; returns (state, clock)."""
    clock = Clock()
    state = SupervisorState(list(workers), clock=clock, **options)
    state.start()
    state.handle(CoordinatorStarted(0, None))
    return state, clock


def polled(present=(A, B, C), *, epochs=0, version=0, finished=False, failure=None, expired=()):
    return Polled(frozenset(present), Progress(epochs, version, finished, failure), tuple(expired))


def only(actions, kind):
    return [action for action in actions if isinstance(action, kind)]


def error_of(actions):
    [fail] = only(actions, Fail)
    return fail.error


def test_the_first_coordinator_goes_to_the_first_worker_and_every_worker_gets_a_task():
    state = SupervisorState([C, A, B], clock=Clock())
    assert state.start() == [
        StartCoordinator(0, A, (A, B, C), from_checkpoint=False),
        StartTask(A, A),
        StartTask(B, B),
        StartTask(C, C),
    ]


def test_a_resumed_run_starts_from_the_checkpoint_and_reports_its_version():
    state = SupervisorState([A], resume=True, clock=Clock())
    assert state.start()[0] == StartCoordinator(0, A, (A,), from_checkpoint=True)
    state.handle(CoordinatorStarted(0, 40))
    assert state.final_report(coordinator_report()).resumed_from == 40


def test_a_cluster_without_workers_fails_at_once():
    assert "has no workers" in str(error_of(SupervisorState([], clock=Clock()).start()))


def test_a_failed_task_is_lost_its_chunks_reassigned_and_its_worker_gets_a_new_task():
    state, _ = machine()
    actions = state.handle(polled(), TaskFailed(B, "OSError('gone')"))
    assert actions == [ReportLost(B, "OSError('gone')"), StartTask(f"{B}#2", B)]
    assert state.lost == {B: "OSError('gone')"}


def test_a_task_that_keeps_failing_stops_at_the_limit_per_address():
    state, _ = machine()
    starts = 1
    while B in state.tasks.values():
        name = next(name for name, address in state.tasks.items() if address == B)
        starts += len(only(state.handle(polled(), TaskFailed(name, "boom")), StartTask))
    assert starts == TASKS_PER_ADDRESS and len(state.lost) == TASKS_PER_ADDRESS
    assert state.handle(polled()) == [], "B stays idle for the rest of this generation"


def test_a_task_whose_worker_left_the_cluster_is_cancelled_and_lost():
    state, _ = machine()
    actions = state.handle(polled(present=(A, B)))
    assert actions == [CancelTask(C), ReportLost(C, "the worker left the cluster")]


def test_workers_the_coordinator_found_silent_are_cancelled_without_telling_it_again():
    state, _ = machine()
    actions = state.handle(polled(expired=[C]))
    assert actions == [CancelTask(C), StartTask(f"{C}#2", C)], "the frozen process may come back under a new name"
    assert state.lost[C] == "silent: treated as frozen"


def test_a_joining_worker_gets_a_task_unless_the_fit_is_restricted_to_others():
    state, _ = machine()
    assert state.handle(polled(present=(A, B, C, "tcp://d:1"))) == [StartTask("tcp://d:1", "tcp://d:1")]
    restricted, _ = machine(only=frozenset({A, B, C}))
    assert restricted.handle(polled(present=(A, B, C, "tcp://d:1"))) == []


def test_an_epoch_score_is_recorded_and_the_target_finishes_the_run_once():
    state, _ = machine(target_accuracy=0.9)
    low, high, higher = (Evaluation(e, 1.0 * e, 10 * e, acc) for e, acc in ((1, 0.8), (2, 0.91), (3, 0.95)))
    assert state.handle(EpochScored(low)) == [RecordEvaluation(low)]
    assert state.handle(EpochScored(high)) == [RecordEvaluation(high), FinishRun()]
    assert state.handle(EpochScored(higher)) == [RecordEvaluation(higher)]


def test_the_run_completes_once_finished_and_every_task_has_returned():
    state, _ = machine(workers=(A, B))
    summary = WorkerSummary(A, parts=3)
    assert state.handle(polled(present=(A, B), finished=True), TaskFinished(A, summary)) == []
    assert state.handle(polled(present=(A, B), finished=True), TaskFinished(B, WorkerSummary(B))) == [Complete()]
    assert state.final_report(coordinator_report()).worker_loops[A] == summary


def test_tasks_still_running_a_call_timeout_after_the_end_are_stopped():
    state, clock = machine(workers=(A, B), call_timeout=5.0)
    state.handle(polled(present=(A, B), finished=True), TaskFinished(A, WorkerSummary(A)))
    clock.now += 5.0
    assert state.handle(polled(present=(A, B), finished=True)) == []
    clock.now += 0.1
    assert state.handle(polled(present=(A, B), finished=True)) == [StopTasks(0), Complete()]
    assert state.lost == {B: "still running after the run finished"}


def test_a_diverged_run_fails_once_its_tasks_have_ended():
    state, _ = machine(workers=(A,))
    actions = state.handle(
        polled(present=(A,), finished=True, failure="3 updates held NaN"), TaskFinished(A, WorkerSummary(A))
    )
    error = error_of(actions)
    assert isinstance(error, TrainingDivergedError) and str(error) == "3 updates held NaN"


def test_the_fit_fails_after_its_timeout():
    state, clock = machine(timeout=30.0)
    assert state.handle(polled()) == []
    clock.now += 31
    error = error_of(state.handle(polled()))
    assert isinstance(error, ClusterTrainingError) and "did not finish within 30.0 s" in str(error)


def test_losing_every_worker_fails_the_fit():
    state, _ = machine(workers=(A,))
    assert "every worker failed" in str(error_of(state.handle(polled(present=()))))


def test_without_checkpoints_a_lost_coordinator_ends_the_fit_with_the_fix():
    state, _ = machine()
    error = error_of(state.handle(CoordinatorUnreachable("progress failed: OSError")))
    assert isinstance(error, ClusterTrainingError)
    assert str(error) == (
        f"the coordinator on {A} was lost (progress failed: OSError); pass checkpoint=DIRECTORY so that training "
        "can recreate it and go on"
    )


def test_a_lost_coordinator_is_recreated_on_a_survivor_from_the_newest_checkpoint():
    state, clock = machine(checkpointing=True)
    state.handle(polled(version=30))
    clock.now += 2.5
    actions = state.handle(CoordinatorUnreachable(f"its worker {A} left the cluster"))
    assert actions == [
        StopTasks(0),
        StartCoordinator(1, B, (B, C), from_checkpoint=True),
        StartTask(B, B),
        StartTask(C, C),
    ]
    assert state.lost[A].startswith("its worker held the lost coordinator") and state.restarted == [B, C]
    state.handle(CoordinatorStarted(1, 24))
    [recovery] = state.recoveries
    assert (recovery.lost_coordinator, recovery.new_coordinator, recovery.checkpoint_version) == (A, B, 24)
    assert (recovery.merges_lost, recovery.seconds) == (6, 2.5)
    assert state.handle(polled(present=(B, C), version=25)) == [], "the lost home's task is not restarted"


def test_a_coordinator_that_cannot_start_is_passed_over_for_the_next_survivor():
    state, _ = machine(checkpointing=True)
    state.handle(CoordinatorUnreachable("A died"))
    actions = state.handle(CoordinatorUnreachable(f"it could not start on {B}: OSError"))
    assert actions[:2] == [StopTasks(1), StartCoordinator(2, C, (C,), from_checkpoint=True)]
    state.handle(CoordinatorStarted(2, 10))
    assert [r.lost_coordinator for r in state.recoveries] == [B] and state.home == C


def test_no_survivor_or_no_checkpoint_ends_the_fit():
    state, _ = machine(workers=(A,), checkpointing=True)
    assert "and no other worker is left" in str(error_of(state.handle(CoordinatorUnreachable("gone"))))
    state, _ = machine(checkpointing=True)
    state.handle(CoordinatorUnreachable("gone"))
    error = error_of(state.handle(CheckpointMissing(1)))
    assert f"the coordinator on {A} was lost (gone) before any checkpoint was written" in str(error)


def test_after_a_recovery_the_run_and_its_target_start_again():
    state, _ = machine(checkpointing=True, target_accuracy=0.5)
    state.handle(polled(finished=True), EpochScored(Evaluation(1, 1.0, 5, 0.6)))
    state.handle(CoordinatorUnreachable("gone"), CoordinatorStarted(1, 3))
    assert state.handle(polled(present=(B, C), version=3)) == [], "the restored coordinator has not finished"
    assert FinishRun() in state.handle(EpochScored(Evaluation(1, 2.0, 6, 0.7)))


def test_the_final_report_counts_merges_a_worker_saw_after_the_checkpoint():
    state, _ = machine(checkpointing=True)
    state.handle(polled(version=12))
    state.handle(CoordinatorUnreachable("gone"), CoordinatorStarted(1, 10))
    report = state.final_report(coordinator_report(seen_version=15))
    assert [r.merges_lost for r in report.recoveries] == [5] and report.merges_lost == 5
    assert report.coordinator == B and report.restarted_tasks == [B, C] and A in report.lost_workers


def coordinator_report(seen_version=0):
    return RunReport(
        epochs_done=1,
        epoch_ends=[1.0],
        seconds=1.0,
        version=0,
        generation=0,
        rounds=[],
        workers={},
        merges=MergeLog(),
        evaluations=[],
        rejected=0,
        invalid=0,
        failure=None,
        dropped={},
        checkpoints=CheckpointStatus(),
        restored_version=None,
        seen_version=seen_version,
    )


@pytest.mark.parametrize("observation", [object(), "polled"])
def test_an_unknown_observation_is_a_bug(observation):
    state, _ = machine()
    with pytest.raises(TypeError, match="unknown observation"):
        state.handle(observation)
