"""Inner-layer speed: one worker's training step on 1..N threads, vs Dask and PyTorch.

For each network and batch size, alternating in one process: bptdask's task-graph step on
1 thread and on N threads with its critical-path runner, the same graph on N threads with
``dask.threaded.get``, and PyTorch eager on N threads.

    python benchmarks/inner.py --threads 2 --batch-size 64 128
"""

from __future__ import annotations

import argparse

import torch
from common import BptdaskRunner, DaskGraphRunner, TorchRunner, alternate, print_table, training_batches, write_report

import bptdask

NETWORKS = {"lenet5": lambda: bptdask.models.lenet5(), "vgg_small": lambda: bptdask.models.vgg_small()}


def measure(network: str, batch_size: int, threads: int, steps: int, rounds: int) -> dict:
    model = NETWORKS[network]()
    params = model.init_params(0)
    optimizer = bptdask.SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)
    batches = training_batches(model, batch_size, steps)
    torch.set_num_threads(threads)
    rates = alternate(
        {
            "ours_1": BptdaskRunner(model, params, optimizer, n_threads=1),
            "ours_n": BptdaskRunner(model, params, optimizer, n_threads=threads),
            "dask_n": DaskGraphRunner(model, params, optimizer, n_threads=threads),
            "torch_n": TorchRunner(model, params, optimizer),
        },
        batches,
        rounds,
    )
    return {
        "network": network,
        "batch_size": batch_size,
        "threads": threads,
        **{f"{name}_images_per_s": rate for name, rate in rates.items()},
        "speedup_1_to_n": rates["ours_n"] / rates["ours_1"],
        "ratio_ours_over_dask": rates["ours_n"] / rates["dask_n"],
        "ratio_ours_over_torch": rates["ours_n"] / rates["torch_n"],
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", choices=sorted(NETWORKS), default=sorted(NETWORKS))
    parser.add_argument("--batch-size", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rows = [
        measure(net, batch, threads, args.steps, args.rounds)
        for net in args.networks
        for batch in args.batch_size
        for threads in args.threads
    ]
    print_table(
        rows,
        [
            ("network", "network", "s"),
            ("batch_size", "batch", "d"),
            ("threads", "N", "d"),
            ("ours_1_images_per_s", "1 thread", ".0f"),
            ("ours_n_images_per_s", "N ours", ".0f"),
            ("dask_n_images_per_s", "N dask", ".0f"),
            ("torch_n_images_per_s", "N torch", ".0f"),
            ("speedup_1_to_n", "speedup", ".2f"),
            ("ratio_ours_over_torch", "vs torch", ".2f"),
        ],
    )
    print(f"wrote {write_report('inner', rows)}")
    return rows


if __name__ == "__main__":
    main()
