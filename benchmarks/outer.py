"""Outer-layer benchmark: IDPA vs an even split vs the ideal, AGWU vs SGWU, actor merges/s.

Three parts, each on a real ``LocalCluster`` on loopback, LeNet-5 on the MNIST sample
(4,000 training images in chunks of 128, 1,000 test images):

1. **Makespan.** Three workers made 1×, 2× and 4× slower by the *simulated* slowdown
   plugin (:func:`bptdask.cluster.simulate_slowdown`) train AGWU epochs under IDPA
   (``balance="power"``) and under an even split without stealing (``balance="even"``),
   alternating. Each epoch's wall time is compared with the ideal ``ΣN / ΣP``, ``P``
   being the workers' measured powers. The first epoch (powers still unknown) is left out.
2. **Time to accuracy.** The same workers train AGWU and SGWU, scoring the global
   weights on the test images after every epoch: seconds to 96% and 97%, the run's idle
   fraction ``1 - Σbusy / (m·wall)``, the final accuracy, and where the workers found
   their chunks (memory / a peer / the store), in the first epoch and in the later ones.
3. **Merges per second.** 2, 4, 8 and 16 workers on threads of one process
   (``processes=False``) push LeNet-5-sized updates to one weight-server actor as fast as
   they can; optionally the same over TCP with worker processes.

    python benchmarks/outer.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from common import print_table, write_report
from distributed import Client, LocalCluster, get_worker

import bptdask
from bptdask import datasets
from bptdask.cluster import fit_on_cluster, simulate_slowdown, worker_addresses
from bptdask.outer.protocol import PartKey
from bptdask.outer.run_config import RunConfig
from bptdask.outer.weights import WeightServer

SLOWDOWNS = (1.0, 2.0, 4.0)


def mnist(folder: str):
    """(training dataset on disk, (X_test, y_test)) from the MNIST sample."""
    train, test = datasets.split(*datasets.mnist_sample(random_state=0), test_size=1000, train_size=4000)
    dataset = bptdask.ingest(*train, f"{folder}/mnist-train.zarr", chunk_size=128, test_size=0, overwrite=True)
    return dataset, test


def scorer(model, dataset, test):
    clf = bptdask.BPTClassifier(device="cpu")
    clf.model_, clf.classes_, clf.mean_, clf.std_ = model, np.arange(10), dataset.mean, dataset.std

    def accuracy(params):
        clf.params_ = params
        return clf.score(*test)

    return accuracy


def makespan_rows(client, dataset, epochs: int, repeats: int, chunks_per_round: int | None) -> list[dict]:
    model = bptdask.models.lenet5()
    n_epoch = int(dataset.chunk_sizes("train").sum())
    runs: dict[str, list[dict]] = {"power": [], "even": []}
    for _ in range(repeats):
        for balance in runs:
            config = RunConfig(epochs=epochs, device="cpu", balance=balance, chunks_per_round=chunks_per_round)
            _, report = fit_on_cluster(client, dataset, model, model.init_params(0), config)
            powers = [w.power for w in report.workers.values()]
            runs[balance].append(
                {
                    "epoch_seconds": statistics.median(np.diff(report.epoch_ends)),
                    "ideal_seconds": n_epoch / sum(powers),
                    "samples": {w: v.samples for w, v in report.workers.items()},
                }
            )
    rows = []
    for balance, results in runs.items():
        epoch = statistics.median(r["epoch_seconds"] for r in results)
        ideal = statistics.median(r["ideal_seconds"] for r in results)
        shares = [sum(r["samples"][w] for r in results) for w in sorted(results[0]["samples"])]
        rows.append(
            {
                "allocation": "IDPA" if balance == "power" else "even split",
                "epoch_seconds": epoch,
                "ideal_seconds": ideal,
                "over_ideal": epoch / ideal,
                "shares": "/".join(f"{s / sum(shares):.2f}" for s in shares),
            }
        )
    return rows


def accuracy_rows(client, dataset, test, epochs: int, chunks_per_round: int | None) -> list[dict]:
    model = bptdask.models.lenet5()
    evaluate = scorer(model, dataset, test)
    rows = []
    for update in ("agwu", "sgwu"):
        config = RunConfig(epochs=epochs, batch_size=32, device="cpu", update=update, chunks_per_round=chunks_per_round)
        started = time.perf_counter()
        params, report = fit_on_cluster(client, dataset, model, model.init_params(0), config, evaluate=evaluate)
        wall = time.perf_counter() - started
        busy = sum(loop.busy_seconds for loop in report.worker_loops.values())
        rows.append(
            {
                "mode": update.upper(),
                "epochs": report.epochs_done,
                "wall_seconds": wall,
                "idle_fraction": 1.0 - busy / (len(report.worker_loops) * report.seconds),
                "seconds_to_96": seconds_to(report, 0.96),
                "seconds_to_97": seconds_to(report, 0.97),
                "final_accuracy": evaluate(params),
                "merges": report.version,
                "first_epoch_chunks": _sources(report, [0]),
                "later_epoch_chunks": _sources(report, range(1, report.epochs_done)),
            }
        )
    return rows


def _sources(report, epochs) -> str:
    """``memory/peer/storage`` chunk reads of ``epochs``, summed."""
    counts = [report.chunk_sources[e] for e in epochs if e in report.chunk_sources]
    return "/".join(str(sum(getattr(c, where) for c in counts)) for where in ("memory", "peer", "storage"))


def seconds_to(report, target: float) -> float:
    """Seconds from the start of the run to the first epoch scoring ``target``; NaN if none did."""
    hit = next((e.seconds for e in report.evaluations if e.accuracy >= target), None)
    return float("nan") if hit is None else hit


def _push_repeatedly(server, n_pushes: int, shapes: dict, n_workers: int) -> float:
    """A worker task: push ``n_pushes`` updates of ``shapes``; returns its seconds."""
    name = get_worker().address
    delta = {key: np.full(shape, 1e-6, np.float32) for key, shape in shapes.items()}
    started = time.perf_counter()
    for index in range(n_pushes):
        server.push(
            PartKey(name, index, 0), delta, base_version=0, n_samples=1, round_samples=n_workers, n_workers=n_workers
        ).result(timeout=120)
    return time.perf_counter() - started


def merge_rate_rows(worker_counts: list[int], pushes: int, processes: bool) -> list[dict]:
    params = bptdask.models.lenet5().init_params(0)
    shapes = {key: value.shape for key, value in params.items()}
    rows = []
    for n in worker_counts:
        where = {"host": "127.0.0.1"} if processes else {}  # threads talk over inproc://, no host
        with (
            LocalCluster(
                n_workers=n, threads_per_worker=1, processes=processes, dashboard_address=None, **where
            ) as cluster,
            Client(cluster) as client,
        ):
            addresses = worker_addresses(client)
            server = client.submit(WeightServer, params, RunConfig(), actor=True, workers=[addresses[0]]).result()
            started = time.perf_counter()
            futures = [
                client.submit(_push_repeatedly, server, pushes, shapes, n, workers=[address], pure=False)
                for address in addresses
            ]
            client.gather(futures)
            wall = time.perf_counter() - started
            merged = server.version
            rows.append(
                {
                    "transport": "tcp, processes" if processes else "inproc, threads",
                    "workers": n,
                    "merges": merged,
                    "merges_per_second": merged / wall,
                    "update_mb": sum(v.nbytes for v in params.values()) / 1e6,
                }
            )
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each makespan run")
    parser.add_argument("--repeats", type=int, default=2, help="alternating makespan runs per allocation")
    parser.add_argument("--accuracy-epochs", type=int, default=12)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--pushes", type=int, default=50, help="pushes per worker in the merge-rate part")
    parser.add_argument("--tcp", action="store_true", help="also measure merges/s with worker processes over TCP")
    parser.add_argument(
        "--chunks-per-round", type=int, default=None, help="IDPA round size (default: bptdask's, 4 per worker)"
    )
    parser.add_argument("--scratch", default="/tmp", help="folder for the Zarr dataset")
    args = parser.parse_args(argv)

    dataset, test = mnist(args.scratch)
    with (
        LocalCluster(
            n_workers=3, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        addresses = worker_addresses(client)
        simulate_slowdown(client, dict(zip(addresses, SLOWDOWNS, strict=True)))
        makespan = makespan_rows(client, dataset, args.epochs, args.repeats, args.chunks_per_round)
        accuracy = accuracy_rows(client, dataset, test, args.accuracy_epochs, args.chunks_per_round)
    merges = merge_rate_rows(args.workers, args.pushes, processes=False)
    if args.tcp:
        merges += merge_rate_rows([n for n in args.workers if n <= 4], args.pushes, processes=True)

    print("Epoch makespan, 3 workers at simulated speeds 4:2:1 (AGWU):")
    print_table(
        makespan,
        [
            ("allocation", "allocation", "s"),
            ("epoch_seconds", "epoch s", ".2f"),
            ("ideal_seconds", "ideal s", ".2f"),
            ("over_ideal", "vs ideal", ".3f"),
            ("shares", "shares fast/mid/slow", "s"),
        ],
    )
    print("\nAGWU vs SGWU on the same workers, batch 32 per worker:")
    print_table(
        accuracy,
        [
            ("mode", "mode", "s"),
            ("epochs", "epochs", "d"),
            ("wall_seconds", "wall s", ".1f"),
            ("idle_fraction", "idle", ".3f"),
            ("seconds_to_96", "s to 96%", ".1f"),
            ("seconds_to_97", "s to 97%", ".1f"),
            ("final_accuracy", "final acc", ".3f"),
            ("merges", "merges", "d"),
            ("first_epoch_chunks", "epoch 1 mem/peer/disk", "s"),
            ("later_epoch_chunks", "later mem/peer/disk", "s"),
        ],
    )
    print("\nWeight-actor merges per second, LeNet-5 updates:")
    print_table(
        merges,
        [
            ("transport", "transport", "s"),
            ("workers", "workers", "d"),
            ("merges_per_second", "merges/s", ".0f"),
            ("update_mb", "MB/update", ".2f"),
        ],
    )
    results = {"makespan": makespan, "accuracy": accuracy, "merge_rate": merges}
    print(f"wrote {write_report('outer', [results])}")
    return results


if __name__ == "__main__":
    main()
