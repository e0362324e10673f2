"""The PyTorch peer of the AGWU benchmarks: DistributedDataParallel (gloo) on one-thread CPU ranks.

Each rank trains the same LeNet-5 (the same initial weights as bptdask's, copied by
name) on its shard of every epoch with batch 32, SGD with momentum 0.9, weight decay
5e-4 and the same cosine learning rate; gradients are averaged every step. A rank given
a slowdown factor sleeps ``(factor - 1)`` times each step's compute, so everyone waits
for it at the next all-reduce, as DDP does for a slow machine. Rank 0 scores the model
on the test images after every epoch (that time is left out of the clock).
"""

from __future__ import annotations

import socket
import time

import numpy as np

import bptdask
from bptdask.optim import cosine_lr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rank(rank, world, port, train, test, mean, std, seed, epochs, factor, results):
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from bptdask.testing.torch_peer import torch_network

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
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
            step_started = time.perf_counter()
            optimizer.zero_grad()
            loss(ddp(X[index]), y[index]).backward()
            optimizer.step()
            if factor > 1:
                time.sleep((factor - 1) * (time.perf_counter() - step_started))
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
    results = context.SimpleQueue()
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
    curve = results.get()
    for process in processes:
        process.join()
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
