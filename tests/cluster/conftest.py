"""Real LocalClusters (Nanny processes on loopback) and the MNIST sample as Zarr."""

from __future__ import annotations

import numpy as np
import pytest

import bptdask
from bptdask import BPTClassifier, datasets
from bptdask.testing.clusters import nanny_cluster


@pytest.fixture(scope="module")
def client():
    with nanny_cluster(3) as (_, client):
        yield client


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """((X_train, y_train), (X_test, y_test)) and the training part as a Zarr dataset (chunks of 128)."""
    train, test = datasets.split(*datasets.mnist_sample(random_state=0), test_size=1000, train_size=4000)
    path = tmp_path_factory.mktemp("outer") / "mnist-train.zarr"
    dataset = bptdask.ingest(*train, path, chunk_size=128, test_size=0)
    return train, test, dataset


@pytest.fixture(scope="session")
def score():
    """``score(model, params, dataset, X, y)``: test accuracy of weights trained on ``dataset``."""

    def accuracy(model, params, dataset, X, y):
        classifier = BPTClassifier()
        classifier.model_, classifier.params_, classifier.classes_ = model, params, np.arange(10)
        classifier.mean_, classifier.std_ = dataset.mean, dataset.std
        return classifier.score(X, y)

    return accuracy
