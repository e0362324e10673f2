"""Pieces shared by the benchmarks: timing, the GEMM yardstick, batches and the runners.

Each runner trains one network for a list of batches; benchmarks alternate runners in
one process so that machine noise hits all of them alike.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import dask.threaded
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import bptdask
from bptdask import datasets
from bptdask.inner.step import cached_plan, step_inputs
from bptdask.layers import Conv2D, Dense
from bptdask.preprocess import channel_stats, normalize

RESULTS = Path(__file__).parent / "results"


def timed(fn) -> float:
    """Wall seconds of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def gemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Best-of float32 ``n×n @ n×n`` rate in GFLOP/s under the current BLAS thread limit."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b
    return 2.0 * n**3 / min(timed(lambda: a @ b) for _ in range(repeats)) / 1e9


def training_flops_per_image(model: bptdask.Sequential) -> float:
    """FLOPs of one image's forward + backward through the conv and dense layers.

    Forward ``2·MACs``; backward computes the weight gradient (same cost) and the input
    gradient (same cost, skipped for the first layer).
    """
    total, first = 0.0, True
    for layer, shape_in, shape_out in zip(model.layers, model.shapes[:-1], model.shapes[1:], strict=True):
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


def training_batches(model: bptdask.Sequential, batch_size: int, steps: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Normalised float32 batches: the MNIST sample for 1×28×28 models, else seeded noise images."""
    if model.input_shape == (1, 28, 28):
        images, labels = datasets.mnist_sample(random_state=0)
        images, labels = (
            np.resize(images, (batch_size * steps, *images.shape[1:])),
            np.resize(labels, batch_size * steps),
        )
    else:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (batch_size * steps, *model.input_shape), dtype=np.uint8)
        labels = rng.integers(0, model.num_classes, batch_size * steps)
    x = normalize(images, *channel_stats(images))
    return [(x[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(labels), batch_size)]


class BptdaskRunner:
    """bptdask's ``train_step``: sequential (``n_threads=None``) or on the task-graph runner."""

    def __init__(self, model, params, optimizer, *, n_threads=None):
        self.model, self.params, self.optimizer, self.n_threads = model, params, optimizer, n_threads
        self.state = optimizer.init_state(params)
        self.rng = np.random.default_rng(0)

    def run(self, batches):
        for x, y in batches:
            result = bptdask.train_step(
                self.model,
                self.params,
                self.state,
                x,
                y,
                optimizer=self.optimizer,
                rng=self.rng,
                n_threads=self.n_threads,
            )
            self.params, self.state = result.params, result.state


class DaskGraphRunner(BptdaskRunner):
    """The same step graph executed by ``dask.threaded.get`` (BLAS pinned to one thread too)."""

    def run(self, batches):
        for x, y in batches:
            plan = cached_plan(self.model, len(x), self.optimizer, None)
            inputs = step_inputs(plan, self.params, self.state, x, y, int(self.rng.integers(2**63)))
            with threadpool_limits(limits=1, user_api="blas"):
                values = dask.threaded.get({**plan.graph, **inputs}, list(plan.outputs), num_workers=self.n_threads)
            for stage_params, stage_state in values[:-1]:
                self.params = {**self.params, **stage_params}
                self.state = {**self.state, **stage_state}


class TorchRunner:
    """The same network in PyTorch eager mode, with copied weights and the same SGD settings."""

    def __init__(self, model, params, optimizer):
        import torch

        from bptdask.testing.torch_peer import torch_network

        self.torch = torch
        self.network = torch_network(model, params).train()
        self.optimizer = torch.optim.SGD(
            self.network.parameters(), lr=optimizer.lr, momentum=optimizer.momentum, weight_decay=optimizer.weight_decay
        )
        self.loss = torch.nn.CrossEntropyLoss()

    def run(self, batches):
        for x, y in batches:
            self.optimizer.zero_grad()
            self.loss(self.network(self.torch.from_numpy(x)), self.torch.from_numpy(y)).backward()
            self.optimizer.step()


#: Before each timed pass: a pause, then the runner trains untimed for a while.
#: OpenBLAS and OpenMP worker threads keep spinning after their last job; without the
#: pause they took CPU from the next runner (PyTorch on 2 threads ran 4,400-5,200 images/s
#: right after a BLAS-threaded bptdask pass, 6,500-7,300 on its own). After a pause, a
#: core that sat idle runs slowly for a while on this VM: the first five 2-thread LeNet-5
#: steps took 10-13 ms, later ones 7.5 ms, hence the warm-up.
SETTLE_SECONDS = 0.3
WARM_UP_SECONDS = 0.2


def alternate(runners: dict, batches, rounds: int) -> dict[str, float]:
    """Median images/s of each runner over ``rounds`` alternating timed passes.

    Each pass follows :data:`SETTLE_SECONDS` of rest and :data:`WARM_UP_SECONDS` of
    untimed training by the same runner.
    """
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            time.sleep(SETTLE_SECONDS)
            warm_up_until = time.perf_counter() + WARM_UP_SECONDS
            while time.perf_counter() < warm_up_until:
                runner.run(batches[:2])
            seconds[name].append(timed(lambda runner=runner: runner.run(batches)))
    images = sum(len(y) for _, y in batches)
    return {name: images / statistics.median(values) for name, values in seconds.items()}


def write_report(name: str, rows: list[dict], output: Path | None = None) -> Path:
    """Write ``rows`` with machine and version details to ``results/{name}.json``."""
    try:
        import torch
    except ImportError:  # the PyTorch peer is optional
        torch = None

    report = {
        "benchmark": name,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "blas": [info.get("internal_api") for info in threadpool_info()],
        },
        "versions": {"bptdask": bptdask.__version__, "numpy": np.__version__, "torch": torch and torch.__version__},
        "rows": rows,
    }
    path = output or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return path


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Print ``rows`` as a fixed-width table; ``columns`` are (key, heading, format).

    Each column is as wide as its heading or its widest value, at least 9 characters.
    """
    cells = [[format(row[key], fmt) for key, _, fmt in columns] for row in rows]
    widths = [max([len(heading), 9, *(len(line[i]) for line in cells)]) for i, (_, heading, _) in enumerate(columns)]
    print("  ".join(heading.rjust(w) for (_, heading, _), w in zip(columns, widths, strict=True)))
    for line in cells:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))
