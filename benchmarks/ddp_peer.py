"""The PyTorch peer of the AGWU benchmarks: DistributedDataParallel (gloo) on one-thread CPU ranks.

Each rank trains the same LeNet-5 (the same initial weights as bptdask's, copied by
name) on its shard of every epoch with batch 32, SGD with momentum 0.9, weight decay
5e-4 and the same cosine learning rate; gradients are averaged every step. A rank given
a slowdown factor sleeps ``(factor - 1)`` times a step's compute after each step, so
everyone waits for it at the next all-reduce, as DDP does for a slow machine. The
compute is timed once, before training, on local steps without the all-reduce: a step
timed inside DDP includes the wait for the slowest rank, and sleeping in proportion to
that would compound. Rank 0 scores the model on the test images after every epoch (that
time is left out of the clock).
"""

from __future__ import annotations

import datetime
import queue
import socket
import time

import numpy as np

import bptdask
from bptdask.optim import cosine_lr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


#: Seconds a run may take before it counts as hung (gloo's own timeout, and the wait for rank 0).
RUN_TIMEOUT = 1800.0

#: Local steps timed, after one warm-up, to learn a rank's compute per step.
CALIBRATION_STEPS = 5


def _compute_seconds(network, loss, X, y) -> float:
    """Median seconds of a forward, backward and gradient reset on one batch of 32, without DDP."""
    times = []
    for _ in range(CALIBRATION_STEPS + 1):
        started = time.perf_counter()
        network.zero_grad()
        loss(network(X[:32]), y[:32]).backward()
        times.append(time.perf_counter() - started)
    network.zero_grad()
    return float(np.median(times[1:]))


def _rank(rank, world, port, train, test, mean, std, seed, epochs, factor, results):
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from bptdask.testing.torch_peer import torch_network

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=RUN_TIMEOUT),
    )
    model = bptdask.models.lenet5()
    network = torch_network(model, model.init_params(seed)).train()
    ddp = DistributedDataParallel(network)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loss = torch.nn.CrossEntropyLoss()

    def prepared(images):
        scaled = (images.astype(np.float32) / 255.0 - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1)
        return torch.from_numpy(scaled.astype(np.float32))

    X, y = prepared(train[0]), torch.from_numpy(train[1].astype(np.int64))
    X_test, y_test = prepared(test[0]), torch.from_numpy(test[1].astype(np.int64))
    pause = (factor - 1) * _compute_seconds(network, loss, X, y)
    per_rank = len(y) // world
    curve, evaluating = [], 0.0
    dist.barrier()
    started = time.perf_counter()
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(0.05, epoch, epochs)
        order = np.random.default_rng([seed, epoch]).permutation(len(y))
        shard = order[rank * per_rank : (rank + 1) * per_rank]
        for start in range(0, per_rank, 32):
            index = torch.from_numpy(shard[start : start + 32])
            optimizer.zero_grad()
            loss(ddp(X[index]), y[index]).backward()
            optimizer.step()
            if pause > 0:
                time.sleep(pause)
        if rank == 0:
            scoring = time.perf_counter()
            network.eval()
            with torch.no_grad():
                accuracy = float((network(X_test).argmax(dim=1) == y_test).float().mean())
            network.train()
            evaluating += time.perf_counter() - scoring
            curve.append((time.perf_counter() - started - evaluating, accuracy))
        dist.barrier()
    if rank == 0:
        results.put(curve)
    dist.destroy_process_group()


def ddp_run(train, test, dataset, *, workers, seed, epochs, target, slowdowns=None) -> dict:
    """One DDP run on ``workers`` one-thread ranks: the same row as the bptdask runs."""
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    results = context.Queue()
    port = _free_port()
    factors = list(slowdowns or ()) + [1.0] * workers
    processes = [
        context.Process(
            target=_rank,
            args=(rank, workers, port, train, test, dataset.mean, dataset.std, seed, epochs, factors[rank], results),
        )
        for rank in range(workers)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    try:
        curve = results.get(timeout=RUN_TIMEOUT)
    except queue.Empty:
        curve = None
    for process in processes:
        process.join(timeout=60)
        if process.is_alive():
            process.kill()
    if curve is None:
        raise RuntimeError(f"the DDP run on {workers} ranks gave no result within {RUN_TIMEOUT:.0f} s")
    accuracies = [accuracy for _, accuracy in curve]
    return {
        "method": "PyTorch DDP",
        "workers": workers,
        "seed": seed,
        "final_accuracy": accuracies[-1],
        "curve": accuracies,
        "seconds_to_target": next((seconds for seconds, accuracy in curve if accuracy >= target), float("nan")),
        "wall_seconds": time.perf_counter() - started,
    }
