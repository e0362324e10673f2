"""Parallel writes: each Dask task owns whole chunks or shards, under any scheduler."""

from __future__ import annotations

import math
import os

import dask
import dask.array as da
import numpy as np
import pytest
from dask.callbacks import Callback
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zarr.storage import MemoryStore

from bptdask.data import ingest, open_dataset
from bptdask.data.writer import BlockStats


class WriteSpy(Callback):
    """Collects the BlockStats every write task returns."""

    def __init__(self):
        super().__init__()
        self.blocks = []

    def _posttask(self, key, result, dsk, state, worker_id):
        if isinstance(result, BlockStats):
            self.blocks.append(result)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    num_samples=st.integers(1, 150),
    chunk_size=st.integers(1, 40),
    chunks_per_shard=st.one_of(st.none(), st.integers(1, 4)),
    input_chunk=st.integers(1, 60),
)
def test_threaded_writes_round_trip_with_one_task_per_chunk_or_shard(
    num_samples, chunk_size, chunks_per_shard, input_chunk
):
    rng = np.random.default_rng(num_samples)
    images = rng.integers(0, 256, size=(num_samples, 2, 3, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, size=num_samples)
    shard_size = None if chunks_per_shard is None else chunk_size * chunks_per_shard
    unit = shard_size or chunk_size
    spy = WriteSpy()
    with dask.config.set(scheduler="threads", num_workers=4), spy:
        dataset = ingest(
            da.from_array(images, chunks=(input_chunk, 2, 3, 3)),
            da.from_array(labels, chunks=input_chunk),
            MemoryStore(),
            chunk_size=chunk_size,
            shard_size=shard_size,
            test_size=0,
        )
    got_images, got_labels = dataset.read(0, dataset.num_chunks)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(np.asarray(dataset.classes)[got_labels], labels)
    assert dataset.classes == tuple(np.unique(labels).tolist()), "the classes are the labels present"
    assert len(spy.blocks) == math.ceil(num_samples / unit)
    assert sorted(b.count for b in spy.blocks) == sorted(
        [unit] * (num_samples // unit) + ([num_samples % unit] if num_samples % unit else [])
    )


def _read_in_worker(dataset, chunk):
    images, labels = dataset.read(chunk)
    return os.getpid(), images, labels


def _open_in_worker(path, chunk):
    return _read_in_worker(open_dataset(path), chunk)


@pytest.mark.timeout(120)
def test_distributed_workers_write_and_read_from_the_path_alone(tmp_path, mnist):
    distributed = pytest.importorskip("distributed")
    images, labels = mnist
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        dataset = ingest(
            da.from_array(images, chunks=(70, 1, 28, 28)), labels, tmp_path / "d.zarr", chunk_size=50, shard_size=100
        )
        futures = client.map(_read_in_worker, [dataset] * dataset.num_chunks, range(dataset.num_chunks))
        futures += client.map(_open_in_worker, [str(tmp_path / "d.zarr")] * 2, [0, 11], pure=False)
        results = client.gather(futures)
    assert len({pid for pid, _, _ in results} - {os.getpid()}) >= 1
    np.testing.assert_array_equal(np.concatenate([r[1] for r in results[:-2]]), images)
    np.testing.assert_array_equal(np.concatenate([r[2] for r in results[:-2]]), labels)
    np.testing.assert_array_equal(results[-1][1], images[550:600])


@pytest.mark.timeout(60)
def test_in_process_cluster_writes(tmp_path, small):
    distributed = pytest.importorskip("distributed")
    images, labels = small
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster),
    ):
        lazy_images, lazy_labels = da.from_array(images, chunks=33), da.from_array(labels, chunks=77)
        dataset = ingest(lazy_images, lazy_labels, tmp_path / "d.zarr", chunk_size=16)
    np.testing.assert_array_equal(dataset.read(0, dataset.num_chunks)[0], images)
