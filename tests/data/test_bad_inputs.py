"""The bad-input catalogue: each case raises a named error that quotes the value and the fix.

Ingest cases all target a path that already holds a valid dataset (with ``overwrite=True``
where the case allows it) and check that the dataset survives untouched. Open cases
damage a store on purpose and check what ``open_dataset`` or ``read`` says.
"""

from __future__ import annotations

import re

import dask.array as da
import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

from bptdask.data import ingest, ingest_builtin, ingest_folder, ingest_idx, ingest_npz, open_dataset
from bptdask.errors import (
    BptDaskError,
    ConfigurationError,
    CorruptChunkError,
    DataError,
    DatasetExistsError,
    DatasetFormatError,
    DatasetNotFoundError,
    DatasetVersionError,
    IncompleteDatasetError,
    ShapeError,
    SourceError,
)


def _lazy_labels_out_of_range(images, labels):
    bad = labels.copy()
    bad[-1] = 12
    return da.from_array(images, chunks=50), da.from_array(bad, chunks=50)


def _undecodable_folder(tmp_path, images, labels, write_png_folder):
    root = write_png_folder(tmp_path / "pngs", images[:40], labels[:40])
    (root / str(labels[7]) / "00007.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    return root


def _mixed_size_folder(tmp_path, images, labels, write_png_folder):
    root = write_png_folder(tmp_path / "pngs", images[:10], labels[:10])
    write_png_folder(tmp_path / "pngs", np.zeros((1, 1, 5, 5), np.uint8), [99])
    return root


# id, call(target, tmp_path, images, labels, helpers), error type, message pattern
INGEST_CASES = [
    (
        "float-images",
        lambda t, p, x, y, h: ingest(x.astype("float32") / 255, y, t, overwrite=True),
        DataError,
        r"images must be uint8 .* got dtype float32; convert .*astype\('uint8'\)",
    ),
    (
        "flat-images",
        lambda t, p, x, y, h: ingest(x.reshape(300, 64), y, t, overwrite=True),
        ShapeError,
        r"images must be \(N, C, H, W\).* got shape \(300, 64\)",
    ),
    (
        "unknown-layout",
        lambda t, p, x, y, h: ingest(x, y, t, layout="CHWN", overwrite=True),
        ConfigurationError,
        r"layout must be one of \('NCHW', 'NHWC'\), got 'CHWN'",
    ),
    (
        "no-samples",
        lambda t, p, x, y, h: ingest(x[:0], y[:0], t, overwrite=True),
        DataError,
        r"hold no samples \(shape \(0, 1, 8, 8\)\); pass at least one",
    ),
    (
        "label-count",
        lambda t, p, x, y, h: ingest(x, y[:-1], t, overwrite=True),
        ShapeError,
        r"one label per image \(300\), got shape \(299,\)",
    ),
    (
        "column-labels",
        lambda t, p, x, y, h: ingest(x, y[:, None], t, overwrite=True),
        ShapeError,
        r"got shape \(300, 1\); flatten it with labels.ravel\(\)",
    ),
    (
        "float-labels",
        lambda t, p, x, y, h: ingest(x, y.astype(float), t, overwrite=True),
        DataError,
        r"labels must be integer class indices, got dtype float64; encode them",
    ),
    (
        "negative-label-with-classes",
        lambda t, p, x, y, h: ingest(x, np.where(y == 3, -1, y), t, classes=list("abcdefghij"), overwrite=True),
        DataError,
        r"label -1 is negative; .* numpy.unique",
    ),
    (
        "label-beyond-classes",
        lambda t, p, x, y, h: ingest(x, y, t, classes=["a", "b", "c"], overwrite=True),
        DataError,
        r"label 9 is out of range for the 3 classes \['a', 'b', 'c'\]; pass classes .* 0\.\.9",
    ),
    (
        "lazy-label-beyond-classes",
        lambda t, p, x, y, h: ingest(
            *_lazy_labels_out_of_range(x, y), t, classes=[str(k) for k in range(10)], chunk_size=50, overwrite=True
        ),
        DataError,
        r"label 12 is out of range for the 10 classes",
    ),
    (
        "duplicate-classes",
        lambda t, p, x, y, h: ingest(x, y, t, classes=["a", "b", "a"], overwrite=True),
        ConfigurationError,
        r"classes contains duplicates \['a'\]; give every class a distinct name",
    ),
    (
        "zero-chunk",
        lambda t, p, x, y, h: ingest(x, y, t, chunk_size=0, overwrite=True),
        ConfigurationError,
        r"chunk_size must be an integer >= 1, got 0",
    ),
    (
        "shard-not-multiple",
        lambda t, p, x, y, h: ingest(x, y, t, chunk_size=100, shard_size=150, overwrite=True),
        ConfigurationError,
        r"shard_size 150 is not a multiple of chunk_size 100; use e\.g\. shard_size=200",
    ),
    (
        "test-size-all",
        lambda t, p, x, y, h: ingest(x, y, t, test_size=1.0, overwrite=True),
        ConfigurationError,
        r"test_size=1\.0 leaves no training samples out of 300 .* below 300",
    ),
    (
        "exists-no-overwrite",
        lambda t, p, x, y, h: ingest(x, y, t),
        DatasetExistsError,
        r"already exists; pass overwrite=True to replace it",
    ),
    (
        "storage-options-on-path",
        lambda t, p, x, y, h: ingest(x, y, t, storage_options={"anon": True}, overwrite=True),
        ConfigurationError,
        r"storage_options \{'anon': True\} only apply to fsspec URLs",
    ),
    (
        "read-only-store",
        lambda t, p, x, y, h: ingest(x, y, LocalStore(t, read_only=True), overwrite=True),
        ConfigurationError,
        r"cannot write a dataset into the read-only store .*read_only=False",
    ),
    (
        "idx-bad-magic",
        lambda t, p, x, y, h: ingest_idx(h["idx"](p / "img", x[:, 0]), _bad_magic(p / "lab"), t, overwrite=True),
        SourceError,
        r"'.*lab' is not an IDX file \(magic bytes 504b0304.*00000803",
    ),
    (
        "idx-truncated",
        lambda t, p, x, y, h: ingest_idx(
            _truncate(h["idx"](p / "img", x[:, 0]), 100), h["idx"](p / "lab", y), t, overwrite=True
        ),
        SourceError,
        r"holds 19100 bytes of values but its header promises 19200 .* truncated, fetch it again",
    ),
    (
        "idx-count-mismatch",
        lambda t, p, x, y, h: ingest_idx(h["idx"](p / "img", x[:, 0]), h["idx"](p / "lab", y[:-1]), t, overwrite=True),
        SourceError,
        r"holds 300 images but '.*lab' holds 299 labels; pass the labels file",
    ),
    (
        "unknown-packaged-dataset",
        lambda t, p, x, y, h: ingest_builtin("cifar", t, overwrite=True),
        ConfigurationError,
        r"unknown dataset 'cifar'; choose one of \['digits', 'mnist-sample'\]",
    ),
    (
        "idx-missing",
        lambda t, p, x, y, h: ingest_idx(p / "nope", p / "nope2", t, overwrite=True),
        SourceError,
        r"IDX file '.*nope' does not exist; check the path",
    ),
    (
        "npz-unknown-keys",
        lambda t, p, x, y, h: ingest_npz(_npz(p, a=x, b=y), t, overwrite=True),
        SourceError,
        r"holds arrays \['a', 'b'\], none of the known pairs .* images_key= and labels_key=",
    ),
    (
        "npz-not-an-archive",
        lambda t, p, x, y, h: ingest_npz(_text_file(p / "x.npz"), t, overwrite=True),
        SourceError,
        r"cannot read NPZ file '.*x\.npz' .* numpy\.savez",
    ),
    (
        "folder-no-classes",
        lambda t, p, x, y, h: ingest_folder(_text_file(p / "flat" / "a.png").parent, t, overwrite=True),
        SourceError,
        r"has no sub-folders; put each class's images in its own sub-folder",
    ),
    (
        "folder-undecodable",
        lambda t, p, x, y, h: ingest_folder(
            _undecodable_folder(p, x, y, h["png"]), t, overwrite=True, progress=False, chunk_size=16
        ),
        SourceError,
        r"cannot decode image '.*00007\.png' .*; remove or replace the file",
    ),
    (
        "folder-mixed-sizes",
        lambda t, p, x, y, h: ingest_folder(
            _mixed_size_folder(p, x, y, h["png"]), t, overwrite=True, progress=False, shuffle=False
        ),
        ShapeError,
        r"image '.*99/00000\.png' is 5×5 \(H×W\) but the first image is 8×8; pass size=\(H, W\)",
    ),
]


def _bad_magic(path):
    path.write_bytes(b"PK\x03\x04" + bytes(20))
    return path


def _truncate(path, count):
    path.write_bytes(path.read_bytes()[:-count])
    return path


def _npz(tmp_path, **arrays):
    np.savez(tmp_path / "arrays.npz", **arrays)
    return tmp_path / "arrays.npz"


def _text_file(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("hello")
    return path


@pytest.fixture
def existing(tmp_path, small):
    """A valid dataset at ``tmp_path/target.zarr`` and its contents."""
    images, labels = small
    ingest(images[:40], labels[:40], tmp_path / "target.zarr", chunk_size=16)
    return tmp_path / "target.zarr", images[:40], labels[:40]


@pytest.mark.parametrize("case", INGEST_CASES, ids=[case[0] for case in INGEST_CASES])
def test_bad_ingest_input_is_rejected_and_the_existing_dataset_survives(
    case, tmp_path, small, existing, write_idx, write_png_folder
):
    _, call, error, pattern = case
    target, old_images, old_labels = existing
    images, labels = small
    with pytest.raises(error, match=pattern) as info:
        call(target, tmp_path, images, labels, {"idx": write_idx, "png": write_png_folder})
    assert isinstance(info.value, BptDaskError)
    survivor = open_dataset(target)
    stored_images, stored_labels = survivor.read(0, survivor.num_chunks)
    np.testing.assert_array_equal(stored_images, old_images)
    np.testing.assert_array_equal(stored_labels, old_labels)
    assert not list(tmp_path.glob(".target.zarr.*")), "a failed ingest left temporary data behind"


def test_overwrite_refuses_to_delete_a_folder_that_is_not_zarr(tmp_path, small):
    precious = tmp_path / "thesis"
    _text_file(precious / "chapter1.tex")
    with pytest.raises(DatasetExistsError, match=r"thesis' holds \['chapter1.tex'\] besides dataset arrays"):
        ingest(*small, precious, overwrite=True)
    assert (precious / "chapter1.tex").read_text() == "hello"


def test_overwrite_refuses_a_store_holding_other_data(small):
    store = zarr.storage.MemoryStore()
    store._store_dict["notes.txt"] = zarr.core.buffer.default_buffer_prototype().buffer.from_bytes(b"keep me")
    with pytest.raises(DatasetExistsError, match=r"holds data that is not a Zarr group; refusing to replace it"):
        ingest(*small, store, overwrite=True)
    assert "notes.txt" in store._store_dict


# ----------------------------------------------------------------------------- open side
def _rewrite(path, edit):
    group = zarr.open_group(path, mode="a")
    edit(group)


def _replace_array(group, name, data, chunks):
    del group[name]
    group.create_array(name, data=data, chunks=chunks)


def _set_meta(group, **changes):
    meta = dict(group.attrs["bptdask"])
    meta.update(changes)
    group.attrs["bptdask"] = meta


def _replace_with_array(path, images):
    zarr.create_array(path, data=images, overwrite=True)


def _flip_byte(path, key):
    chunk = path / key
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))


# id, damage(path, images, labels), error type, message pattern
OPEN_CASES = [
    (
        "missing",
        lambda p, x, y: p.with_name("elsewhere.zarr"),
        DatasetNotFoundError,
        r"'.*elsewhere\.zarr' does not exist; check the path or create the dataset",
    ),
    (
        "plain-zarr-group",
        lambda p, x, y: _rewrite(p, lambda g: g.attrs.__delitem__("bptdask")),
        DatasetFormatError,
        r"is a Zarr group but not a bptdask dataset \(it has no 'bptdask' attribute\)",
    ),
    (
        "single-array",
        lambda p, x, y: _replace_with_array(p, x),
        DatasetFormatError,
        r"is a single Zarr array, not a bptdask dataset group",
    ),
    (
        "missing-labels",
        lambda p, x, y: _rewrite(p, lambda g: g.__delitem__("labels")),
        DatasetFormatError,
        r"has no 'labels' array \(it holds \['images', 'split'\]\); re-ingest it",
    ),
    (
        "float-images",
        lambda p, x, y: _rewrite(p, lambda g: _replace_array(g, "images", x.astype("float32"), (16, 1, 8, 8))),
        DatasetFormatError,
        r"'images' has dtype float32, the format needs uint8",
    ),
    (
        "short-labels",
        lambda p, x, y: _rewrite(p, lambda g: _replace_array(g, "labels", y[:-1], (16,))),
        DatasetFormatError,
        r"'labels' has shape \(39,\) but 'images' holds 40 samples",
    ),
    (
        "chunk-mismatch",
        lambda p, x, y: _rewrite(p, lambda g: _replace_array(g, "labels", y, (8,))),
        DatasetFormatError,
        r"chunked differently along samples \(chunk/shard: images 16/16, labels 8/8",
    ),
    (
        "chunked-along-height",
        lambda p, x, y: _rewrite(p, lambda g: _replace_array(g, "images", x, (16, 1, 4, 8))),
        DatasetFormatError,
        r"'images' is chunked \(16, 1, 4, 8\), but the format chunks along samples only",
    ),
    (
        "label-beyond-classes",
        lambda p, x, y: _rewrite(p, lambda g: _set_meta(g, classes=["zero", "one"])),
        DatasetFormatError,
        r"label \d of sample \d+ is outside \[0, 1\] for its 2 classes; re-ingest with classes",
    ),
    (
        "bad-mean",
        lambda p, x, y: _rewrite(p, lambda g: _set_meta(g, mean=[0.1, 0.2, 0.3])),
        DatasetFormatError,
        r"has mean \[0\.1, 0\.2, 0\.3\]; it needs 1 finite numbers",
    ),
    (
        "incomplete",
        lambda p, x, y: _rewrite(p, lambda g: _set_meta(g, complete=False)),
        IncompleteDatasetError,
        r"is incomplete: its ingest was interrupted or is still running; re-run",
    ),
    (
        "newer-format",
        lambda p, x, y: _rewrite(p, lambda g: _set_meta(g, format_version=99)),
        DatasetVersionError,
        r"written in dataset format 99, newer than format 1 .* upgrade bptdask",
    ),
    (
        "missing-chunk",
        lambda p, x, y: (p / "images" / "c" / "1" / "0" / "0" / "0").unlink(),
        CorruptChunkError,
        r"1 of 3 chunks of 'images' are missing from the store .* re-ingest",
    ),
    (
        "damaged-labels-chunk",
        lambda p, x, y: _flip_byte(p, "labels/c/2"),
        CorruptChunkError,
        r"chunk 2 of 'labels' \(samples 32\.\.39\) is damaged \(Stored and computed checksum",
    ),
]


@pytest.mark.parametrize("case", OPEN_CASES, ids=[case[0] for case in OPEN_CASES])
def test_open_rejects_a_broken_store(case, existing):
    _, damage, error, pattern = case
    path, images, labels = existing
    target = damage(path, images, labels) or path
    with pytest.raises(error, match=pattern):
        open_dataset(target)


def test_a_damaged_images_chunk_is_named_on_read_and_by_verify(existing):
    path, images, _labels = existing
    dataset = open_dataset(path)
    _flip_byte(path, "images/c/1/0/0/0")
    np.testing.assert_array_equal(dataset.read(0)[0], images[:16])
    pattern = r"chunk 1 of 'images' \(samples 16\.\.31\) is damaged .*; re-ingest the dataset with overwrite=True"
    with pytest.raises(CorruptChunkError, match=pattern):
        dataset.read(0, 3)
    with pytest.raises(CorruptChunkError, match=pattern):
        open_dataset(path, verify=True)


def test_read_rejects_a_chunk_range_outside_the_dataset(existing):
    dataset = open_dataset(existing[0])
    with pytest.raises(ConfigurationError, match=re.escape("chunk range [2, 4) is not within the 3 chunks [0, 3)")):
        dataset.read(2, 4)
    with pytest.raises(ConfigurationError, match=r"subset must be one of \['all', 'test', 'train'\], got 'val'"):
        dataset.read(0, subset="val")
