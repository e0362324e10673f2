"""A fit's training data on the cluster: chunks the workers reach through Dask or read from a store.

The unit is one chunk of samples (IDPA allocates chunks). Each chunk that lives in
the cluster's memory is a Dask future published under ``bptdask-chunk-{token}-{i}``
(:meth:`ChunkSource.name`), so any worker can find it by name and fetch it from the
worker holding it. Three ways a fit's data gets there, none through a disk:

- :func:`scatter_chunks`: NumPy arrays, scattered chunk by chunk over the workers;
- :func:`persist_chunks`: dask arrays, computed chunk by chunk where their data is;
- :func:`dataset_chunks`: a bptdask dataset (Zarr) the workers can open. When its training
  split fits in a fraction of the workers' memory, the first worker to read a chunk
  from the store publishes it for the others (*shared*); otherwise every worker reads
  the store itself, keeping what it read in its cache.

Workers read chunks with a :class:`~bptdask.cluster.reader.ChunkReader`.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field

import dask
import dask.array as da
import numpy as np
from distributed import Client, Future

from bptdask.data import Dataset
from bptdask.data.dataset import DatasetRef
from bptdask.validation import check_number

#: Share of the workers' memory a dataset's training split may take to be shared in memory.
SHARED_MEMORY_FRACTION = 0.25


@dataclass(frozen=True)
class ChunkSource:
    """How workers reach a fit's chunks: plain and picklable, it travels with every training task.

    ``dataset`` refers to the dataset chunks are read from (None: every chunk is
    published Dask data), opened by the worker that reads it; ``shared`` says whether a
    chunk read from the store is published for the other workers.
    """

    token: str
    n_chunks: int
    dataset: DatasetRef | None = None
    shared: bool = True

    def name(self, chunk: int) -> str:
        """The Dask key, and published name, of chunk ``chunk``."""
        return f"bptdask-chunk-{self.token}-{chunk}"


@dataclass
class TrainingChunks:
    """A fit's training data as the cluster sees it (client side).

    ``chunk_sizes`` are the samples of each chunk, ``mean``/``std`` the per-channel
    normalisation, ``description`` what a message names, ``futures`` the chunks this
    client put on the cluster (kept alive until :meth:`release`).
    """

    source: ChunkSource
    chunk_sizes: list[int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str
    futures: dict[str, Future] = field(default_factory=dict)
    _arrays: tuple[np.ndarray, np.ndarray] | None = None

    def repair(self, client: Client) -> int:
        """Scatter again the chunks whose worker was lost (NumPy input only); how many."""
        if self._arrays is None:
            return 0
        lost = [name for name, future in self.futures.items() if future.status in ("lost", "cancelled", "error")]
        for name in lost:
            index = int(name.rsplit("-", 1)[1])
            start = sum(self.chunk_sizes[:index])
            stop = start + self.chunk_sizes[index]
            images, labels = self._arrays
            scattered = client.scatter({name: (images[start:stop], labels[start:stop])}, hash=False)
            client.publish_dataset(**scattered, override=True)
            self.futures.update(scattered)
        return len(lost)

    def release(self, client: Client) -> None:
        """Forget every chunk of the fit on the cluster (the published names and the futures)."""
        prefix = self.source.name("")
        for name in client.list_datasets():
            if isinstance(name, str) and name.startswith(prefix):
                client.unpublish_dataset(name)
        self.futures.clear()
        self._arrays = None


def _boundaries(n_samples: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk_size, n_samples)) for start in range(0, n_samples, chunk_size)]


def scatter_chunks(
    client: Client, images: np.ndarray, labels: np.ndarray, *, chunk_size: int, mean, std
) -> TrainingChunks:
    """Put NumPy ``images`` ``(N, C, H, W)`` and int64 ``labels`` ``(N,)`` on the workers, chunk by chunk.

    The chunks are spread over the workers; this process keeps the arrays so that a
    chunk whose worker dies can be scattered again (:meth:`TrainingChunks.repair`).
    """
    bounds = _boundaries(len(images), chunk_size)
    source = ChunkSource(uuid.uuid4().hex[:10], len(bounds))
    data = {source.name(i): (images[a:b], labels[a:b]) for i, (a, b) in enumerate(bounds)}
    futures = client.scatter(data, hash=False)
    client.publish_dataset(**futures)
    return TrainingChunks(
        source,
        [b - a for a, b in bounds],
        _floats(mean),
        _floats(std),
        f"{len(images)} images scattered in {len(bounds)} chunks",
        futures,
        (images, labels),
    )


def persist_chunks(client: Client, images: da.Array, labels, *, chunk_size: int, mean, std) -> TrainingChunks:
    """Compute dask ``images`` ``(N, C, H, W)`` and int64 ``labels`` ``(N,)`` into chunks on the workers.

    Each chunk is computed where its inputs are and stays there; a chunk lost with its
    worker is computed again by Dask.
    """
    images = images.rechunk({0: chunk_size, 1: -1, 2: -1, 3: -1})
    if any(math.isnan(size) for size in images.chunks[0]):
        images = images.compute_chunk_sizes()
    labels = da.asarray(labels).rechunk((images.chunks[0],))
    source = ChunkSource(uuid.uuid4().hex[:10], len(images.chunks[0]))
    pairs = [
        dask.delayed(_pair)(x, y, dask_key_name=source.name(i))
        for i, (x, y) in enumerate(zip(images.to_delayed().ravel(), labels.to_delayed().ravel(), strict=True))
    ]
    futures = dict(zip([source.name(i) for i in range(len(pairs))], client.compute(pairs), strict=True))
    client.publish_dataset(**futures)
    sizes = [int(size) for size in images.chunks[0]]
    return TrainingChunks(
        source,
        sizes,
        _floats(mean),
        _floats(std),
        f"{sum(sizes)} images of a dask array in {len(sizes)} chunks",
        futures,
    )


def dataset_chunks(
    client: Client, dataset: Dataset, *, memory_fraction: float = SHARED_MEMORY_FRACTION
) -> TrainingChunks:
    """The training split of ``dataset``, read by the workers from its store.

    Shared in the workers' memory when it takes at most ``memory_fraction`` of their
    memory limits together, else streamed (each worker caches what it read).
    """
    check_number("memory_fraction", memory_fraction, at_least=0, at_most=1)
    sizes = [int(n) for n in dataset.chunk_sizes("train")]
    nbytes = sum(sizes) * math.prod(dataset.sample_shape)
    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info(n_workers=-1)["workers"].values()]
    shared = bool(limits) and all(limits) and nbytes <= memory_fraction * sum(limits)
    source = ChunkSource(uuid.uuid4().hex[:10], len(sizes), dataset.ref(), shared)
    return TrainingChunks(source, sizes, _floats(dataset.mean), _floats(dataset.std), str(dataset.location))


def _pair(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return images, labels


def _floats(values) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(values))
