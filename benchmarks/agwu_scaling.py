"""AGWU with many workers: accuracy per epoch and time to target, each merge rule against SGWU and DDP.

LeNet-5 on the MNIST sample (4,000 training images in chunks of 128, 1,000 test images),
batch 32 per worker, lr 0.05 with cosine decay, one-thread workers on a ``LocalCluster``
on loopback; the global weights are scored on the test images after every epoch.

1. **Equal speeds.** 2, 4, 8 and 16 workers, several seeds: AGWU under each merge rule
   (:mod:`bptdask.outer.merge_rules`), SGWU, and PyTorch DDP (gloo, the same ranks, per-rank
   batch 32, the same network and initial weights) when torch is installed.
2. **Unequal speeds.** 4 workers made 1×, 2×, 4× and 8× slower by the simulated slowdown
   (:func:`bptdask.cluster.simulate_slowdown`; DDP ranks sleep alike after each step):
   seconds to the target accuracy for AGWU (``--unequal-rule``, the default rule unless
   named), SGWU and DDP.

The JSON is rewritten after every run, so a long sweep cut short keeps what it measured.

    python benchmarks/agwu_scaling.py                        # everything (about an hour on 2 cores)
    python benchmarks/agwu_scaling.py --workers 16 --seeds 0 --no-unequal
    python benchmarks/agwu_scaling.py --no-equal             # only the unequal speeds
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import print_table, write_report
from ddp_peer import ddp_run
from distributed import Client, LocalCluster
from outer import mnist, scorer

import bptdask
from bptdask.cluster import fit_on_cluster, simulate_slowdown, worker_addresses
from bptdask.outer.merge_rules import MERGE_RULES
from bptdask.outer.run_config import RunConfig

SLOWDOWNS = (1.0, 2.0, 4.0, 8.0)


def bptdask_run(client, dataset, test, *, workers, seed, epochs, update, rule, target) -> dict:
    """One fit on the first ``workers`` workers: accuracy after each epoch, seconds to ``target``."""
    model = bptdask.models.lenet5()
    addresses = worker_addresses(client)[:workers]
    config = RunConfig(epochs=epochs, batch_size=32, device="cpu", seed=seed, update=update, merge_rule=rule)
    started = time.perf_counter()
    _, report = fit_on_cluster(
        client,
        dataset,
        model,
        model.init_params(seed),
        config,
        workers=addresses,
        evaluate=scorer(model, dataset, test),
    )
    wall = time.perf_counter() - started
    curve = [e.accuracy for e in report.evaluations]
    hit = next((e.seconds for e in report.evaluations if e.accuracy >= target), float("nan"))
    staleness = report.merges.column("staleness")
    return {
        "method": f"AGWU {rule}" if update == "agwu" else "SGWU",
        "workers": workers,
        "seed": seed,
        "final_accuracy": curve[-1],
        "curve": curve,
        "seconds_to_target": hit,
        "wall_seconds": wall,
        "mean_staleness": float(staleness.mean()) if len(staleness) else 0.0,
        "mean_alpha": float(report.merges.column("alpha").mean()) if len(staleness) else 0.0,
    }


def summarise(rows: list[dict]) -> list[dict]:
    """Median over seeds of final accuracy and time to target, per method and worker count."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["workers"]), []).append(row)
    return [
        {
            "method": method,
            "workers": workers,
            "seeds": len(runs),
            "median_accuracy": statistics.median(r["final_accuracy"] for r in runs),
            "spread": max(r["final_accuracy"] for r in runs) - min(r["final_accuracy"] for r in runs),
            "median_seconds_to_target": statistics.median(r["seconds_to_target"] for r in runs),
            "mean_staleness": statistics.fmean(r.get("mean_staleness", 0.0) for r in runs),
        }
        for (method, workers), runs in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0]))
    ]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rules", nargs="+", default=list(MERGE_RULES), choices=MERGE_RULES)
    parser.add_argument("--unequal-rule", default=RunConfig().merge_rule, choices=MERGE_RULES)
    parser.add_argument("--target", type=float, default=0.95, help="accuracy whose first epoch is timed")
    parser.add_argument("--no-ddp", dest="ddp", action="store_false", help="leave the PyTorch peer out")
    parser.add_argument("--no-equal", dest="equal", action="store_false", help="skip the equal-speed part")
    parser.add_argument("--no-unequal", dest="unequal", action="store_false", help="skip the unequal-speed part")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default results/agwu_scaling.json)")
    parser.add_argument("--scratch", default="/tmp", help="folder for the Zarr dataset")
    args = parser.parse_args(argv)

    dataset, test = mnist(args.scratch)
    train_images, train_labels = dataset.read(0, dataset.num_chunks, subset="train")
    equal, unequal = [], []
    results = {"equal": equal, "unequal": unequal, "epochs": args.epochs, "target": args.target}

    def record(rows: list[dict], row: dict) -> None:
        rows.append(row)
        write_report("agwu_scaling", [results], args.output)

    with (
        LocalCluster(
            n_workers=max([*args.workers, len(SLOWDOWNS)]) if args.equal else len(SLOWDOWNS),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        for workers in args.workers if args.equal else ():
            for seed in args.seeds:
                common = {"workers": workers, "seed": seed, "epochs": args.epochs, "target": args.target}
                for rule in args.rules:
                    record(equal, bptdask_run(client, dataset, test, update="agwu", rule=rule, **common))
                record(equal, bptdask_run(client, dataset, test, update="sgwu", rule="concurrency", **common))
                if args.ddp:
                    record(equal, ddp_run((train_images, train_labels), test, dataset, **common))
                print(f"{workers} workers, seed {seed}: done", flush=True)
        if args.unequal:
            addresses = worker_addresses(client)[: len(SLOWDOWNS)]
            simulate_slowdown(client, dict(zip(addresses, SLOWDOWNS, strict=True)))
            for seed in args.seeds:
                common = {"workers": len(SLOWDOWNS), "seed": seed, "epochs": args.epochs, "target": args.target}
                record(unequal, bptdask_run(client, dataset, test, update="agwu", rule=args.unequal_rule, **common))
                record(unequal, bptdask_run(client, dataset, test, update="sgwu", rule="concurrency", **common))
                if args.ddp:
                    ddp = ddp_run((train_images, train_labels), test, dataset, slowdowns=SLOWDOWNS, **common)
                    record(unequal, ddp)
            simulate_slowdown(client, {})

    columns = [
        ("method", "method", "s"),
        ("workers", "workers", "d"),
        ("seeds", "seeds", "d"),
        ("median_accuracy", "median acc", ".4f"),
        ("spread", "spread", ".4f"),
        ("median_seconds_to_target", f"s to {args.target:.0%}", ".1f"),
        ("mean_staleness", "staleness", ".1f"),
    ]
    print(f"\nEqual speeds, {args.epochs} epochs, accuracy after the last (median over seeds):")
    print_table(summarise(equal), columns)
    if unequal:
        print(f"\nSpeeds 1:2:4:8, 4 workers: seconds to {args.target:.0%} (median over seeds):")
        print_table(summarise(unequal), columns)
    print(f"wrote {write_report('agwu_scaling', [results], args.output)}")
    return results


if __name__ == "__main__":
    main()
