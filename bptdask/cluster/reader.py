"""Reading a part's chunks on a worker: from memory, from a peer through Dask, or from the store.

A :class:`ChunkReader` looks for each chunk, in this order:

1. the worker's **memory**: its chunk cache, or Dask data held by this worker;
2. a **peer**: a chunk published under its name (:meth:`ChunkSource.name`) on another
   worker, fetched through Dask;
3. the **store** (a dataset's Zarr store), in runs of consecutive chunks; a chunk read
   there is published for the others when the source is shared.

What it fetched or read goes into the worker's :class:`ChunkCache`, a least-recently-used
cache within a byte budget that lives as long as the worker process (a restarted
training task finds it again). The reader tells the coordinator which chunks it holds,
so IDPA can hand it those first, and counts where each part's chunks came from.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from concurrent.futures import CancelledError

import numpy as np
from distributed import wait

from bptdask.cluster.chunks import ChunkSource
from bptdask.errors import ClusterTrainingError
from bptdask.report import ChunkSources

#: Share of a worker's memory limit its chunk cache may take.
CACHE_FRACTION = 0.2
#: Budget when the worker has no memory limit.
DEFAULT_CACHE_BYTES = 2 * 2**30
#: Seconds to wait for a peer's chunk before reading it from the store.
FETCH_TIMEOUT = 30.0

Chunk = tuple[np.ndarray, np.ndarray]


class ChunkCache:
    """Chunks ``(images, labels)`` by index, least recently used first out, within ``budget`` bytes."""

    def __init__(self, budget: int):
        self.budget = int(budget)
        self.nbytes = 0
        self._chunks: OrderedDict[int, Chunk] = OrderedDict()

    def __contains__(self, chunk: int) -> bool:
        return chunk in self._chunks

    def __iter__(self):
        return iter(self._chunks)

    def get(self, chunk: int) -> Chunk:
        self._chunks.move_to_end(chunk)
        return self._chunks[chunk]

    def put(self, chunk: int, value: Chunk) -> None:
        size = sum(array.nbytes for array in value)
        if chunk in self._chunks or size > self.budget:
            return
        self._chunks[chunk] = value
        self.nbytes += size
        while self.nbytes > self.budget:
            _, dropped = self._chunks.popitem(last=False)
            self.nbytes -= sum(array.nbytes for array in dropped)


#: Per worker process: source token -> its chunk cache.
_CACHES: dict[str, ChunkCache] = {}


def forget_cache(token: str) -> None:
    """Drop this process's cache of the fit with chunk source ``token`` (run on every worker at its end)."""
    _CACHES.pop(token, None)


class ChunkReader:
    """Reads chunks of ``source`` on ``worker`` (a ``distributed.Worker``) with ``client``, its worker client."""

    def __init__(self, source: ChunkSource, worker, client, *, cache_bytes: int | None = None):
        self.source, self.worker, self.client = source, worker, client
        if cache_bytes is None:
            limit = getattr(worker.memory_manager, "memory_limit", None)
            cache_bytes = int(CACHE_FRACTION * limit) if limit else DEFAULT_CACHE_BYTES
        self.cache = _CACHES.setdefault(source.token, ChunkCache(cache_bytes))
        self._reported: frozenset[int] | None = None

    def _local(self, chunk: int) -> Chunk | None:
        if chunk in self.cache:
            return self.cache.get(chunk)
        return self.worker.data.get(self.source.name(chunk)) if self.source.name(chunk) in self.worker.data else None

    def holdings(self) -> frozenset[int]:
        """The chunks in this worker's memory (its cache and its Dask data)."""
        names = {self.source.name(chunk): chunk for chunk in range(self.source.n_chunks)}
        held = {names[key] for key in self.worker.data if isinstance(key, str) and key in names}
        return frozenset(held | set(self.cache))

    def changed_holdings(self) -> tuple[int, ...] | None:
        """:meth:`holdings` if they changed since last asked, else None (nothing to report)."""
        held = self.holdings()
        if held == self._reported:
            return None
        self._reported = held
        return tuple(sorted(held))

    def read(self, chunks: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, ChunkSources]:
        """The training samples of ``chunks`` in order: ``(images (n, C, H, W), labels (n,), sources)``."""
        found: dict[int, Chunk] = {}
        for chunk in chunks:
            value = self._local(chunk)
            if value is not None:
                found[chunk] = value
        from_memory = len(found)
        missing = [chunk for chunk in chunks if chunk not in found]
        fetched = self._fetch(missing)
        found.update(fetched)
        stored = [chunk for chunk in missing if chunk not in fetched]
        found.update(self._read_store(stored))
        images = np.concatenate([found[chunk][0] for chunk in chunks])
        labels = np.concatenate([found[chunk][1] for chunk in chunks])
        return images, labels, ChunkSources(memory=from_memory, peer=len(fetched), storage=len(stored))

    def _fetch(self, chunks: list[int]) -> dict[int, Chunk]:
        """The chunks held on other workers, fetched through Dask (and cached here).

        Without a store to fall back on (arrays given to ``fit``), a chunk whose worker
        died is waited for while the client scatters it again, up to :data:`FETCH_TIMEOUT`.
        """
        if not chunks:
            return {}
        deadline = time.monotonic() + FETCH_TIMEOUT
        while True:
            alive = self._published(chunks)
            if self.source.dataset is not None or len(alive) == len(chunks) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        if self.source.dataset is None and len(alive) < len(chunks):
            gone = sorted(set(chunks) - set(alive))
            raise ClusterTrainingError(f"chunks {gone} of the training data are not on the cluster any more")
        try:
            if alive:
                wait(list(alive.values()), timeout=FETCH_TIMEOUT)
            values = self.client.gather(list(alive.values())) if alive else []
        except (OSError, TimeoutError, CancelledError) as exc:
            if self.source.dataset is None:
                raise ClusterTrainingError(
                    f"chunks {sorted(alive)} of the training data could not be fetched ({type(exc).__name__}: {exc})"
                ) from exc
            return {}
        fetched = dict(zip(alive, values, strict=True))
        for chunk, value in fetched.items():
            self.cache.put(chunk, value)
        return fetched

    def _published(self, chunks: list[int]) -> dict:
        """Chunk -> future, for the chunks published under their names and held by a live worker."""
        futures = self.client.get_dataset([self.source.name(chunk) for chunk in chunks], default=None)
        named = {chunk: future for chunk, future in zip(chunks, futures, strict=True) if future is not None}
        holders = self.client.who_has(list(named.values())) if named else {}
        return {chunk: future for chunk, future in named.items() if holders.get(future.key)}

    def _read_store(self, chunks: list[int]) -> dict[int, Chunk]:
        """The chunks read from the dataset's store, in runs of consecutive chunks."""
        read: dict[int, Chunk] = {}
        if not chunks:
            return read
        dataset = self.source.dataset.open()
        sizes = dataset.chunk_sizes("train")
        for _, numbered in itertools.groupby(enumerate(sorted(chunks)), key=lambda pair: pair[1] - pair[0]):
            run = [chunk for _, chunk in numbered]
            images, labels = dataset.read(run[0], run[-1] + 1, subset="train")
            edges = np.cumsum([0, *(int(sizes[chunk]) for chunk in run)])
            for chunk, start, stop in zip(run, edges[:-1], edges[1:], strict=True):
                read[chunk] = (images[start:stop], labels[start:stop])
        if self.source.shared and read:
            names = {self.source.name(chunk): value for chunk, value in read.items()}
            scattered = self.client.scatter(names, workers=[self.worker.address], hash=False)
            self.client.publish_dataset(**scattered, override=True)
        else:
            for chunk, value in read.items():
                self.cache.put(chunk, value)
        return read
