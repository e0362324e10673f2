"""The packaged datasets: shapes, dtypes, balance, seeded shuffling and splits."""

from __future__ import annotations

import numpy as np
import pytest

from bptdask import datasets
from bptdask.errors import ConfigurationError


@pytest.fixture(scope="module")
def mnist():
    return datasets.mnist_sample()


def test_mnist_sample_shapes_and_balance(mnist):
    images, labels = mnist
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.max() == 255 and images.min() == 0


def test_mnist_sample_is_shuffled_by_seed(mnist):
    images, labels = mnist
    assert len(np.unique(labels[:50])) > 5, "the file is sorted by label; the loader must shuffle"
    again_images, again_labels = datasets.mnist_sample(random_state=0)
    np.testing.assert_array_equal(again_labels, labels)
    np.testing.assert_array_equal(again_images, images)
    other = datasets.mnist_sample(random_state=1)[1]
    assert not np.array_equal(other, labels)
    unshuffled = datasets.mnist_sample(random_state=None)[1]
    assert (np.diff(unshuffled) >= 0).all()


def test_shuffle_keeps_image_label_pairs(mnist):
    images, labels = mnist
    sorted_images, sorted_labels = datasets.mnist_sample(random_state=None)
    order = np.random.default_rng(0).permutation(5000)
    np.testing.assert_array_equal(images, sorted_images[order])
    np.testing.assert_array_equal(labels, sorted_labels[order])


def test_digits_scaled_to_uint8():
    images, labels = datasets.digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == np.uint8
    assert images.max() == 255
    assert set(np.unique(labels)) == set(range(10))


def test_split_is_positional_and_disjoint(mnist):
    images, labels = mnist
    (_xtr, ytr), (xte, yte) = datasets.split(images, labels, test_size=1000, train_size=4000)
    assert len(ytr) == 4000 and len(yte) == 1000
    np.testing.assert_array_equal(xte, images[4000:])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"test_size": 0}, "test_size must be a sample count between 1 and 4999"),
        ({"test_size": 1000, "train_size": 4500}, r"train_size must be a sample count between 1 and 4000"),
    ],
)
def test_split_rejects_impossible_sizes(mnist, kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        datasets.split(*mnist, **kwargs)


def test_unknown_dataset_name():
    with pytest.raises(ConfigurationError, match=r"unknown dataset 'cifar'.*digits"):
        datasets.load("cifar")
