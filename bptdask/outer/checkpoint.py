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
(:func:`~bptdask.outer.run_config.describe_run`: architecture, settings, seed, data) that a
resume must match (:meth:`CheckpointStore.resume`). Nothing is pickled. Loading reads
only Zarr v3 arrays of numeric dtypes through a fixed list of codecs, so a file can
never run code; anything else is refused.

Integrity: every chunk is stored (also an all-zero one) with a CRC32C checksum (Zarr's
``crc32c`` codec, as datasets are), the document records each array's shape, dtype and
the CRC32C of its contents, and the document carries the CRC32C of itself. Loading
checks all of them, so a deleted, truncated, bit-flipped or swapped file raises
:class:`~bptdask.errors.CheckpointError` naming it, and :meth:`CheckpointStore.latest`
falls back to the newest intact checkpoint, with a warning.

The directory must be on a file system the coordinator's worker and the client share
(the dataset's usually is): the coordinator writes, the client reads after a failure.
Killed processes cannot leave a half-written checkpoint current; the data is not
fsync-ed, so a power loss may.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import zarr
import zarr.errors
from zarr.codecs import Crc32cCodec, ZstdCodec
from zarr.storage import LocalStore

from bptdask._typing import Params
from bptdask.atomic import replacing
from bptdask.checksums import array_crc32c
from bptdask.errors import CheckpointError, ConfigurationError
from bptdask.model import Sequential
from bptdask.outer.run_config import RunConfig
from bptdask.report import MERGE_COLUMNS, CheckpointStatus, Evaluation, MergeLog
from bptdask.validation import check_integer

FORMAT_NAME = "bptdask-checkpoints"
#: 2: the run's description and its seed are stored apart (``run``, ``seed``).
#: 3: checksums (chunks, array contents, the document) and every chunk stored.
FORMAT_VERSION = 3
#: Codecs a checkpoint's arrays may use; an array naming any other is refused unread.
SAFE_CODECS = frozenset({"bytes", "zstd", "gzip", "crc32c", "transpose", "blosc"})
_NAME = re.compile(r"^g(\d{4,})-v(\d{12,})$")
_NUMERIC_KINDS = "fiub"
#: The attributes of a checkpoint directory's own Zarr group.
_ROOT_ATTRIBUTES = {"format": FORMAT_NAME}
#: The document's key holding the CRC32C of the rest of it.
_CHECKSUM_KEY = "checksum"


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
        For a URL, a file, a directory that holds other things or cannot be listed, or
        one checkpoint of a checkpoint directory (its parent is meant).
    CheckpointError
        For a checkpoint directory whose own ``zarr.json`` is damaged.
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
    try:
        occupied = resolved.is_dir() and any(resolved.iterdir())
    except OSError as exc:
        raise ConfigurationError(
            f"checkpoint directory {text!r} cannot be listed ({exc.strerror}); pass a directory this process "
            "may read and write"
        ) from None
    if _NAME.match(resolved.name) and (resolved / "params").is_dir():
        raise ConfigurationError(
            f"checkpoint {text!r} is one checkpoint of the directory {str(resolved.parent)!r}; pass that directory"
        )
    if occupied and _root_format(resolved) != FORMAT_NAME:
        raise ConfigurationError(
            f"checkpoint directory {text!r} holds other files; pass a new or empty directory, or one written by bptdask"
        )
    return resolved


def _root_format(root: Path) -> str | None:
    """The format named by the ``zarr.json`` of ``root``; None when it has none.

    Raises
    ------
    CheckpointError
        When that file exists but cannot be read as a Zarr group's metadata.
    """
    if not (root / "zarr.json").exists():
        return None
    try:
        return zarr.open_group(LocalStore(root, read_only=True), mode="r").attrs.get("format")
    except (zarr.errors.ContainsArrayError, zarr.errors.NodeNotFoundError):
        return None
    except Exception as exc:  # JSON, Unicode or metadata errors of a damaged file
        raise CheckpointError(
            f"{root / 'zarr.json'} is damaged ({type(exc).__name__}: {exc}); if {root} holds bptdask checkpoints, "
            f'restore that file as {{"zarr_format": 3, "node_type": "group", "attributes": {{"format": '
            f'"{FORMAT_NAME}"}}}}, else pass another directory'
        ) from None


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

    def check_writable(self) -> None:
        """Create the directory if needed and write and delete a probe file in it.

        Raises
        ------
        ConfigurationError
            When that fails (read-only, no permission, disk full), naming the directory.
        """
        probe = self.path / f".bptdask-probe-{uuid.uuid4().hex[:12]}"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with open(probe, "wb") as handle:
                handle.write(b"bptdask checks that checkpoints can be written here\n" * 64)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise ConfigurationError(
                f"checkpoints cannot be written to {self.path} ({exc.strerror or exc}); pass a directory this "
                "process and the workers may write, on a disk with free space"
            ) from None
        finally:
            probe.unlink(missing_ok=True)

    def resume(self, run: dict[str, Any]) -> CheckpointState | None:
        """The newest intact checkpoint, to resume the run described by ``run``; None when there is none.

        Raises
        ------
        CheckpointError
            When the checkpoint is of another run (:func:`~bptdask.outer.run_config.describe_run`
            differs: another model, settings, seed or dataset), or none of the
            directory's checkpoints is intact.
        """
        return self.latest(run=run)

    def write(self, state: CheckpointState) -> Path:
        """Write ``state`` as a new checkpoint, atomically; returns its directory.

        Older checkpoints are pruned only once the new one is in place, so a write that
        fails (disk full, permissions) leaves every existing checkpoint as it was.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        if _root_format(self.path) != FORMAT_NAME:
            with replacing(self.path / "zarr.json") as staged:  # a full disk cannot leave it half-written
                staged.write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": _ROOT_ATTRIBUTES}))
        final = self.path / state.name
        with replacing(final) as staged:
            _write_group(staged, state)
        for old in self.names()[: -self.keep]:
            shutil.rmtree(self.path / old, ignore_errors=True)
        return final

    def latest(self, *, run: dict[str, Any] | None = None) -> CheckpointState | None:
        """The newest intact checkpoint, or None when the directory holds none.

        Damaged checkpoints are skipped, each with a warning, for the newest intact one
        before them; nothing on disk is changed. With ``run``, the run description of
        the checkpoint must equal it, and its weights must have the shapes of the run's
        architecture (both checked before its arrays are read).

        Raises
        ------
        CheckpointError
            When checkpoints exist but none is intact, or (with ``run``) they are of
            another run.
        """
        names = self.names()
        shapes = None if run is None else Sequential.from_config(run["architecture"]).param_shapes()
        damaged = []
        for name in reversed(names):
            try:
                document = read_document(self.path / name)
            except CheckpointError as exc:
                damaged.append(str(exc))
                continue
            if run is not None:
                check_same_run(document["run"], run, self.path)
            try:
                state = read_state(self.path / name, document, shapes=shapes)
            except CheckpointError as exc:
                damaged.append(str(exc))
                continue
            for problem in damaged:
                warnings.warn(f"skipping a damaged checkpoint: {problem}; using {name}", RuntimeWarning, stacklevel=2)
            return state
        if damaged:
            raise CheckpointError(
                f"none of the {len(names)} checkpoints in {self.path} is intact ({'; '.join(damaged)}); move the "
                "directory aside and fit with a new checkpoint directory (nothing was changed on disk)"
            )
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
        self._attempted = version  # the version of the last write tried, failed or not

    def merged(self, version: int, snapshot: Callable[[], CheckpointState]) -> None:
        """A merge produced ``version``: checkpoint ``snapshot()`` if one is due.

        One is due ``every`` versions after the last attempt: a write that failed (a
        full disk) is retried after as many merges, not after every merge.
        """
        if version - self._attempted < self.every:
            return
        if self._thread is None:
            self._write(snapshot())
        elif self._writing is None or self._writing.done():
            self._attempted = version
            self._writing = self._thread.submit(self._write, snapshot())

    def write(self, state: CheckpointState) -> int | None:
        """Write ``state`` now, after any write in progress; its version, or None if it failed."""
        if self._writing is not None:
            self._writing.result()
        return self._write(state)

    def _write(self, state: CheckpointState) -> int | None:
        self._attempted = max(self._attempted, state.version)
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
    arrays = {f"params/{name}": np.ascontiguousarray(value) for name, value in state.params.items()}
    arrays["merges"] = table
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
        "arrays": {
            name: {"shape": list(value.shape), "dtype": value.dtype.str, "crc32c": array_crc32c(value)}
            for name, value in arrays.items()
        },
        "merge_columns": list(MERGE_COLUMNS),
        "merge_workers": workers,
    }
    document = json.loads(json.dumps(document))  # as Zarr stores it: tuples become lists, keys strings
    document[_CHECKSUM_KEY] = _document_checksum(document)
    group = zarr.open_group(LocalStore(directory), mode="w-", attributes=document)
    for name, value in arrays.items():
        group.create_array(
            name,
            data=value,
            compressors=[ZstdCodec(), Crc32cCodec()],
            config={"write_empty_chunks": True},  # a missing chunk is then damage, never zeros
        )


def _document_checksum(document: dict[str, Any]) -> int:
    """The CRC32C of a checkpoint's JSON document, without its own checksum."""
    rest = {key: value for key, value in document.items() if key != _CHECKSUM_KEY}
    return google_crc32c.value(json.dumps(rest, sort_keys=True).encode())


def load_checkpoint(directory: str | os.PathLike) -> CheckpointState:
    """Read one checkpoint group, verifying its checksums and refusing anything but plain numeric Zarr v3 data.

    Raises
    ------
    CheckpointError
        When the group is missing or damaged (a file deleted, truncated or changed), of
        another format or version, or holds arrays of another dtype, shape or codec than
        a bptdask checkpoint writes; the message names the file.
    """
    directory = Path(directory)
    return read_state(directory, read_document(directory))


def read_document(directory: Path) -> dict[str, Any]:
    """The JSON document of the checkpoint in ``directory``, checked for format, version and checksum.

    Raises
    ------
    CheckpointError
        As for :func:`load_checkpoint`.
    """
    where = directory / "zarr.json"
    if not where.is_file():
        raise CheckpointError(f"{directory} is not a checkpoint (it has no zarr.json)")
    try:
        group = zarr.open_group(LocalStore(directory, read_only=True), mode="r")
    except Exception as exc:  # JSON, Unicode or metadata errors of a damaged file
        raise CheckpointError(f"{where} is damaged or not a checkpoint ({type(exc).__name__}: {exc})") from None
    document = dict(group.attrs)
    if group.metadata.zarr_format != 3 or document.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{directory} is not a bptdask checkpoint (format {document.get('format')!r})")
    stored = document.get("format_version", 0)
    if stored != FORMAT_VERSION:
        newer = isinstance(stored, int) and stored > FORMAT_VERSION
        raise CheckpointError(
            f"{directory} was written by {'a newer' if newer else 'an older'} bptdask (checkpoint format "
            f"{stored!r}, this version reads {FORMAT_VERSION}); "
            + ("upgrade bptdask" if newer else "start with a new checkpoint directory")
        )
    if document.get(_CHECKSUM_KEY) != _document_checksum(document):
        raise CheckpointError(
            f"{where} is damaged: its contents do not match their CRC32C checksum; the checkpoint cannot be used"
        )
    if not isinstance(document.get("run"), dict) or not isinstance(document.get("arrays"), dict):
        raise CheckpointError(f"{where} has no run description or array list; it is not a bptdask checkpoint")
    return document


def read_state(
    directory: Path, document: dict[str, Any], *, shapes: dict[str, tuple[int, ...]] | None = None
) -> CheckpointState:
    """The checkpoint in ``directory`` whose checked document is ``document``, every array verified.

    ``shapes``, when given, are the weights the model needs (name -> shape); the
    document must list exactly those before any array is read.

    Raises
    ------
    CheckpointError
        As for :func:`load_checkpoint`.
    """
    try:
        group = zarr.open_group(LocalStore(directory, read_only=True), mode="r")
        unknown = sorted(name for name in document["arrays"] if name != "merges" and not name.startswith("params/"))
        if unknown or "merges" not in document["arrays"]:
            listed = unknown or "no merge log"
            raise CheckpointError(f"{directory}: its header lists {listed}; it is not a bptdask checkpoint")
        if shapes is not None:
            _check_param_shapes(document["arrays"], shapes, directory)
        arrays = {name: _read_numeric(group, directory, name, spec) for name, spec in document["arrays"].items()}
        params = {name.removeprefix("params/"): value for name, value in arrays.items() if name.startswith("params/")}
        workers, columns = document["merge_workers"], document["merge_columns"]
        if tuple(columns) != MERGE_COLUMNS:
            raise CheckpointError(f"{directory}: the merge log has columns {columns}, expected {list(MERGE_COLUMNS)}")
        table = arrays["merges"]
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
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise CheckpointError(
            f"{directory}: the checkpoint is incomplete or malformed ({type(exc).__name__}: {exc})"
        ) from None


def _check_param_shapes(arrays: dict[str, Any], shapes: dict[str, tuple[int, ...]], directory: Path) -> None:
    """Raise CheckpointError unless the header's weights ``arrays`` have exactly the names and ``shapes`` given."""
    stored = {name.removeprefix("params/"): tuple(spec["shape"]) for name, spec in arrays.items() if name != "merges"}
    if stored != {name: tuple(shape) for name, shape in shapes.items()}:
        wrong = sorted(name for name in {*stored, *shapes} if stored.get(name) != shapes.get(name))
        raise CheckpointError(
            f"{directory}: its weights {wrong} do not have the shapes of its model's architecture; the checkpoint "
            "is damaged or was changed"
        )


def _read_numeric(group: zarr.Group, directory: Path, name: str, spec: dict[str, Any]) -> np.ndarray:
    """The array ``name`` of ``group``, after checking format, codecs, dtype, shape and chunks, and its checksum.

    ``spec`` is what the document says of it: ``shape``, ``dtype`` and ``crc32c``.
    """
    where = directory / name
    try:
        array = group[name]
    except KeyError:
        raise CheckpointError(f"{where} is missing from the checkpoint") from None
    except Exception as exc:  # an unknown codec or data type, malformed metadata
        raise CheckpointError(f"{where} cannot be opened ({type(exc).__name__}: {exc})") from None
    if not isinstance(array, zarr.Array) or array.metadata.zarr_format != 3:
        raise CheckpointError(f"{where} is not a Zarr v3 array; refusing to read it")
    codecs = {codec.get("name") for codec in array.metadata.to_dict().get("codecs", ())}
    if not codecs <= SAFE_CODECS:
        raise CheckpointError(f"{where} uses codecs {sorted(codecs - SAFE_CODECS)}; refusing to read it")
    if np.dtype(array.dtype).kind not in _NUMERIC_KINDS:
        raise CheckpointError(f"{where} has dtype {array.dtype}; only numeric arrays are read")
    if np.dtype(array.dtype).str != spec["dtype"] or list(array.shape) != list(spec["shape"]):
        raise CheckpointError(
            f"{where} has shape {tuple(array.shape)} and dtype {np.dtype(array.dtype).str}, its header says shape "
            f"{tuple(spec['shape'])} and dtype {spec['dtype']}; the checkpoint is damaged"
        )
    if any(chunk > max(1, size) for chunk, size in zip(array.chunks, array.shape, strict=True)):
        raise CheckpointError(f"{where} has chunks {array.chunks} larger than its shape {array.shape}; refusing it")
    missing = array.nchunks - array.nchunks_initialized
    if missing:
        raise CheckpointError(f"{where} is damaged: {missing} of its {array.nchunks} chunks are missing (deleted)")
    try:
        value = array[...]
    except Exception as exc:  # a truncated or changed chunk fails decompression or its CRC32C
        raise CheckpointError(f"{where} is damaged: a chunk cannot be read ({type(exc).__name__}: {exc})") from None
    if array_crc32c(value) != spec["crc32c"]:
        raise CheckpointError(f"{where} is damaged: its values do not match their CRC32C checksum")
    return value


def check_same_run(stored: dict[str, Any], run: dict[str, Any], path: Path) -> None:
    """Raise CheckpointError, naming what differs, unless the run descriptions ``stored`` and ``run`` are equal.

    The message lists the differing parts (``settings (lr)``), then their values where
    they are short (``lr: 0.05 in the checkpoint, 0.1 now``).
    """
    parts, values = [], []
    for key in sorted(k for k in {*stored, *run} if stored.get(k) != run.get(k)):
        old, new = stored.get(key), run.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
            parts.append(f"{key} ({', '.join(changed)})")
            values += [_values(k, old.get(k), new.get(k)) for k in changed]
        else:
            parts.append(key)
            values.append(_values(key, old, new))
    if parts:
        shown = "; ".join(value for value in values if value)
        raise CheckpointError(
            f"the checkpoint in {path} is of another run: its {', '.join(parts)} "
            f"{'differs' if len(parts) == 1 and parts[0].startswith(('seed', 'architecture')) else 'differ'} from "
            "this fit's"
            + (f" ({shown})" if shown else "")
            + "; fit with the same model, settings, seed (random_state) and data to resume, or pass a new checkpoint "
            "directory"
        )


def _values(key: str, stored: Any, now: Any) -> str:
    """``key`` with its value in the checkpoint and now; "" when they are too long to show."""
    stored_text, now_text = json.dumps(stored), json.dumps(now)
    if max(len(stored_text), len(now_text)) > 30:
        return ""
    return f"{key}: {stored_text} in the checkpoint, {now_text} now"


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
        The directory holds a checkpoint of another run, or checkpoints none of which
        is intact.
    ConfigurationError
        The directory cannot be written (read-only, no permission, disk full).
    """
    if checkpoint is None:
        return None, None, config
    store = CheckpointStore(checkpoint)
    resume = store.resume(run)
    store.check_writable()
    return store, resume, config if resume is None else config.replace(seed=resume.seed)
