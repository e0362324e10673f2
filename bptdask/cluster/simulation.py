"""SIMULATION of slow machines and diverging training on one machine, for tests and benchmarks.

Nothing here runs unless a test or benchmark registers the :class:`Simulation` worker
plugin (:func:`simulate_slowdown`, :func:`simulate_divergence`); the training task then
wraps its part trainer in :meth:`Simulation.wrap`. The training path itself knows
nothing of it.
"""

from __future__ import annotations

import time

from distributed import Client
from distributed.diagnostics.plugin import WorkerPlugin

from bptdask.errors import ConfigurationError
from bptdask.outer.worker_loop import TrainPart
from bptdask.validation import check_integer, check_number

SIMULATION_PLUGIN = "bptdask-simulation"


class Simulation(WorkerPlugin):
    """Slower workers and NaN updates, by worker address.

    After training each part, a slowed worker sleeps ``(factor - 1)`` times the time the
    part took, so its measured power drops by ``factor``. A worker given ``corrupt_parts``
    returns NaN weights for that many parts (once, whichever of its tasks trains them).

    Parameters
    ----------
    slowdown : dict
        Worker address -> slowdown factor (≥ 1). Workers not named run at full speed.
    corrupt_parts : dict
        Worker address -> how many of its next parts come back as NaN.
    """

    name = SIMULATION_PLUGIN

    def __init__(self, slowdown: dict[str, float] | None = None, corrupt_parts: dict[str, int] | None = None):
        try:
            self.slowdown = {a: check_number("slowdown factor", f, at_least=1) for a, f in (slowdown or {}).items()}
            self.corrupt_parts = {a: check_integer("corrupt_parts", n) for a, n in (corrupt_parts or {}).items()}
        except ConfigurationError as exc:
            raise ConfigurationError(f"{exc} (slowdown={slowdown!r}, corrupt_parts={corrupt_parts!r})") from None

    def wrap(self, address: str, train_part: TrainPart) -> TrainPart:
        """``train_part`` as the worker at ``address`` is to run it: slowed down, corrupted, or as it is."""
        factor = self.slowdown.get(address, 1.0)
        corrupt = self.corrupt_parts.pop(address, 0)  # later tasks on this address get none
        if factor == 1.0 and corrupt == 0:
            return train_part

        def simulated(params, images, labels, epoch):
            nonlocal corrupt
            started = time.perf_counter()
            params, seconds = train_part(params, images, labels, epoch)
            time.sleep((factor - 1.0) * seconds)
            if corrupt > 0:
                corrupt -= 1
                params = {name: value * float("nan") for name, value in params.items()}
            return params, time.perf_counter() - started

        return simulated


def simulate_slowdown(client: Client, factors: dict[str, float]) -> None:
    """Register a :class:`Simulation` of slower workers (replacing an earlier simulation)."""
    client.register_plugin(Simulation(slowdown=factors), name=SIMULATION_PLUGIN)


def simulate_divergence(client: Client, corrupt_parts: dict[str, int]) -> None:
    """Register a :class:`Simulation` of workers whose next parts come back as NaN (replacing an earlier one)."""
    client.register_plugin(Simulation(corrupt_parts=corrupt_parts), name=SIMULATION_PLUGIN)
