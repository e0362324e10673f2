"""LeNet-5 training throughput: bptdask (NumPy kernels) vs PyTorch CPU, side by side.

Both train the same network (copied weights) with SGD + momentum on the same MNIST-sample
batches, at the same batch size and thread count, alternating rounds in one process so
machine noise hits both alike. Also measures the float32 GEMM rate under the same thread
limit and reports each framework's achieved GFLOP/s as a fraction of it.

    python benchmarks/kernels.py --threads 1 2 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

import bptdask
from bptdask import datasets
from bptdask.layers import Conv2D, Dense
from bptdask.preprocess import channel_stats, normalize
from bptdask.testing.torch_peer import torch_network


def training_flops_per_image(model: bptdask.Sequential) -> float:
    """Multiply-add FLOPs of one image's forward + backward through conv and dense layers.

    Forward ``2·MACs``; backward computes the weight gradient (same cost) and the input
    gradient (same cost, skipped for the first layer).
    """
    total = 0.0
    first = True
    for layer, shape_in, shape_out in zip(model.layers, model.shapes, model.shapes[1:]):
        if isinstance(layer, Conv2D):
            kh, kw = layer.kernel_size
            forward = 2.0 * np.prod(shape_out) * shape_in[0] * kh * kw
        elif isinstance(layer, Dense):
            forward = 2.0 * shape_in[0] * layer.out_features
        else:
            continue
        total += forward * (2 if first else 3)
        first = False
    return total


def gemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Best-of float32 ``n×n @ n×n`` rate in GFLOP/s with the current BLAS thread limit."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2.0 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def make_batches(batch_size: int, steps: int):
    images, labels = datasets.mnist_sample(random_state=0)
    mean, std = channel_stats(images)
    x = normalize(images[: batch_size * steps], mean, std)
    y = labels[: batch_size * steps]
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]


class BptdaskRunner:
    def __init__(self, model, params, optimizer):
        self.model, self.params, self.optimizer = model, params, optimizer
        self.state = optimizer.init_state(params)
        self.rng = np.random.default_rng(0)

    def run(self, batches):
        for x, y in batches:
            result = bptdask.train_step(
                self.model, self.params, self.state, x, y, optimizer=self.optimizer, rng=self.rng
            )
            self.params, self.state = result.params, result.state


class TorchRunner:
    def __init__(self, model, params, optimizer):
        self.network = torch_network(model, params)
        self.torch_optimizer = torch.optim.SGD(
            self.network.parameters(), lr=optimizer.lr, momentum=optimizer.momentum,
            weight_decay=optimizer.weight_decay,
        )
        self.loss = torch.nn.CrossEntropyLoss()

    def run(self, batches):
        for x, y in batches:
            self.torch_optimizer.zero_grad()
            self.loss(self.network(torch.from_numpy(x)), torch.from_numpy(y)).backward()
            self.torch_optimizer.step()


def measure(threads: int, batch_size: int, steps: int, rounds: int) -> dict:
    model = bptdask.models.lenet5()
    params = model.init_params(0)
    optimizer = bptdask.SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)
    batches = make_batches(batch_size, steps)
    runners = {"bptdask": BptdaskRunner(model, params, optimizer), "torch": TorchRunner(model, params, optimizer)}
    torch.set_num_threads(threads)
    times: dict[str, list[float]] = {name: [] for name in runners}
    with threadpool_limits(limits=threads):
        gemm = gemm_gflops()
        for runner in runners.values():
            runner.run(batches[:2])
        for _ in range(rounds):
            for name, runner in runners.items():
                times[name].append(_timed(lambda: runner.run(batches)))
    flops = training_flops_per_image(model)
    images = batch_size * len(batches)
    row = {"threads": threads, "batch_size": batch_size, "gemm_gflops": gemm, "train_mflop_per_image": flops / 1e6}
    for name, samples in times.items():
        rate = images / statistics.median(samples)
        row[f"{name}_images_per_s"] = rate
        row[f"{name}_gemm_fraction"] = rate * flops / 1e9 / gemm
    row["ratio_bptdask_over_torch"] = row["bptdask_images_per_s"] / row["torch_images_per_s"]
    return row


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[64])
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds per framework")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "kernels.json")
    args = parser.parse_args(argv)

    rows = [measure(t, b, args.steps, args.rounds) for b in args.batch_size for t in args.threads]
    header = f"{'threads':>7} {'batch':>5} {'GEMM GF/s':>9} {'bptdask img/s':>13} {'torch img/s':>11} {'ratio':>6} {'bptdask %GEMM':>13} {'torch %GEMM':>11}"
    print(header)
    for r in rows:
        print(f"{r['threads']:>7} {r['batch_size']:>5} {r['gemm_gflops']:>9.1f} {r['bptdask_images_per_s']:>13.0f} "
              f"{r['torch_images_per_s']:>11.0f} {r['ratio_bptdask_over_torch']:>6.2f} "
              f"{100 * r['bptdask_gemm_fraction']:>12.1f}% {100 * r['torch_gemm_fraction']:>10.1f}%")
    report = {
        "benchmark": "kernels",
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "blas": [info.get("internal_api") for info in threadpool_info()]},
        "versions": {"bptdask": bptdask.__version__, "numpy": np.__version__, "torch": torch.__version__},
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output}")
    return rows


if __name__ == "__main__":
    main()
