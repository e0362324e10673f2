"""One frozen configuration of a run, validated once and passed whole.

:class:`RunConfig` carries every setting of a distributed (or in-process) fit under the
names :class:`~bptdask.BPTClassifier` uses for them, from the estimator down to the
weight server: the training settings each worker applies to its parts, the merge rule
(``update``, ``merge_rule``, ``merge_weight`` = AGWU's ``α0``, ``staleness_decay`` =
``γ``, ``max_staleness``), IDPA's round size and balance, and the fault-handling timeouts.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from bptdask.errors import ConfigurationError
from bptdask.optim import SGD, cosine_lr
from bptdask.outer.merge_rules import MERGE_RULES, MergeRule
from bptdask.validation import check_choice, check_integer, check_number

#: IDPA round size per worker taking part, when ``chunks_per_round`` is None.
CHUNKS_PER_WORKER_PER_ROUND = 4

#: Settings that may differ between a run and its resume (not part of :meth:`RunConfig.identity`;
#: the seed is compared by :func:`describe_run` when the caller fixed it).
_FREE_ON_RESUME = (
    "seed",
    "device",
    "max_staleness",
    "chunks_per_round",
    "balance",
    "checkpoint_every",
    "worker_timeout",
    "call_timeout",
    "max_invalid",
)


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run (see the module docstring); invalid values raise at construction.

    Parameters
    ----------
    epochs, batch_size : int
        Passes over the training data; samples per step on each worker.
    lr, momentum, weight_decay, nesterov
        SGD settings (:class:`bptdask.optim.SGD`).
    lr_schedule : {"cosine", "constant"}
        ``"cosine"`` decays ``lr`` towards 0 over the epochs (:func:`bptdask.optim.cosine_lr`).
    dtype : {"float32", "float64"}
        Parameter and activation dtype.
    seed : int
        Seeds the chunk order of every epoch and each worker's sample order and dropout.
    device : {"auto", "cpu", "gpu"}
        Where each worker trains; ``"auto"`` lets each take its GPU if it has one.
    update : {"agwu", "sgwu"}
        Merge each update as it arrives (AGWU) or average each round (SGWU).
    merge_rule : {"inverse", "concurrency", "polynomial", "exponential"}
        How AGWU weighs a push by its staleness (:mod:`bptdask.outer.merge_rules`);
        ``"inverse"`` (the default) is ``α = α0 · w_j / (s + 1)``; ``"exponential"`` is
        the BPT-CNN paper's ``α = α0 · w_j · γ^s``.
    merge_weight : float in (0, 1]
        AGWU's ``α0``, the scale of the rule.
    staleness_decay : float in (0, 1]
        AGWU's ``γ``; 1 means no decay.
    max_staleness : int or None
        Pushes staler than this are rejected and retrained; None accepts any.
    chunks_per_round : int or None
        Chunks per IDPA round; None: :data:`CHUNKS_PER_WORKER_PER_ROUND` per worker.
    balance : {"power", "even"}
        IDPA, or the equal split it is measured against.
    checkpoint_every : int
        Merges between checkpoints (with a checkpoint directory).
    worker_timeout : float
        Seconds a worker may hold a part without a word before it is treated as lost.
    call_timeout : float
        Seconds any single call of the coordinator may take.
    max_invalid : int
        NaN/inf updates in a row that stop the run.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    dtype: Literal["float32", "float64"] = "float32"
    seed: int = 0
    device: Literal["auto", "cpu", "gpu"] = "auto"
    update: Literal["agwu", "sgwu"] = "agwu"
    merge_rule: MergeRule = "inverse"
    merge_weight: float = 1.0
    staleness_decay: float = 0.5
    max_staleness: int | None = None
    chunks_per_round: int | None = None
    balance: Literal["power", "even"] = "power"
    checkpoint_every: int = 50
    worker_timeout: float = 60.0
    call_timeout: float = 60.0
    max_invalid: int = 3

    def __post_init__(self):
        for name, minimum in (
            ("epochs", 1),
            ("batch_size", 1),
            ("seed", 0),
            ("checkpoint_every", 1),
            ("max_invalid", 1),
        ):
            object.__setattr__(self, name, check_integer(name, getattr(self, name), minimum=minimum))
        for name in ("max_staleness", "chunks_per_round"):
            if getattr(self, name) is not None:
                minimum = 0 if name == "max_staleness" else 1
                object.__setattr__(self, name, check_integer(name, getattr(self, name), minimum=minimum))
        check_number("merge_weight", self.merge_weight, above=0, at_most=1, why=" (1: one average update a round)")
        check_number("staleness_decay", self.staleness_decay, above=0, at_most=1, why=" (1 means no decay)")
        for name in ("worker_timeout", "call_timeout"):
            check_number(name, getattr(self, name), above=0, why=" (seconds)")
        check_choice("lr_schedule", self.lr_schedule, ("cosine", "constant"))
        object.__setattr__(self, "dtype", check_choice("dtype", _dtype_name(self.dtype), ("float32", "float64")))
        check_choice("device", self.device, ("auto", "cpu", "gpu"))
        check_choice("update", self.update, ("agwu", "sgwu"))
        check_choice("merge_rule", self.merge_rule, MERGE_RULES)
        check_choice("balance", self.balance, ("power", "even"))
        if not isinstance(self.nesterov, bool):
            raise ConfigurationError(f"nesterov must be True or False, got {self.nesterov!r}")
        self.optimizer(0)

    def optimizer(self, epoch: int, *, schedule: bool = True) -> SGD:
        """The SGD settings of 0-based ``epoch``, with the learning-rate schedule if ``schedule``."""
        lr = cosine_lr(self.lr, epoch, self.epochs) if schedule and self.lr_schedule == "cosine" else self.lr
        return SGD(lr=lr, momentum=self.momentum, weight_decay=self.weight_decay, nesterov=self.nesterov)

    def round_size(self, n_workers: int) -> int:
        """Chunks per IDPA round for a run that starts with ``n_workers`` workers."""
        return self.chunks_per_round or CHUNKS_PER_WORKER_PER_ROUND * max(1, n_workers)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes``, validated again."""
        return dataclasses.replace(self, **changes)

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it resumes (JSON data)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in _FREE_ON_RESUME}


def describe_run(
    config: RunConfig,
    architecture: dict,
    chunk_sizes: list[int],
    *,
    mean: Sequence[float] = (),
    std: Sequence[float] = (),
    seed_fixed: bool = True,
) -> dict[str, Any]:
    """What defines a run, as its checkpoints store it: a resume must match it exactly.

    Parameters
    ----------
    config : RunConfig
    architecture : dict
        The model's :meth:`~bptdask.model.Sequential.to_config`.
    chunk_sizes : list of int
        Samples in each chunk of the training data.
    mean, std : sequence of float, shape (C,)
        The training data's per-channel normalisation: with the chunk sizes, what
        tells one dataset from another (compared to 6 significant digits).
    seed_fixed : bool
        ``config.seed`` was chosen by the caller (``random_state``), so a resume must
        have the same; when false it was drawn for this fit and a resume takes the
        checkpoint's.
    """
    described = {
        "architecture": architecture,
        "settings": config.identity(),
        "seed": config.seed if seed_fixed else None,
        "chunk_sizes": list(chunk_sizes),
        "data": {"mean": [float(f"{v:.6g}") for v in mean], "std": [float(f"{v:.6g}") for v in std]},
    }
    return json.loads(json.dumps(described))  # as the JSON header stores it: tuples become lists


def _dtype_name(value: object) -> object:
    """``"float32"`` for any spelling of that dtype (``np.float32``, ``"f4"``); other values as given."""
    try:
        return np.dtype(value).name
    except TypeError:
        return value
