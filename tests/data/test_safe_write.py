"""Safe writes: a killed or failed ingest never leaves a store that opens as complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from zarr.storage import MemoryStore

from bptdask.data import ingest, open_dataset, writer
from bptdask.errors import DataError, IncompleteDatasetError

#: A child process ingesting 100 chunks slowly (0.1 s each) into argv[1].
CHILD = textwrap.dedent(
    """
    import sys, time
    import dask
    import dask.array as da
    import numpy as np
    from bptdask.data import ingest

    def slow(block):
        time.sleep(0.1)
        return block

    target, overwrite = sys.argv[1], sys.argv[2] == "1"
    options = {"storage_options": {"auto_mkdir": True}} if "://" in target else {}
    images = np.random.default_rng(1).integers(0, 256, size=(2000, 1, 8, 8), dtype=np.uint8)
    lazy = da.from_array(images, chunks=(20, 1, 8, 8)).map_blocks(slow, dtype=np.uint8)
    with dask.config.set(scheduler="threads", num_workers=2):
        ingest(lazy, np.arange(2000) % 10, target, chunk_size=20, overwrite=overwrite, **options)
    """
)


def child_data():
    images = np.random.default_rng(1).integers(0, 256, size=(2000, 1, 8, 8), dtype=np.uint8)
    return images, np.arange(2000) % 10


def stored_chunks(tmp_path: Path, *, in_place: bool) -> int:
    """Images chunks written so far into ``tmp_path/data.zarr`` or its temporary siblings."""
    stores = [tmp_path / "data.zarr"] if in_place else tmp_path.glob(".data.zarr.partial-*")
    return sum(len(list((store / "images" / "c").glob("*"))) for store in stores)


def kill_when_chunks_exist(target: str, tmp_path: Path, *, overwrite: bool, in_place: bool) -> int:
    """Run CHILD, SIGKILL it once at least 3 images chunks are stored; return its exit code."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, target, "1" if overwrite else "0"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            if stored_chunks(tmp_path, in_place=in_place) >= 3:
                break
            time.sleep(0.02)
        assert child.poll() is None, "the child finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        returncode = child.wait(timeout=30)
    return returncode


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["new-path", "replace-path", "in-place-url"])
def test_killed_ingest_is_rejected_as_incomplete_and_a_rerun_succeeds(tmp_path, small, mode):
    final = tmp_path / "data.zarr"
    images, labels = child_data()
    if mode == "replace-path":
        ingest(*small, final)
    in_place = mode == "in-place-url"
    if in_place:
        target, options = f"local://{final}", {"storage_options": {"auto_mkdir": True}}
    else:
        target, options = str(final), {}

    returncode = kill_when_chunks_exist(target, tmp_path, overwrite=mode == "replace-path", in_place=in_place)
    assert returncode == -signal.SIGKILL

    if mode == "new-path":
        assert not final.exists()
        with pytest.raises(IncompleteDatasetError, match=r"does not exist yet: an ingest into it has not finished"):
            open_dataset(final)
    if mode == "replace-path":
        kept = open_dataset(final)
        np.testing.assert_array_equal(kept.read(0, kept.num_chunks)[0], small[0])
    if mode == "in-place-url":
        with pytest.raises(IncompleteDatasetError, match=r"is incomplete: its ingest was interrupted"):
            open_dataset(target)
    for partial in tmp_path.glob(".data.zarr.partial-*"):
        with pytest.raises(IncompleteDatasetError, match=r"is incomplete"):
            open_dataset(partial)

    rerun = ingest(images, labels, target, chunk_size=20, overwrite=mode != "new-path", **options)
    np.testing.assert_array_equal(rerun.read(0, rerun.num_chunks)[0], images)
    assert not list(tmp_path.glob(".data.zarr.*")), "the successful re-run left temporary data behind"


def _failing_source(images, fail_at, *, delay=0.0):
    def fail(block, block_info=None):
        if block_info[0]["chunk-location"][0] == fail_at:
            time.sleep(delay)
            raise RuntimeError("source went away")
        return block

    return da.from_array(images, chunks=(20, 1, 8, 8)).map_blocks(fail, dtype=np.uint8)


def test_failed_ingest_into_a_store_object_leaves_it_marked_incomplete(small):
    images, labels = small
    store = MemoryStore()
    with pytest.raises(RuntimeError, match="source went away"):
        ingest(_failing_source(images, fail_at=10), labels, store, chunk_size=20)
    with pytest.raises(IncompleteDatasetError, match="re-run the ingest with overwrite=True"):
        open_dataset(store)
    dataset = ingest(images, labels, store, chunk_size=20, overwrite=True)
    np.testing.assert_array_equal(dataset.read(0, dataset.num_chunks)[0], images)


def test_failed_overwrite_of_a_directory_keeps_the_old_dataset(tmp_path, small):
    images, labels = small
    old = ingest(images[:100], labels[:100], tmp_path / "d.zarr", chunk_size=20)
    with pytest.raises(RuntimeError, match="source went away"):
        ingest(_failing_source(images, fail_at=12), labels, tmp_path / "d.zarr", chunk_size=20, overwrite=True)
    assert len(open_dataset(tmp_path / "d.zarr")) == len(old) == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.zarr"]


def test_out_of_range_lazy_labels_discard_the_partial_dataset(tmp_path, small):
    images, labels = small
    lazy_labels = da.from_array(np.where(np.arange(300) == 250, 10, labels), chunks=50)
    with pytest.raises(DataError, match="label 10 is out of range for the 10 classes"):
        ingest(images, lazy_labels, tmp_path / "d.zarr", classes=[str(k) for k in range(10)], chunk_size=50)
    assert list(Path(tmp_path).iterdir()) == []


def test_a_failed_ingest_waits_for_running_writes_before_removing_its_data(tmp_path, small, monkeypatch):
    original = writer.write_block

    def slow_write(*args):
        time.sleep(0.2)
        return original(*args)

    monkeypatch.setattr(writer, "write_block", slow_write)
    images, labels = small
    with dask.config.set(scheduler="threads", num_workers=4), pytest.raises(RuntimeError, match="source went away"):
        ingest(_failing_source(images, fail_at=6, delay=0.1), labels, tmp_path / "d.zarr", chunk_size=20)
    time.sleep(0.5)
    assert list(tmp_path.iterdir()) == [], "a write still running at the failure re-created the temporary data"
