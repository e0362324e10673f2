"""Checkpoints of a distributed run: Zarr groups in one directory, written atomically.

A checkpoint directory holds one Zarr v3 group per checkpoint, named
``g{generation:04d}-v{version:012d}``: the run's *generation* (0 for a fresh run, one
more after each recovery or resume) and the global weights' version. The newest
complete one is the greatest name. Each is written under a hidden temporary name in the
same directory and renamed into place only when complete, so a write that fails or is
killed half-way leaves the previous checkpoint current; the oldest are pruned after a
new one lands (``keep``, default 2).

A checkpoint holds the global weights (``params/{name}``, NumPy arrays), the merge log
as one float64 table (``merges``, a row per merge, columns :data:`MERGE_COLUMNS`,
workers as indices into a list) and one JSON document in the group's attributes: the
version, generation, completed epochs, the completed chunks of every open epoch (IDPA
state), the workers' measured powers, epoch end times, scores, and the run's
configuration (training settings, merge rule, chunk sizes, architecture), which a resume
checks against. Nothing is pickled. Loading reads only Zarr v3 arrays of numeric dtypes
through a fixed list of codecs, so a file can never run code; anything else is refused.

The directory must be on a file system the coordinator's worker and the client share
(the dataset's usually is): the coordinator writes, the client reads after a failure.
Killed processes cannot leave a half-written checkpoint current; the data is not
fsync-ed, so a power loss may.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.errors
from zarr.storage import LocalStore

from bptdask._typing import Params
from bptdask.errors import CheckpointError, ConfigurationError
from bptdask.ps import MergeRecord

FORMAT_NAME = "bptdask-checkpoints"
FORMAT_VERSION = 1
#: Codecs a checkpoint's arrays may use; an array naming any other is refused unread.
SAFE_CODECS = frozenset({"bytes", "zstd", "gzip", "crc32c", "transpose", "blosc"})
#: The merge log's columns, in the order of :class:`~bptdask.ps.MergeRecord`.
MERGE_COLUMNS = [spec.name for spec in fields(MergeRecord)]
_NAME = re.compile(r"^g(\d{4,})-v(\d{12,})$")
_NUMERIC_KINDS = "fiub"


@dataclass
class CheckpointState:
    """Everything a coordinator needs to carry a run on (see the module docstring).

    ``open_epochs`` maps each epoch still running to the chunks completed in it;
    ``powers`` each worker's measured samples/s; ``config`` the run's JSON description.
    """

    params: Params
    version: int
    generation: int
    epochs_done: int
    open_epochs: dict[int, list[int]]
    powers: dict[str, float]
    config: dict[str, Any]
    merges: list[MergeRecord] = field(default_factory=list)
    epoch_ends: list[float] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The checkpoint's directory name, ordered by (generation, version)."""
        return f"g{self.generation:04d}-v{self.version:012d}"


def describe_run(architecture: dict, settings: dict, chunk_sizes: list[int], mode: str) -> dict[str, Any]:
    """What defines a run, as its checkpoints store it; a resume must match it.

    ``settings`` are the training settings as a dict; their seed and device may differ
    on a resume (the checkpoint's seed is used), so they are left out.
    """
    described = {key: value for key, value in settings.items() if key not in ("seed", "device")}
    config = {"architecture": architecture, "settings": described, "chunk_sizes": chunk_sizes, "mode": mode}
    return json.loads(json.dumps(config))  # as the JSON header stores it: tuples become lists


def check_checkpoint_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path, if it can hold checkpoints: new, empty, or a checkpoint directory.

    Raises
    ------
    ConfigurationError
        For a URL, a file, or a directory that holds other things.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigurationError(f"checkpoint must be a directory path, got {type(path).__name__} {path!r}")
    text = os.fspath(path)
    if "://" in text:
        raise ConfigurationError(
            f"checkpoint {text!r} is a URL; checkpoints need a directory on a file system that the client and "
            "the workers share (for example on the cluster's shared disk)"
        )
    resolved = Path(text).expanduser().resolve()
    if resolved.exists() and not resolved.is_dir():
        raise ConfigurationError(f"checkpoint {text!r} is a file; pass a directory (new or holding checkpoints)")
    if resolved.is_dir() and any(resolved.iterdir()) and _root_format(resolved) != FORMAT_NAME:
        raise ConfigurationError(
            f"checkpoint directory {text!r} holds other files; pass a new or empty directory, or one written "
            "by bptdask"
        )
    return resolved


def _root_format(root: Path) -> str | None:
    try:
        return zarr.open_group(LocalStore(root, read_only=True), mode="r").attrs.get("format")
    except (FileNotFoundError, zarr.errors.NodeNotFoundError, zarr.errors.ContainsArrayError, ValueError):
        return None


class CheckpointStore:
    """The checkpoint directory at ``path``; see the module docstring.

    Parameters
    ----------
    path : str or PathLike
        A new or empty directory, or one holding checkpoints (checked).
    keep : int
        Complete checkpoints kept; older ones are deleted after a new one lands.
    """

    def __init__(self, path: str | os.PathLike, *, keep: int = 2):
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ConfigurationError(f"keep must be an integer >= 1, got {keep!r}")
        self.path = check_checkpoint_path(path)
        self.keep = keep

    def __repr__(self) -> str:
        return f"CheckpointStore({str(self.path)!r})"

    def names(self) -> list[str]:
        """Complete checkpoints, oldest first."""
        if not self.path.is_dir():
            return []
        found = [p.name for p in self.path.iterdir() if p.is_dir() and _NAME.match(p.name)]
        return sorted(found, key=lambda name: tuple(map(int, _NAME.match(name).groups())))

    def check_resumable(self, state: CheckpointState, config: dict[str, Any]) -> None:
        """Refuse to resume ``state`` for a run described otherwise (:func:`describe_run`)."""
        differences = sorted(key for key in config if state.config.get(key) != config[key])
        if differences:
            raise CheckpointError(
                f"the checkpoint in {self.path} is of another run: its {', '.join(differences)} differ from this "
                "fit's; fit with the same model, settings and dataset to resume, or pass a new checkpoint directory"
            )

    def write(self, state: CheckpointState) -> Path:
        """Write ``state`` as a new checkpoint, atomically; returns its directory."""
        self.path.mkdir(parents=True, exist_ok=True)
        if _root_format(self.path) != FORMAT_NAME:
            zarr.open_group(LocalStore(self.path), mode="a", attributes={"format": FORMAT_NAME})
        final = self.path / state.name
        partial = self.path / f".{state.name}.partial-{uuid.uuid4().hex[:12]}"
        try:
            _write_group(partial, state)
            if final.exists():
                shutil.rmtree(final)
            os.rename(partial, final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        for old in self.names()[: -self.keep]:
            shutil.rmtree(self.path / old, ignore_errors=True)
        return final

    def latest(self) -> CheckpointState | None:
        """The newest checkpoint that loads, or None when there is none.

        A newest checkpoint that fails to load (damaged after it was written) is
        skipped with a warning for the one before it.
        """
        names = self.names()
        for name in reversed(names):
            try:
                return load_checkpoint(self.path / name)
            except CheckpointError as exc:
                if name == names[0]:
                    raise
                warnings.warn(f"skipping damaged checkpoint {name}: {exc}", RuntimeWarning, stacklevel=2)
        return None


class CheckpointWriter:
    """Writes a run's checkpoints every ``every`` versions, in the background if asked.

    :meth:`merged` is called after each merge with a function that snapshots the run:
    once ``every`` versions have passed since the last checkpoint, the snapshot is
    taken there and then (consistent), and written on a thread of its own when
    ``background`` is true, so the caller never waits for the disk; a checkpoint that
    falls due while one is being written is taken after it. A failed write is recorded
    in :attr:`status` and warned about; the previous checkpoint stays current.
    """

    def __init__(self, store: CheckpointStore, *, every: int, background: bool = True, version: int = 0):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigurationError(f"checkpoint_every must be an integer >= 1, got {every!r}")
        self.store, self.every = store, every
        self.status: dict[str, Any] = {"written": 0, "version": version, "errors": []}
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="bptdask-checkpoint") if background else None
        self._writing: Future | None = None

    def merged(self, version: int, snapshot: Callable[[], CheckpointState]) -> None:
        """A merge produced ``version``: checkpoint ``snapshot()`` if one is due."""
        if version - self.status["version"] < self.every:
            return
        if self._thread is None:
            self._write(snapshot())
        elif self._writing is None or self._writing.done():
            self._writing = self._thread.submit(self._write, snapshot())

    def write(self, state: CheckpointState) -> int | None:
        """Write ``state`` now, after any write in progress; its version, or None if it failed."""
        if self._writing is not None:
            self._writing.result()
        return self._write(state)

    def _write(self, state: CheckpointState) -> int | None:
        try:
            self.store.write(state)
        except Exception as exc:
            self.status["errors"] = [*self.status["errors"][-4:], f"v{state.version}: {exc!r}"]
            warnings.warn(f"checkpoint of version {state.version} failed: {exc!r}", RuntimeWarning, stacklevel=2)
            return None
        self.status["written"] += 1
        self.status["version"] = max(self.status["version"], state.version)
        return state.version


def _write_group(directory: Path, state: CheckpointState) -> None:
    workers = sorted({record.worker for record in state.merges})
    document = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "version": state.version,
        "generation": state.generation, "epochs_done": state.epochs_done,
        "open_epochs": {str(epoch): sorted(map(int, chunks)) for epoch, chunks in state.open_epochs.items()},
        "powers": state.powers, "config": state.config, "epoch_ends": state.epoch_ends,
        "evaluations": state.evaluations, "counts": state.counts,
        "params": {name: list(np.shape(value)) for name, value in state.params.items()},
        "merge_columns": MERGE_COLUMNS, "merge_workers": workers,
    }
    group = zarr.open_group(LocalStore(directory), mode="w-", attributes=document)
    for name, value in state.params.items():
        group.create_array(f"params/{name}", data=np.ascontiguousarray(value))
    group.create_array("merges", data=_merge_table(state.merges, workers))


def _merge_table(records: list[MergeRecord], workers: list[str]) -> np.ndarray:
    """The merge log as a float64 table ``(n_merges, len(MERGE_COLUMNS))``; workers as indices."""
    code = {worker: index for index, worker in enumerate(workers)}
    rows = [
        [code[record.worker] if column == "worker" else getattr(record, column) for column in MERGE_COLUMNS]
        for record in records
    ]
    return np.asarray(rows, dtype=np.float64).reshape(len(records), len(MERGE_COLUMNS))


def load_checkpoint(directory: str | os.PathLike) -> CheckpointState:
    """Read one checkpoint group, refusing anything that is not plain numeric Zarr v3 data.

    Raises
    ------
    CheckpointError
        When the group is missing, of another format or version, or holds arrays of
        another dtype, shape or codec than a bptdask checkpoint writes.
    """
    directory = Path(directory)
    try:
        group = zarr.open_group(LocalStore(directory, read_only=True), mode="r")
    except (FileNotFoundError, zarr.errors.NodeNotFoundError, zarr.errors.ContainsArrayError, ValueError) as exc:
        raise CheckpointError(f"{directory} is not a checkpoint ({type(exc).__name__}: {exc})") from None
    document = dict(group.attrs)
    if group.metadata.zarr_format != 3 or document.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{directory} is not a bptdask checkpoint (format {document.get('format')!r})")
    if document.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{directory} was written by a newer bptdask (checkpoint format {document['format_version']}, this "
            f"version reads up to {FORMAT_VERSION}); upgrade bptdask"
        )
    try:
        params = {name: _read_numeric(group, f"params/{name}", tuple(shape)) for name, shape in document["params"].items()}
        workers, columns = document["merge_workers"], document["merge_columns"]
        if columns != MERGE_COLUMNS:
            raise CheckpointError(f"{directory}: the merge log has columns {columns}, expected {MERGE_COLUMNS}")
        table = _read_numeric(group, "merges", None)
        if table.ndim != 2 or table.shape[1] != len(columns):
            raise CheckpointError(f"{directory}: the merge log has shape {table.shape}")
        kinds = {spec.name: spec.type for spec in fields(MergeRecord)}
        merges = [
            MergeRecord(**{
                column: workers[int(value)] if column == "worker" else (float if kinds[column] == "float" else int)(value)
                for column, value in zip(columns, row)
            })
            for row in table
        ]
        return CheckpointState(
            params=params, version=int(document["version"]), generation=int(document["generation"]),
            epochs_done=int(document["epochs_done"]),
            open_epochs={int(epoch): list(chunks) for epoch, chunks in document["open_epochs"].items()},
            powers={str(k): float(v) for k, v in document["powers"].items()}, config=document["config"],
            merges=merges, epoch_ends=list(document["epoch_ends"]), evaluations=list(document["evaluations"]),
            counts=dict(document["counts"]),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{directory}: the checkpoint is incomplete or malformed ({type(exc).__name__}: {exc})") from None


def _read_numeric(group: zarr.Group, name: str, shape: tuple[int, ...] | None) -> np.ndarray:
    """The array ``name`` of ``group``, after checking its format, dtype, codecs and shape."""
    try:
        array = group[name]
    except KeyError:
        raise CheckpointError(f"checkpoint array {name!r} is missing") from None
    except Exception as exc:  # an unknown codec or data type, malformed metadata
        raise CheckpointError(f"checkpoint array {name!r} cannot be opened ({type(exc).__name__}: {exc})") from None
    if not isinstance(array, zarr.Array) or array.metadata.zarr_format != 3:
        raise CheckpointError(f"checkpoint entry {name!r} is not a Zarr v3 array; refusing to read it")
    codecs = {codec.get("name") for codec in array.metadata.to_dict().get("codecs", ())}
    if not codecs <= SAFE_CODECS:
        raise CheckpointError(f"checkpoint array {name!r} uses codecs {sorted(codecs - SAFE_CODECS)}; refusing to read it")
    if np.dtype(array.dtype).kind not in _NUMERIC_KINDS:
        raise CheckpointError(f"checkpoint array {name!r} has dtype {array.dtype}; only numeric arrays are read")
    if shape is not None and tuple(array.shape) != shape:
        raise CheckpointError(f"checkpoint array {name!r} has shape {array.shape}, its header says {shape}")
    return array[...]
