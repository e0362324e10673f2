"""The training coordinator and the per-worker loop without a cluster.

Workers are threads calling a plain :class:`TrainingCoordinator` through
:func:`run_worker`, training real LeNet-5 parts (padding 2) on scikit-learn's 8×8 digits
with :class:`PartTrainer`, exactly as the Dask tasks do.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from bptdask import datasets
from bptdask.coordinator import TrainingCoordinator
from bptdask.errors import ConfigurationError
from bptdask.loop import PartTrainer, TrainingSettings, run_worker
from bptdask.models import lenet5
from bptdask.partition import chunk_sizes
from bptdask.preprocess import channel_stats

CHUNK = 40


@pytest.fixture(scope="module")
def digits_part():
    images, labels = datasets.digits(random_state=0)
    return images[:400], labels[:400]


def start(mode="agwu", *, workers=("a", "b"), epochs=2, **options):
    model = lenet5(input_shape=(1, 8, 8), padding=2)
    coordinator = TrainingCoordinator(
        model.init_params(0), chunk_sizes=chunk_sizes(400, CHUNK), worker_names=workers, epochs=epochs,
        seed=0, chunks_per_round=4, mode=mode, **options,
    )
    return model, coordinator


def run_threads(model, coordinator, data, workers, settings):
    images, labels = data
    mean, std = channel_stats(images)
    summaries, errors = {}, []

    def read_part(chunks):
        index = np.concatenate([np.arange(c * CHUNK, (c + 1) * CHUNK) for c in chunks])
        return images[index], labels[index]

    def work(name):
        trainer = PartTrainer(model, settings, mean, std, n_threads=1, rng=np.random.default_rng(len(name)))
        try:
            summaries[name] = run_worker(
                name, next_part=lambda: coordinator.next_part(name), pull=coordinator.pull,
                push=lambda r, p, delta, version, seconds: coordinator.push_and_pull(
                    name, r, p, delta, base_version=version, seconds=seconds
                ),
                read_part=read_part, train_part=trainer,
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


@pytest.mark.parametrize("mode", ["agwu", "sgwu"])
def test_two_workers_train_every_chunk_once_per_epoch(digits_part, mode):
    model, coordinator = start(mode, keep_epoch_weights=True)
    summaries = run_threads(model, coordinator, digits_part, ["a", "b"], TrainingSettings(epochs=2, batch_size=16))
    report = coordinator.report()
    assert sum(s.samples for s in summaries.values()) == 2 * 400
    assert sum(w["samples"] for w in report["workers"].values()) == 2 * 400
    assert report["epochs_done"] == 2 and coordinator.progress() == (2, report["version"], True, None)
    assert len(report["epoch_ends"]) == 2 and 0 < report["epoch_ends"][0] <= report["epoch_ends"][1]
    assert sorted({r["epoch"] for r in report["rounds"]}) == [0, 1]
    assert len(report["rounds"]) == 2 * 3  # 10 chunks in rounds of 4, 4 and 2
    if mode == "agwu":
        assert report["version"] == len(report["merges"]) == sum(s.parts for s in summaries.values())
    else:
        assert report["version"] == len(report["rounds"]), "SGWU merges once per round"
        assert all(merge["staleness"] == 0 for merge in report["merges"])
    params, version = coordinator.pull()
    assert all(np.isfinite(value).all() for value in params.values())
    kept = coordinator.take_epoch_weights()
    assert [k["epoch"] for k in kept] == [1, 2] and kept[-1]["version"] == version
    assert all(np.array_equal(kept[-1]["params"][name], params[name]) for name in params)
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
    result = coordinator.push("a", part.round_index, part.part_index, delta, base_version=0, seconds=0.1)
    assert result.status == "merged", "a part handed out before the end still counts"


def test_a_lost_workers_part_is_handed_to_another_worker():
    _, coordinator = start(workers=("a", "b"))
    part_a, part_b = coordinator.next_part("a"), coordinator.next_part("b")
    assert coordinator.lose_worker("b") == 1
    redo = coordinator.next_part("a")
    assert sorted(redo.chunks) == sorted(part_b.chunks)
    delta = {name: np.zeros_like(value) for name, value in coordinator.pull()[0].items()}
    late = coordinator.push("b", part_b.round_index, part_b.part_index, delta, base_version=0, seconds=0.1)
    assert (late.status, late.accepted) == ("revoked", False), "a lost worker's late push changes nothing"
    assert coordinator.next_part("b").status == "dropped"
    assert coordinator.push("a", part_a.round_index, part_a.part_index, delta, base_version=0, seconds=0.1).accepted
    with pytest.raises(ConfigurationError, match="no part .* was handed out"):
        coordinator.push("a", 7, 0, delta, base_version=0, seconds=0.1)


def test_the_even_baseline_splits_equally_whatever_the_speeds():
    _, coordinator = start(balance="even")
    first = [coordinator.next_part(w) for w in ("a", "b")]
    delta = {name: np.zeros_like(value) for name, value in coordinator.pull()[0].items()}
    for worker, part, seconds in zip(("a", "b"), first, (0.1, 10.0)):
        coordinator.push(worker, part.round_index, part.part_index, delta, base_version=0, seconds=seconds)
    second = [coordinator.next_part(w) for w in ("a", "b")]
    assert len(second[0].chunks) == len(second[1].chunks) == 2


def _push(coordinator, worker, assignment, seconds=0.1):
    params, version = coordinator.pull()
    delta = {name: np.zeros_like(value) for name, value in params.items()}
    return coordinator.push(
        worker, assignment.round_index, assignment.part_index, delta, base_version=version, seconds=seconds
    )


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
    assert sum(w["samples"] for w in report["workers"].values()) == 2 * 400


def test_in_sgwu_nobody_runs_ahead_of_the_round():
    _, coordinator = start("sgwu", epochs=2)
    first_a, first_b = coordinator.next_part("a"), coordinator.next_part("b")
    assert _push(coordinator, "a", first_a).status == "pending"
    assert coordinator.next_part("a").status == "wait"
    assert _push(coordinator, "b", first_b).status == "merged"
    assert coordinator.next_part("a").round_index == 1
