"""Writing a dataset: in parallel with Dask, into a draft, marked complete last.

Every write task owns whole chunks (whole shards when the arrays are sharded), so no two
tasks ever write the same stored object. The group is marked incomplete until every
chunk and the final attributes are written; then the draft (see
:mod:`bptdask.data.drafts`) is committed. Each task also returns its block's label range
and pixel histogram, from which the class names and per-channel mean/std are derived
without a second pass over the data.
"""

from __future__ import annotations

import collections
import contextlib
import math
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import zarr
from dask.callbacks import Callback
from tqdm.auto import tqdm

from bptdask.data.dataset import Dataset
from bptdask.data.drafts import check_owner, open_draft
from bptdask.data.format import (
    ATTRS_KEY,
    IMAGES,
    LABELS,
    MAX_CHUNK_BYTES,
    MAX_CHUNKS_PER_SHARD,
    SPLIT,
    TEST,
    TRAIN,
    DatasetAttrs,
    array_options,
    pending_attrs,
)
from bptdask.data.location import Location
from bptdask.data.split import draw_test_mask, num_test_samples
from bptdask.errors import BptDaskError, ConfigurationError, DataError, DatasetError
from bptdask.validation import check_integer


@dataclass(frozen=True)
class BlockStats:
    """What one write task reports about its block of samples.

    ``histogram`` is int64 ``(C, 256)``: how many pixels of the block's training samples
    have each value, per channel.
    """

    count: int
    label_min: int
    label_max: int
    histogram: np.ndarray


def combine_stats(blocks: Sequence[BlockStats]) -> BlockStats:
    """The statistics of the union of ``blocks``."""
    return BlockStats(
        count=sum(b.count for b in blocks),
        label_min=min(b.label_min for b in blocks),
        label_max=max(b.label_max for b in blocks),
        histogram=np.sum([b.histogram for b in blocks], axis=0),
    )


def channel_moments(histogram: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of pixel values scaled to 0..1, from ``(C, 256)`` counts.

    A constant channel gets std 1, so standardising with it stays finite.
    """
    values = np.arange(256, dtype=np.float64) / 255.0
    counts = histogram.astype(np.float64)
    total = counts.sum(axis=1)
    mean = counts @ values / total
    var = counts @ values**2 / total - mean**2
    std = np.sqrt(np.maximum(var, 0.0))
    std[std <= 1e-12] = 1.0
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def check_label_range(label_min: int, label_max: int, classes: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """``classes``, after checking that labels spanning ``[label_min, label_max]`` index them.

    Raises
    ------
    DataError
        When a label is negative or has no class name.
    """
    if label_min < 0:
        raise DataError(
            f"label {label_min} is negative; labels must be class indices 0..K-1 into classes; "
            "encode them first, e.g. with numpy.unique(y, return_inverse=True), or pass classes=None"
        )
    if label_max >= len(classes):
        shown = list(classes) if len(classes) <= 10 else [*classes[:10], "..."]
        raise DataError(
            f"label {label_max} is out of range for the {len(classes)} classes {shown}; "
            f"pass classes with one name for every label value 0..{label_max}"
        )
    return classes


class _WriteGate:
    """Lets a failed ingest wait for its write tasks still running in this process.

    When one task fails, Dask's local schedulers raise at once while other write tasks
    may still be running (or about to start) on their threads. :meth:`close` stops
    later tasks of that ingest from writing and waits for the running ones, so that the
    temporary data can be removed without a late write re-creating it. Tasks in other
    processes are not seen: what they write after a failure lands in a temporary
    directory that never opens as a dataset and is removed by the next successful
    ingest into the same path.
    """

    def __init__(self):
        self._running: collections.Counter[str] = collections.Counter()
        self._closed: set[str] = set()
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def enter(self, token: str) -> Iterator[bool]:
        """Yield whether the ingest ``token`` may still write; count the task while it does."""
        with self._changed:
            allowed = token not in self._closed
            if allowed:
                self._running[token] += 1
        try:
            yield allowed
        finally:
            if allowed:
                with self._changed:
                    self._running[token] -= 1
                    if not self._running[token]:
                        del self._running[token]
                    self._changed.notify_all()

    def close(self, token: str, *, timeout: float = 60.0) -> None:
        """Refuse further writes of ``token`` and wait for its running ones to end."""
        with self._changed:
            self._closed.add(token)
            self._changed.wait_for(lambda: token not in self._running, timeout=timeout)


_GATE = _WriteGate()


def write_block(
    images_array: zarr.Array,
    labels_array: zarr.Array,
    images: np.ndarray,
    labels: np.ndarray,
    is_test: np.ndarray,
    start: int,
    token: str,
    in_place: Location | None = None,
) -> BlockStats | None:
    """Write samples ``[start, start + n)``, a whole number of chunks (or shards) this task owns.

    Parameters
    ----------
    images_array, labels_array : zarr.Array
        The dataset's ``images`` ``(N, C, H, W)`` and ``labels`` ``(N,)`` arrays.
    images : uint8 array, shape (n, C, H, W)
    labels : integer array, shape (n,)
    is_test : bool array, shape (n,)
        Which samples are in the test set (excluded from the pixel histogram).
    start : int
        Index of the first sample; a multiple of the chunk (or shard) size.
    token : str
        Identifies the ingest; nothing is written (and None returned) once it failed.
    in_place : Location, optional
        The store written in place, checked to still be this ingest's before writing.

    Raises
    ------
    DatasetBusyError
        When another ingest has taken over the store written in place.
    """
    images = np.asarray(images)
    labels = np.asarray(labels).astype(np.int64, copy=False)
    stop = start + len(labels)
    with _GATE.enter(token) as allowed:
        if not allowed:
            return None
        if in_place is not None:
            check_owner(in_place, token)
        images_array[start:stop] = images
        labels_array[start:stop] = labels
    train = images[~is_test]
    histogram = np.stack([np.bincount(train[:, c].ravel(), minlength=256) for c in range(images.shape[1])])
    return BlockStats(len(labels), int(labels.min()), int(labels.max()), histogram.astype(np.int64))


class _ProgressBar(Callback):
    """A tqdm bar over written samples, fed by Dask's local schedulers."""

    def __init__(self, bar: tqdm):
        super().__init__()
        self._bar = bar

    def _posttask(self, key, result, dsk, state, worker_id):
        if isinstance(result, BlockStats):
            self._bar.update(result.count)


@contextlib.contextmanager
def _progress(total: int, *, description: str, enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    with tqdm(total=total, desc=description, unit="img", unit_scale=True) as bar, _ProgressBar(bar):
        yield
        bar.update(total - bar.n)


def _check_sizes(chunk_size: int, shard_size: int | None, sample_shape: tuple[int, ...]) -> int:
    """The write unit: samples per shard, or per chunk when the arrays are not sharded.

    Chunks and shards must stay within what readers accept (:func:`bptdask.data.format.check_sizes`),
    so that an ingest never replaces a dataset with one that cannot be opened.
    """
    chunk_size = check_integer("chunk_size", chunk_size, minimum=1)
    sample_bytes = max(math.prod(sample_shape), np.dtype(np.int64).itemsize)
    if chunk_size * sample_bytes > MAX_CHUNK_BYTES:
        raise ConfigurationError(
            f"chunk_size {chunk_size} makes chunks of {chunk_size * sample_bytes / 2**30:.1f} GiB for samples "
            f"{sample_shape}, more than the {MAX_CHUNK_BYTES / 2**30:.0f} GiB a reader decodes at once; "
            f"use chunk_size <= {MAX_CHUNK_BYTES // sample_bytes}"
        )
    if shard_size is None:
        return chunk_size
    shard_size = check_integer("shard_size", shard_size, minimum=1)
    if shard_size % chunk_size:
        raise ConfigurationError(
            f"shard_size {shard_size} is not a multiple of chunk_size {chunk_size}; "
            f"use e.g. shard_size={chunk_size * max(1, round(shard_size / chunk_size))}"
        )
    if shard_size // chunk_size > MAX_CHUNKS_PER_SHARD:
        raise ConfigurationError(
            f"shard_size {shard_size} puts {shard_size // chunk_size} chunks in a shard, more than the "
            f"{MAX_CHUNKS_PER_SHARD} a reader indexes; use shard_size <= {chunk_size * MAX_CHUNKS_PER_SHARD}"
        )
    return shard_size


def _blocks(array: np.ndarray | da.Array, unit: int) -> np.ndarray:
    """Delayed blocks of ``unit`` samples (the last may be shorter), one per write task."""
    chunks = (unit, *array.shape[1:])
    if isinstance(array, np.ndarray):
        return da.from_array(array, chunks=chunks).to_delayed().ravel()
    return array.rechunk(chunks).to_delayed().ravel()


def write_dataset(
    location: Location,
    images: np.ndarray | da.Array,
    labels: np.ndarray | da.Array,
    *,
    classes: tuple[int | str, ...],
    source: str,
    chunk_size: int,
    shard_size: int | None,
    test_size: float | int,
    seed: int,
    overwrite: bool,
    progress: bool,
) -> Dataset:
    """Write ``images``/``labels`` as a complete dataset at ``location`` and open it.

    Parameters
    ----------
    location : Location
    images : NumPy or dask array, uint8, shape (N, C, H, W)
    labels : NumPy or dask array, integer, shape (N,)
        Indices into ``classes``; any chunking; both are cut into write units (a chunk,
        or a shard).
    classes : tuple of int or str
        The class of each label value.
    source : str
        Recorded in the attributes.
    chunk_size, shard_size : int
        Samples per chunk and (optionally) per shard, a multiple of ``chunk_size``.
    test_size : float or int
        Fraction or count of test samples, drawn with ``seed``.
    overwrite : bool
        Replace an existing dataset.
    progress : bool
        Show a progress bar over written samples.

    Raises
    ------
    DatasetExistsError
        When the target holds data and ``overwrite`` is false, or holds anything but a
        bptdask dataset (never deleted).
    DatasetBusyError
        When another ingest is writing the same path.
    DatasetError
        When writing fails (a full disk, permissions); the target keeps what it held.
    DataError
        When a label is negative or has no class name (found while writing a lazy
        source; the partial dataset is discarded and an existing one kept).
    """
    unit = _check_sizes(chunk_size, shard_size, tuple(int(v) for v in images.shape[1:]))
    token = uuid.uuid4().hex
    num_samples = int(images.shape[0])
    is_test = draw_test_mask(num_samples, num_test_samples(num_samples, test_size), seed)
    draft = open_draft(location, overwrite=overwrite)
    try:
        group = draft.open_group(pending_attrs(source, token))
        sample_shape = tuple(int(v) for v in images.shape[1:])
        arrays = {}
        for name, dtype, shape in (
            (IMAGES, np.uint8, (num_samples, *sample_shape)),
            (LABELS, np.int64, (num_samples,)),
            (SPLIT, np.uint8, (num_samples,)),
        ):
            arrays[name] = group.create_array(
                name,
                shape=shape,
                dtype=dtype,
                chunks=(chunk_size, *shape[1:]),
                shards=None if shard_size is None else (shard_size, *shape[1:]),
                dimension_names=("sample", "channel", "height", "width")[: len(shape)],
                **array_options(),
            )
        arrays[SPLIT][:] = np.where(is_test, TEST, TRAIN).astype(np.uint8)
        image_blocks, label_blocks = _blocks(images, unit), _blocks(labels, unit)
        write = dask.delayed(write_block, pure=False)
        starts = range(0, num_samples, unit)
        tasks = [
            write(
                arrays[IMAGES],
                arrays[LABELS],
                block,
                block_labels,
                is_test[start : start + unit],
                start,
                token,
                draft.in_place,
            )
            for start, block, block_labels in zip(starts, image_blocks, label_blocks, strict=True)
        ]
        with _progress(num_samples, description=f"ingest {source}", enabled=progress):
            stats = combine_stats(dask.compute(*tasks))
        mean, std = channel_moments(stats.histogram)
        final = DatasetAttrs(
            classes=check_label_range(stats.label_min, stats.label_max, classes),
            mean=mean,
            std=std,
            source=source,
            split_seed=int(seed),
            num_test=int(is_test.sum()),
            ingest_id=token,
        )
        draft.commit(group, {ATTRS_KEY: final.to_json()})
    except BaseException as exc:
        _GATE.close(token)
        draft.abort()
        if isinstance(exc, OSError) and not isinstance(exc, BptDaskError):
            raise DatasetError(
                f"writing {location} failed ({type(exc).__name__}: {exc}); free some space or fix the "
                "permissions, or choose another path"
            ) from exc
        raise
    return Dataset(location)
