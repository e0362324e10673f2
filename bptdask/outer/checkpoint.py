"""Checkpoints of a distributed run: Zarr groups in one directory, written atomically.

A checkpoint directory holds one Zarr v3 group per checkpoint, named
``g{generation:04d}-v{version:012d}``: the run's *generation* (0 for a fresh run, one
more after each recovery or resume) and the global weights' version. The newest
complete one is the greatest name. Each is written under a hidden temporary name in the
same directory and renamed into place only when complete (:mod:`bptdask.atomic`), so a
write that fails or is killed half-way leaves the previous checkpoint current; the
oldest are pruned after a new one lands (``keep``, default 2).

A checkpoint holds the global weights (``params/{name}``, NumPy arrays), the merge log
as one float64 table (``merges``, a row per merge, columns
:data:`~bptdask.report.MERGE_COLUMNS`, workers as indices into a list) and one JSON
document in the group's attributes: the version, generation, completed epochs, the
completed chunks of every open epoch (IDPA state), the workers' measured powers, epoch
end times, scores, the seed, and the description of the run
(:func:`~bptdask.outer.run_config.describe_run`: architecture, settings, chunk sizes) that a
resume must match (:meth:`CheckpointStore.resume`). Nothing is pickled. Loading reads
only Zarr v3 arrays of numeric dtypes through a fixed list of codecs, so a file can
never run code; anything else is refused.

The directory must be on a file system the coordinator's worker and the client share
(the dataset's usually is): the coordinator writes, the client reads after a failure.
Killed processes cannot leave a half-written checkpoint current; the data is not
fsync-ed, so a power loss may.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.errors
from zarr.storage import LocalStore

from bptdask._typing import Params
from bptdask.atomic import replacing
from bptdask.errors import CheckpointError, ConfigurationError
from bptdask.outer.run_config import RunConfig
from bptdask.report import MERGE_COLUMNS, CheckpointStatus, Evaluation, MergeLog
from bptdask.validation import check_integer

FORMAT_NAME = "bptdask-checkpoints"
#: 2: the run's description and its seed are stored apart (``run``, ``seed``).
FORMAT_VERSION = 2
#: Codecs a checkpoint's arrays may use; an array naming any other is refused unread.
SAFE_CODECS = frozenset({"bytes", "zstd", "gzip", "crc32c", "transpose", "blosc"})
_NAME = re.compile(r"^g(\d{4,})-v(\d{12,})$")
_NUMERIC_KINDS = "fiub"


@dataclass
class CheckpointState:
    """Everything a coordinator needs to carry a run on (see the module docstring).

    ``open_epochs`` maps each epoch still running to the chunks completed in it;
    ``powers`` each worker's measured samples/s; ``run`` the run's JSON description
    (:func:`~bptdask.outer.run_config.describe_run`) and ``seed`` its seed; ``counts`` the
    run's elapsed milliseconds and its rejected and invalid pushes.
    """

    params: Params
    version: int
    generation: int
    epochs_done: int
    open_epochs: dict[int, list[int]]
    powers: dict[str, float]
    run: dict[str, Any]
    seed: int
    merges: MergeLog = field(default_factory=MergeLog)
    epoch_ends: list[float] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The checkpoint's directory name, ordered by (generation, version)."""
        return f"g{self.generation:04d}-v{self.version:012d}"


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
            f"checkpoint directory {text!r} holds other files; pass a new or empty directory, or one written by bptdask"
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
        self.path = check_checkpoint_path(path)
        self.keep = check_integer("keep", keep, minimum=1)

    def __repr__(self) -> str:
        return f"CheckpointStore({str(self.path)!r})"

    def names(self) -> list[str]:
        """Complete checkpoints, oldest first."""
        if not self.path.is_dir():
            return []
        found = [p.name for p in self.path.iterdir() if p.is_dir() and _NAME.match(p.name)]
        return sorted(found, key=lambda name: tuple(map(int, _NAME.match(name).groups())))

    def resume(self, run: dict[str, Any]) -> CheckpointState | None:
        """The newest checkpoint, to resume the run described by ``run``; None when there is none.

        Raises
        ------
        CheckpointError
            When the checkpoint is of another run (:func:`~bptdask.outer.run_config.describe_run`
            differs): another model, other settings or another dataset.
        """
        state = self.latest()
        if state is None:
            return None
        differences = sorted(key for key in {*run, *state.run} if state.run.get(key) != run.get(key))
        if differences:
            settings = state.run.get("settings", {})
            changed = sorted(
                k for k in {*settings, *run.get("settings", {})} if settings.get(k) != run["settings"].get(k)
            )
            detail = f" ({', '.join(changed)})" if changed else ""
            raise CheckpointError(
                f"the checkpoint in {self.path} is of another run: its {', '.join(differences)}{detail} differ from "
                "this fit's; fit with the same model, settings and dataset to resume, or pass a new checkpoint "
                "directory"
            )
        return state

    def write(self, state: CheckpointState) -> Path:
        """Write ``state`` as a new checkpoint, atomically; returns its directory."""
        self.path.mkdir(parents=True, exist_ok=True)
        if _root_format(self.path) != FORMAT_NAME:
            zarr.open_group(LocalStore(self.path), mode="a", attributes={"format": FORMAT_NAME})
        final = self.path / state.name
        with replacing(final) as staged:
            _write_group(staged, state)
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
        self.store, self.every = store, check_integer("checkpoint_every", every, minimum=1)
        self.status = CheckpointStatus(version=version)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="bptdask-checkpoint") if background else None
        self._writing: Future | None = None

    def merged(self, version: int, snapshot: Callable[[], CheckpointState]) -> None:
        """A merge produced ``version``: checkpoint ``snapshot()`` if one is due."""
        if version - self.status.version < self.every:
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
            self.status.errors = [*self.status.errors[-4:], f"v{state.version}: {exc!r}"]
            warnings.warn(f"checkpoint of version {state.version} failed: {exc!r}", RuntimeWarning, stacklevel=2)
            return None
        self.status.written += 1
        self.status.version = max(self.status.version, state.version)
        return state.version


def _write_group(directory: Path, state: CheckpointState) -> None:
    table, workers = state.merges.to_table()
    document = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "version": state.version,
        "generation": state.generation,
        "epochs_done": state.epochs_done,
        "open_epochs": {str(epoch): sorted(map(int, chunks)) for epoch, chunks in state.open_epochs.items()},
        "powers": state.powers,
        "run": state.run,
        "seed": state.seed,
        "epoch_ends": state.epoch_ends,
        "evaluations": [dataclasses.asdict(evaluation) for evaluation in state.evaluations],
        "counts": state.counts,
        "params": {name: list(np.shape(value)) for name, value in state.params.items()},
        "merge_columns": list(MERGE_COLUMNS),
        "merge_workers": workers,
    }
    group = zarr.open_group(LocalStore(directory), mode="w-", attributes=document)
    for name, value in state.params.items():
        group.create_array(f"params/{name}", data=np.ascontiguousarray(value))
    group.create_array("merges", data=table)


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
    if document.get("format_version", 0) != FORMAT_VERSION:
        newer = document.get("format_version", 0) > FORMAT_VERSION
        raise CheckpointError(
            f"{directory} was written by {'a newer' if newer else 'an older'} bptdask (checkpoint format "
            f"{document.get('format_version')}, this version reads {FORMAT_VERSION}); "
            + ("upgrade bptdask" if newer else "start with a new checkpoint directory")
        )
    try:
        params = {
            name: _read_numeric(group, f"params/{name}", tuple(shape)) for name, shape in document["params"].items()
        }
        workers, columns = document["merge_workers"], document["merge_columns"]
        if tuple(columns) != MERGE_COLUMNS:
            raise CheckpointError(f"{directory}: the merge log has columns {columns}, expected {list(MERGE_COLUMNS)}")
        table = _read_numeric(group, "merges", None)
        if table.ndim != 2 or table.shape[1] != len(columns):
            raise CheckpointError(f"{directory}: the merge log has shape {table.shape}")
        return CheckpointState(
            params=params,
            version=int(document["version"]),
            generation=int(document["generation"]),
            epochs_done=int(document["epochs_done"]),
            open_epochs={int(epoch): list(chunks) for epoch, chunks in document["open_epochs"].items()},
            powers={str(k): float(v) for k, v in document["powers"].items()},
            run=dict(document["run"]),
            seed=int(document["seed"]),
            merges=MergeLog.from_table(table, list(workers)),
            epoch_ends=list(document["epoch_ends"]),
            evaluations=[Evaluation(**evaluation) for evaluation in document["evaluations"]],
            counts=dict(document["counts"]),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CheckpointError(
            f"{directory}: the checkpoint is incomplete or malformed ({type(exc).__name__}: {exc})"
        ) from None


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
        raise CheckpointError(
            f"checkpoint array {name!r} uses codecs {sorted(codecs - SAFE_CODECS)}; refusing to read it"
        )
    if np.dtype(array.dtype).kind not in _NUMERIC_KINDS:
        raise CheckpointError(f"checkpoint array {name!r} has dtype {array.dtype}; only numeric arrays are read")
    if shape is not None and tuple(array.shape) != shape:
        raise CheckpointError(f"checkpoint array {name!r} has shape {array.shape}, its header says {shape}")
    return array[...]


def resume_run(
    checkpoint: str | os.PathLike | None, config: RunConfig, run: dict[str, Any]
) -> tuple[CheckpointStore | None, CheckpointState | None, RunConfig]:
    """Open a run's checkpoint directory and find where the run starts.

    Parameters
    ----------
    checkpoint : path or None
        The run's checkpoint directory, if it has one.
    config : RunConfig
    run : dict
        The run's description (:func:`~bptdask.outer.run_config.describe_run`).

    Returns
    -------
    store : CheckpointStore or None
    resume : CheckpointState or None
        The newest checkpoint of this run, or None for a fresh start.
    config : RunConfig
        ``config`` with the checkpoint's seed when resuming (the chunk order and the
        workers' sample order follow it), else as given.

    Raises
    ------
    CheckpointError
        The directory holds a checkpoint of another run.
    """
    if checkpoint is None:
        return None, None, config
    store = CheckpointStore(checkpoint)
    resume = store.resume(run)
    return store, resume, config if resume is None else config.replace(seed=resume.seed)
