"""Chaos benchmark: kill a random worker every few seconds during a 3-worker fit.

A ``LocalCluster`` of three Nanny processes on loopback trains LeNet-5 on the MNIST
sample (4,000 training images in chunks of 128, 1,000 test images) with AGWU and a
checkpoint directory. A chaos thread SIGKILLs the process of a random worker (the
coordinator's included) every ``--interval`` seconds; each worker's Nanny starts a
replacement, which joins the run. The same fit without faults runs first, in the same
cluster, as the baseline. Printed as a table and written as JSON:
faults injected, faults survived (the fit finished every epoch after them), lost
workers, coordinator recoveries, merges lost, wall time and final accuracy.

    python benchmarks/chaos.py --interval 4
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import tempfile
import threading
import time

from common import print_table, write_report
from distributed import Client, LocalCluster
from outer import mnist, scorer

import bptdask
from bptdask.cluster import fit_on_cluster, worker_addresses
from bptdask.outer.run_config import RunConfig


class Chaos:
    """Kills a random live worker process every ``interval`` seconds until stopped."""

    def __init__(self, client: Client, interval: float, seed: int):
        self.client, self.interval = client, interval
        self.random = random.Random(seed)
        self.kills: list[dict] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.started = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()

    def _run(self):
        while not self.stopped.wait(self.interval):
            pids = self.client.run(os.getpid, on_error="return")
            live = sorted(address for address, pid in pids.items() if isinstance(pid, int))
            if len(live) < 2:
                continue
            victim = self.random.choice(live)
            os.kill(pids[victim], signal.SIGKILL)
            self.kills.append({"seconds": time.monotonic() - self.started, "worker": victim})


def run(client, dataset, test, config, *, interval: float | None, seed: int) -> dict:
    model = bptdask.models.lenet5()
    workers_at_start = len(worker_addresses(client))
    with tempfile.TemporaryDirectory(prefix="bptdask-chaos-") as checkpoint:
        started = time.perf_counter()
        if interval is None:
            params, report = fit_on_cluster(
                client, dataset, model, model.init_params(seed), config, checkpoint=checkpoint
            )
            kills = []
        else:
            with Chaos(client, interval, seed) as chaos:
                params, report = fit_on_cluster(
                    client, dataset, model, model.init_params(seed), config, checkpoint=checkpoint
                )
            kills = chaos.kills
        wall = time.perf_counter() - started
    coordinators = {recovery.lost_coordinator for recovery in report.recoveries}
    return {
        "run": "fault-free" if interval is None else f"kill every {interval:g} s",
        "workers_at_start": workers_at_start,
        "faults_injected": len(kills),
        "faults_survived": len(kills) if report.epochs_done == config.epochs else 0,
        "coordinator_kills": sum(kill["worker"] in coordinators for kill in kills),
        "lost_workers": len(report.lost_workers),
        "recoveries": len(report.recoveries),
        "merges_lost": report.merges_lost,
        "merges": report.version,
        "epochs": report.epochs_done,
        "wall_seconds": wall,
        "accuracy": scorer(model, dataset, test)(params),
        "kills": kills,
        "recovery_log": report.to_dict()["recoveries"],
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=4.0, help="seconds between kills")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--checkpoint-every", type=int, default=10, help="merges between checkpoints")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one chaos run per seed")
    parser.add_argument("--scratch", default="/tmp", help="folder for the Zarr dataset")
    args = parser.parse_args(argv)

    dataset, test = mnist(args.scratch)
    config = RunConfig(epochs=args.epochs, batch_size=32, device="cpu", checkpoint_every=args.checkpoint_every)
    with (
        LocalCluster(
            n_workers=3, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        rows = [run(client, dataset, test, config, interval=None, seed=0)]
        for seed in args.seeds:
            try:
                client.wait_for_workers(3, timeout=60)
            except TimeoutError:  # a Nanny that gave up restarting its worker: go on with fewer
                print(f"only {len(worker_addresses(client))} of 3 workers came back; seed {seed} runs with them")
            rows.append(run(client, dataset, test, config, interval=args.interval, seed=seed))
    print(
        f"Chaos: 3 Nanny workers, LeNet-5, MNIST sample, {args.epochs} epochs AGWU, batch 32, "
        f"checkpoint every {args.checkpoint_every} merges, SIGKILL of a random worker every {args.interval:g} s:"
    )
    print_table(
        rows,
        [
            ("run", "run", "s"),
            ("workers_at_start", "workers", "d"),
            ("faults_injected", "injected", "d"),
            ("faults_survived", "survived", "d"),
            ("coordinator_kills", "coord kills", "d"),
            ("lost_workers", "lost workers", "d"),
            ("recoveries", "recoveries", "d"),
            ("merges_lost", "merges lost", "d"),
            ("merges", "merges", "d"),
            ("wall_seconds", "wall s", ".1f"),
            ("accuracy", "accuracy", ".4f"),
        ],
    )
    print(f"wrote {write_report('chaos', rows)}")
    return rows


if __name__ == "__main__":
    main()
