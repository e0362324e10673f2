"""Every source format written and read back to identical pixels and labels."""

from __future__ import annotations

import pickle

import dask.array as da
import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore, MemoryStore

from bptdask.data import (
    FORMAT_VERSION,
    ingest,
    ingest_builtin,
    ingest_folder,
    ingest_idx,
    ingest_npz,
    open_dataset,
)
from bptdask.datasets import digits, mnist_sample


def read_all(dataset, subset="all"):
    return dataset.read(0, dataset.num_chunks, subset=subset)


def assert_holds(dataset, images, labels):
    stored_images, stored_labels = read_all(dataset)
    np.testing.assert_array_equal(stored_images, images)
    np.testing.assert_array_equal(stored_labels, labels)
    assert stored_images.dtype == np.uint8 and stored_labels.dtype == np.int64


def test_numpy_round_trip_and_format(tmp_path, mnist):
    images, labels = mnist
    dataset = ingest(images, labels, tmp_path / "mnist.zarr", chunk_size=128)
    assert_holds(dataset, images, labels)
    assert len(dataset) == 600 and dataset.shape == (600, 1, 28, 28) and dataset.sample_shape == (1, 28, 28)
    assert dataset.chunk_boundaries == ((0, 128), (128, 256), (256, 384), (384, 512), (512, 600))
    assert dataset.classes == tuple(range(10)) and dataset.source == "numpy", "integer labels stay integers"
    group = zarr.open_group(tmp_path / "mnist.zarr", mode="r")
    assert group["images"].chunks == (128, 1, 28, 28) and group["labels"].chunks == (128,)
    assert group["labels"].dtype == np.int64
    meta = group.attrs["bptdask"]
    assert meta["format_version"] == FORMAT_VERSION and meta["complete"] is True
    assert set(meta) >= {"classes", "mean", "std", "source", "split"}


def test_mean_and_std_are_those_of_the_training_images(tmp_path, mnist):
    images, labels = mnist
    dataset = ingest(images, labels, tmp_path / "d.zarr", test_size=0.25, seed=3)
    train = images[dataset.indices("train")].astype(np.float64) / 255.0
    np.testing.assert_allclose(dataset.mean, [train.mean()], rtol=1e-12)
    np.testing.assert_allclose(dataset.std, [train.std()], rtol=1e-9)


def test_rgb_channels_get_their_own_statistics_and_constant_channels_std_one(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 3, 4, 4), dtype=np.uint8)
    images[:, 2] = 77
    dataset = ingest(images, np.arange(50) % 2, tmp_path / "rgb.zarr", test_size=0)
    scaled = images.astype(np.float64) / 255.0
    np.testing.assert_allclose(dataset.mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(dataset.std[:2], scaled.std(axis=(0, 2, 3))[:2], rtol=1e-9)
    assert dataset.std[2] == 1.0


def test_split_is_seeded_stored_and_partitions_the_samples(tmp_path, small):
    images, labels = small
    first = ingest(images, labels, tmp_path / "a.zarr", chunk_size=64, test_size=0.2, seed=5)
    again = ingest(images, labels, tmp_path / "b.zarr", chunk_size=64, test_size=0.2, seed=5)
    other = ingest(images, labels, tmp_path / "c.zarr", chunk_size=64, test_size=60, seed=6)
    train, test = first.indices("train"), first.indices("test")
    assert len(test) == 60 and len(train) == 240
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(300))
    assert np.array_equal(test, again.indices("test")) and not np.array_equal(test, other.indices("test"))
    assert first.chunk_sizes("train").sum() == 240 and list(first.chunk_sizes()) == [64, 64, 64, 64, 44]
    assert np.array_equal(first.chunk_sizes("train") + first.chunk_sizes("test"), first.chunk_sizes())
    got_images, got_labels = first.read(1, 3, subset="test")
    in_range = test[(test >= 64) & (test < 192)]
    np.testing.assert_array_equal(got_images, images[in_range])
    np.testing.assert_array_equal(got_labels, labels[in_range])
    assert zarr.open_group(tmp_path / "a.zarr", mode="r").attrs["bptdask"]["split"] == {"seed": 5, "num_test": 60}


def test_layouts_nhwc_and_single_channel(tmp_path, small):
    images, labels = small
    nhwc = ingest(images.transpose(0, 2, 3, 1), labels, tmp_path / "nhwc.zarr", layout="NHWC")
    assert_holds(nhwc, images, labels)
    gray = ingest(images[:, 0], labels, tmp_path / "gray.zarr")
    assert_holds(gray, images, labels)


def test_dask_input_stays_lazy_and_round_trips(tmp_path, small):
    images, labels = small
    calls = []

    def record(block):
        calls.append(len(block))
        return block

    lazy = da.from_array(images, chunks=(37, 1, 8, 8)).map_blocks(record, dtype=np.uint8)
    dataset = ingest(lazy, da.from_array(labels, chunks=100), tmp_path / "lazy.zarr", chunk_size=50, shard_size=100)
    assert sum(calls) == 300 and dataset.source == "dask"
    assert_holds(dataset, images, labels)
    assert dataset.chunk_size == 50 and dataset.num_chunks == 6
    assert zarr.open_group(tmp_path / "lazy.zarr", mode="r")["images"].shards == (100, 1, 8, 8)


def test_npz_round_trip(tmp_path, mnist):
    images, labels = mnist
    np.savez(tmp_path / "keras.npz", x_train=images[:, 0], y_train=labels)
    np.savez_compressed(tmp_path / "named.npz", pixels=images, targets=labels.astype(np.uint8))
    assert_holds(ingest_npz(tmp_path / "keras.npz", tmp_path / "a.zarr"), images, labels)
    named = ingest_npz(tmp_path / "named.npz", tmp_path / "b.zarr", images_key="pixels", labels_key="targets")
    assert_holds(named, images, labels)
    assert named.source == "npz:named.npz"


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_idx_round_trip(tmp_path, mnist, write_idx, compress):
    images, labels = mnist
    suffix = ".gz" if compress else ""
    images_file = write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images[:, 0], compress=compress)
    labels_file = write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, compress=compress)
    dataset = ingest_idx(images_file, labels_file, tmp_path / "idx.zarr", chunk_size=100)
    assert_holds(dataset, images, labels)
    assert dataset.source == f"idx:train-images-idx3-ubyte{suffix}"


def test_png_folder_from_the_mnist_sample_reads_back_identical_pixels(tmp_path, mnist, write_png_folder):
    images, labels = mnist
    root = write_png_folder(tmp_path / "pngs", images, labels)
    in_order = ingest_folder(root, tmp_path / "ordered.zarr", shuffle=False, chunk_size=128, progress=False)
    order = np.lexsort((np.arange(600), labels))
    assert_holds(in_order, images[order], labels[order])
    shuffled = ingest_folder(root, tmp_path / "shuffled.zarr", seed=1, chunk_size=128, progress=False)
    stored_images, stored_labels = read_all(shuffled)
    assert not np.array_equal(stored_labels, labels[order])
    for digit in range(10):
        expected = sorted(image.tobytes() for image in images[labels == digit])
        assert sorted(image.tobytes() for image in stored_images[stored_labels == digit]) == expected
    assert shuffled.classes == tuple(str(k) for k in range(10)) and shuffled.source == "folder:pngs"


def test_folder_resizes_and_converts_colour(tmp_path, write_png_folder):
    rng = np.random.default_rng(1)
    images = np.repeat(rng.integers(0, 256, size=(12, 3, 1, 1), dtype=np.uint8), 6, axis=2).repeat(10, axis=3)
    root = write_png_folder(tmp_path / "colour", images, np.arange(12) % 3)
    dataset = ingest_folder(root, tmp_path / "c.zarr", size=(3, 5), shuffle=False, progress=False, test_size=0)
    stored, _ = read_all(dataset)
    assert stored.shape == (12, 3, 3, 5)
    by_class = images[np.lexsort((np.arange(12), np.arange(12) % 3))]
    np.testing.assert_array_equal(stored, np.broadcast_to(by_class[:, :, :1, :1], stored.shape))
    gray = ingest_folder(root, tmp_path / "g.zarr", channels=1, size=4, progress=False)
    assert gray.sample_shape == (1, 4, 4)


@pytest.mark.parametrize(
    ("name", "loader", "shape"),
    [("mnist-sample", mnist_sample, (5000, 1, 28, 28)), ("digits", digits, (1797, 1, 8, 8))],
)
def test_packaged_datasets(tmp_path, name, loader, shape):
    dataset = ingest_builtin(name, tmp_path / f"{name}.zarr", seed=4)
    images, labels = loader(random_state=4)
    assert dataset.shape == shape and dataset.source == name
    assert_holds(dataset, images, labels)
    assert len(dataset.indices("test")) == round(0.2 * shape[0])


def test_store_objects_and_urls(tmp_path, small):
    images, labels = small
    memory = ingest(images, labels, MemoryStore(), chunk_size=100)
    assert_holds(memory, images, labels)
    local = ingest(images, labels, LocalStore(tmp_path / "store.zarr"), chunk_size=100)
    assert_holds(open_dataset(LocalStore(tmp_path / "store.zarr", read_only=True)), images, labels)
    assert_holds(open_dataset(f"file://{tmp_path / 'store.zarr'}"), images, labels)
    assert local.location.path == tmp_path / "store.zarr"
    url = f"memory://bptdask-test-{tmp_path.name}/data.zarr"
    ingest(images, labels, url, chunk_size=100)
    assert_holds(open_dataset(url), images, labels)


def test_dataset_pickles_as_its_location(tmp_path, mnist):
    images, labels = mnist
    dataset = ingest(images, labels, tmp_path / "p.zarr")
    payload = pickle.dumps(dataset)
    assert len(payload) < 2_000
    assert_holds(pickle.loads(payload), images, labels)
