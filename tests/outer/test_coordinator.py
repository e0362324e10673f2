"""The training coordinator and the per-worker loop without a cluster.

Workers are threads calling a plain :class:`TrainingCoordinator` through
:func:`run_worker`, training real LeNet-5 parts (padding 2) on scikit-learn's 8×8 digits
with :class:`PartTrainer`, exactly as the Dask tasks do.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from bptdask import datasets
from bptdask.errors import ProtocolError
from bptdask.models import lenet5
from bptdask.outer.coordinator import TrainingCoordinator
from bptdask.outer.partition import chunk_sizes
from bptdask.outer.protocol import PartKey
from bptdask.outer.run_config import RunConfig
from bptdask.outer.worker_loop import PartTrainer, run_worker
from bptdask.preprocess import channel_stats
from bptdask.report import ChunkSources

CHUNK = 40


@pytest.fixture(scope="module")
def digits_part():
    images, labels = datasets.digits(random_state=0)
    return images[:400], labels[:400]


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self, now=100.0):
        self.now = now

    def __call__(self):
        return self.now


def start(update="agwu", *, workers=("a", "b"), epochs=2, clock=None, **options):
    """A coordinator of ``epochs`` epochs over 10 chunks of 40 digits; ``options`` are RunConfig's or its own."""
    model = lenet5(input_shape=(1, 8, 8), padding=2)
    fields = set(RunConfig.__dataclass_fields__)
    config = RunConfig(
        epochs=epochs, seed=0, chunks_per_round=4, update=update, **{k: v for k, v in options.items() if k in fields}
    )
    coordinator = TrainingCoordinator(
        model.init_params(0),
        config,
        chunk_sizes=chunk_sizes(400, CHUNK),
        worker_names=workers,
        clock=clock or Clock(),
        **{k: v for k, v in options.items() if k not in fields},
    )
    return model, coordinator


class OneCallAtATime:
    """The coordinator's calls serialised, as a Dask actor runs them.

    Unserialised, a push that closes the last epoch between another worker's
    finished-check and its next-part lookup leaves the schedule no plan to index (an
    IndexError, seen once in CI).
    """

    def __init__(self, coordinator):
        self.coordinator, self.lock = coordinator, threading.Lock()

    def next_part(self, worker, holdings=None):
        with self.lock:
            return self.coordinator.next_part(worker, holdings)

    def pull(self):
        with self.lock:
            return self.coordinator.pull()

    def push_and_next(self, key, delta, **options):
        with self.lock:
            return self.coordinator.push_and_next(key, delta, **options)


class Memory:
    """One worker's chunks in memory: what it read before comes from memory, the rest from storage."""

    def __init__(self, images, labels):
        self.images, self.labels, self.held, self.reported = images, labels, set(), None

    def read_part(self, chunks):
        index = np.concatenate([np.arange(c * CHUNK, (c + 1) * CHUNK) for c in chunks])
        sources = ChunkSources(memory=len(set(chunks) & self.held), storage=len(set(chunks) - self.held))
        self.held |= set(chunks)
        return self.images[index], self.labels[index], sources

    def holdings(self):
        if self.held == self.reported:
            return None
        self.reported = set(self.held)
        return tuple(sorted(self.held))


def run_threads(model, coordinator, data, workers, config):
    images, labels = data
    mean, std = channel_stats(images)
    summaries, errors = {}, []

    serialised = OneCallAtATime(coordinator)

    def work(name):
        trainer = PartTrainer(model, config, mean, std, n_threads=1, rng=np.random.default_rng(len(name)))
        memory = Memory(images, labels)
        try:
            summaries[name] = run_worker(
                name, serialised, read_part=memory.read_part, train_part=trainer, holdings=memory.holdings
            )
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return summaries


@pytest.mark.parametrize("update", ["agwu", "sgwu"])
def test_two_workers_train_every_chunk_once_per_epoch(digits_part, update):
    model, coordinator = start(update, keep_epoch_weights=True, clock=time.monotonic)
    summaries = run_threads(model, coordinator, digits_part, ["a", "b"], RunConfig(epochs=2, batch_size=16))
    report = coordinator.report()
    assert sum(s.samples for s in summaries.values()) == 2 * 400
    assert sum(w.samples for w in report.workers.values()) == 2 * 400
    assert report.epochs_done == 2 and coordinator.progress() == (2, report.version, True, None)
    assert len(report.epoch_ends) == 2 and 0 < report.epoch_ends[0] <= report.epoch_ends[1] <= report.seconds
    assert sorted({r.epoch for r in report.rounds}) == [0, 1]
    assert len(report.rounds) == 2 * 3  # 10 chunks in rounds of 4, 4 and 2
    if update == "agwu":
        assert report.version == len(report.merges) == sum(s.parts for s in summaries.values())
    else:
        assert report.version == len(report.rounds), "SGWU merges once per round"
        assert set(report.merges.column("staleness")) == {0}
        first_epoch = report.epoch_merges[0]
        assert first_epoch.total_alpha == pytest.approx(3.0), "3 rounds, each one data-share average"
        assert first_epoch.effective_lr == pytest.approx(RunConfig(epochs=2).optimizer(0).lr)
    assert sum(m.merges for m in report.epoch_merges.values()) == sum(s.parts for s in summaries.values())
    assert report.merge_rule.startswith("sgwu" if update == "sgwu" else "inverse(merge_weight=1")
    first, second = report.chunk_sources[0], report.chunk_sources[1]
    assert (first.memory, first.storage) == (0, 10), "epoch 1 reads every chunk from storage"
    # Counts follow the powers and each worker gets its held chunks first: with two equal
    # workers holding half the chunks each, a random round of 4 holds 2 of each about half
    # the time, so about 3 in 4 chunks are found in memory (never fewer than half here).
    assert second.memory + second.storage == 10 and second.memory >= 5, "epoch 2 finds its chunks in memory first"
    params, version = coordinator.pull()
    assert all(np.isfinite(value).all() for value in params.values())
    kept = coordinator.take_epoch_weights()
    assert [k.epoch for k in kept] == [1, 2] and kept[-1].version == version
    assert all(np.array_equal(kept[-1].params[name], params[name]) for name in params)
    assert coordinator.take_epoch_weights() == []


def test_finish_ends_the_run_for_every_worker():
    _, coordinator = start()
    part = coordinator.next_part("a")
    assert part.status == "train"
    assert coordinator.progress() == (0, 0, False, None)
    coordinator.finish()
    assert coordinator.next_part("a").status == "finished"
    assert coordinator.next_part("b").status == "finished"
    assert coordinator.progress() == (0, 0, True, None)
    delta = {name: np.zeros_like(value) for name, value in coordinator.pull()[0].items()}
    result = coordinator.push(part.part, delta, base_version=0, seconds=0.1)
    assert result.status == "merged", "a part handed out before the end still counts"


def test_a_lost_workers_part_is_handed_to_another_worker():
    _, coordinator = start(workers=("a", "b"))
    part_a, part_b = coordinator.next_part("a"), coordinator.next_part("b")
    assert coordinator.lose_worker("b") == 1
    redo = coordinator.next_part("a")
    assert sorted(redo.chunks) == sorted(part_b.chunks)
    delta = {name: np.zeros_like(value) for name, value in coordinator.pull()[0].items()}
    late = coordinator.push(part_b.part, delta, base_version=0, seconds=0.1)
    assert (late.status, late.accepted) == ("revoked", False), "a lost worker's late push changes nothing"
    assert coordinator.next_part("b").status == "dropped"
    assert coordinator.push(part_a.part, delta, base_version=0, seconds=0.1).accepted
    with pytest.raises(ProtocolError, match=r"no part \('a', 7, 0\) was handed out"):
        coordinator.push(PartKey("a", 7, 0), delta, base_version=0, seconds=0.1)
    with pytest.raises(ProtocolError, match=r"'b' was dropped .* join under a new name"):
        coordinator.add_worker("b")
    assert coordinator.lose_worker("never-seen") == 0 and coordinator.lose_worker("b") == 0


def test_the_even_baseline_splits_equally_whatever_the_speeds():
    _, coordinator = start(balance="even")
    first = [coordinator.next_part(w) for w in ("a", "b")]
    delta = {name: np.zeros_like(value) for name, value in coordinator.pull()[0].items()}
    for part, seconds in zip(first, (0.1, 10.0), strict=True):
        coordinator.push(part.part, delta, base_version=0, seconds=seconds)
    second = [coordinator.next_part(w) for w in ("a", "b")]
    assert len(second[0].chunks) == len(second[1].chunks) == 2


def _push(coordinator, worker, assignment, seconds=0.1):
    params, version = coordinator.pull()
    delta = {name: np.zeros_like(value) for name, value in params.items()}
    assert assignment.part.worker == worker
    return coordinator.push(assignment.part, delta, base_version=version, seconds=seconds)


def test_in_agwu_a_free_worker_starts_the_next_epoch_while_the_last_part_trains():
    _, coordinator = start(epochs=2)
    held = coordinator.next_part("b")
    while (assignment := coordinator.next_part("a")).epoch == 0:
        assert _push(coordinator, "a", assignment).accepted
    assert assignment.status == "train" and assignment.epoch == 1
    assert coordinator.progress()[0] == 0, "epoch 0 waits for b's part"
    assert _push(coordinator, "b", held).accepted
    assert coordinator.progress()[0] == 1
    assert _push(coordinator, "a", assignment).accepted
    while not coordinator.finished:
        for worker in ("a", "b"):
            if (assignment := coordinator.next_part(worker)).status == "train":
                assert _push(coordinator, worker, assignment).accepted
    assert coordinator.progress()[0] == 2 and coordinator.next_part("b").status == "finished"
    report = coordinator.report()
    assert sum(w.samples for w in report.workers.values()) == 2 * 400


def test_in_sgwu_nobody_runs_ahead_of_the_round():
    _, coordinator = start("sgwu", epochs=2)
    first_a, first_b = coordinator.next_part("a"), coordinator.next_part("b")
    assert _push(coordinator, "a", first_a).status == "pending"
    assert coordinator.next_part("a").status == "wait"
    assert _push(coordinator, "b", first_b).status == "merged"
    assert coordinator.next_part("a").part.round_index == 1


def _drive(coordinator, workers, trained, *, stop_after=None, delta_value=1.0):
    """Train zero-cost parts round-robin until finished (or ``stop_after`` merges); log chunks per epoch."""
    merges = 0
    while not coordinator.finished and (stop_after is None or merges < stop_after):
        for worker in workers:
            assignment = coordinator.next_part(worker)
            if assignment.status != "train":
                continue
            params, version = coordinator.pull()
            delta = {name: np.full_like(value, delta_value) for name, value in params.items()}
            result = coordinator.push(assignment.part, delta, base_version=version, seconds=0.1)
            assert result.status == "merged"
            trained.setdefault(assignment.epoch, []).extend(assignment.chunks)
            merges += 1


def test_a_coordinator_restored_from_a_checkpoint_trains_each_remaining_chunk_once(tmp_path):
    _, first = start(
        epochs=3,
        checkpoint=tmp_path,
        checkpoint_every=3,
        background_checkpoints=False,
        run={"run": "digits"},
        merge_rule="exponential",
    )
    before = {}
    _drive(first, ("a", "b"), before, stop_after=14)
    state = first.store.latest()
    assert state.version == 12 and state.generation == 0 and state.run == {"run": "digits"}
    np.testing.assert_array_equal(state.params["0.bias"], first.pull()[0]["0.bias"] - 2), "two merges after it"
    _, second = start(epochs=3, workers=("b", "c"), restore=state, checkpoint=tmp_path)
    assert second.pull()[1] == 12 and second.generation == 1
    after = {}
    _drive(second, ("b", "c"), after)
    everything = set(range(10))
    for epoch in range(3):
        done = state.open_epochs.get(epoch, list(everything) if epoch < state.epochs_done else [])
        assert sorted(after.get(epoch, [])) == sorted(everything - set(done)), f"epoch {epoch}"
    report = second.report()
    assert report.epochs_done == 3 and report.restored_version == 12 and report.generation == 1
    assert report.version == len(report.merges) == 12 + len(report.merges.since(12)), "the log carries on"
    second.write_checkpoint()
    assert second.store.latest().generation == 1


def test_a_restored_sgwu_run_resumes_at_its_next_round(tmp_path):
    _, first = start("sgwu", epochs=1, checkpoint=tmp_path, checkpoint_every=1, background_checkpoints=False)
    for _ in range(2):  # two rounds of two parts
        parts = {worker: coordinator_part for worker in ("a", "b") if (coordinator_part := first.next_part(worker))}
        for worker, part in parts.items():
            _push(first, worker, part)
    state = first.store.latest()
    assert state.version == 2 and len(state.open_epochs[0]) == 8
    _, second = start("sgwu", epochs=1, restore=state)
    assignment = second.next_part("a")
    assert assignment.status == "train" and set(assignment.chunks) <= set(range(10)) - set(state.open_epochs[0])


def test_a_silent_worker_is_dropped_and_its_late_push_revoked():
    clock = Clock()
    _, coordinator = start(worker_timeout=5.0, clock=clock)
    held_a, held_b = coordinator.next_part("a"), coordinator.next_part("b")
    clock.now += 3
    _push(coordinator, "a", held_a)
    clock.now += 3
    assert coordinator.expire_silent() == ["b"], "b held its part 6 s without a call"
    assert coordinator.report().dropped == {"b": "silent for over 5 s"}
    redo = coordinator.next_part("a")
    assert sorted(redo.chunks) == sorted(held_b.chunks)
    assert _push(coordinator, "b", held_b).status == "revoked"
    assert coordinator.next_part("b").status == "dropped"
    assert coordinator.report().workers["b"].revoked == 1


def test_a_worker_frozen_while_waiting_is_dropped_and_a_polling_one_kept():
    clock = Clock()
    _, coordinator = start("sgwu", workers=("a", "b", "c"), worker_timeout=5.0, clock=clock)
    held = {worker: coordinator.next_part(worker) for worker in ("a", "b", "c")}
    for worker in ("a", "b"):
        _push(coordinator, worker, held[worker])
        assert coordinator.next_part(worker).status == "wait", "the round waits for c"
    clock.now += 2
    coordinator.next_part("a")
    clock.now += 2
    coordinator.next_part("a")
    clock.now += 1.5
    _push(coordinator, "c", held["c"])
    clock.now += 0.5
    assert coordinator.expire_silent() == ["b"], "b waited 6 s without asking again: frozen"
    assert set(coordinator.report().dropped) == {"b"}


def test_nan_updates_are_rejected_and_repeated_ones_stop_the_run(tmp_path):
    _, coordinator = start(max_invalid=3, checkpoint=tmp_path, checkpoint_every=1, background_checkpoints=False)
    good = coordinator.next_part("a")
    assert _push(coordinator, "a", good).status == "merged"
    weights = coordinator.pull()[0]
    for attempt in range(3):
        assignment = coordinator.next_part("b")
        params, version = coordinator.pull()
        nan = {name: np.full_like(value, np.nan) for name, value in params.items()}
        result = coordinator.push(assignment.part, nan, base_version=version, seconds=0.1)
        assert result.status == "invalid"
        assert coordinator.failure is None if attempt < 2 else "3 updates in a row held NaN" in coordinator.failure
    assert coordinator.finished and coordinator.next_part("a").status == "finished"
    for name, value in coordinator.pull()[0].items():
        np.testing.assert_array_equal(value, weights[name])
    assert coordinator.store.latest().version == 1 and coordinator.report().invalid == 3
    assert str(tmp_path) in coordinator.failure


def test_periodic_checkpoints_are_written_in_the_background(tmp_path):
    _, coordinator = start(epochs=1, checkpoint=tmp_path, checkpoint_every=2)
    _drive(coordinator, ("a", "b"), {})
    assert coordinator.write_checkpoint() == coordinator.pull()[1], "the final checkpoint waits for the disk"
    status = coordinator.report().checkpoints
    assert status.errors == [] and status.written >= 2 and status.version == coordinator.pull()[1]
    assert coordinator.store.latest().version == coordinator.pull()[1]
