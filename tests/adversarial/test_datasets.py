"""Adversarial cases for dataset stores: each is a clear error (or a sound result), and nothing on disk is lost.

Every case runs on real Zarr stores in ``tmp_path`` and compares a snapshot of the whole
directory (every file's bytes, hidden ones included) before and after, so a case that
deletes, changes or leaves behind anything fails. Families:

- concurrent and destructive writes: two ingests into one path, ``overwrite=True`` onto
  things that are not datasets, a crash between the final rename's two steps;
- data changing under an open dataset: deleted chunks, re-ingested paths, on one
  machine and in a cluster fit;
- relative paths that travel to other processes;
- labels that used to hang ingest or invent thousands of classes;
- stores that cannot be parsed: damaged ``zarr.json``, unknown protocols, Zarr v2;
- crafted metadata claiming huge shapes, refused before anything is allocated;
- odd arrays: floats, bools, empty inputs, mismatched lengths, zero sizes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import threading
import zipfile
from pathlib import Path

import dask
import dask.array as da
import google_crc32c
import numpy as np
import pytest
import zarr
from numcodecs import Zstd
from zarr.storage import LocalStore

import bptdask
from bptdask.atomic import WriterLock
from bptdask.data import ingest, ingest_idx, ingest_npz, open_dataset
from bptdask.errors import (
    ClusterTrainingError,
    ConfigurationError,
    CorruptChunkError,
    DataError,
    DatasetBusyError,
    DatasetChangedError,
    DatasetError,
    DatasetExistsError,
    DatasetFormatError,
    DatasetNotFoundError,
    IncompleteDatasetError,
    ShapeError,
    SourceError,
)
from bptdask.testing import hostile
from bptdask.testing.clusters import nanny_cluster

RNG = np.random.default_rng(14)
IMAGES = RNG.integers(0, 256, size=(60, 1, 4, 4), dtype=np.uint8)
LABELS = np.arange(60) % 3


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: relative path -> sha256 of a file's bytes, or ``"dir"``."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        for path in sorted(root.rglob("*"))
    }


@pytest.fixture
def stored(tmp_path):
    """A complete dataset at ``tmp_path / "data.zarr"`` (60 samples, chunks of 10), and its path."""
    ingest(IMAGES, LABELS, tmp_path / "data.zarr", chunk_size=10)
    return tmp_path / "data.zarr"


def _assert_unchanged(root: Path, before: dict[str, str]) -> None:
    after = snapshot(root)
    assert after == before, f"the failed operation changed the disk: {set(after) ^ set(before) or 'file contents'}"


# ------------------------------------------------------------------ concurrent and destructive writes

_GATED_INGEST = textwrap.dedent(
    """
    import sys, time, pathlib
    import dask, dask.array as da, numpy as np
    from bptdask.data import ingest
    from bptdask.errors import DatasetBusyError

    target, value, gate = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])

    def wait_for_gate(block):
        deadline = time.monotonic() + 60
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return block

    blocks = da.full((40, 1, 4, 4), value, dtype=np.uint8, chunks=10)
    images = blocks.map_blocks(wait_for_gate, meta=np.empty((0, 0, 0, 0), np.uint8))
    try:
        with dask.config.set(scheduler="threads"):
            ingest(images, np.arange(40) % 4, target, chunk_size=10, overwrite=True)
    except DatasetBusyError as exc:
        print("BUSY", exc)
        sys.exit(3)
    print("DONE")
    """
)


def _wait_for(path: Path, process: subprocess.Popen) -> None:
    """Block until ``path`` exists (the first writer holds its lock) or ``process`` ended."""
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"the first ingest ended early: {process.communicate()}")
        threading.Event().wait(0.02)


@pytest.mark.timeout(120)
def test_two_processes_overwriting_one_path_one_wins_whole_the_other_is_refused(tmp_path, stored):
    script = tmp_path / "gated_ingest.py"
    script.write_text(_GATED_INGEST)
    gate = tmp_path / "gate"
    old = snapshot(stored)
    first = subprocess.Popen(
        [sys.executable, str(script), str(stored), "7", str(gate)], stdout=subprocess.PIPE, text=True
    )
    try:
        _wait_for(tmp_path / ".data.zarr.lock", first)
        second = subprocess.run(
            [sys.executable, str(script), str(stored), "9", str(gate)], capture_output=True, text=True, timeout=90
        )
        assert second.returncode == 3, second.stderr
        assert "BUSY another ingest is writing" in second.stdout and "data.zarr" in second.stdout
        assert snapshot(stored) == old, "the refused writer touched the dataset"
    finally:
        gate.touch()
        out, _ = first.communicate(timeout=90)
    assert first.returncode == 0 and "DONE" in out
    winner = open_dataset(stored, verify=True)
    images, labels = winner.read(0, winner.num_chunks)
    assert (images == 7).all() and len(labels) == 40, "the winner's dataset is whole"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [], "leftovers remain"


@pytest.mark.timeout(60)
def test_two_threads_ingesting_one_path_the_second_is_refused_and_the_first_completes(tmp_path, stored):
    release, started = threading.Event(), threading.Event()
    outcome = {}

    def slow(block):
        started.set()
        release.wait(30)
        return block

    def first_writer():
        images = da.from_array(np.full((30, 1, 4, 4), 5, np.uint8), chunks=10).map_blocks(
            slow, meta=np.empty((0, 0, 0, 0), np.uint8)
        )
        outcome["first"] = ingest(images, np.arange(30) % 2, stored, chunk_size=10, overwrite=True)

    old = snapshot(stored)
    with dask.config.set(scheduler="threads"):
        writer = threading.Thread(target=first_writer)
        writer.start()
        started.wait(30)
        with pytest.raises(DatasetBusyError, match=r"another ingest is writing .*data\.zarr.* right now"):
            ingest(IMAGES, LABELS, stored, chunk_size=10, overwrite=True)
        assert snapshot(stored) == old
        release.set()
        writer.join(30)
    assert len(outcome["first"]) == 30 and (outcome["first"].read(0, 3)[0] == 5).all()


@pytest.mark.timeout(60)
def test_of_two_ingests_into_one_store_written_in_place_the_later_one_wins_whole():
    store = zarr.storage.MemoryStore()
    release, started = threading.Event(), threading.Event()
    outcome = {}

    def slow(block):
        started.set()
        release.wait(30)
        return block

    def earlier_writer():
        images = da.from_array(np.full((30, 1, 4, 4), 5, np.uint8), chunks=10)
        try:
            ingest(images.map_blocks(slow, meta=np.empty((0, 0, 0, 0), np.uint8)), np.arange(30) % 2, store)
        except DatasetBusyError as exc:
            outcome["earlier"] = exc

    with dask.config.set(scheduler="threads"):
        writer = threading.Thread(target=earlier_writer)
        writer.start()
        started.wait(30)
        later = ingest(IMAGES, LABELS, store, chunk_size=10, overwrite=True)
        release.set()
        writer.join(30)
    assert "another ingest started writing" in str(outcome["earlier"])
    reopened = open_dataset(store, verify=True)
    np.testing.assert_array_equal(reopened.read(0, reopened.num_chunks)[0], IMAGES)
    assert reopened.attrs.ingest_id == later.attrs.ingest_id


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("extra-file", lambda p: (p / "notes.txt").write_text("mine"), r"holds \['notes.txt'\] besides dataset arrays"),
        ("extra-folder", lambda p: (p / "results").mkdir(), r"holds \['results'\] besides dataset arrays"),
    ],
)
def test_overwrite_never_deletes_what_is_not_dataset_arrays(tmp_path, stored, name, make, message):
    make(stored)
    before = snapshot(tmp_path)
    with pytest.raises(DatasetExistsError, match=message + ".*refusing to replace it even with overwrite=True"):
        ingest(IMAGES, LABELS, stored, overwrite=True)
    _assert_unchanged(tmp_path, before)


def test_overwrite_refuses_a_zarr_group_that_is_not_a_bptdask_dataset(tmp_path):
    other = zarr.open_group(LocalStore(tmp_path / "other.zarr"), mode="w", attributes={"owner": "someone"})
    other.create_array("images", shape=(3,), dtype="u1")[:] = [1, 2, 3]
    before = snapshot(tmp_path)
    with pytest.raises(DatasetExistsError, match=r"other\.zarr' exists and is not a bptdask dataset"):
        ingest(IMAGES, LABELS, tmp_path / "other.zarr", overwrite=True)
    _assert_unchanged(tmp_path, before)


def test_overwrite_refuses_a_plain_file(tmp_path):
    (tmp_path / "data.zarr").write_text("not a dataset")
    before = snapshot(tmp_path)
    with pytest.raises(DatasetExistsError, match=r"data\.zarr' is a file, not a dataset"):
        ingest(IMAGES, LABELS, tmp_path / "data.zarr", overwrite=True)
    _assert_unchanged(tmp_path, before)


def _crash_between_renames(stored: Path) -> Path:
    """Leave the disk as a crash between publish's two renames does: the old dataset aside, the new one staged."""
    aside = stored.with_name(f".{stored.name}.replaced-0123456789ab")
    staged = stored.with_name(f".{stored.name}.partial-ba9876543210")
    os.rename(stored, aside)
    ingest(IMAGES[:20], LABELS[:20], staged, chunk_size=10)
    return aside


def test_a_crash_between_the_commit_renames_is_recovered_on_opening(tmp_path, stored):
    old = snapshot(stored)
    _crash_between_renames(stored)
    dataset = open_dataset(stored)
    assert len(dataset) == 60 and snapshot(stored) == old, "the old dataset is back, byte for byte"
    assert not list(tmp_path.glob(".data.zarr.*")), "the aside copy and the staged data are cleared"


def test_a_reader_never_moves_a_dataset_back_while_a_writer_holds_the_path(tmp_path, stored):
    _crash_between_renames(stored)
    writer = WriterLock.acquire(stored)
    try:
        before = snapshot(tmp_path)
        with pytest.raises(IncompleteDatasetError, match=r"data\.zarr' is being replaced by an ingest right now"):
            open_dataset(stored)
        _assert_unchanged(tmp_path, before)
    finally:
        writer.release()
    assert len(open_dataset(stored)) == 60


def test_a_crash_between_the_commit_renames_is_recovered_by_the_next_ingest(tmp_path, stored):
    old = snapshot(stored)
    _crash_between_renames(stored)
    with pytest.raises(DatasetExistsError, match=r"data\.zarr' already exists; pass overwrite=True"):
        ingest(IMAGES, LABELS, stored)
    assert snapshot(stored) == old
    assert len(ingest(IMAGES[:30], LABELS[:30], stored, chunk_size=10, overwrite=True)) == 30


def test_a_crash_after_the_commit_renames_leaves_nothing_behind_the_next_ingest(tmp_path, stored):
    leftover = stored.with_name(f".{stored.name}.replaced-0123456789ab")
    shutil.copytree(stored, leftover)
    ingest(IMAGES[:30], LABELS[:30], stored, chunk_size=10, overwrite=True)
    assert not leftover.exists() and len(open_dataset(stored)) == 30


@pytest.fixture
def read_only(tmp_path):
    """``read_only(directory)`` takes write permission away from ``directory`` until the test ends."""
    locked = []

    def lock(directory: Path) -> None:
        directory.chmod(0o555)
        locked.append(directory)

    yield lock
    for directory in locked:
        directory.chmod(0o755)


_INGEST_AND_REPORT = """
    import numpy as np
    from bptdask.data import ingest, ingest_idx, ingest_npz, open_dataset
    from bptdask.errors import DatasetError
    try:
        {call}
    except DatasetError as exc:
        print(type(exc).__name__, exc)
"""


@pytest.mark.timeout(120)
def test_ingest_into_a_read_only_directory_is_a_dataset_error_and_changes_nothing(tmp_path, stored, read_only):
    read_only(tmp_path)
    before = snapshot(tmp_path)
    call = f"ingest(np.zeros((20, 1, 4, 4), np.uint8), np.arange(20) % 2, {str(stored)!r}, overwrite=True)"
    done = hostile.run_without_dac_override(_INGEST_AND_REPORT.format(call=call))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("DatasetError cannot write") and "Permission denied" in done.stdout, done.stdout
    _assert_unchanged(tmp_path, before)


@pytest.mark.timeout(120)
def test_a_crashed_replacement_that_cannot_be_moved_back_names_where_the_dataset_is(tmp_path, stored, read_only):
    aside = _crash_between_renames(stored)
    read_only(tmp_path)
    before = snapshot(tmp_path)
    done = hostile.run_without_dac_override(_INGEST_AND_REPORT.format(call=f"open_dataset({str(stored)!r})"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("IncompleteDatasetError"), done.stdout
    assert str(aside) in done.stdout and "rename that directory back yourself" in done.stdout
    _assert_unchanged(tmp_path, before)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, unmounted afterwards (skipped where mounting is not permitted)."""
    with hostile.small_disk(tmp_path / "small-disk", "1m") as mount:
        yield mount


@pytest.mark.timeout(120)
def test_a_full_disk_is_a_dataset_error_and_the_old_dataset_survives(small_disk):
    ingest(IMAGES, LABELS, small_disk / "data.zarr", chunk_size=10)
    before = snapshot(small_disk)
    noise = RNG.integers(0, 256, size=(400, 3, 32, 32), dtype=np.uint8)
    with pytest.raises(DatasetError, match=r"writing dataset .*data\.zarr' failed \(OSError: .*No space left"):
        ingest(noise, np.arange(400) % 10, small_disk / "data.zarr", chunk_size=50, overwrite=True)
    _assert_unchanged(small_disk, before)


def test_overwriting_through_a_symlink_replaces_the_dataset_it_points_to_and_keeps_the_link(tmp_path, stored):
    link = tmp_path / "link.zarr"
    link.symlink_to(stored)
    dataset = ingest(IMAGES[:20], LABELS[:20], link, chunk_size=10, overwrite=True)
    assert dataset.location.path == stored and link.is_symlink() and len(open_dataset(link)) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.zarr", "link.zarr"], "nothing left aside"


def test_re_ingesting_a_dataset_onto_itself_reads_the_old_one_whole_before_replacing_it(stored):
    old = open_dataset(stored)
    new = ingest(old.images(), da.from_array(old.labels, chunks=10), stored, chunk_size=5, overwrite=True)
    np.testing.assert_array_equal(new.read(0, new.num_chunks)[0], IMAGES)
    np.testing.assert_array_equal(np.asarray(new.classes)[new.labels], np.asarray(old.classes)[old.labels])


# ------------------------------------------------------------------ data changing under an open dataset


def test_a_chunk_deleted_after_opening_is_an_error_not_zeros(tmp_path, stored):
    dataset = open_dataset(stored)
    (stored / "images" / "c" / "2" / "0" / "0" / "0").unlink()
    before = snapshot(tmp_path)
    with pytest.raises(CorruptChunkError, match=r"chunk 2 of 'images' .*'c/2/0/0/0'\) is missing from the store"):
        dataset.read(0, dataset.num_chunks)
    with pytest.raises(CorruptChunkError, match=r"of 'images' .*missing from the store"):
        dataset.images().compute(scheduler="synchronous")
    assert dataset.read(0, 2)[0].shape == (20, 1, 4, 4), "the chunks still stored read as before"
    _assert_unchanged(tmp_path, before)


def test_a_shard_deleted_after_opening_is_an_error_naming_its_chunks(tmp_path):
    dataset = ingest(IMAGES, LABELS, tmp_path / "sharded.zarr", chunk_size=10, shard_size=30)
    (tmp_path / "sharded.zarr" / "images" / "c" / "1" / "0" / "0" / "0").unlink()
    before = snapshot(tmp_path)
    assert dataset.read(0, 3)[0].shape == (30, 1, 4, 4), "the first shard is still stored"
    with pytest.raises(CorruptChunkError, match=r"chunk 3 of 'images' \(samples 30\.\.59, stored as 'c/1/0/0/0'\)"):
        dataset.read(2, 5)
    _assert_unchanged(tmp_path, before)


def test_a_path_re_ingested_after_opening_never_pairs_new_images_with_old_labels(tmp_path, stored):
    dataset = open_dataset(stored)
    ingest(255 - IMAGES, (LABELS + 1) % 3, stored, chunk_size=10, overwrite=True)
    before = snapshot(tmp_path)
    with pytest.raises(DatasetChangedError, match=r"data\.zarr' changed after it was opened.*open it again"):
        dataset.read(0)
    with pytest.raises(DatasetChangedError, match=r"not the dataset that was opened"):
        pickle.loads(pickle.dumps(dataset))
    with pytest.raises(DatasetChangedError, match=r"not the dataset that was opened"):
        dataset.ref().open()
    np.testing.assert_array_equal(open_dataset(stored).read(0)[0], 255 - IMAGES[:10])
    _assert_unchanged(tmp_path, before)


def test_a_dataset_removed_after_opening_is_an_error(tmp_path, stored):
    dataset = open_dataset(stored)
    shutil.rmtree(stored)
    with pytest.raises(DatasetChangedError, match=r"cannot be read any more since it was opened"):
        dataset.read(0)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def cluster_client():
    with nanny_cluster(2) as (_, client):
        yield client


@pytest.fixture
def mnist_store(tmp_path):
    images, labels = bptdask.datasets.mnist_sample(random_state=0)
    return ingest(images[:600], labels[:600], tmp_path / "mnist.zarr", chunk_size=100, test_size=0)


@pytest.mark.timeout(120)
def test_a_cluster_fit_over_a_deleted_chunk_fails_on_the_client_naming_it(tmp_path, cluster_client, mnist_store):
    (mnist_store.location.path / "images" / "c" / "3" / "0" / "0" / "0").unlink()
    before = snapshot(tmp_path)
    classifier = bptdask.BPTClassifier(epochs=1, batch_size=32, client=cluster_client, random_state=0)
    with pytest.raises(CorruptChunkError, match=r"on the worker .*mnist\.zarr': 1 of 6 chunks of 'images' are missing"):
        classifier.fit(mnist_store)
    _assert_unchanged(tmp_path, before)


@pytest.mark.timeout(120)
def test_a_cluster_fit_over_a_re_ingested_path_fails_instead_of_mixing_datasets(tmp_path, cluster_client, mnist_store):
    images, labels = bptdask.datasets.mnist_sample(random_state=1)
    ingest(images[:600], labels[:600], mnist_store.location.path, chunk_size=100, test_size=0, overwrite=True)
    before = snapshot(tmp_path)
    classifier = bptdask.BPTClassifier(epochs=1, batch_size=32, client=cluster_client, random_state=0)
    with pytest.raises((DatasetChangedError, ClusterTrainingError), match=r"is not the dataset that was opened"):
        classifier.fit(mnist_store)
    _assert_unchanged(tmp_path, before)


# ------------------------------------------------------------------ relative paths


def test_a_relative_path_names_the_same_dataset_in_a_process_with_another_working_directory(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    dataset = ingest(IMAGES, LABELS, "data.zarr", chunk_size=10)
    assert dataset.location.path == tmp_path / "here" / "data.zarr"
    monkeypatch.chdir(tmp_path / "elsewhere")
    ingest(255 - IMAGES, LABELS, "data.zarr", chunk_size=10)
    travelled = pickle.loads(pickle.dumps(dataset))
    np.testing.assert_array_equal(travelled.read(0)[0], IMAGES[:10])
    assert open_dataset(LocalStore("data.zarr")).location.path == tmp_path / "elsewhere" / "data.zarr"


# ------------------------------------------------------------------ labels


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stray", [20_000, 10**7, 2**62])
def test_a_stray_large_label_adds_one_class_and_ingest_finishes(tmp_path, stray):
    labels = LABELS.copy()
    labels[5] = stray
    dataset = ingest(IMAGES, labels, tmp_path / "d.zarr", chunk_size=10)
    assert dataset.classes == (0, 1, 2, stray)
    np.testing.assert_array_equal(np.asarray(dataset.classes)[dataset.labels], labels)


@pytest.mark.timeout(60)
def test_lazy_labels_with_a_stray_label_and_negative_labels_are_encoded(tmp_path):
    labels = LABELS - 1
    labels[7] = 10**7
    dataset = ingest(da.from_array(IMAGES, chunks=25), da.from_array(labels, chunks=25), tmp_path / "d.zarr")
    assert dataset.classes == (-1, 0, 1, 10**7)
    np.testing.assert_array_equal(np.asarray(dataset.classes)[dataset.labels], labels)


@pytest.mark.timeout(60)
def test_a_huge_class_list_with_a_duplicate_is_refused_at_once(tmp_path, stored):
    names = [f"c{k}" for k in range(10**6)] + ["c17"]
    before = snapshot(tmp_path)
    with pytest.raises(ConfigurationError, match=r"classes contains duplicates \['c17'\]"):
        ingest(IMAGES, LABELS, stored, classes=names, overwrite=True)
    _assert_unchanged(tmp_path, before)


def test_a_label_beyond_the_given_classes_is_refused(tmp_path, stored):
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match=r"label 2 is out of range for the 2 classes \['a', 'b'\]"):
        ingest(IMAGES, LABELS, stored, classes=["a", "b"], overwrite=True)
    _assert_unchanged(tmp_path, before)


# ------------------------------------------------------------------ stores that cannot be parsed


def _damage(stored: Path, member: str, content: bytes) -> None:
    (stored / member / "zarr.json").write_bytes(content)


@pytest.mark.parametrize(
    ("member", "content", "cause"),
    [
        ("", b"{not json", "JSONDecodeError"),
        ("", b"\xff\xfe\x00", "UnicodeDecodeError"),
        ("", b"[1, 2]", "TypeError"),
        ("images", b"{not json", "JSONDecodeError"),
        ("labels", b'{"zarr_format": 3, "node_type": 5}', "ValueError"),
        ("split", b"[]", "MetadataValidationError"),
    ],
    ids=["root-json", "root-unicode", "root-list", "images-json", "labels-node-type", "split-list"],
)
def test_damaged_metadata_is_a_dataset_format_error_naming_the_path(tmp_path, stored, member, content, cause):
    _damage(stored, member, content)
    before = snapshot(tmp_path)
    with pytest.raises(DatasetFormatError, match=rf"data\.zarr' has damaged Zarr metadata \({cause}.*re-ingest"):
        open_dataset(stored)
    with pytest.raises(DatasetExistsError, match=r"is not a bptdask dataset|already exists"):
        ingest(IMAGES, LABELS, stored, overwrite=member == "")
    _assert_unchanged(tmp_path, before)


def test_a_root_zarr_json_that_is_not_a_group_document(tmp_path, stored):
    _damage(stored, "", b'{"zarr_format": 3, "node_type": 5}')
    before = snapshot(tmp_path)
    with pytest.raises(DatasetFormatError, match=r"data\.zarr' has a damaged zarr\.json"):
        open_dataset(stored)
    _assert_unchanged(tmp_path, before)


def test_an_unknown_protocol_is_a_dataset_error_for_reading_and_writing():
    message = r"'nosuchproto://bucket/d\.zarr' cannot be reached: fsspec knows no such protocol"
    with pytest.raises(DatasetNotFoundError, match=message):
        open_dataset("nosuchproto://bucket/d.zarr")
    with pytest.raises(DatasetNotFoundError, match=message):
        ingest(IMAGES, LABELS, "nosuchproto://bucket/d.zarr")


def test_a_url_with_nothing_stored_is_not_found():
    with pytest.raises(DatasetNotFoundError, match=r"'memory://never-written\.zarr' does not exist"):
        open_dataset("memory://never-written.zarr")


def test_a_missing_fsspec_backend_names_the_package():
    pytest.importorskip("fsspec")
    if "s3fs" in sys.modules or _importable("s3fs"):
        pytest.skip("s3fs is installed here")
    with pytest.raises(DatasetNotFoundError, match=r"'s3://bucket/d\.zarr' cannot be reached: .*install"):
        open_dataset("s3://bucket/d.zarr")


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def test_a_zarr_v2_store_is_named_as_such(tmp_path):
    group = zarr.open_group(str(tmp_path / "old.zarr"), mode="w", zarr_format=2)
    group.create_array("images", shape=(4, 1, 2, 2), dtype="u1")
    before = snapshot(tmp_path)
    with pytest.raises(DatasetFormatError, match=r"old\.zarr' is a Zarr v2 store; bptdask datasets are Zarr v3"):
        open_dataset(tmp_path / "old.zarr")
    _assert_unchanged(tmp_path, before)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, r"does not exist; check the path"),
        (lambda p: p.write_text("x"), r"is a file, not a dataset directory"),
        (lambda p: p.mkdir(), r"is a directory but not a Zarr group"),
    ],
    ids=["missing", "file", "empty-directory"],
)
def test_paths_without_a_dataset(tmp_path, make, message):
    make(tmp_path / "d.zarr")
    before = snapshot(tmp_path)
    with pytest.raises(DatasetNotFoundError, match=message):
        open_dataset(tmp_path / "d.zarr")
    _assert_unchanged(tmp_path, before)


# ------------------------------------------------------------------ crafted metadata


def _claim(stored: Path, member: str, shape: list[int], chunks: list[int]) -> None:
    """Rewrite ``member``'s metadata to claim ``shape`` in chunks of ``chunks`` (the stored chunks stay)."""
    path = stored / member / "zarr.json"
    meta = json.loads(path.read_text())
    meta["shape"], meta["chunk_grid"]["configuration"]["chunk_shape"] = shape, chunks
    path.write_text(json.dumps(meta))


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ([("images", [60, 1, 10**6, 10**6], [10, 1, 10**6, 10**6])], r"'images' has chunks .* GiB each once decoded"),
        (
            [
                ("images", [10**12, 1, 4, 4], [10**12, 1, 4, 4]),
                ("labels", [10**12], [10**12]),
                ("split", [10**12], [10**12]),
            ],
            r"'images' has chunks .*more than the 2 GiB",
        ),
        (
            [("images", [10**12, 1, 4, 4], [10, 1, 4, 4]), ("labels", [10**12], [10]), ("split", [10**12], [10])],
            r"claims 1000000000000 samples, whose labels and split alone take",
        ),
        ([("labels", [60], [0])], r"'labels' has chunks \(0,\), with an empty axis"),
    ],
    ids=["huge-images", "huge-single-chunk", "huge-sample-count", "zero-chunk"],
)
def test_crafted_huge_shapes_are_refused_before_allocating(tmp_path, stored, claims, message):
    for member, shape, chunks in claims:
        _claim(stored, member, shape, chunks)
    before = snapshot(tmp_path)
    with pytest.raises(DatasetFormatError, match=message):
        open_dataset(stored)
    _assert_unchanged(tmp_path, before)


def _bomb(declared: int) -> bytes:
    """A zstd frame of ``declared`` zero bytes (a few kilobytes) and its valid CRC32C, as a crafter writes it."""
    frame = Zstd(level=1).encode(bytes(declared))
    return frame + google_crc32c.value(frame).to_bytes(4, "little")


@pytest.mark.timeout(60)
def test_a_chunk_declaring_a_huge_decoded_size_is_refused_before_decoding(tmp_path, stored):
    (stored / "images" / "c" / "1" / "0" / "0" / "0").write_bytes(_bomb(2**26))
    dataset = open_dataset(stored)
    before = snapshot(tmp_path)
    with pytest.raises(CorruptChunkError, match=r"chunk 1 of 'images' declares 67108864 decoded bytes, but a chunk"):
        dataset.read(0, 3)
    _assert_unchanged(tmp_path, before)
    (stored / "labels" / "c" / "4").write_bytes(_bomb(2**26))
    before = snapshot(tmp_path)
    with pytest.raises(CorruptChunkError, match=r"chunk 4 of 'labels' declares 67108864 decoded bytes"):
        open_dataset(stored)
    _assert_unchanged(tmp_path, before)


@pytest.mark.timeout(60)
def test_a_sharded_chunk_declaring_a_huge_decoded_size_is_refused_before_decoding(tmp_path):
    path = tmp_path / "sharded.zarr"
    ingest(IMAGES, LABELS, path, chunk_size=10, shard_size=30)
    body = _bomb(2**26)
    entries = np.full((3, 2), 2**64 - 1, dtype="<u8")
    entries[1] = (0, len(body))
    index = entries.tobytes()
    (path / "images" / "c" / "1" / "0" / "0" / "0").write_bytes(
        body + index + google_crc32c.value(index).to_bytes(4, "little")
    )
    dataset = open_dataset(path)
    before = snapshot(tmp_path)
    with pytest.raises(CorruptChunkError, match=r"chunk 4 of 'images' declares 67108864 decoded bytes"):
        dataset.read(3, 6)
    _assert_unchanged(tmp_path, before)


def test_arrays_stored_with_other_codecs_are_refused(tmp_path, stored):
    meta_path = stored / "images" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["codecs"] = [meta["codecs"][0], {"name": "gzip", "configuration": {"level": 1}}]
    meta_path.write_text(json.dumps(meta))
    before = snapshot(tmp_path)
    with pytest.raises(DatasetFormatError, match=r"'images' is stored with codecs \['BytesCodec', 'GzipCodec'\]"):
        open_dataset(stored)
    _assert_unchanged(tmp_path, before)


def _npz_with_header(path: Path, shape: tuple[int, ...]) -> Path:
    """An NPZ whose ``images`` member declares ``shape`` (uint8) but holds 100 bytes."""
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False, "shape": shape})
    labels = io.BytesIO()
    np.save(labels, LABELS)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("images.npy", member.getvalue() + bytes(100))
        archive.writestr("labels.npy", labels.getvalue())
    return path


def _truncated_npz(path: Path) -> Path:
    np.savez(path, images=IMAGES, labels=LABELS)
    path.write_bytes(path.read_bytes()[:500])
    return path


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: _npz_with_header(p, (10**11, 1, 28, 28)), r"declares shape \(100000000000, 1, 28, 28\) of uint8"),
        (_truncated_npz, r"cannot read NPZ file .*\(File is not a zip file\)"),
    ],
    ids=["huge-header", "truncated"],
)
def test_crafted_and_damaged_npz_files_are_source_errors(tmp_path, stored, make, message):
    source = make(tmp_path / "source.npz")
    before = snapshot(tmp_path)
    with pytest.raises(SourceError, match=message):
        ingest_npz(source, stored, overwrite=True)
    _assert_unchanged(tmp_path, before)


@pytest.mark.timeout(60)
def test_a_compressed_idx_file_declaring_a_huge_shape_is_refused(tmp_path, stored):
    source = tmp_path / "images.gz"
    source.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + (10**5).to_bytes(4, "big") * 3))
    before = snapshot(tmp_path)
    with pytest.raises(SourceError, match=r"declares shape \(100000, 100000, 100000\) .*more than half"):
        ingest_idx(source, source, stored, overwrite=True)
    _assert_unchanged(tmp_path, before)


# ------------------------------------------------------------------ odd arrays


@pytest.mark.parametrize(
    ("images", "labels", "options", "error", "message"),
    [
        (np.full((60, 1, 4, 4), np.nan), LABELS, {}, DataError, r"images must be uint8 .* got dtype float64"),
        (IMAGES.astype(bool), LABELS, {}, DataError, r"got dtype bool"),
        (IMAGES.astype(np.int64), LABELS, {}, DataError, r"got dtype int64"),
        (IMAGES[:0], LABELS[:0], {}, DataError, r"images hold no samples"),
        (IMAGES, LABELS[:59], {}, ShapeError, r"one label per image \(60\), got shape \(59,\)"),
        (IMAGES, LABELS.astype(float), {}, DataError, r"labels must be integer class indices, got dtype float64"),
        (IMAGES, LABELS.astype(object), {}, DataError, r"got dtype object"),
        (IMAGES, LABELS[:, None], {}, ShapeError, r"flatten it with labels\.ravel\(\)"),
        (IMAGES[:, :, :0], LABELS, {}, ShapeError, r"empty channel or spatial axis"),
        (IMAGES, LABELS, {"chunk_size": 0}, ConfigurationError, r"chunk_size"),
        (IMAGES, LABELS, {"chunk_size": 10**9}, ConfigurationError, r"chunk_size 1000000000 makes chunks of 14\.9 GiB"),
        (IMAGES, LABELS, {"chunk_size": 1, "shard_size": 2**21}, ConfigurationError, r"2097152 chunks in a shard"),
        (IMAGES, LABELS, {"test_size": float("nan")}, ConfigurationError, r"test_size must be a fraction"),
        (IMAGES, LABELS, {"test_size": float("inf")}, ConfigurationError, r"test_size must be a fraction"),
        ([[[1, 2], [3]]], [0], {}, DataError, r"images cannot be made into one array .*same shape"),
        (IMAGES[:2], [[0], [1, 2]], {}, DataError, r"labels cannot be made into one array"),
    ],
    ids=[
        "nan",
        "bool",
        "int64",
        "empty",
        "short-labels",
        "float-labels",
        "object-labels",
        "2d-labels",
        "zero-height",
        "zero-chunk-size",
        "unreadable-chunk-size",
        "huge-shard",
        "nan-test-size",
        "inf-test-size",
        "ragged-images",
        "ragged-labels",
    ],
)
def test_odd_arrays_are_refused_and_the_existing_dataset_survives(
    tmp_path, stored, images, labels, options, error, message
):
    before = snapshot(tmp_path)
    with pytest.raises(error, match=message):
        ingest(images, labels, stored, overwrite=True, **options)
    _assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("sizes", [{"test_size": 0.5}, {"test_size": 10, "train_size": 2.5}, {"test_size": True}])
def test_a_packaged_split_takes_sample_counts_only(sizes):
    with pytest.raises(ConfigurationError, match=r"must be a sample count between 1 and"):
        bptdask.datasets.split(IMAGES, LABELS, **sizes)
