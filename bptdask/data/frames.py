"""What a stored chunk claims to decode to, read from its zstd frame header before decoding it.

A dataset's chunks are zstd frames (then a CRC32C checksum, which a crafted file can
carry too). A frame header declares its decoded size, and the decoder allocates that
much: a few kilobytes of crafted zeros can declare hundreds of gigabytes. Reading the
first :data:`HEADER_BYTES` of each chunk (through the shard index for sharded arrays)
and comparing the declared size with what one chunk holds refuses such a chunk before
anything is allocated.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import zarr
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

#: The four bytes every zstd frame starts with.
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: The longest zstd frame header: magic, descriptor, window, 4-byte dictionary id, 8-byte size.
HEADER_BYTES = 18
#: Shard index entry ``(offset, nbytes)`` of a chunk that is not stored.
_EMPTY = 2**64 - 1


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


def oversized_chunks(array: zarr.Array, first: int, last: int) -> dict[int, int | None]:
    """Chunks ``first..last`` (along the sample axis) whose frame does not declare one chunk's bytes.

    Returns ``{chunk index: declared size or None}``; chunks not stored are left to the
    caller's existence check.
    """
    expected = math.prod(array.chunks) * array.dtype.itemsize
    headers = sync(_headers(array, first, last))
    return {
        index: declared_size(header)
        for index, header in headers.items()
        if header is not None and declared_size(header) != expected
    }


async def _headers(array: zarr.Array, first: int, last: int) -> dict[int, bytes | None]:
    """The first :data:`HEADER_BYTES` of each stored chunk ``first..last`` (None when not stored)."""
    rest = (0,) * (array.ndim - 1)
    if array.shards is None:
        keys = [array.metadata.encode_chunk_key((index, *rest)) for index in range(first, last + 1)]
        found = await asyncio.gather(*(_read(array, key, RangeByteRequest(0, HEADER_BYTES)) for key in keys))
        return dict(zip(range(first, last + 1), found, strict=True))
    per_shard = array.shards[0] // array.chunks[0]
    headers: dict[int, bytes | None] = {}
    for shard in range(first // per_shard, last // per_shard + 1):
        key = array.metadata.encode_chunk_key((shard, *rest))
        index = await _read(array, key, SuffixByteRequest(16 * per_shard + 4))
        if index is None or len(index) < 16 * per_shard:
            continue
        entries = np.frombuffer(index[: 16 * per_shard], dtype="<u8").reshape(per_shard, 2)
        wanted = range(max(first, shard * per_shard), min(last, (shard + 1) * per_shard - 1) + 1)
        offsets = [int(entries[chunk - shard * per_shard, 0]) for chunk in wanted]
        found = await asyncio.gather(
            *(
                _read(array, key, RangeByteRequest(offset, offset + HEADER_BYTES)) if offset != _EMPTY else _none()
                for offset in offsets
            )
        )
        headers.update(zip(wanted, found, strict=True))
    return headers


async def _read(array: zarr.Array, key: str, byte_range) -> bytes | None:
    buffer = await (array.store_path / key).get(prototype=default_buffer_prototype(), byte_range=byte_range)
    return None if buffer is None else buffer.to_bytes()


async def _none() -> None:
    return None
