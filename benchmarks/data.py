"""Data layer: ingest images/s, chunk read MB/s per reader vs ``numpy.load``, and the
read cost of a chunk next to one LeNet-5 training step on it.

The MNIST sample is tiled to ``--samples`` images and ingested from NumPy arrays, a dask
array, an IDX file and a PNG folder. Reads go chunk by chunk through contiguous ranges,
each reader (a thread, or a process like a Dask worker) taking its own contiguous part
of the chunks; the baseline loads the same chunks' bytes saved as one ``.npy`` file per
chunk. Files are read warm (page cache) in both cases, so the comparison is
decompression + checksums + Zarr overhead vs a copy.

    python benchmarks/data.py --samples 20000 --chunk-size 1024 --readers 1 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import struct
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr

import bptdask
from bptdask import datasets
from bptdask.data import ingest, ingest_folder, ingest_idx, open_dataset
from bptdask.inner import train_step
from bptdask.models import lenet5
from bptdask.optim import SGD


def tiled_mnist(samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST sample repeated to ``samples`` images ``(samples, 1, 28, 28)``."""
    images, labels = datasets.mnist_sample()
    reps = -(-samples // len(labels))
    return np.tile(images, (reps, 1, 1, 1))[:samples], np.tile(labels, reps)[:samples]


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def write_idx(path: Path, values: np.ndarray) -> Path:
    path.write_bytes(bytes([0, 0, 8, values.ndim]) + struct.pack(f">{values.ndim}I", *values.shape) + values.tobytes())
    return path


def write_pngs(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    from PIL import Image

    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0]).save(root / str(label) / f"{index:06d}.png")
    return root


def measure_ingest(work: Path, images, labels, *, chunk_size: int, folder_images: int, repeats: int) -> dict:
    """Images/s of each ingest path (best of ``repeats``, overwriting the same target)."""
    options = {"chunk_size": chunk_size, "overwrite": True}
    idx_images, idx_labels = write_idx(work / "images.idx", images[:, 0]), write_idx(work / "labels.idx", labels)
    pngs = write_pngs(work / "pngs", images[:folder_images], labels[:folder_images])
    runs = {
        "numpy": (len(labels), lambda: ingest(images, labels, work / "ingest.zarr", **options)),
        "dask": (
            len(labels),
            lambda: ingest(
                da.from_array(images, chunks=(chunk_size, 1, 28, 28)), labels, work / "ingest.zarr", **options
            ),
        ),
        "idx": (len(labels), lambda: ingest_idx(idx_images, idx_labels, work / "ingest.zarr", **options)),
        "png folder": (folder_images, lambda: ingest_folder(pngs, work / "ingest.zarr", progress=False, **options)),
    }
    return {name: count / best_time(run, repeats) for name, (count, run) in runs.items()}


def read_parts(num_chunks: int, readers: int) -> list[range]:
    edges = np.linspace(0, num_chunks, readers + 1).round().astype(int)
    return [range(a, b) for a, b in itertools.pairwise(edges)]


class ChunkReader:
    """Reads chunk ``i`` from the dataset, or the same bytes from ``.npy`` files; pickles small."""

    def __init__(self, kind: str, path: Path, npy_dir: Path):
        self.kind, self.npy_dir = kind, npy_dir
        self.dataset = open_dataset(path) if kind == "zarr" else None

    def __call__(self, chunk: int):
        if self.kind == "zarr":
            return self.dataset.read(chunk)
        return np.load(self.npy_dir / f"{chunk}-images.npy"), np.load(self.npy_dir / f"{chunk}-labels.npy")


def timed_part(reader: ChunkReader, part: range, start_at: float) -> float:
    """Seconds to read the chunks of ``part`` in order, starting at wall time ``start_at``."""
    time.sleep(max(0.0, start_at - time.time()))
    start = time.perf_counter()
    for chunk in part:
        reader(chunk)
    return time.perf_counter() - start


def per_reader_rate(reader: ChunkReader, nbytes: list[int], pool, readers: int, repeats: int) -> float:
    """Mean MB/s over ``readers`` concurrent readers, each reading its contiguous part of the chunks."""
    parts = read_parts(len(nbytes), readers)
    best = 0.0
    for _ in range(repeats):
        start_at = time.time() + 0.3
        futures = [pool.submit(timed_part, reader, part, start_at) for part in parts]
        rates = [sum(nbytes[c] for c in part) / f.result() / 1e6 for part, f in zip(parts, futures, strict=True)]
        best = max(best, statistics.mean(rates))
    return best


def measure_reads(work: Path, path: Path, *, readers: list[int], repeats: int) -> dict:
    """Per-reader MB/s of Zarr chunk reads and of ``numpy.load``, for threads and for processes."""
    dataset = open_dataset(path)
    npy = work / "npy"
    npy.mkdir()
    nbytes = []
    for chunk in range(dataset.num_chunks):
        images, labels = dataset.read(chunk)
        np.save(npy / f"{chunk}-images.npy", images)
        np.save(npy / f"{chunk}-labels.npy", labels)
        nbytes.append(images.nbytes + labels.nbytes)
    results = {}
    for mode, make_pool in (
        ("threads", ThreadPoolExecutor),
        ("processes", lambda n: ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))),
    ):
        for count in readers:
            with make_pool(count) as pool:
                list(pool.map(time.sleep, [0.5] * count))
                zarr_rate = per_reader_rate(ChunkReader("zarr", path, npy), nbytes, pool, count, repeats)
                numpy_rate = per_reader_rate(ChunkReader("npy", path, npy), nbytes, pool, count, repeats)
            results[f"{mode} x{count}"] = {
                "zarr_mb_s": zarr_rate,
                "numpy_load_mb_s": numpy_rate,
                "ratio": zarr_rate / numpy_rate,
            }
    return results


def measure_lenet5(path: Path, repeats: int) -> dict:
    """Seconds to read (and standardise) one chunk vs one LeNet-5 SGD step on it."""
    dataset = open_dataset(path)
    mean = dataset.mean.astype(np.float32).reshape(1, -1, 1, 1)
    std = dataset.std.astype(np.float32).reshape(1, -1, 1, 1)
    read_s = best_time(lambda: dataset.read(0), repeats * 5)
    images, labels = dataset.read(0)
    standardise_s = best_time(lambda: (images.astype(np.float32) / 255 - mean) / std, repeats * 5)
    x = (images.astype(np.float32) / 255 - mean) / std
    model = lenet5()
    optimizer = SGD(lr=0.01, momentum=0.9)
    params = model.init_params(0)
    state = optimizer.init_state(params)
    rng = np.random.default_rng(0)
    train_step(model, params, state, x, labels, optimizer=optimizer, rng=rng)
    step_s = best_time(lambda: train_step(model, params, state, x, labels, optimizer=optimizer, rng=rng), repeats)
    return {
        "batch": len(labels),
        "read_s": read_s,
        "standardise_s": standardise_s,
        "train_step_s": step_s,
        "read_over_step": read_s / step_s,
        "read_and_standardise_over_step": (read_s + standardise_s) / step_s,
    }


def table(results: dict) -> str:
    lines = [f"{'measure':<44}{'value':>14}  unit", "-" * 66]
    for name, rate in results["ingest_images_per_s"].items():
        lines.append(f"{'ingest ' + name:<44}{rate:>14,.0f}  images/s")
    for readers, row in results["read"].items():
        lines.append(f"{f'read zarr, {readers}, per reader':<44}{row['zarr_mb_s']:>14,.0f}  MB/s")
        lines.append(f"{f'numpy.load, {readers}, per reader':<44}{row['numpy_load_mb_s']:>14,.0f}  MB/s")
        lines.append(f"{f'zarr / numpy.load, {readers}':<44}{row['ratio']:>14.2f}  x")
    lenet = results["lenet5"]
    lines.append(f"{'read one chunk (' + str(lenet['batch']) + ' images)':<44}{lenet['read_s'] * 1e3:>14.2f}  ms")
    lines.append(f"{'standardise it to float32':<44}{lenet['standardise_s'] * 1e3:>14.2f}  ms")
    lines.append(f"{'LeNet-5 train_step on it':<44}{lenet['train_step_s'] * 1e3:>14.1f}  ms")
    lines.append(f"{'read / train_step':<44}{lenet['read_over_step']:>14.4f}  ratio")
    lines.append(f"{'(read + standardise) / train_step':<44}{lenet['read_and_standardise_over_step']:>14.4f}  ratio")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000, help="images ingested and read (%(default)s)")
    parser.add_argument("--chunk-size", type=int, default=1024, help="samples per chunk (%(default)s)")
    parser.add_argument("--folder-images", type=int, default=2_000, help="PNG files for the folder ingest")
    parser.add_argument(
        "--readers", type=int, nargs="+", default=[1, 2], help="concurrent readers (threads, then processes)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs (%(default)s)")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "data.json")
    args = parser.parse_args(argv)

    images, labels = tiled_mnist(args.samples)
    work = Path(tempfile.mkdtemp(prefix="bptdask-data-bench-"))
    try:
        with dask.config.set(scheduler="threads"):
            ingest_rates = measure_ingest(
                work, images, labels, chunk_size=args.chunk_size, folder_images=args.folder_images, repeats=args.repeats
            )
            ingest(images, labels, work / "data.zarr", chunk_size=args.chunk_size)
        results = {
            "config": vars(args) | {"output": str(args.output)},
            "environment": {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "bptdask": bptdask.__version__,
                "numpy": np.__version__,
                "zarr": zarr.__version__,
                "dask": dask.__version__,
            },
            "dataset_mb": (images.nbytes + labels.nbytes) / 1e6,
            "stored_mb": sum(f.stat().st_size for f in (work / "data.zarr").rglob("*") if f.is_file()) / 1e6,
            "ingest_images_per_s": ingest_rates,
            "read": measure_reads(work, work / "data.zarr", readers=args.readers, repeats=args.repeats),
            "lenet5": measure_lenet5(work / "data.zarr", args.repeats),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{args.samples} MNIST images ({results['dataset_mb']:.1f} MB raw, {results['stored_mb']:.1f} MB stored), "
        f"chunks of {args.chunk_size}, {os.cpu_count()} CPUs"
    )
    print(table(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
