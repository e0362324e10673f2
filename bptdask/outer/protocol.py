"""What workers and the supervisor say to the coordinator, and what it answers.

A worker asks the coordinator for work and gets an :class:`Assignment`; it trains the
assignment's chunks and pushes its update under the assignment's :class:`PartKey`; the
weight server answers with a :class:`PushResult`. The supervisor polls the coordinator's
:class:`Progress` and collects :class:`EpochWeights` to score. These small values are all
that crosses the actor boundary besides weights; their statuses are ``Literal`` types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from bptdask._typing import Params

#: ``train`` the chunks then push; ``wait`` and ask again shortly; the run is ``finished``;
#: this worker was ``dropped`` (declared lost): stop.
AssignmentStatus = Literal["train", "wait", "finished", "dropped"]

#: ``merged`` into the weights; ``pending`` until its SGWU round is complete; rejected as
#: ``stale`` (retrain from fresh weights), ``invalid`` (NaN/inf) or ``revoked`` (the part
#: is no longer the worker's).
PushStatus = Literal["merged", "pending", "stale", "invalid", "revoked"]


class PartKey(NamedTuple):
    """A part's name for the whole run: ``(worker, round, part)``.

    ``round_index`` numbers rounds across epochs (epoch ``e``'s round ``r`` of ``R`` is
    ``e * R + r``), so the key is unique for the run and makes a merge idempotent.
    """

    worker: str
    round_index: int
    part_index: int


@dataclass(frozen=True)
class Assignment:
    """What the coordinator tells a worker that asks for work.

    With status ``"train"``, ``part`` names the part, ``epoch`` is its 0-based epoch and
    ``chunks`` the training chunks to read; otherwise they are empty.
    """

    status: AssignmentStatus
    part: PartKey | None = None
    epoch: int = -1
    chunks: tuple[int, ...] = ()


@dataclass(frozen=True)
class PushResult:
    """What the weight server did with a push.

    ``version`` is the version the merge produced (``merged``), else the server's version
    when it answered; ``alpha`` the weight the update got or will get (0 when rejected).
    """

    status: PushStatus
    version: int
    staleness: int
    alpha: float

    @property
    def accepted(self) -> bool:
        """Merged or held for its round: the part counts as trained."""
        return self.status in ("merged", "pending")


@dataclass(frozen=True)
class PushAnswer:
    """The coordinator's answer to a worker's push: what happened, the weights, the next part.

    ``params`` are the global weights right after the push (None when an SGWU push is
    held for its round: pull after it merges), at ``version``; ``next`` is the worker's
    next assignment once the part counts (accepted) or is gone (revoked), None when the
    worker should retrain the same part (stale, invalid).
    """

    result: PushResult
    params: Params | None
    version: int
    next: Assignment | None


class Progress(NamedTuple):
    """Where a run stands: epochs completed, the weights' version, whether it is over, why it failed."""

    epochs_done: int
    version: int
    finished: bool
    failure: str | None


@dataclass(frozen=True)
class EpochWeights:
    """The global weights as they were when an epoch closed (``epoch`` epochs completed)."""

    epoch: int
    version: int
    seconds: float
    params: Params
