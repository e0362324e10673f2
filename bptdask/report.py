"""The run report of a distributed fit: typed records, their JSON form and a text summary.

:func:`bptdask.cluster.fit_on_cluster` returns a :class:`RunReport` and
``BPTClassifier.report_`` holds it. Its fields:

=================  ===========================================================================
``epochs_done``    epochs completed
``epoch_ends``     seconds from the start of the run to the end of each epoch
``seconds``        the run's length
``version``        merges the global weights saw (SGWU: rounds)
``generation``     coordinators before the last one (recoveries and resumes)
``rounds``         one :class:`RoundReport` per IDPA round: busy time, makespan, idle fraction
``chunk_sources``  epoch -> :class:`ChunkSources`: chunks read from memory, from a peer, from storage
``merge_rule``     the AGWU merge rule and its parameters, e.g. ``"inverse(merge_weight=1, staleness_decay=0.5)"``
``max_staleness``  the staleness bound (None: none)
``epoch_merges``   epoch -> :class:`EpochMerges`: merges, staleness, the weight applied, the effective step
``workers``        worker name -> :class:`WorkerTotals` (parts, samples, power, staleness)
``merges``         every merge, a :class:`MergeLog` of :class:`MergeRecord`
``evaluations``    one :class:`Evaluation` per scored epoch (with ``validation_data``)
``rejected``       pushes rejected as too stale
``invalid``        pushes rejected for NaN or infinite values
``failure``        why training stopped early (divergence), or None
``dropped``        worker name -> why the coordinator declared it lost
``checkpoints``    a :class:`CheckpointStatus`: written, last version, errors
``restored_version``  the checkpoint version the last coordinator started from, or None
``seen_version``   the highest version any worker saw (bounds the merges a recovery lost)
``coordinator``    address of the worker that held the final coordinator
``worker_loops``   task name -> :class:`WorkerSummary` (what each training task did)
``lost_workers``   task name -> why it was lost (killed, left, silent, failed)
``restarted_tasks``  tasks of surviving workers restarted against a recreated coordinator
``recoveries``     one :class:`Recovery` per recreated coordinator
``merges_lost``    merges the recoveries lost (those after the checkpoint they started from)
``resumed_from``   the checkpoint version the fit resumed from, or None
=================  ===========================================================================

:meth:`RunReport.to_dict` gives plain JSON-ready data (merges as columns) and
:meth:`RunReport.from_dict` reads it back; :func:`save_report` / :func:`load_report` do
the same through a file, and :func:`format_report` prints a summary.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from bptdask.atomic import replacing


@dataclass(frozen=True)
class MergeRecord:
    """One pushed update applied to the global weights.

    ``version`` is the version the merge produced (shared by a whole round in SGWU),
    ``base_version`` the one the worker trained from, ``staleness`` their distance when
    it was pushed, ``alpha`` the weight the update got, ``seconds`` the worker's
    training time and ``merged_at`` the seconds from the start of the run to the merge.
    """

    worker: str
    round_index: int
    part_index: int
    staleness: int
    alpha: float
    base_version: int
    version: int
    n_samples: int
    seconds: float
    merged_at: float


#: The columns of a :class:`MergeLog`, in the order of :class:`MergeRecord`'s fields.
MERGE_COLUMNS: tuple[str, ...] = tuple(spec.name for spec in fields(MergeRecord))
_FLOAT_COLUMNS = frozenset(spec.name for spec in fields(MergeRecord) if spec.type == "float")


class MergeLog:
    """Every merge of a run, oldest first, kept as one float64 table (80 bytes a merge).

    Iterating yields :class:`MergeRecord` objects; :meth:`column` gives one field as an
    array. Workers are stored as indices into :attr:`workers`.
    """

    def __init__(self, records: Iterable[MergeRecord] = ()):
        self.workers: list[str] = []
        self._codes: dict[str, int] = {}
        self._table = np.empty((64, len(MERGE_COLUMNS)), dtype=np.float64)
        self._size = 0
        for record in records:
            self.append(record)

    def append(self, record: MergeRecord) -> None:
        if self._size == len(self._table):
            self._table = np.concatenate([self._table, np.empty_like(self._table)])
        code = self._codes.setdefault(record.worker, len(self.workers))
        if code == len(self.workers):
            self.workers.append(record.worker)
        self._table[self._size] = [code, *dataclasses.astuple(record)[1:]]
        self._size += 1

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[MergeRecord]:
        return (self[index] for index in range(self._size))

    def __getitem__(self, index: int) -> MergeRecord:
        row = self._table[: self._size][index]
        values = {
            column: self.workers[int(value)]
            if column == "worker"
            else (float(value) if column in _FLOAT_COLUMNS else int(value))
            for column, value in zip(MERGE_COLUMNS, row, strict=True)
        }
        return MergeRecord(**values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MergeLog) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"MergeLog({self._size} merges)"

    def column(self, name: str) -> np.ndarray:
        """One field of every merge, ``(len(self),)``: names for ``"worker"``, else numbers."""
        values = self._table[: self._size, MERGE_COLUMNS.index(name)]
        if name == "worker":
            return np.asarray(self.workers, dtype=object)[values.astype(np.intp)]
        return values if name in _FLOAT_COLUMNS else values.astype(np.int64)

    def since(self, version: int) -> list[MergeRecord]:
        """The merges that produced a version above ``version``, oldest first."""
        versions = self._table[: self._size, MERGE_COLUMNS.index("version")]
        return [self[int(index)] for index in np.flatnonzero(versions > version)]

    def to_table(self) -> tuple[np.ndarray, list[str]]:
        """``(table (n, len(MERGE_COLUMNS)) float64, worker names)``: workers as indices."""
        return self._table[: self._size].copy(), list(self.workers)

    @classmethod
    def from_table(cls, table: np.ndarray, workers: list[str]) -> MergeLog:
        """The log :meth:`to_table` wrote; worker indices must index ``workers``."""
        log = cls()
        table = np.asarray(table, dtype=np.float64).reshape(-1, len(MERGE_COLUMNS))
        codes = table[:, 0]
        if len(codes) and (codes.min() < 0 or codes.max() >= len(workers) or not np.all(codes == np.round(codes))):
            raise ValueError(f"merge table names workers outside 0..{len(workers) - 1}")
        log.workers = list(workers)
        log._codes = {worker: index for index, worker in enumerate(workers)}
        log._table = np.concatenate([table, np.empty((64, len(MERGE_COLUMNS)))])
        log._size = len(table)
        return log

    def to_dict(self) -> dict[str, list]:
        """Column name -> the values of every merge (JSON-ready)."""
        return {name: self.column(name).tolist() for name in MERGE_COLUMNS}

    @classmethod
    def from_dict(cls, columns: dict[str, list]) -> MergeLog:
        rows = zip(*(columns[name] for name in MERGE_COLUMNS), strict=True)
        return cls(MergeRecord(*row) for row in rows)


@dataclass(frozen=True)
class RoundReport:
    """How evenly one finished IDPA round kept its workers busy.

    ``busy`` and ``samples`` map each worker that completed a part of the round to its
    training seconds and samples there. ``makespan`` is the longest busy time: the
    round's length had its workers started together. ``idle_fraction = 1 - sum(busy) /
    (m * makespan)`` over those ``m`` workers: 0 for a perfect split.
    """

    epoch: int
    round_index: int
    busy: dict[str, float]
    samples: dict[str, int]
    makespan: float
    idle_fraction: float


@dataclass
class WorkerTotals:
    """What the coordinator counted for one worker over the run.

    ``staleness`` lists the staleness of each of its merged parts; ``power`` is its
    measured samples/s (None before its first part).
    """

    parts: int = 0
    samples: int = 0
    busy_seconds: float = 0.0
    staleness: list[int] = field(default_factory=list)
    rejected: int = 0
    invalid: int = 0
    revoked: int = 0
    power: float | None = None


@dataclass
class WorkerSummary:
    """What one training task's loop did: parts trained, pushes retried, time waited."""

    worker: str
    device: str = "cpu"
    parts: int = 0
    samples: int = 0
    busy_seconds: float = 0.0
    wait_seconds: float = 0.0
    stale_retries: int = 0
    invalid_retries: int = 0
    revoked: int = 0
    dropped: bool = False


@dataclass
class ChunkSources:
    """Where chunks came from: this worker's ``memory``, a ``peer`` through Dask, or the ``storage``."""

    memory: int = 0
    peer: int = 0
    storage: int = 0

    def add(self, other: ChunkSources) -> None:
        self.memory += other.memory
        self.peer += other.peer
        self.storage += other.storage


@dataclass
class EpochMerges:
    """The updates that counted for one epoch, and how much of them was applied.

    ``total_alpha`` adds up the weights the merge rule gave them (1 a round: as much as
    SGWU's one average update); ``effective_lr`` is the epoch's learning rate times the
    weight applied per round: the rate a synchronous average would need to move as far.
    """

    merges: int = 0
    mean_staleness: float = 0.0
    max_staleness: int = 0
    total_alpha: float = 0.0
    effective_lr: float = 0.0


@dataclass(frozen=True)
class Evaluation:
    """The global weights scored at the end of an epoch (``epoch`` epochs completed)."""

    epoch: int
    seconds: float
    version: int
    accuracy: float


@dataclass(frozen=True)
class Recovery:
    """A coordinator recreated on ``new_coordinator`` from the checkpoint of ``checkpoint_version``."""

    seconds: float
    lost_coordinator: str
    reason: str
    checkpoint_version: int
    merges_lost: int
    new_coordinator: str


@dataclass
class CheckpointStatus:
    """Checkpoints written by the run, the version of the last, and the last few errors."""

    written: int = 0
    version: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class RunReport:
    """What a distributed fit did; see the module docstring for every field."""

    epochs_done: int
    epoch_ends: list[float]
    seconds: float
    version: int
    generation: int
    rounds: list[RoundReport]
    workers: dict[str, WorkerTotals]
    merges: MergeLog
    evaluations: list[Evaluation]
    rejected: int
    invalid: int
    failure: str | None
    dropped: dict[str, str]
    checkpoints: CheckpointStatus
    restored_version: int | None
    seen_version: int
    chunk_sources: dict[int, ChunkSources] = field(default_factory=dict)
    merge_rule: str = ""
    max_staleness: int | None = None
    epoch_merges: dict[int, EpochMerges] = field(default_factory=dict)
    coordinator: str = ""
    worker_loops: dict[str, WorkerSummary] = field(default_factory=dict)
    lost_workers: dict[str, str] = field(default_factory=dict)
    restarted_tasks: list[str] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)
    merges_lost: int = 0
    resumed_from: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: records as dicts, merges as columns."""
        plain = {spec.name: getattr(self, spec.name) for spec in fields(self)}
        plain["merges"] = self.merges.to_dict()
        for name in ("rounds", "evaluations", "recoveries"):
            plain[name] = [dataclasses.asdict(record) for record in plain[name]]
        for name in ("workers", "worker_loops"):
            plain[name] = {key: dataclasses.asdict(record) for key, record in plain[name].items()}
        plain["checkpoints"] = dataclasses.asdict(self.checkpoints)
        plain["chunk_sources"] = {str(epoch): dataclasses.asdict(c) for epoch, c in self.chunk_sources.items()}
        plain["epoch_merges"] = {str(epoch): dataclasses.asdict(m) for epoch, m in self.epoch_merges.items()}
        return json.loads(json.dumps(plain))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunReport:
        """The report :meth:`to_dict` gave (as read back from JSON)."""
        values = {spec.name: data[spec.name] for spec in fields(cls) if spec.name in data}
        values["merges"] = MergeLog.from_dict(data["merges"])
        values["rounds"] = [RoundReport(**record) for record in data["rounds"]]
        values["evaluations"] = [Evaluation(**record) for record in data["evaluations"]]
        values["recoveries"] = [Recovery(**record) for record in data.get("recoveries", [])]
        values["workers"] = {key: WorkerTotals(**record) for key, record in data["workers"].items()}
        values["worker_loops"] = {key: WorkerSummary(**record) for key, record in data.get("worker_loops", {}).items()}
        values["checkpoints"] = CheckpointStatus(**data["checkpoints"])
        values["chunk_sources"] = {int(e): ChunkSources(**c) for e, c in data.get("chunk_sources", {}).items()}
        values["epoch_merges"] = {int(e): EpochMerges(**m) for e, m in data.get("epoch_merges", {}).items()}
        return cls(**values)


def worker_rows(report: RunReport) -> list[dict[str, Any]]:
    """One row per worker: device, parts, samples, busy seconds, power (samples/s), staleness."""
    rows = []
    for worker, totals in sorted(report.workers.items()):
        loop = report.worker_loops.get(worker)
        device = loop.device if loop is not None else ("lost" if worker in report.lost_workers else "?")
        rows.append(
            {
                "worker": worker,
                "device": device,
                "parts": totals.parts,
                "samples": totals.samples,
                "busy_seconds": totals.busy_seconds,
                "power": totals.power or 0.0,
                "mean_staleness": statistics.fmean(totals.staleness) if totals.staleness else 0.0,
                "rejected": totals.rejected,
            }
        )
    return rows


def format_report(report: RunReport) -> str:
    """A few lines for a terminal: rounds, merges, lost workers and a per-worker table."""
    idle = statistics.fmean(r.idle_fraction for r in report.rounds) if report.rounds else 0.0
    lines = [
        f"{report.epochs_done} epochs in {report.seconds:.1f} s: {len(report.rounds)} IDPA rounds "
        f"(mean idle fraction {idle:.3f}), {report.version} merges, {report.rejected} stale pushes rejected",
        f"{'worker':<28} {'device':>6} {'parts':>6} {'samples':>8} {'busy s':>8} {'samples/s':>10} {'staleness':>9}",
    ]
    for row in worker_rows(report):
        lines.append(
            f"{row['worker']:<28} {row['device']:>6} {row['parts']:>6} {row['samples']:>8} "
            f"{row['busy_seconds']:>8.2f} {row['power']:>10.0f} {row['mean_staleness']:>9.2f}"
        )
    if report.epoch_merges:
        steps = ", ".join(f"{m.effective_lr:.3g}" for _, m in sorted(report.epoch_merges.items()))
        lines.append(f"merge rule {report.merge_rule}; effective learning rate by epoch: {steps}")
    if report.chunk_sources:
        per_epoch = ", ".join(f"{c.memory}/{c.peer}/{c.storage}" for _, c in sorted(report.chunk_sources.items()))
        lines.append(f"chunks from memory/peer/storage, by epoch: {per_epoch}")
    lines += [f"lost {worker}: {reason}" for worker, reason in report.lost_workers.items()]
    if report.resumed_from is not None:
        lines.append(f"resumed from the checkpoint of version {report.resumed_from}")
    if report.restarted_tasks:
        lines.append(f"{len(report.restarted_tasks)} tasks restarted against a recreated coordinator")
    lines += [
        f"coordinator on {r.lost_coordinator} lost at {r.seconds:.1f} s; recreated on {r.new_coordinator} "
        f"from version {r.checkpoint_version} ({r.merges_lost} merges lost)"
        for r in report.recoveries
    ]
    if report.invalid:
        lines.append(f"{report.invalid} updates rejected for NaN/inf values")
    if report.checkpoints.written:
        lines.append(
            f"{report.checkpoints.written} checkpoints written, the last of version {report.checkpoints.version}"
        )
    lines += [f"checkpoint failed: {error}" for error in report.checkpoints.errors]
    return "\n".join(lines)


def save_report(report: RunReport, path: str | os.PathLike) -> Path:
    """Write ``report`` as JSON to ``path`` atomically (a complete file or the old one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as staged:
        staged.write_text(json.dumps(report.to_dict(), indent=1))
    return path


def load_report(path: str | os.PathLike) -> RunReport:
    """Read a report written by :func:`save_report`."""
    return RunReport.from_dict(json.loads(Path(path).read_text()))
