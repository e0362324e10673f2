"""Training throughput on one CUDA GPU: bptdask on CuPy vs PyTorch CUDA, side by side.

For each network and batch size, alternating timed passes in one process over the same
batches (already on the device) with copied weights and the same SGD settings:

- ``ours``: bptdask's sequential ``train_step`` on CuPy, with the one-launch CUDA kernels
  of :mod:`bptdask.cuda` (im2col, col2im, max pooling, SGD);
- ``ours_generic``: the same step with the generic slice-per-offset kernels
  (:func:`bptdask.backend.generic_kernels`), which shows what the CUDA kernels buy;
- ``torch``: PyTorch eager on CUDA in float32 with TF32 off (the same arithmetic as ours);
- ``torch_tf32``: PyTorch's defaults, whose cuDNN convolutions use TF32 tensor cores.

Each pass ends with a device synchronisation. Also measures the float32 GEMM rate of the
device (CuPy, TF32 off) and reports each side's achieved training GFLOP/s as a fraction
of it. Needs CuPy, PyTorch with CUDA and a GPU.

    python benchmarks/gpu.py --networks lenet5 vgg_small --batch-size 64 256 1024
"""

from __future__ import annotations

import argparse

import cupy
import numpy as np
import torch
from common import TorchRunner, alternate, print_table, training_batches, training_flops_per_image, write_report

import bptdask
from bptdask.backend import generic_kernels

NETWORKS = {"lenet5": lambda: bptdask.models.lenet5(), "vgg_small": lambda: bptdask.models.vgg_small()}


def cupy_gemm_gflops(n: int = 8192, repeats: int = 10) -> float:
    """Median float32 ``n×n @ n×n`` rate of the current CUDA device in GFLOP/s (events)."""
    a = cupy.random.default_rng(0).standard_normal((n, n), dtype=cupy.float32)
    b = a.T.copy()
    a @ b
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    seconds = []
    for _ in range(repeats):
        start.record()
        a @ b
        stop.record()
        stop.synchronize()
        seconds.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    return 2.0 * n**3 / float(np.median(seconds)) / 1e9


class CupyRunner:
    """bptdask's sequential step on CuPy; ``generic`` forces the slice-per-offset kernels."""

    def __init__(self, model, params, optimizer, *, generic: bool = False):
        self.model, self.optimizer, self.generic = model, optimizer, generic
        self.params = {name: cupy.asarray(value) for name, value in params.items()}
        self.state = optimizer.init_state(self.params)
        self.rng = cupy.random.default_rng(0)

    def run(self, batches):
        if self.generic:
            with generic_kernels():
                self._steps(batches)
        else:
            self._steps(batches)
        cupy.cuda.Device().synchronize()

    def _steps(self, batches):
        for x, y in batches:
            result = bptdask.train_step(
                self.model, self.params, self.state, x, y, optimizer=self.optimizer, rng=self.rng, validate=False
            )
            self.params, self.state = result.params, result.state


class TorchCudaRunner(TorchRunner):
    """:class:`TorchRunner` on the GPU; ``tf32`` chooses PyTorch's default TF32 convolutions."""

    def __init__(self, model, params, optimizer, *, tf32: bool):
        super().__init__(model, params, optimizer)
        self.network = self.network.cuda()
        self.optimizer = torch.optim.SGD(
            self.network.parameters(), lr=optimizer.lr, momentum=optimizer.momentum, weight_decay=optimizer.weight_decay
        )
        self.tf32 = tf32

    def run(self, batches):
        torch.backends.cudnn.allow_tf32 = self.tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        for x, y in batches:
            self.optimizer.zero_grad()
            self.loss(self.network(x), y).backward()
            self.optimizer.step()
        torch.cuda.synchronize()


def measure(network: str, batch_size: int, steps: int, rounds: int, gemm: float) -> dict:
    model = NETWORKS[network]()
    params = model.init_params(0)
    optimizer = bptdask.SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)
    host = training_batches(model, batch_size, steps)
    on_cupy = [(cupy.asarray(x), cupy.asarray(y)) for x, y in host]
    on_torch = [(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()) for x, y in host]
    runners = {
        "ours": CupyRunner(model, params, optimizer),
        "ours_generic": CupyRunner(model, params, optimizer, generic=True),
        "torch": TorchCudaRunner(model, params, optimizer, tf32=False),
        "torch_tf32": TorchCudaRunner(model, params, optimizer, tf32=True),
    }

    class Feed:
        """Hands each runner the batches of its own framework."""

        def __init__(self, runner, batches):
            self.runner, self.batches = runner, batches

        def run(self, _):
            self.runner.run(self.batches)

    fed = {name: Feed(r, on_torch if name.startswith("torch") else on_cupy) for name, r in runners.items()}
    rates = alternate(fed, host, rounds)
    flops = training_flops_per_image(model)
    return {
        "network": network,
        "batch_size": batch_size,
        "gemm_gflops": gemm,
        **{f"{name}_images_per_s": rate for name, rate in rates.items()},
        "ratio_ours_over_torch": rates["ours"] / rates["torch"],
        "ratio_ours_over_torch_tf32": rates["ours"] / rates["torch_tf32"],
        "speedup_cuda_kernels": rates["ours"] / rates["ours_generic"],
        "ours_gemm_fraction": rates["ours"] * flops / 1e9 / gemm,
        "torch_gemm_fraction": rates["torch"] * flops / 1e9 / gemm,
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", choices=sorted(NETWORKS), default=sorted(NETWORKS))
    parser.add_argument("--batch-size", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed pass")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed passes per runner")
    args = parser.parse_args(argv)
    device = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"].decode()
    gemm = cupy_gemm_gflops()
    print(f"{device}: float32 GEMM {gemm / 1e3:.1f} TFLOP/s (CuPy, TF32 off)")
    rows = [measure(net, batch, args.steps, args.rounds, gemm) for net in args.networks for batch in args.batch_size]
    for row in rows:
        row["device"] = device
    print_table(
        rows,
        [
            ("network", "network", "s"),
            ("batch_size", "batch", "d"),
            ("ours_images_per_s", "ours img/s", ".0f"),
            ("ours_generic_images_per_s", "generic img/s", ".0f"),
            ("torch_images_per_s", "torch img/s", ".0f"),
            ("torch_tf32_images_per_s", "torch tf32", ".0f"),
            ("ratio_ours_over_torch", "vs torch", ".2f"),
            ("ratio_ours_over_torch_tf32", "vs tf32", ".2f"),
            ("speedup_cuda_kernels", "kern gain", ".2f"),
            ("ours_gemm_fraction", "ours GEMM frac", ".3f"),
            ("torch_gemm_fraction", "torch GEMM frac", ".3f"),
        ],
    )
    print(f"wrote {write_report('gpu', rows)}")
    return rows


if __name__ == "__main__":
    main()
