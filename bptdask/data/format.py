"""The bptdask dataset format: names, codecs, attributes, and the checks a store must pass.

A dataset is a Zarr v3 group holding three arrays chunked along the sample axis only,
all with the same chunking:

- ``images``: uint8 ``(N, C, H, W)``;
- ``labels``: int64 ``(N,)``, values in ``[0, len(classes))``;
- ``split``: uint8 ``(N,)``, 0 for a training sample and 1 for a test sample;

and one attribute, ``"bptdask"``, a dict with ``format_version``, ``complete``,
``classes``, per-channel ``mean``/``std`` (of the training samples, pixel values scaled
to 0..1, a constant channel gets std 1), ``source``, ``split`` (``seed``,
``num_test``) and ``ingest_id``, a random token that tells one ingest's dataset from
another's at the same path (absent in datasets written before it). Every chunk is
stored (``write_empty_chunks``) with a CRC32C checksum, so a missing or damaged chunk is
detected instead of read back as zeros.
"""

from __future__ import annotations

import collections
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec

from bptdask.errors import (
    ConfigurationError,
    CorruptChunkError,
    DatasetFormatError,
    DatasetVersionError,
    IncompleteDatasetError,
)

#: The format this bptdask writes; it reads this one and older ones.
FORMAT_VERSION = 1
#: Name of the group attribute holding the dataset's metadata.
ATTRS_KEY = "bptdask"
IMAGES = "images"
LABELS = "labels"
SPLIT = "split"
#: Samples per chunk when the caller does not choose.
DEFAULT_CHUNK_SIZE = 1024
#: Values of the ``split`` array.
TRAIN, TEST = 0, 1
SUBSETS = {"all": None, "train": TRAIN, "test": TEST}

#: Largest decoded chunk (bytes) a reader accepts; a store claiming more is refused before decoding.
MAX_CHUNK_BYTES = 2**31
#: Largest number of chunks in one shard (its index is read whole).
MAX_CHUNKS_PER_SHARD = 2**20
#: Bytes per sample that opening a dataset loads: its label (int64) and split value (uint8).
LOADED_BYTES_PER_SAMPLE = 9

ARRAY_DTYPES = {IMAGES: np.dtype(np.uint8), LABELS: np.dtype(np.int64), SPLIT: np.dtype(np.uint8)}


def array_options() -> dict[str, Any]:
    """Keyword arguments for ``zarr.Group.create_array`` shared by the three arrays."""
    return {
        "compressors": [ZstdCodec(level=1), Crc32cCodec()],
        "fill_value": 0,
        "config": {"write_empty_chunks": True},
    }


@dataclass(frozen=True)
class DatasetAttrs:
    """The ``"bptdask"`` attribute of a complete dataset.

    ``mean`` and ``std`` are per channel, shape ``(C,)``, of the training samples'
    pixel values scaled to 0..1.
    """

    classes: tuple[int | str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    split_seed: int | None
    num_test: int
    ingest_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The attribute as stored, marked complete and with the current format version."""
        return {
            "format_version": FORMAT_VERSION,
            "complete": True,
            "classes": list(self.classes),
            "mean": list(self.mean),
            "std": list(self.std),
            "source": self.source,
            "split": {"seed": self.split_seed, "num_test": self.num_test},
            "ingest_id": self.ingest_id,
        }


def pending_attrs(source: str, ingest_id: str) -> dict[str, Any]:
    """The attribute an ingest writes first: the store is marked incomplete until it ends."""
    return {ATTRS_KEY: {"format_version": FORMAT_VERSION, "complete": False, "source": source, "ingest_id": ingest_id}}


def check_classes(classes: Sequence[Any]) -> tuple[int | str, ...]:
    """``classes`` as a tuple of distinct class labels: integers if all are, else non-empty names.

    Integer labels stay integers (``np.int64(3)`` becomes ``3``); anything else is
    converted with ``str``.
    """
    if isinstance(classes, (str, bytes)):
        raise ConfigurationError(f"classes must be a sequence of names, got the string {classes!r}; pass a list")
    values = tuple(classes)
    integers = all(isinstance(c, numbers.Integral) and not isinstance(c, (bool, np.bool_)) for c in values)
    names = tuple(int(c) for c in values) if integers else tuple(str(c) for c in values)
    if not names:
        raise ConfigurationError("classes is empty; pass one name per label value 0..K-1")
    duplicates = sorted(name for name, count in collections.Counter(names).items() if count > 1)
    if duplicates:
        raise ConfigurationError(f"classes contains duplicates {duplicates}; give every class a distinct name")
    if "" in names:
        raise ConfigurationError(f"classes contains an empty name at index {names.index('')}; name every class")
    return names


def read_attrs(attributes: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The ``"bptdask"`` attribute of ``where``, checked for format version and completeness.

    Raises
    ------
    DatasetFormatError
        When the group has no such attribute (not a bptdask dataset).
    DatasetVersionError
        When a newer bptdask wrote it.
    IncompleteDatasetError
        When its ingest never finished.
    """
    meta = attributes.get(ATTRS_KEY)
    if not isinstance(meta, Mapping):
        raise DatasetFormatError(
            f"{where} is a Zarr group but not a bptdask dataset (it has no {ATTRS_KEY!r} attribute); "
            "create one with bptdask.ingest(...) or `bptdask ingest`"
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DatasetFormatError(
            f"{where} has format_version {version!r}, not a positive integer; re-ingest it with bptdask.ingest"
        )
    if version > FORMAT_VERSION:
        raise DatasetVersionError(
            f"{where} was written in dataset format {version}, newer than format {FORMAT_VERSION} that this "
            "bptdask reads; upgrade bptdask (pip install -U bptdask)"
        )
    if meta.get("complete") is not True:
        raise IncompleteDatasetError(
            f"{where} is incomplete: its ingest was interrupted or is still running; "
            "re-run the ingest with overwrite=True"
        )
    return dict(meta)


def parse_attrs(meta: Mapping[str, Any], *, channels: int, num_samples: int, where: str) -> DatasetAttrs:
    """:class:`DatasetAttrs` from a complete ``"bptdask"`` attribute, checked against the arrays."""
    try:
        classes = check_classes(meta.get("classes") or ())
    except ConfigurationError as exc:
        raise DatasetFormatError(f"{where} has unusable classes {meta.get('classes')!r}: {exc}") from None
    stats = {}
    for name in ("mean", "std"):
        value = meta.get(name)
        ok = (
            isinstance(value, list)
            and len(value) == channels
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        )
        if not ok or (name == "std" and min(value) <= 0):
            raise DatasetFormatError(
                f"{where} has {name} {value!r}; it needs {channels} finite numbers (one per channel"
                f"{', all > 0' if name == 'std' else ''}); re-ingest the dataset"
            )
        stats[name] = tuple(float(v) for v in value)
    split = meta.get("split")
    if not isinstance(split, Mapping) or not isinstance(split.get("num_test"), int):
        raise DatasetFormatError(f"{where} has split {split!r}, not {{'seed': ..., 'num_test': int}}; re-ingest it")
    if not 0 <= split["num_test"] < num_samples:
        raise DatasetFormatError(f"{where} has num_test {split['num_test']} for {num_samples} samples; re-ingest it")
    return DatasetAttrs(
        classes=classes,
        mean=stats["mean"],
        std=stats["std"],
        source=str(meta.get("source", "")),
        split_seed=split.get("seed"),
        num_test=split["num_test"],
        ingest_id=meta.get("ingest_id") if isinstance(meta.get("ingest_id"), str) else None,
    )


def check_arrays(group: zarr.Group, where: str) -> dict[str, zarr.Array]:
    """The ``images``, ``labels`` and ``split`` arrays of ``group``, checked for the format.

    Checks presence, dtypes, ranks, equal lengths, chunking along the sample axis only
    with one chunk size (and one shard size) for all three, the codecs, sizes that
    fit in memory (:func:`check_sizes`), and that every chunk exists.

    Raises
    ------
    DatasetFormatError
        On a missing array or a wrong dtype, shape, chunking, codec or size.
    CorruptChunkError
        When stored chunks are missing.
    """
    arrays = {}
    members = dict(group.arrays())
    for name, dtype in ARRAY_DTYPES.items():
        if name not in members:
            raise DatasetFormatError(
                f"{where} has no {name!r} array (it holds {sorted(members) or 'no arrays'}); "
                "re-ingest it with bptdask.ingest"
            )
        array = members[name]
        if array.dtype != dtype:
            raise DatasetFormatError(
                f"{where}: {name!r} has dtype {array.dtype}, the format needs {dtype}; re-ingest it with bptdask.ingest"
            )
        if min(array.chunks, default=1) < 1:
            raise DatasetFormatError(
                f"{where}: {name!r} has chunks {array.chunks}, with an empty axis; re-ingest it with bptdask.ingest"
            )
        arrays[name] = array
    images = arrays[IMAGES]
    if images.ndim != 4 or min(images.shape[1:]) < 1:
        raise DatasetFormatError(
            f"{where}: 'images' has shape {images.shape}, the format needs (N, C, H, W); re-ingest it"
        )
    num_samples = images.shape[0]
    for name in (LABELS, SPLIT):
        if arrays[name].shape != (num_samples,):
            raise DatasetFormatError(
                f"{where}: {name!r} has shape {arrays[name].shape} but 'images' holds {num_samples} samples; "
                f"they need one {name[:-1] if name == LABELS else 'split value'} per sample; re-ingest it"
            )
    if tuple(images.chunks[1:]) != tuple(images.shape[1:]):
        raise DatasetFormatError(
            f"{where}: 'images' is chunked {images.chunks}, but the format chunks along samples only, "
            f"like ({images.chunks[0]}, {', '.join(map(str, images.shape[1:]))}); re-ingest it"
        )
    grids = {name: (array.chunks[0], (array.shards or array.chunks)[0]) for name, array in arrays.items()}
    if len(set(grids.values())) > 1:
        described = ", ".join(f"{name} {chunk}/{shard}" for name, (chunk, shard) in grids.items())
        raise DatasetFormatError(
            f"{where}: the arrays are chunked differently along samples (chunk/shard: {described}); "
            "they must share one chunking; re-ingest it"
        )
    for name, array in arrays.items():
        check_codecs(array, name, where)
    check_sizes(arrays, where)
    for name, array in arrays.items():
        # A partial last shard counts as a whole one, so a complete array may report more.
        missing = array.nchunks - array.nchunks_initialized
        if missing > 0:
            raise CorruptChunkError(
                f"{where}: {missing} of {array.nchunks} chunks of {name!r} are missing from the store "
                "(deleted or never written); re-ingest the dataset with overwrite=True"
            )
    return arrays


def check_codecs(array: zarr.Array, name: str, where: str) -> None:
    """Raise DatasetFormatError unless ``array`` is stored with the format's codecs (bytes, zstd, CRC32C).

    Readers check each chunk's zstd header before decoding it (:mod:`bptdask.data.frames`),
    which only bounds memory when zstd is the one decompressor.
    """
    codecs = (type(array.serializer), *(type(codec) for codec in (*array.filters, *array.compressors)))
    if codecs != (BytesCodec, ZstdCodec, Crc32cCodec):
        raise DatasetFormatError(
            f"{where}: {name!r} is stored with codecs {[c.__name__ for c in codecs]}, the format uses "
            "BytesCodec, ZstdCodec and Crc32cCodec; re-ingest it with bptdask.ingest"
        )


def check_sizes(arrays: Mapping[str, zarr.Array], where: str) -> None:
    """Refuse arrays whose chunks, shard index or loaded labels would need unreasonable memory.

    Called before anything is decoded, so a store whose metadata claims huge shapes is
    refused without allocating them.

    Raises
    ------
    DatasetFormatError
        When a decoded chunk would exceed :data:`MAX_CHUNK_BYTES`, a shard would hold
        more than :data:`MAX_CHUNKS_PER_SHARD` chunks, or the labels and split loaded at
        opening would exceed half of this machine's memory.
    """
    for name, array in arrays.items():
        chunk_bytes = math.prod(array.chunks) * array.dtype.itemsize
        if chunk_bytes > MAX_CHUNK_BYTES:
            raise DatasetFormatError(
                f"{where}: {name!r} has chunks {array.chunks}, {chunk_bytes / 2**30:.1f} GiB each once decoded, "
                f"more than the {MAX_CHUNK_BYTES / 2**30:.0f} GiB bptdask decodes at once; refusing to read it; "
                "re-ingest it with a smaller chunk_size"
            )
        per_shard = math.prod(array.shards or array.chunks) // math.prod(array.chunks)
        if per_shard > MAX_CHUNKS_PER_SHARD:
            raise DatasetFormatError(
                f"{where}: {name!r} has shards {array.shards} of {per_shard} chunks, more than the "
                f"{MAX_CHUNKS_PER_SHARD} bptdask reads the index of; re-ingest it with a smaller shard_size"
            )
    loaded = arrays[LABELS].shape[0] * LOADED_BYTES_PER_SAMPLE
    if loaded > machine_memory_bytes() // 2:
        raise DatasetFormatError(
            f"{where} claims {arrays[LABELS].shape[0]} samples, whose labels and split alone take "
            f"{loaded / 2**30:.1f} GiB, more than half of this machine's memory; refusing to load them; "
            "check the store, or split the dataset into smaller ones"
        )


def machine_memory_bytes() -> int:
    """This machine's physical memory in bytes (the bound on what a reader or an ingest loads at once)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_label_values(labels: np.ndarray, num_classes: int, where: str, *, offset: int = 0) -> None:
    """Raise DatasetFormatError unless every label lies in ``[0, num_classes)``.

    ``offset`` is the sample index of ``labels[0]``, used in the message.
    """
    if labels.size == 0:
        return
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        first = int(np.argmax(bad))
        raise DatasetFormatError(
            f"{where}: label {int(labels[first])} of sample {offset + first} is outside [0, {num_classes - 1}] "
            f"for its {num_classes} classes; re-ingest with classes covering every label"
        )
