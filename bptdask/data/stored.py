"""What a store holds for a range of samples, checked without decoding a chunk.

Two things Zarr would not tell a reader in time:

- **a missing object** (a chunk, or a shard of chunks) reads as the fill value, zeros:
  :func:`missing_objects` asks the store whether each one exists;
- **a declared size**: a dataset's chunks are zstd frames (then a CRC32C checksum, which a
  crafted file can carry too), and the decoder allocates the decoded size the frame
  header declares, so a few kilobytes of crafted zeros can claim hundreds of gigabytes.
  :func:`oversized_chunks` reads the first :data:`HEADER_BYTES` of each chunk (through the
  shard index for sharded arrays) and compares the declared size with what one chunk
  holds, before anything is allocated.

Both work along the sample axis, the only one a dataset is chunked along.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import zarr
from zarr.abc.store import ByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

#: The four bytes every zstd frame starts with.
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: The longest zstd frame header: magic, descriptor, window, 4-byte dictionary id, 8-byte size.
HEADER_BYTES = 18
#: Shard index entry ``(offset, nbytes)`` of a chunk that is not stored.
_EMPTY = 2**64 - 1


def missing_objects(array: zarr.Array, start: int, stop: int) -> dict[str, tuple[int, int]]:
    """The stored objects (chunks, or shards) holding samples ``start..stop-1`` that do not exist.

    Returns ``{key: (first sample, stop sample)}`` of each missing object, in order.
    """
    unit = (array.shards or array.chunks)[0]
    indices = range(start // unit, (stop - 1) // unit + 1)
    keys = [_key(array, index) for index in indices]
    found = sync(_gather(*((array.store_path / key).exists() for key in keys)))
    return {
        key: (index * unit, (index + 1) * unit)
        for index, key, present in zip(indices, keys, found, strict=True)
        if not present
    }


def declared_size(header: bytes) -> int | None:
    """The decoded size in bytes a zstd frame ``header`` declares; None if it is no zstd frame or declares none."""
    if len(header) < 6 or header[:4] != ZSTD_MAGIC:
        return None
    descriptor = header[4]
    single_segment = (descriptor >> 5) & 1
    position = 5 + (1 - single_segment) + (0, 1, 2, 4)[descriptor & 3]
    width = (single_segment, 2, 4, 8)[descriptor >> 6]
    if width == 0 or len(header) < position + width:
        return None
    size = int.from_bytes(header[position : position + width], "little")
    return size + 256 if width == 2 else size


def oversized_chunks(array: zarr.Array, start: int, stop: int) -> dict[int, int | None]:
    """Chunks holding samples ``start..stop-1`` whose frame does not declare one chunk's bytes.

    Returns ``{chunk index: declared size or None}``; chunks not stored are left to
    :func:`missing_objects`.
    """
    unit = array.chunks[0]
    expected = math.prod(array.chunks) * array.dtype.itemsize
    headers = sync(_headers(array, start // unit, (stop - 1) // unit))
    return {
        index: declared_size(header)
        for index, header in headers.items()
        if header is not None and declared_size(header) != expected
    }


def _key(array: zarr.Array, index: int) -> str:
    """The store key of object ``index`` along the sample axis."""
    return array.metadata.encode_chunk_key((index, *(0,) * (array.ndim - 1)))


async def _gather(*awaitables):
    return await asyncio.gather(*awaitables)


async def _headers(array: zarr.Array, first: int, last: int) -> dict[int, bytes | None]:
    """The first :data:`HEADER_BYTES` of each stored chunk ``first..last`` (None when not stored)."""
    if array.shards is None:
        chunks = range(first, last + 1)
        found = await _gather(*(_read(array, _key(array, i), RangeByteRequest(0, HEADER_BYTES)) for i in chunks))
        return dict(zip(chunks, found, strict=True))
    per_shard = array.shards[0] // array.chunks[0]
    headers: dict[int, bytes | None] = {}
    for shard in range(first // per_shard, last // per_shard + 1):
        key = _key(array, shard)
        index = await _read(array, key, SuffixByteRequest(16 * per_shard + 4))
        if index is None or len(index) < 16 * per_shard:
            continue
        offsets = np.frombuffer(index[: 16 * per_shard], dtype="<u8").reshape(per_shard, 2)[:, 0]
        wanted = range(max(first, shard * per_shard), min(last, (shard + 1) * per_shard - 1) + 1)
        at = {chunk: int(offsets[chunk - shard * per_shard]) for chunk in wanted}
        chunks = [chunk for chunk in wanted if at[chunk] != _EMPTY]
        found = await _gather(*(_read(array, key, RangeByteRequest(at[c], at[c] + HEADER_BYTES)) for c in chunks))
        headers.update(zip(chunks, found, strict=True))
    return headers


async def _read(array: zarr.Array, key: str, byte_range: ByteRequest) -> bytes | None:
    """Bytes ``byte_range`` of the object ``key`` under ``array`` (None when it is not stored)."""
    buffer = await (array.store_path / key).get(prototype=default_buffer_prototype(), byte_range=byte_range)
    return None if buffer is None else buffer.to_bytes()
