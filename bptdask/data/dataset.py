"""Opening a dataset and reading its chunks into NumPy or CuPy.

:func:`open_dataset` checks the whole format before returning, and loads the labels and
the train/test split (9 bytes a sample); images stay in the store until a chunk range
is read. A :class:`Dataset` pickles as its location and the ``"bptdask"`` attribute it
saw, so a worker process re-opens the store itself, reads its chunks straight from it,
and refuses a dataset that was re-ingested meanwhile. Task graphs carry a
:class:`DatasetRef` instead, which opens the dataset only where a task runs, once per
process.

Every read checks, after decoding, that the dataset is still the one opened (its
attribute, with the ingest's random ``ingest_id``, is unchanged) and that every chunk
it read is stored, so a re-ingested path or a deleted chunk is an error instead of new
images paired with old labels, or zeros (Zarr's fill value).
"""

from __future__ import annotations

import itertools
import json
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize

from bptdask._typing import Array, Shape
from bptdask.backend import to_device
from bptdask.data.drafts import recover_replaced
from bptdask.data.format import (
    ATTRS_KEY,
    IMAGES,
    LABELS,
    SPLIT,
    SUBSETS,
    TEST,
    TRAIN,
    DatasetAttrs,
    check_arrays,
    check_label_values,
    parse_attrs,
    read_attrs,
)
from bptdask.data.location import Location, PathOrStore, open_group, partial_paths, resolve, store_errors
from bptdask.data.stored import missing_objects, oversized_chunks
from bptdask.errors import (
    ConfigurationError,
    CorruptChunkError,
    DatasetChangedError,
    DatasetError,
    DatasetFormatError,
    DatasetNotFoundError,
    IncompleteDatasetError,
)

#: What zarr raises when a stored chunk fails its checksum or cannot be decompressed.
_DECODE_ERRORS = (ValueError, RuntimeError)


def open_dataset(path_or_store: PathOrStore, *, storage_options: dict | None = None, verify: bool = False) -> Dataset:
    """Open a bptdask dataset, checking its format.

    Parameters
    ----------
    path_or_store : str, path, URL or zarr.storage store
        A local directory, a ``file://`` or other fsspec URL (``"s3://bucket/data.zarr"``,
        needs the matching fsspec backend), or any Zarr store object.
    storage_options : dict, optional
        Passed to fsspec for a URL.
    verify : bool
        Also decode every images chunk (reads the whole dataset) so that a damaged chunk
        is reported now rather than when it is read.

    Returns
    -------
    Dataset

    Raises
    ------
    DatasetNotFoundError
        Nothing is stored there.
    IncompleteDatasetError
        An ingest into it was interrupted or is still running.
    DatasetVersionError
        A newer bptdask wrote it.
    DatasetFormatError
        It is not a bptdask dataset, or an array, dtype, shape, chunking, attribute or
        label breaks the format.
    CorruptChunkError
        A chunk is missing or damaged.
    """
    dataset = Dataset(resolve(path_or_store, storage_options=storage_options))
    if verify:
        dataset.verify()
    return dataset


def _open_group(location: Location) -> zarr.Group:
    """The dataset's Zarr group; a local path gets its own, more precise errors."""
    if location.path is not None:
        _check_local_path(location)
    try:
        return open_group(location)
    except DatasetNotFoundError:
        if location.path is None:
            raise
    if (location.path / "zarr.json").is_file():
        raise DatasetFormatError(
            f"{location} has a damaged zarr.json (not a Zarr group document); re-ingest it with overwrite=True"
        )
    raise DatasetNotFoundError(
        f"{location} is a directory but not a Zarr group; check the path or create the dataset with "
        "bptdask.ingest(...) or `bptdask ingest`"
    )


def _check_local_path(location: Location) -> None:
    """Recover a dataset a crashed ingest left aside; say why a missing directory is missing."""
    create = "check the path or create the dataset with bptdask.ingest(...) or `bptdask ingest`"
    if not location.path.exists():
        recover_replaced(location)
    if not location.path.exists():
        partial = partial_paths(location.path)
        if partial:
            raise IncompleteDatasetError(
                f"{location} does not exist yet: an ingest into it has not finished (its partial data is in "
                f"{str(partial[-1])!r}); it was interrupted or is still running; re-run the ingest, "
                "which removes the partial data when it succeeds"
            )
        raise DatasetNotFoundError(f"{location} does not exist; {create}")
    if not location.path.is_dir():
        raise DatasetNotFoundError(f"{location} is a file, not a dataset directory; {create}")


class Dataset:
    """A bptdask dataset in a Zarr store; create it with :func:`open_dataset`.

    Chunks along the sample axis are the unit of reading (and of allocation to
    workers): chunk ``i`` holds samples ``chunk_boundaries[i] = (start, stop)``.

    Parameters
    ----------
    location : Location
        Where the dataset is stored; its format is checked here.
    expected : mapping, optional
        The ``"bptdask"`` attribute the dataset must still have (what a pickled dataset
        saw when it was opened).

    Raises
    ------
    DatasetChangedError
        When ``expected`` is given and the stored dataset is another one.
    """

    def __init__(self, location: Location, *, expected: Mapping[str, Any] | None = None):
        self.location = location
        where = str(location)
        group = _open_group(location)
        with store_errors(location):
            meta = read_attrs(group.attrs.asdict(), where)
            if expected is not None and meta != expected:
                raise DatasetChangedError(
                    f"{where} is not the dataset that was opened before it was sent here: it was re-ingested "
                    f"or replaced since, or this machine sees another dataset at that path (ingest_id "
                    f"{expected.get('ingest_id')!r}, now {meta.get('ingest_id')!r}); open it again with "
                    "open_dataset and start over, on storage every machine shares"
                )
            arrays = check_arrays(group, where)
        self._meta = meta
        self._images = arrays[IMAGES]
        self.attrs: DatasetAttrs = parse_attrs(
            meta, channels=self._images.shape[1], num_samples=self._images.shape[0], where=where
        )
        self.chunk_size = int(self._images.chunks[0])
        edges = [*list(range(0, len(self), self.chunk_size)), len(self)]
        self.chunk_boundaries: tuple[tuple[int, int], ...] = tuple(itertools.pairwise(edges))
        self._labels = self._read_all(arrays[LABELS], LABELS)
        self._labels.flags.writeable = False
        check_label_values(self._labels, self.num_classes, where)
        self._split = self._read_all(arrays[SPLIT], SPLIT)
        unknown = ~np.isin(self._split, (TRAIN, TEST))
        if unknown.any():
            raise DatasetFormatError(
                f"{where}: 'split' holds {int(self._split[np.argmax(unknown)])} at sample {int(np.argmax(unknown))}; "
                f"it may only hold {TRAIN} (train) and {TEST} (test); re-ingest the dataset"
            )
        num_test = int(np.count_nonzero(self._split == TEST))
        if num_test != self.attrs.num_test:
            raise DatasetFormatError(
                f"{where}: 'split' marks {num_test} test samples but the attributes record "
                f"{self.attrs.num_test}; re-ingest the dataset"
            )

    def __reduce__(self):
        return _reopen, (self.location, self._meta)

    def ref(self) -> DatasetRef:
        """A small picklable reference that opens this dataset (and no other) where it is used."""
        return DatasetRef(self.location, self._meta)

    def __repr__(self) -> str:
        return (
            f"<bptdask Dataset {self.location.name}: {len(self)} samples {self.sample_shape}, "
            f"{self.num_classes} classes, {self.num_chunks} chunks of {self.chunk_size}>"
        )

    def __len__(self) -> int:
        return int(self._images.shape[0])

    # ----------------------------------------------------------------- description
    @property
    def shape(self) -> Shape:
        """``(N, C, H, W)``."""
        return tuple(int(v) for v in self._images.shape)

    @property
    def sample_shape(self) -> Shape:
        """``(C, H, W)``."""
        return self.shape[1:]

    @property
    def num_chunks(self) -> int:
        """Chunks along the sample axis (the last may hold fewer than ``chunk_size``)."""
        return len(self.chunk_boundaries)

    @property
    def classes(self) -> tuple[int | str, ...]:
        """Class labels (integers or names, as ingested); stored label ``k`` means ``classes[k]``."""
        return self.attrs.classes

    @property
    def num_classes(self) -> int:
        """``len(classes)``; labels lie in ``[0, num_classes)``."""
        return len(self.attrs.classes)

    @property
    def mean(self) -> np.ndarray:
        """Per-channel mean ``(C,)`` of the training images, pixel values scaled to 0..1."""
        return np.array(self.attrs.mean)

    @property
    def std(self) -> np.ndarray:
        """Per-channel standard deviation ``(C,)`` of the training images (0..1 scale; 1 if constant)."""
        return np.array(self.attrs.std)

    @property
    def source(self) -> str:
        """Where the data came from, as recorded at ingest."""
        return self.attrs.source

    @property
    def labels(self) -> np.ndarray:
        """All labels, int64 ``(N,)``, read-only."""
        return self._labels

    # ----------------------------------------------------------------- subsets
    def _subset_code(self, subset: str) -> int | None:
        if subset not in SUBSETS:
            raise ConfigurationError(f"subset must be one of {sorted(SUBSETS)}, got {subset!r}")
        return SUBSETS[subset]

    def indices(self, subset: str = "all") -> np.ndarray:
        """Sample indices (int64, ascending) of ``subset``: ``"all"``, ``"train"`` or ``"test"``."""
        code = self._subset_code(subset)
        if code is None:
            return np.arange(len(self), dtype=np.int64)
        return np.flatnonzero(self._split == code).astype(np.int64)

    def chunk_sizes(self, subset: str = "all") -> np.ndarray:
        """Number of ``subset`` samples in each chunk, int64 ``(num_chunks,)``."""
        code = self._subset_code(subset)
        starts = [start for start, _ in self.chunk_boundaries]
        selected = np.ones(len(self), dtype=np.int64) if code is None else (self._split == code).astype(np.int64)
        return np.add.reduceat(selected, starts).astype(np.int64)

    # ----------------------------------------------------------------- reading
    def read(
        self, start_chunk: int, stop_chunk: int | None = None, *, subset: str = "all", xp: ModuleType = np
    ) -> tuple[Array, Array]:
        """The samples of chunks ``start_chunk`` up to ``stop_chunk`` (exclusive), in order.

        One contiguous read; ``stop_chunk=None`` reads the single chunk ``start_chunk``.

        Parameters
        ----------
        start_chunk, stop_chunk : int
        subset : {"all", "train", "test"}
            Keep only the samples of this part of the stored split.
        xp : module
            ``numpy`` or ``cupy``; the arrays are moved to that device.

        Returns
        -------
        images : uint8 array of ``xp``, shape (n, C, H, W)
        labels : int64 array of ``xp``, shape (n,)

        Raises
        ------
        CorruptChunkError
            When a chunk in the range fails its checksum or decompression, or is no
            longer stored.
        DatasetChangedError
            When the dataset was re-ingested, replaced or removed since it was opened.
        """
        if stop_chunk is None:
            stop_chunk = start_chunk + 1
        if not 0 <= start_chunk < stop_chunk <= self.num_chunks:
            raise ConfigurationError(
                f"chunk range [{start_chunk}, {stop_chunk}) is not within the {self.num_chunks} chunks "
                f"[0, {self.num_chunks}) of {self.location}; pass 0 <= start_chunk < stop_chunk <= {self.num_chunks}"
            )
        code = self._subset_code(subset)
        start, stop = self.chunk_boundaries[start_chunk][0], self.chunk_boundaries[stop_chunk - 1][1]
        images = self._read_range(self._images, IMAGES, start, stop)
        self.check_unchanged()
        self._check_stored(self._images, IMAGES, start, stop)
        labels = self._labels[start:stop]
        if code is not None:
            keep = self._split[start:stop] == code
            images, labels = images[keep], labels[keep]
        return to_device(images, xp), to_device(np.array(labels), xp)

    def images(self, subset: str = "all") -> da.Array:
        """The images of ``subset`` as a lazy dask array ``(n, C, H, W)`` uint8, one block per chunk.

        Each block reads its chunk from the store in whichever process computes it, so
        predictions over a dataset stay on the cluster and can be written with ``to_zarr``.
        """
        sizes = self.chunk_sizes(subset)
        chunk_ids = [index for index, size in enumerate(sizes) if size]
        name = f"bptdask-dataset-{tokenize(str(self.location), len(self), subset)}"
        ref = self.ref()
        graph = {(name, block, 0, 0, 0): (_read_images, ref, index, subset) for block, index in enumerate(chunk_ids)}
        sample = tuple((size,) for size in self.sample_shape)
        return da.Array(graph, name, ((*(int(sizes[i]) for i in chunk_ids),), *sample), dtype=np.uint8)

    def verify(self) -> None:
        """Decode every images chunk, raising CorruptChunkError at the first damaged one."""
        for start, stop in self.chunk_boundaries:
            self._read_range(self._images, IMAGES, start, stop)

    def check_unchanged(self) -> None:
        """Raise DatasetChangedError unless the store still holds the dataset that was opened.

        The labels and split loaded at opening belong to that dataset; images read
        from another one would be paired with the wrong labels.
        """
        try:
            with store_errors(self.location):
                now = open_group(self.location).attrs.asdict().get(ATTRS_KEY)
        except DatasetError as exc:
            raise DatasetChangedError(
                f"{self.location} cannot be read any more since it was opened ({exc}); open it again with open_dataset"
            ) from exc
        if now != self._meta:
            ingest_id = now.get("ingest_id") if isinstance(now, Mapping) else None
            raise DatasetChangedError(
                f"{self.location} changed after it was opened: it was re-ingested or altered (ingest_id "
                f"{self._meta.get('ingest_id')!r}, now {ingest_id!r}), so its images no longer match the labels "
                "loaded then; open it again with open_dataset"
            )

    def _check_declared_sizes(self, array: zarr.Array, name: str, start: int, stop: int) -> None:
        """Raise CorruptChunkError if a chunk holding samples ``start..stop-1`` would decode to another size."""
        with store_errors(self.location):
            wrong = oversized_chunks(array, start, stop)
        if wrong:
            index, declared = next(iter(wrong.items()))
            size = math.prod(array.chunks) * array.dtype.itemsize
            claim = "no decoded size" if declared is None else f"{declared} decoded bytes"
            raise CorruptChunkError(
                f"{self.location}: chunk {index} of {name!r} declares {claim}, but a chunk holds {size}; "
                "refusing to decode it; re-ingest the dataset with overwrite=True"
            )

    def _check_stored(self, array: zarr.Array, name: str, start: int, stop: int) -> None:
        """Raise CorruptChunkError if a stored object holding samples ``start..stop-1`` is missing.

        Zarr reads a chunk that is not stored as its fill value; a dataset stores every chunk.
        """
        with store_errors(self.location):
            missing = missing_objects(array, start, stop)
        if missing:
            key, (first, stop) = next(iter(missing.items()))
            samples = f"samples {first}..{min(stop, len(self)) - 1}"
            raise CorruptChunkError(
                f"{self.location}: chunk {first // self.chunk_size} of {name!r} ({samples}, stored as {key!r}) is "
                "missing from the store (deleted after the dataset was opened?); re-ingest the dataset with "
                "overwrite=True"
            )

    def _read_all(self, array: zarr.Array, name: str) -> np.ndarray:
        return self._read_range(array, name, 0, len(self))

    def _read_range(self, array: zarr.Array, name: str, start: int, stop: int) -> np.ndarray:
        self._check_declared_sizes(array, name, start, stop)
        try:
            return array[start:stop]
        except OSError as exc:
            raise DatasetError(
                f"{self.location}: samples {start}..{stop - 1} of {name!r} cannot be read ({type(exc).__name__}: "
                f"{exc}); check that the store is reachable and readable"
            ) from exc
        except _DECODE_ERRORS:
            for index, (chunk_start, chunk_stop) in enumerate(self.chunk_boundaries):
                if chunk_stop <= start or chunk_start >= stop:
                    continue
                try:
                    array[chunk_start:chunk_stop]
                except _DECODE_ERRORS as chunk_exc:
                    raise CorruptChunkError(
                        f"{self.location}: chunk {index} of {name!r} (samples {chunk_start}..{chunk_stop - 1}) "
                        f"is damaged ({chunk_exc}); re-ingest the dataset with overwrite=True"
                    ) from chunk_exc
            raise


def _reopen(location: Location, expected: Mapping[str, Any]) -> Dataset:
    """Open the dataset at ``location`` again, in another process, if it is still the one ``expected``."""
    return Dataset(location, expected=expected)


@dataclass(frozen=True, eq=False)
class DatasetRef:
    """Where a dataset is and the ``"bptdask"`` attribute it had when opened; opened on demand.

    Unpickling it opens nothing (a scheduler that unpickles a task graph never touches
    the store); :meth:`open` opens the dataset in the process that reads it, once per
    process, and refuses one that was re-ingested since.
    """

    location: Location
    identity: Mapping[str, Any]

    def open(self) -> Dataset:
        """The dataset, opened in this process (cached); DatasetChangedError if it is another one now."""
        key = (self.location.name, json.dumps(self.identity, sort_keys=True, default=str))
        if key in _OPENED:
            _OPENED.move_to_end(key)
            return _OPENED[key]
        dataset = Dataset(self.location, expected=self.identity)
        _OPENED[key] = dataset
        while len(_OPENED) > _OPENED_LIMIT:
            _OPENED.popitem(last=False)
        return dataset


#: Datasets this process opened through a :class:`DatasetRef`, most recently used last.
_OPENED: OrderedDict[tuple[str, str], Dataset] = OrderedDict()
_OPENED_LIMIT = 8


def _read_images(ref: DatasetRef, chunk: int, subset: str) -> np.ndarray:
    return ref.open().read(chunk, subset=subset)[0]
