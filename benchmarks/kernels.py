"""LeNet-5 training throughput of bptdask's kernels vs PyTorch CPU, side by side.

Both train the same network (copied weights) with SGD + momentum on the same MNIST-sample
batches, at the same batch size and thread count, alternating rounds in one process. The
bptdask side is the sequential step (whole batch, BLAS threads only), the baseline the
inner layer's task graph improves on (see ``benchmarks/inner.py``). Also measures the
float32 GEMM rate under the same thread limit and reports each side's achieved GFLOP/s
as a fraction of it.

    python benchmarks/kernels.py --threads 1 2 --batch-size 64
"""

from __future__ import annotations

import argparse

import torch
from common import (
    BptdaskRunner,
    TorchRunner,
    alternate,
    gemm_gflops,
    print_table,
    training_batches,
    training_flops_per_image,
    write_report,
)
from threadpoolctl import threadpool_limits

import bptdask


def measure(threads: int, batch_size: int, steps: int, rounds: int) -> dict:
    model = bptdask.models.lenet5()
    params = model.init_params(0)
    optimizer = bptdask.SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)
    batches = training_batches(model, batch_size, steps)
    torch.set_num_threads(threads)
    with threadpool_limits(limits=threads, user_api="blas"):
        gemm = gemm_gflops()
        rates = alternate(
            {"bptdask": BptdaskRunner(model, params, optimizer), "torch": TorchRunner(model, params, optimizer)},
            batches,
            rounds,
        )
    flops = training_flops_per_image(model)
    return {
        "threads": threads,
        "batch_size": batch_size,
        "gemm_gflops": gemm,
        "train_mflop_per_image": flops / 1e6,
        "bptdask_images_per_s": rates["bptdask"],
        "torch_images_per_s": rates["torch"],
        "ratio_bptdask_over_torch": rates["bptdask"] / rates["torch"],
        "bptdask_gemm_fraction": rates["bptdask"] * flops / 1e9 / gemm,
        "torch_gemm_fraction": rates["torch"] * flops / 1e9 / gemm,
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[64])
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds per framework")
    args = parser.parse_args(argv)
    rows = [measure(t, b, args.steps, args.rounds) for b in args.batch_size for t in args.threads]
    print_table(
        rows,
        [
            ("threads", "threads", "d"),
            ("batch_size", "batch", "d"),
            ("gemm_gflops", "GEMM GF/s", ".1f"),
            ("bptdask_images_per_s", "bptdask img/s", ".0f"),
            ("torch_images_per_s", "torch img/s", ".0f"),
            ("ratio_bptdask_over_torch", "ratio", ".2f"),
            ("bptdask_gemm_fraction", "bptdask GEMM frac", ".3f"),
            ("torch_gemm_fraction", "torch GEMM frac", ".3f"),
        ],
    )
    print(f"wrote {write_report('kernels', rows)}")
    return rows


if __name__ == "__main__":
    main()
