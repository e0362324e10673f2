"""How much of a pushed update AGWU applies: the merge rules, as pure functions.

A worker's push carries ``delta = W_j - W(v_j)``, trained on its part's ``n_j`` samples;
the server applies ``W <- W + alpha * delta``. Every rule weighs the part's data share
``w = n_j * m / N_round`` (1 for an equal split of a round between its ``m`` workers) and
the push's staleness ``s = v - v_j`` (merges since the worker pulled):

==============  ======================================================================
rule            ``alpha``
==============  ======================================================================
``concurrency`` ``merge_weight * w / m * staleness_decay ** max(0, s - (m - 1))``:
                with ``m`` workers training, a push overtaken by at most the ``m - 1``
                others' merges is on time; only staleness beyond that is damped. A
                round's ``m`` on-time pushes add up to ``merge_weight`` (1: one average
                update a round, as SGWU applies).
``inverse``     ``merge_weight * w / (s + 1)``: the staleness-aware rate of Zhang et
                al. (2016), whose staleness ``τ = s + 1`` counts the push's own merge
                (``m`` workers in turn give ``τ = m``). A round's on-time pushes add up
                to ``merge_weight`` as under ``concurrency``, but a fresher push
                weighs more and a staler one less (by ``1/τ``, not exponentially).
``polynomial``  ``merge_weight * w * (s + 1) ** -0.5``: FedAsync's decay (Xie et al. 2019).
``exponential`` ``merge_weight * w * staleness_decay ** s``: the BPT-CNN paper's rule. With
                ``m`` workers pushing in turn every push is about ``m - 1`` merges stale,
                so at 16 workers and decay 0.5 each update counts about 0.003%.
==============  ======================================================================

No rule applies more than a whole delta: ``alpha`` is capped at 1 (:func:`merge_alpha`).
:func:`round_weight` gives what a round of pushes adds up to under a rule once every
worker trains, for tests and the run report.
"""

from __future__ import annotations

from typing import Literal

MergeRule = Literal["inverse", "concurrency", "polynomial", "exponential"]
MERGE_RULES: tuple[str, ...] = ("inverse", "concurrency", "polynomial", "exponential")

#: FedAsync's polynomial staleness exponent (its experiments' best, a = 0.5).
POLYNOMIAL_EXPONENT = 0.5


def merge_alpha(
    rule: MergeRule, *, merge_weight: float, share: float, staleness: int, n_workers: int, staleness_decay: float
) -> float:
    """The weight ``alpha`` a push gets under ``rule`` (see the module docstring), at most 1.

    A delta is where the worker's own training took the weights it pulled; applying more
    than all of it (``alpha > 1``, a fresh push of a large part: ``w`` above 1 and little
    staleness) extrapolates past that point. On MNIST with speeds 1:2:4:8 the fast
    worker's fresh pushes reached ``alpha ≈ 2`` under ``inverse`` and the accuracy fell
    from 93% to 78% for two epochs; every rule is therefore capped at 1.

    Parameters
    ----------
    merge_weight : float
        The rule's scale (``α0``).
    share : float
        The part's data share ``n_j * m / N_round``.
    staleness : int
        Merges since the worker pulled the weights it trained from.
    n_workers : int
        The ``m`` workers the part's round was split between (training at the same time).
    staleness_decay : float
        ``γ`` of the exponential and concurrency rules.
    """
    return min(1.0, merge_weight * share * _staleness_factor(rule, staleness, n_workers, staleness_decay))


def _staleness_factor(rule: MergeRule, staleness: int, n_workers: int, staleness_decay: float) -> float:
    """What ``rule`` makes of a push's staleness: ``alpha / (merge_weight * share)`` before the cap."""
    if rule == "concurrency":
        return staleness_decay ** max(0, staleness - (n_workers - 1)) / n_workers
    if rule == "inverse":
        return 1 / (staleness + 1)
    if rule == "polynomial":
        return (staleness + 1) ** -POLYNOMIAL_EXPONENT
    if rule == "exponential":
        return staleness_decay**staleness
    raise ValueError(f"unknown merge rule {rule!r}; choose one of {MERGE_RULES}")


def round_weight(rule: MergeRule, *, merge_weight: float, n_workers: int, staleness_decay: float) -> float:
    """The total ``alpha`` of a round of ``n_workers`` equal parts in the steady state.

    There every push is overtaken by the other ``n_workers - 1`` workers' merges, so
    each has staleness ``n_workers - 1``: ``concurrency`` adds up to ``merge_weight``
    whatever the number of workers, ``exponential`` to ``m * γ ** (m - 1)``, which
    vanishes as ``m`` grows.
    """
    alpha = merge_alpha(
        rule,
        merge_weight=merge_weight,
        share=1.0,
        staleness=n_workers - 1,
        n_workers=n_workers,
        staleness_decay=staleness_decay,
    )
    return n_workers * alpha
