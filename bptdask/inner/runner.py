"""Execute a :class:`~bptdask.inner.plan.Plan` on threads, longest remaining path first.

This module owns bptdask's only thread pool: helper threads started on first use and kept
for later steps. A run lends ``n_threads - 1`` of them and works in the calling thread too;
every thread repeatedly takes the ready task with the highest critical-path priority. A run
finishes even if no helper is free (the caller alone completes it), so concurrent runs from
several caller threads cannot deadlock. BLAS is limited to one thread for the
duration (threadpoolctl, restored afterwards), so parallelism comes from the graph and
results do not depend on the thread count. Intermediate values are dropped as soon as
their last consumer has run.
"""

from __future__ import annotations

import heapq
import os
import queue
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from threadpoolctl import ThreadpoolController

from bptdask.errors import ConfigurationError
from bptdask.inner.plan import Plan

Key = Hashable


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


@dataclass(frozen=True)
class _Compiled:
    """A plan's graph in the form the runner walks: argument templates and edges."""

    functions: dict[Key, Callable]
    arguments: dict[Key, tuple]
    dependents: dict[Key, tuple[Key, ...]]
    consumers: dict[Key, int]
    waiting: dict[Key, int]


@lru_cache(maxsize=32)
def _compile(plan: Plan) -> _Compiled:
    dependents: dict[Key, list[Key]] = {}
    consumers: dict[Key, int] = {}
    for key, deps in plan.dependencies.items():
        for dep in deps:
            dependents.setdefault(dep, []).append(key)
        for dep in _referenced(plan.graph[key][1:], plan):
            consumers[dep] = consumers.get(dep, 0) + 1
    return _Compiled(
        functions={key: task[0] for key, task in plan.graph.items()},
        arguments={key: task[1:] for key, task in plan.graph.items()},
        dependents={key: tuple(children) for key, children in dependents.items()},
        consumers=consumers,
        waiting={key: len(deps) for key, deps in plan.dependencies.items()},
    )


def _referenced(arguments: tuple, plan: Plan) -> list[Key]:
    """Graph or input keys named by ``arguments`` (each list counted once per element)."""
    known = set(plan.graph) | set(plan.input_keys)
    found = []
    for arg in arguments:
        for item in arg if isinstance(arg, list) else [arg]:
            if isinstance(item, (str, tuple)) and item in known:
                found.append(item)
    return found


class _Run:
    """The mutable state of one execution, shared by its threads under one condition."""

    def __init__(self, plan: Plan, compiled: _Compiled, inputs: dict[Key, Any]):
        self.plan, self.compiled = plan, compiled
        self.values: dict[Key, Any] = dict(inputs)
        self.uses = dict(compiled.consumers)
        self.waiting = dict(compiled.waiting)
        self.keep = set(plan.outputs)
        self.remaining = len(plan.graph)
        self.error: BaseException | None = None
        self.ready: list[tuple[float, int, Key]] = []
        self.order = {key: i for i, key in enumerate(plan.graph)}
        for key, count in self.waiting.items():
            if count == 0:
                self._push(key)
        self.condition = threading.Condition()
        self.active = 0

    def _push(self, key: Key) -> None:
        heapq.heappush(self.ready, (-self.plan.priority[key], self.order[key], key))

    def _resolve(self, arg):
        if isinstance(arg, list):
            return [self._resolve(item) for item in arg]
        if isinstance(arg, (str, tuple)) and arg in self.values:
            return self.values[arg]
        return arg

    def _release(self, arg) -> None:
        for item in arg if isinstance(arg, list) else [arg]:
            if isinstance(item, (str, tuple)) and item in self.uses:
                self.uses[item] -= 1
                if self.uses[item] == 0 and item not in self.keep:
                    self.values.pop(item, None)

    def work(self) -> None:
        """Take and run ready tasks until the graph is done or a task failed."""
        with self.condition:
            self.active += 1
        try:
            self._work()
        finally:
            with self.condition:
                self.active -= 1
                self.condition.notify_all()

    def wait_for_helpers(self) -> None:
        """Block until no thread is inside :meth:`work` any more."""
        with self.condition:
            while self.active:
                self.condition.wait()

    def _work(self) -> None:
        while True:
            with self.condition:
                while not self.ready and self.remaining and self.error is None:
                    self.condition.wait()
                if self.error is not None or not self.remaining:
                    return
                _, _, key = heapq.heappop(self.ready)
                arguments = self.compiled.arguments[key]
                resolved = [self._resolve(arg) for arg in arguments]
            try:
                result = self.compiled.functions[key](*resolved)
            except BaseException as exc:  # handed to the caller's thread, re-raised there
                with self.condition:
                    self.error = self.error or exc
                    self.condition.notify_all()
                return
            del resolved
            with self.condition:
                self.values[key] = result
                self.remaining -= 1
                for arg in arguments:
                    self._release(arg)
                woken = 0
                for child in self.compiled.dependents.get(key, ()):
                    self.waiting[child] -= 1
                    if self.waiting[child] == 0:
                        self._push(child)
                        woken += 1
                if not self.remaining:
                    self.condition.notify_all()
                elif woken > 1:
                    self.condition.notify(woken - 1)


class _HelperPool:
    """Daemon threads that join runs handed to them; grown on demand, never shrunk."""

    def __init__(self):
        self._runs: queue.SimpleQueue[_Run] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def lend(self, run: _Run, count: int) -> None:
        with self._lock:
            while len(self._threads) < count:
                thread = threading.Thread(target=self._serve, name=f"bptdask-step-{len(self._threads)}", daemon=True)
                thread.start()
                self._threads.append(thread)
        for _ in range(count):
            self._runs.put(run)

    def _serve(self) -> None:
        while True:
            self._runs.get().work()


_helpers = _HelperPool()


def run_plan(plan: Plan, inputs: dict[Key, Any], *, n_threads: int) -> dict[Key, Any]:
    """Execute ``plan`` with ``inputs`` on ``n_threads`` threads; returns ``{output key: value}``.

    Raises whatever a task raised (the first failure), after every thread has stopped.
    """
    if not isinstance(n_threads, int) or n_threads < 1:
        raise ConfigurationError(f"n_threads must be a positive integer, got {n_threads!r}")
    missing = [key for key in plan.input_keys if key not in inputs]
    if missing:
        raise ConfigurationError(f"plan inputs missing: {missing}")
    run = _Run(plan, _compile(plan), inputs)
    with _blas_controller().limit(limits=1, user_api="blas"):
        _helpers.lend(run, n_threads - 1)
        run.work()
        if run.error is not None:
            run.wait_for_helpers()  # tasks already started finish before the error is raised
            raise run.error
    # Every task has run; helpers still leaving the run have nothing left to execute.
    return {key: run.values[key] for key in plan.outputs}
