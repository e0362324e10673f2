"""Checkpoints on disk: atomic writes, pruning, loading, refusing what bptdask never writes."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from bptdask import Sequential
from bptdask.errors import CheckpointError, ConfigurationError
from bptdask.layers import Dense, Flatten
from bptdask.outer.checkpoint import (
    CheckpointState,
    CheckpointStore,
    CheckpointWriter,
    check_checkpoint_path,
    load_checkpoint,
    resume_run,
)
from bptdask.outer.run_config import RunConfig, describe_run
from bptdask.report import Evaluation, MergeLog, MergeRecord

ARCHITECTURE = Sequential([Flatten(), Dense(2)], input_shape=(3, 1, 1)).to_config()
RUN = {"architecture": ARCHITECTURE, "settings": {"epochs": 3}, "chunk_sizes": [40] * 10}


def state(version=3, generation=0):
    params = {"1.weight": np.arange(6, dtype=np.float32).reshape(2, 3) + version, "1.bias": np.ones(2, np.float64)}
    merges = MergeLog(
        MergeRecord(f"tcp://127.0.0.1:{v % 2}", 0, v, 1, 0.5, v - 1, v, 40, 0.25, 1.5 + v)
        for v in range(1, version + 1)
    )
    return CheckpointState(
        params=params,
        version=version,
        generation=generation,
        epochs_done=1,
        open_epochs={1: [4, 0, 2]},
        powers={"tcp://127.0.0.1:1": 812.5},
        run=RUN,
        seed=7,
        merges=merges,
        epoch_ends=[1.25],
        evaluations=[Evaluation(1, 1.25, version, 0.5)],
        counts={"elapsed_ms": 1500},
    )


def test_a_checkpoint_round_trips_every_field(tmp_path):
    store = CheckpointStore(tmp_path / "ckpt")
    written = store.write(state())
    assert written.name == "g0000-v000000000003" and store.names() == [written.name]
    loaded = store.latest()
    original = state()
    for name, value in original.params.items():
        np.testing.assert_array_equal(loaded.params[name], value)
        assert loaded.params[name].dtype == value.dtype
    assert loaded.merges == original.merges
    assert loaded.open_epochs == {1: [0, 2, 4]}
    fields = ("version", "generation", "epochs_done", "powers", "run", "seed", "epoch_ends", "evaluations", "counts")
    for field in fields:
        assert getattr(loaded, field) == getattr(original, field), field


def test_the_newest_checkpoint_wins_and_old_ones_are_pruned(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for version, generation in ((5, 0), (9, 0), (2, 1)):
        store.write(state(version, generation))
    assert store.names() == ["g0000-v000000000009", "g0001-v000000000002"]
    assert (store.latest().generation, store.latest().version) == (1, 2)


def test_a_failed_write_leaves_the_previous_checkpoint_current(tmp_path):
    store = CheckpointStore(tmp_path)
    store.write(state(3))
    broken = state(4)
    broken.params["1.bias"] = object()  # cannot be stored: the write fails half-way
    with pytest.raises(ValueError):  # noqa: PT011 (whichever message Zarr gives)
        store.write(broken)
    assert store.names() == ["g0000-v000000000003"]
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    assert store.latest().version == 3


def test_an_empty_directory_has_no_checkpoint(tmp_path):
    assert CheckpointStore(tmp_path).latest() is None
    assert CheckpointStore(tmp_path / "new").latest() is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.joinpath("file.txt").write_text("x") and p / "file.txt", "is a file"),
        (lambda p: p.joinpath("notes.txt").write_text("x") and p, "holds other files"),
        (lambda p: "s3://bucket/ckpt", "is a URL"),
        (lambda p: 42, "must be a directory path"),
    ],
)
def test_checkpoint_paths_are_validated(tmp_path, make, message):
    with pytest.raises(ConfigurationError, match=message):
        check_checkpoint_path(make(tmp_path))


class Payload:
    """Unpickling it creates the file ``path``: proof that code from a file ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_loading_refuses_a_pickled_array_without_running_it(tmp_path):
    """A checkpoint whose weight is a Zarr v2 object array with a pickle filter is refused unread."""
    directory = CheckpointStore(tmp_path / "ckpt").write(state())
    marker = tmp_path / "ran"
    target = directory / "params" / "1.bias"
    shutil.rmtree(target)
    target.mkdir()
    header = {
        "zarr_format": 2,
        "shape": [2],
        "chunks": [2],
        "dtype": "|O",
        "compressor": None,
        "fill_value": None,
        "filters": [{"id": "pickle", "protocol": 5}],
        "order": "C",
        "dimension_separator": ".",
    }
    (target / ".zarray").write_text(json.dumps(header))
    (target / "0").write_bytes(pickle.dumps(np.array([Payload(marker), None], dtype=object)))
    with pytest.raises(CheckpointError):
        load_checkpoint(directory)
    assert not marker.exists(), "loading a checkpoint ran code from it"


@pytest.mark.filterwarnings("ignore:Numcodecs codecs are not in the Zarr version 3 specification")
@pytest.mark.parametrize(
    ("codec", "message"),
    [
        ({"name": "numcodecs.zlib", "configuration": {"level": 1}}, r"uses codecs \['numcodecs.zlib'\]"),
        ({"name": "numcodecs.pickle", "configuration": {}}, "cannot be opened"),
    ],
)
def test_loading_refuses_codecs_bptdask_never_writes(tmp_path, codec, message):
    directory = CheckpointStore(tmp_path).write(state())
    meta_path = directory / "params" / "1.weight" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["codecs"].append(codec)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(directory)


@pytest.mark.filterwarnings("ignore:The data type .* does not have a Zarr V3 specification")
def test_loading_refuses_arrays_of_other_dtypes_and_shapes(tmp_path):
    directory = CheckpointStore(tmp_path).write(state())
    group = zarr.open_group(str(directory), mode="a")
    group.create_array("params/1.bias", shape=(2,), dtype="<U4", overwrite=True)
    with pytest.raises(CheckpointError, match=r"has dtype .*only numeric arrays are read"):
        load_checkpoint(directory)
    group.create_array("params/1.bias", shape=(3,), dtype="float64", overwrite=True)
    with pytest.raises(CheckpointError, match=r"has shape \(3,\) .*its header says shape \(2,\)"):
        load_checkpoint(directory)


def test_loading_refuses_a_directory_of_another_format(tmp_path):
    zarr.open_group(str(tmp_path / "other"), mode="w", attributes={"format": "something-else"})
    with pytest.raises(CheckpointError, match="not a bptdask checkpoint"):
        load_checkpoint(tmp_path / "other")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "missing")


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    store = CheckpointStore(tmp_path)
    store.write(state(3))
    newest = store.write(state(4))
    os.remove(newest / "params" / "1.weight" / "zarr.json")
    with pytest.warns(RuntimeWarning, match="skipping a damaged checkpoint: .*g0000-v000000000004"):
        assert store.latest().version == 3


@pytest.mark.parametrize("background", [False, True], ids=["inline", "background"])
def test_the_writer_checkpoints_when_due_and_records_a_failed_write(tmp_path, background):
    writer = CheckpointWriter(CheckpointStore(tmp_path), every=5, background=background)
    taken = []

    def snapshot(version):
        taken.append(version)
        return state(version)

    for version in range(1, 12):
        writer.merged(version, lambda version=version: snapshot(version))
    writer.write(state(12))
    assert taken[0] == 5 and writer.status.written == len(taken) + 1 and writer.status.version == 12
    broken = state(13)
    broken.params["1.bias"] = object()
    with pytest.warns(RuntimeWarning, match="checkpoint of version 13 failed"):
        assert writer.write(broken) is None
    assert len(writer.status.errors) == 1 and writer.store.latest().version == 12


def test_a_failed_periodic_write_is_retried_after_every_merges_not_after_each(tmp_path):
    writer = CheckpointWriter(CheckpointStore(tmp_path), every=5, background=False)
    tried = []

    def broken(version):
        tried.append(version)
        damaged = state(version)
        damaged.params["1.bias"] = object()  # the write fails, as on a full disk
        return damaged

    def merge_twelve_times():
        for version in range(1, 13):
            writer.merged(version, lambda version=version: broken(version))

    with pytest.warns(RuntimeWarning, match="checkpoint of version 5 failed"):
        merge_twelve_times()
    assert tried == [5, 10] and len(writer.status.errors) == 2 and writer.status.written == 0


def test_a_resume_takes_the_newest_checkpoint_of_the_same_run_and_its_seed(tmp_path):
    config = RunConfig(epochs=3, seed=1)
    run = describe_run(config, ARCHITECTURE, [40] * 10)
    assert resume_run(None, config, run) == (None, None, config)
    store, resume, fresh = resume_run(tmp_path, config, run)
    assert resume is None and fresh == config and store.path == tmp_path.resolve()
    store.write(dataclasses.replace(state(5), run=run))
    _, resume, resumed = resume_run(tmp_path, config.replace(device="cpu", worker_timeout=5.0), run)
    assert resume.version == 5 and resumed.seed == 7 and resumed.device == "cpu"


def test_a_checkpoint_of_another_run_is_refused_naming_what_differs(tmp_path):
    config = RunConfig(epochs=3)
    CheckpointStore(tmp_path).write(dataclasses.replace(state(5), run=describe_run(config, ARCHITECTURE, [40] * 10)))
    other = describe_run(config.replace(lr=0.1), ARCHITECTURE, [40] * 10)
    differs = r"its settings \(lr\) differ from this fit's \(lr: 0.05 in the checkpoint, 0.1 now\)"
    with pytest.raises(CheckpointError, match=differs):
        resume_run(tmp_path, config, other)
    with pytest.raises(CheckpointError, match="its chunk_sizes differ"):
        resume_run(tmp_path, config, describe_run(config, ARCHITECTURE, [40] * 9))


def test_a_checkpoint_of_an_older_format_is_refused_with_the_fix(tmp_path):
    directory = CheckpointStore(tmp_path).write(state())
    group = zarr.open_group(str(directory), mode="a")
    group.attrs["format_version"] = 1
    with pytest.raises(CheckpointError, match=r"older bptdask .* start with a new checkpoint directory"):
        load_checkpoint(directory)
