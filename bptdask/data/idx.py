"""Ingest from IDX files, the format MNIST is distributed in (plain or gzip-compressed).

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in C order. A plain
file is read lazily, each Dask task reading its own rows from disk (only the path
travels); a gzip file is decompressed once, in memory.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from bptdask.data.arrays import ingest
from bptdask.data.dataset import Dataset
from bptdask.data.format import machine_memory_bytes
from bptdask.data.location import PathOrStore
from bptdask.errors import SourceError

#: IDX type codes and the big-endian dtypes they stand for.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
#: Rows per lazy read task for a plain file.
READ_BLOCK = 4096
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class IdxHeader:
    """What an IDX header says: value dtype, shape, where the values start, compression."""

    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int
    compressed: bool

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _open(path: Path, compressed: bool):
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def read_idx_header(path: str | os.PathLike) -> IdxHeader:
    """Parse and check the header of the IDX file at ``path``.

    Raises
    ------
    SourceError
        When the file is missing, not IDX, or shorter than its header promises.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"IDX file {str(path)!r} does not exist; check the path")
    with open(path, "rb") as f:
        compressed = f.read(2) == _GZIP_MAGIC
    try:
        with _open(path, compressed) as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[:2] != b"\x00\x00" or magic[2] not in IDX_DTYPES or magic[3] == 0:
                raise SourceError(
                    f"{str(path)!r} is not an IDX file (magic bytes {magic.hex()}, expected 0000 + type code "
                    f"+ dimensions, e.g. 00000803 for MNIST images); pass the MNIST-format images/labels files"
                )
            ndim = magic[3]
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise SourceError(
                    f"IDX file {str(path)!r} ends inside its header; the file is truncated, fetch it again"
                )
            header = IdxHeader(
                dtype=np.dtype(IDX_DTYPES[magic[2]]),
                shape=struct.unpack(f">{ndim}I", dims),
                offset=4 + 4 * ndim,
                compressed=compressed,
            )
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"cannot read IDX file {str(path)!r} ({exc}); the file is damaged, fetch it again") from exc
    if compressed and header.nbytes > machine_memory_bytes() // 2:
        raise SourceError(
            f"IDX file {str(path)!r} declares shape {header.shape} ({header.nbytes / 2**30:.1f} GiB), more than half "
            "of this machine's memory, which a compressed file is decompressed into; the file is damaged or crafted, "
            "or decompress it first (gunzip) so that it is read lazily"
        )
    if not compressed:
        available = path.stat().st_size - header.offset
        if available < header.nbytes:
            raise SourceError(
                f"IDX file {str(path)!r} holds {available} bytes of values but its header promises "
                f"{header.nbytes} (shape {header.shape}); the file is truncated, fetch it again"
            )
    return header


def _read_rows(path: Path, header: IdxHeader, start: int, stop: int) -> np.ndarray:
    row = math.prod(header.shape[1:])
    values = np.fromfile(
        path, dtype=header.dtype, count=(stop - start) * row, offset=header.offset + start * row * header.dtype.itemsize
    )
    return values.reshape(stop - start, *header.shape[1:]).astype(header.dtype.newbyteorder("="), copy=False)


def _read_compressed(path: Path, header: IdxHeader) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            f.seek(header.offset)
            data = f.read(header.nbytes)
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"cannot decompress IDX file {str(path)!r} ({exc}); fetch it again") from exc
    if len(data) < header.nbytes:
        raise SourceError(
            f"IDX file {str(path)!r} holds {len(data)} bytes of values but its header promises {header.nbytes} "
            f"(shape {header.shape}); the file is truncated, fetch it again"
        )
    return np.frombuffer(data, dtype=header.dtype).reshape(header.shape).astype(header.dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> da.Array:
    """The values of an IDX file as a dask array (lazy for a plain file).

    Returns
    -------
    dask array, shape and dtype as in the header (native byte order)
    """
    path = Path(path)
    header = read_idx_header(path)
    if header.compressed:
        values = _read_compressed(path, header)
        return da.from_array(values, chunks=values.shape)
    read = dask.delayed(_read_rows, pure=True)
    blocks = [
        da.from_delayed(
            read(path, header, start, min(start + READ_BLOCK, header.shape[0])),
            shape=(min(start + READ_BLOCK, header.shape[0]) - start, *header.shape[1:]),
            dtype=header.dtype.newbyteorder("="),
        )
        for start in range(0, header.shape[0], READ_BLOCK)
    ]
    return da.concatenate(blocks) if blocks else da.zeros(header.shape, dtype=header.dtype.newbyteorder("="))


def ingest_idx(
    images_path: str | os.PathLike, labels_path: str | os.PathLike, path_or_store: PathOrStore, **options: Any
) -> Dataset:
    """Ingest an IDX images file and its IDX labels file (MNIST's format, gzip or not).

    The labels are read first and checked before anything is written; the images are
    read by the write tasks.

    Parameters
    ----------
    images_path : path
        uint8 images ``(N, H, W)`` (one channel) or ``(N, C, H, W)``, e.g.
        ``train-images-idx3-ubyte.gz``.
    labels_path : path
        Integer labels ``(N,)``, e.g. ``train-labels-idx1-ubyte.gz``.
    path_or_store : str, path, URL or zarr.storage store
    **options
        Keyword options of :func:`bptdask.ingest` (``classes``, ``chunk_size``,
        ``test_size``, ``seed``, ``overwrite``, ...).

    Returns
    -------
    Dataset

    Raises
    ------
    SourceError
        When a file is missing, not IDX, truncated or damaged, or the two files hold
        different numbers of samples.
    """
    images = read_idx(images_path)
    labels = read_idx(labels_path).compute()
    if images.shape[0] != labels.shape[0]:
        raise SourceError(
            f"{str(images_path)!r} holds {images.shape[0]} images but {str(labels_path)!r} holds "
            f"{labels.shape[0]} labels; pass the labels file that belongs to these images"
        )
    options.setdefault("source", f"idx:{Path(images_path).name}")
    return ingest(images, labels, path_or_store, **options)
