"""Where users are: workers that do not share this process's disk, scikit-learn on Dask, interrupts.

The private-disk cluster runs ``dask worker`` processes in mount namespaces of their own
(``unshare --mount``, which needs root, as CI runs) where this test session's temporary
directory is an empty tmpfs: files written there by the test are invisible to the
workers, as on a multi-node cluster whose nodes do not share the client's disk.
"""

from __future__ import annotations

import _thread
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from distributed import Client, LocalCluster, get_task_stream

import bptdask
from bptdask import BPTClassifier, datasets
from bptdask.errors import ConfigurationError, DatasetError
from bptdask.outer.checkpoint import CheckpointStore
from bptdask.testing.clusters import nanny_cluster

pytestmark = pytest.mark.timeout(600)

WORKERS = 2


def _can_unshare() -> str | None:
    """None if ``unshare --mount`` works here, else why not."""
    if shutil.which("unshare") is None:
        return "needs util-linux's unshare"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True, check=False
    )
    return None if probe.returncode == 0 else f"unshare --mount is not permitted here: {probe.stderr.strip()}"


@pytest.fixture(scope="module")
def private_disk_client(tmp_path_factory):
    """A client of a scheduler here and workers whose view of the test's temporary directory is empty."""
    reason = _can_unshare()
    if reason is not None:
        pytest.skip(reason)
    hidden = tmp_path_factory.getbasetemp()
    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None) as cluster:
        command = (
            f"mount -t tmpfs tmpfs {hidden} && exec {sys.executable} -m distributed.cli.dask_worker "
            f"{cluster.scheduler_address} --nthreads 1 --no-dashboard --host 127.0.0.1 --no-nanny"
        )
        workers = [
            subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", command])
            for _ in range(WORKERS)
        ]
        try:
            with Client(cluster) as client:
                client.wait_for_workers(WORKERS, timeout=60)
                yield client
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait(timeout=30)


@pytest.fixture(scope="module")
def mnist():
    return datasets.split(*datasets.mnist_sample(random_state=0), test_size=500, train_size=2000)


@pytest.fixture
def shared_directory():
    """A directory the private-disk workers see too (outside the hidden temporary directory)."""
    path = Path("/var/tmp") / f"bptdask-test-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_workers_really_do_not_see_this_process_s_files(private_disk_client, tmp_path):
    marker = tmp_path / "marker"
    marker.write_text("here")
    seen = private_disk_client.run(os.path.exists, str(marker))
    assert list(seen.values()) == [False] * WORKERS


def test_fit_from_numpy_arrays_puts_the_chunks_on_the_workers(private_disk_client, mnist):
    (X, y), (X_test, y_test) = mnist
    clf = BPTClassifier(epochs=6, batch_size=32, chunk_size=125, client=private_disk_client, random_state=0)
    clf.fit(X, y)
    assert clf.score(X_test, y_test) >= 0.85
    sources = clf.report_.chunk_sources
    assert sum(s.storage for s in sources.values()) == 0, "no chunk came from a disk"
    assert sum(s.memory + s.peer for s in sources.values()) == 6 * 16
    names = private_disk_client.list_datasets()
    assert not [name for name in names if str(name).startswith("bptdask-chunk")], "the chunks are released"

    def caches():
        from bptdask.cluster import reader

        return len(reader._CACHES)

    assert set(private_disk_client.run(caches).values()) == {0}, "and the workers' chunk caches"


def test_fit_from_dask_arrays_and_predict_lazily_into_zarr(private_disk_client, mnist, shared_directory):
    (X, y), (X_test, y_test) = mnist
    lazy_X, lazy_y = da.from_array(X, chunks=(250, 1, 28, 28)), da.from_array(y, chunks=250)
    clf = BPTClassifier(epochs=6, batch_size=32, chunk_size=250, client=private_disk_client, random_state=0)
    clf.fit(lazy_X, lazy_y)
    predicted = clf.predict(da.from_array(X_test, chunks=(100, 1, 28, 28)))
    keys = [str(key[0] if isinstance(key, tuple) else key) for key in dict(predicted.__dask_graph__())]
    assert any(key.startswith("bptdask-predictor") for key in keys)
    predicted.to_zarr(str(shared_directory / "predictions.zarr"), compute=True)
    written = zarr.open_array(str(shared_directory / "predictions.zarr"), mode="r")[:]
    np.testing.assert_array_equal(written, clf.predict(X_test))
    assert (written == y_test).mean() >= 0.85


def test_a_dataset_only_this_process_sees_is_refused_before_training(private_disk_client, mnist, tmp_path):
    (X, y), _ = mnist
    with dask.config.set(scheduler="threads"):  # written by this process alone, where the workers cannot see it
        dataset = bptdask.ingest(X[:500], y[:500], tmp_path / "private.zarr", chunk_size=100, test_size=0)
    clf = BPTClassifier(epochs=1, client=private_disk_client)
    started = time.monotonic()
    with pytest.raises(DatasetError, match=r"the workers cannot open the dataset at .*private\.zarr.*pass arrays"):
        clf.fit(dataset)
    assert time.monotonic() - started < 30


def test_a_checkpoint_directory_the_workers_do_not_share_is_refused(private_disk_client, mnist, tmp_path):
    (X, y), _ = mnist
    clf = BPTClassifier(epochs=1, chunk_size=250, client=private_disk_client)
    with pytest.raises(ConfigurationError, match="do not share the checkpoint directory"):
        clf.fit(X, y, checkpoint=tmp_path / "checkpoints")


def test_a_dataset_the_workers_share_is_read_from_storage_once(private_disk_client, mnist, shared_directory):
    (X, y), (X_test, y_test) = mnist
    dataset = bptdask.ingest(X, y, shared_directory / "mnist.zarr", chunk_size=125, test_size=0)
    clf = BPTClassifier(epochs=4, batch_size=32, client=private_disk_client, random_state=0).fit(dataset)
    sources = clf.report_.chunk_sources
    assert sources[0].storage == 16, "epoch 1 reads every chunk from storage"
    assert all(sources[epoch].storage == 0 for epoch in (1, 2, 3)), "later epochs read nothing from storage"
    assert clf.score(X_test, y_test) >= 0.8


@pytest.fixture(scope="module")
def process_cluster():
    with nanny_cluster(2) as cluster_and_client:
        yield cluster_and_client


def test_grid_search_runs_its_fits_as_dask_tasks_under_joblib(process_cluster):
    joblib = pytest.importorskip("joblib")
    from sklearn.model_selection import GridSearchCV

    _, client = process_cluster
    X, y = datasets.digits(random_state=0)
    cnn = BPTClassifier(_small_lenet(), epochs=3, batch_size=32, random_state=0)
    search = GridSearchCV(cnn, {"lr": [0.05, 0.1]}, cv=2, n_jobs=2, refit=False)
    with get_task_stream(client) as stream, joblib.parallel_backend("dask"):
        search.fit(X[:800], y[:800])
    assert search.best_score_ > 0.6
    names = {task["key"] for task in stream.data}
    assert not any("bptdask-train" in str(name) for name in names), "each fit trained inside its own task"
    assert len(names) >= 4, "the four fits ran as Dask tasks"


def _small_lenet():
    from functools import partial

    return partial(bptdask.models.lenet5, padding=2)


def test_dask_ml_wrappers(process_cluster):
    """dask-ml's wrappers split arrays along samples and assume 2-D input: feature vectors, the mlp."""
    wrappers = pytest.importorskip("dask_ml.wrappers", reason="dask-ml does not import with this scikit-learn")
    X, y = datasets.digits(random_state=0)
    vectors = X.reshape(len(X), -1).astype(np.float32)
    lazy_X = da.from_array(vectors[:900], chunks=(300, 64))
    lazy_y = da.from_array(y[:900], chunks=300)
    mlp = BPTClassifier("mlp", batch_size=32, random_state=0)
    incremental = wrappers.Incremental(mlp, scoring="accuracy").fit(lazy_X, lazy_y, classes=np.arange(10))
    assert len(incremental.estimator_.history_) == 3, "one partial_fit per block"
    post = wrappers.ParallelPostFit(BPTClassifier("mlp", epochs=10, random_state=0)).fit(vectors[:900], y[:900])
    predicted = post.predict(da.from_array(vectors[900:1200], chunks=(100, 64)))
    assert isinstance(predicted, da.Array) and (predicted.compute() == y[900:1200]).mean() > 0.8


def test_an_interrupted_fit_leaves_a_checkpoint_and_nothing_on_the_cluster(process_cluster, tmp_path):
    _, client = process_cluster
    X, y = datasets.mnist_sample(random_state=0)
    clf = BPTClassifier(epochs=50, batch_size=32, chunk_size=128, client=client, checkpoint_every=5, random_state=0)
    interrupter = threading.Timer(6.0, _thread.interrupt_main)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X, y, checkpoint=tmp_path)
    stopped = time.monotonic()
    assert CheckpointStore(tmp_path).latest().version > 0, "a checkpoint was left"

    def bptdask_keys(dask_scheduler):
        return sorted(str(key) for key in dask_scheduler.tasks if "bptdask" in str(key))

    while client.run_on_scheduler(bptdask_keys) and time.monotonic() - stopped < 10:
        time.sleep(0.2)
    assert client.run_on_scheduler(bptdask_keys) == [], "no task, actor or chunk of the fit is left"
    assert time.monotonic() - stopped < 10


def test_a_fit_on_an_empty_cluster_waits_for_workers(mnist):
    (X, y), (X_test, y_test) = mnist
    with (
        LocalCluster(n_workers=0, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        scaler = threading.Timer(3.0, cluster.scale, args=(2,))
        scaler.start()
        clf = BPTClassifier(epochs=3, chunk_size=250, client=client, min_workers=2, random_state=0)
        clf.fit(X, y)
        scaler.join()
    assert len(clf.report_.worker_loops) == 2 and clf.score(X_test, y_test) > 0.8
