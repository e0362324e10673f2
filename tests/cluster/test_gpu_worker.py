"""A cluster of one CPU worker and one GPU worker trains one model (needs a CUDA GPU)."""

from __future__ import annotations

import pytest
from distributed import Client, Nanny, Scheduler, SpecCluster

from bptdask import BPTClassifier
from bptdask.backend import gpu_available

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(600)]
if not gpu_available():
    pytest.skip("needs CuPy and a CUDA device", allow_module_level=True)


@pytest.fixture(scope="module")
def mixed_client():
    """Two Nanny workers on loopback: ``cpu`` sees no GPU (CUDA_VISIBLE_DEVICES=""), ``gpu`` sees one."""
    loopback = {"host": "127.0.0.1", "dashboard_address": None}
    workers = {
        "cpu": {"cls": Nanny, "options": {"nthreads": 4, "host": "127.0.0.1", "env": {"CUDA_VISIBLE_DEVICES": ""}}},
        "gpu": {"cls": Nanny, "options": {"nthreads": 1, "host": "127.0.0.1"}},
    }
    with (
        SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": loopback}) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2, timeout=120)
        yield client


def test_cpu_and_gpu_workers_train_one_model_and_the_gpu_gets_the_larger_share(mixed_client, mnist):
    (X, y), (X_test, y_test), _ = mnist
    clf = BPTClassifier("lenet5", epochs=10, client=mixed_client, chunk_size=128, random_state=0)
    clf.fit(X, y)
    loops = clf.report_.worker_loops
    devices = {loop.device: address for address, loop in loops.items()}
    assert set(devices) == {"cpu", "gpu"}, loops
    shares = {device: clf.report_.workers[address].samples for device, address in devices.items()}
    assert shares["gpu"] > shares["cpu"], shares
    assert sum(shares.values()) == 10 * len(y)
    assert clf.score(X_test, y_test) >= 0.965
