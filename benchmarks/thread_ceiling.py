"""How far threads of one process can go: the bound on the inner layer's speedup.

Runs 1-thread training steps (the task graph on one thread) three ways, side by side:
one thread alone; two threads of this process, each training its own replica; and two
processes, each training its own. The two threads share nothing but the interpreter, so
their rate over one thread's bounds what any schedule of one step's graph on two threads
can reach; the two processes show what the cores themselves give.

    python benchmarks/thread_ceiling.py --batch-size 64 128
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import threading
import time

import numpy as np
from common import print_table, training_batches, write_report

import bptdask

OPTIMIZER = bptdask.SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)


def train_for(batch_size: int, seconds: float, start: threading.Barrier | None = None) -> float:
    """Images/s of 1-thread LeNet-5 steps over ``seconds`` (after ``start`` releases every runner)."""
    model = bptdask.models.lenet5()
    params = model.init_params(0)
    state = OPTIMIZER.init_state(params)
    batches = training_batches(model, batch_size, 4)
    rng = np.random.default_rng(0)

    def step(x, y):
        nonlocal params, state
        result = bptdask.train_step(model, params, state, x, y, optimizer=OPTIMIZER, rng=rng, n_threads=1)
        params, state = result.params, result.state

    for x, y in batches:
        step(x, y)
    if start is not None:
        start.wait()
    began, images = time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        for x, y in batches:
            step(x, y)
            images += len(y)
    return images / (time.perf_counter() - began)


def _process_runner(batch_size, seconds, start, results):
    results.put(train_for(batch_size, seconds, start))


def two_threads(batch_size: int, seconds: float) -> float:
    start, rates = threading.Barrier(2), []
    threads = [threading.Thread(target=lambda: rates.append(train_for(batch_size, seconds, start))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(rates)


def two_processes(batch_size: int, seconds: float) -> float:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_process_runner, args=(batch_size, seconds, start, results)) for _ in range(2)]
    for process in processes:
        process.start()
    rates = [results.get() for _ in processes]
    for process in processes:
        process.join()
    return sum(rates)


def measure(batch_size: int, seconds: float, rounds: int) -> dict:
    rates = {"one_thread": [], "two_threads": [], "two_processes": []}
    for _ in range(rounds):
        rates["one_thread"].append(train_for(batch_size, seconds))
        rates["two_threads"].append(two_threads(batch_size, seconds))
        rates["two_processes"].append(two_processes(batch_size, seconds))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "batch_size": batch_size,
        **{f"{name}_images_per_s": rate for name, rate in medians.items()},
        "threads_over_one": medians["two_threads"] / medians["one_thread"],
        "processes_over_one": medians["two_processes"] / medians["one_thread"],
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rows = [measure(batch, args.seconds, args.rounds) for batch in args.batch_size]
    print_table(
        rows,
        [
            ("batch_size", "batch", "d"),
            ("one_thread_images_per_s", "1 thread", ".0f"),
            ("two_threads_images_per_s", "2 threads", ".0f"),
            ("two_processes_images_per_s", "2 processes", ".0f"),
            ("threads_over_one", "threads/1", ".2f"),
            ("processes_over_one", "processes/1", ".2f"),
        ],
    )
    print(f"wrote {write_report('thread_ceiling', rows)}")
    return rows


if __name__ == "__main__":
    main()
