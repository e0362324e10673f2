"""Where a dataset lives: a local directory, a Zarr store object, or an fsspec URL.

A :class:`Location` is small and picklable, so it is what travels to a worker process
that opens the dataset there; the data itself never travels. A local path is made
absolute (symlinks resolved) when it is resolved, so a worker with another working
directory finds the same dataset.

Every Zarr group bptdask reads or writes as a dataset is opened by :func:`open_group`,
and every read of store metadata happens inside :func:`store_errors`: the one place
where parser, codec and fsspec failures become :class:`~bptdask.errors.DatasetError`
subclasses naming the location and the fix.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zarr
import zarr.errors
from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore

from bptdask.errors import (
    BptDaskError,
    ConfigurationError,
    DatasetError,
    DatasetExistsError,
    DatasetFormatError,
    DatasetNotFoundError,
)

#: What parsing damaged Zarr metadata raises (JSON, text decoding, unexpected structure).
_METADATA_ERRORS = (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError, ValueError, AttributeError)

#: What ``open_dataset`` and the ingest functions accept as a dataset location.
PathOrStore = str | os.PathLike | Store


@dataclass(frozen=True)
class Location:
    """A resolved dataset location: exactly one of ``path``, ``url`` and ``store`` is set."""

    path: Path | None = None
    url: str | None = None
    store: Store | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The directory, URL or store, as written in messages."""
        if self.path is not None:
            return repr(str(self.path))
        if self.url is not None:
            return repr(self.url)
        return repr(self.store)

    def __str__(self) -> str:
        return f"dataset {self.name}" if self.store is None else f"dataset in {self.name}"

    def open_store(self, *, read_only: bool) -> Store:
        """The Zarr store for this location (a new store object for a path or URL)."""
        if self.path is not None:
            return LocalStore(self.path, read_only=read_only)
        if self.url is not None:
            return FsspecStore.from_url(self.url, storage_options=self.storage_options, read_only=read_only)
        return self.store


def resolve(
    path_or_store: PathOrStore, *, storage_options: dict[str, Any] | None = None, writable: bool = False
) -> Location:
    """The :class:`Location` of a local path, a ``file://`` or other fsspec URL, or a store.

    A ``zarr.storage.LocalStore`` resolves to its directory, so writes to it get the
    same write-then-rename protection as a plain path.

    Raises
    ------
    ConfigurationError
        For any other type, ``storage_options`` given with something other than a URL,
        or a read-only store when ``writable`` is asked for.
    """
    if writable and isinstance(path_or_store, Store) and path_or_store.read_only:
        raise ConfigurationError(
            f"cannot write a dataset into the read-only store {path_or_store!r}; open the store with read_only=False"
        )
    if isinstance(path_or_store, LocalStore):
        location = Location(path=_absolute(path_or_store.root))
    elif isinstance(path_or_store, Store):
        location = Location(store=path_or_store)
    elif isinstance(path_or_store, (str, os.PathLike)):
        text = os.fspath(path_or_store)
        if isinstance(text, bytes):
            raise ConfigurationError(f"dataset path must be text, got bytes {text!r}; decode it first")
        if text.startswith("file://"):
            location = Location(path=_absolute(text.removeprefix("file://")))
        elif "://" in text:
            return Location(url=text, storage_options=dict(storage_options or {}))
        else:
            location = Location(path=_absolute(text))
    else:
        raise ConfigurationError(
            f"expected a dataset path, URL or zarr.storage store, got {type(path_or_store).__name__} {path_or_store!r}"
        )
    if storage_options:
        raise ConfigurationError(
            f"storage_options {storage_options!r} only apply to fsspec URLs such as 's3://bucket/data.zarr', "
            f"not to the {location}; drop them"
        )
    return location


def _absolute(path: str | os.PathLike) -> Path:
    """``path`` with ``~`` expanded, made absolute against this process's working directory, symlinks resolved.

    A symlink to a dataset then names the dataset itself, which an ingest replaces.
    """
    return Path(os.path.realpath(os.path.expanduser(path)))


@contextmanager
def store_errors(location: Location) -> Iterator[None]:
    """Turn what reading ``location``'s store raises into a DatasetError naming it and the fix.

    bptdask's own errors pass through unchanged.
    """
    try:
        yield
    except BptDaskError:
        raise
    except (FileNotFoundError, zarr.errors.NodeNotFoundError):
        raise DatasetNotFoundError(
            f"{location} does not exist; check the location or create it with bptdask.ingest(...)"
        ) from None
    except zarr.errors.ContainsArrayError:
        raise DatasetFormatError(
            f"{location} is a single Zarr array, not a bptdask dataset group; ingest the data with bptdask.ingest"
        ) from None
    except ImportError as exc:
        raise DatasetNotFoundError(
            f"{location} cannot be reached: the fsspec backend for its protocol is not installed ({exc}); "
            "install that package (e.g. pip install s3fs) or use a local path"
        ) from exc
    except FileExistsError:
        raise DatasetExistsError(
            f"{location} holds data that is not a Zarr group; refusing to replace it even with overwrite=True; "
            "choose another location or clear it yourself"
        ) from None
    except PermissionError as exc:
        raise DatasetError(
            f"{location} cannot be read: permission denied ({exc}); give this user read access or use another path"
        ) from exc
    except OSError as exc:
        raise DatasetError(
            f"{location} cannot be read ({type(exc).__name__}: {exc}); check that the store is reachable"
        ) from exc
    except _METADATA_ERRORS as exc:
        if isinstance(exc, ValueError) and str(exc).startswith("Protocol not known"):
            raise DatasetNotFoundError(
                f"{location} cannot be reached: fsspec knows no such protocol ({exc}); use a local path, "
                "a file:// URL, or a URL whose fsspec backend is installed (s3://, gs://, ...)"
            ) from exc
        raise DatasetFormatError(
            f"{location} has damaged Zarr metadata ({type(exc).__name__}: {exc}); it is not a readable bptdask "
            "dataset; re-ingest it with overwrite=True"
        ) from exc


def open_group(location: Location, *, mode: str = "r", attributes: dict | None = None) -> zarr.Group:
    """The Zarr v3 group at ``location``, opened with ``mode`` as in ``zarr.open_group``.

    Raises
    ------
    DatasetNotFoundError
        Nothing is stored there, or the location cannot be reached.
    DatasetFormatError
        Its metadata is damaged, it holds a single array, or it is a Zarr v2 store.
    DatasetError
        The store cannot be read (permissions, network).
    """
    with store_errors(location):
        group = zarr.open_group(location.open_store(read_only=mode == "r"), mode=mode, attributes=attributes)
    if group.metadata.zarr_format != 3:
        raise DatasetFormatError(
            f"{location} is a Zarr v{group.metadata.zarr_format} store; bptdask datasets are Zarr v3 groups; "
            "convert it with bptdask.ingest(images, labels, NEW_PATH)"
        )
    return group


def partial_paths(final: Path) -> list[Path]:
    """Temporary siblings of ``final`` (:func:`bptdask.atomic.staging_path`) left by ingests that have not finished."""
    if not final.parent.is_dir():
        return []
    return sorted(final.parent.glob(f".{glob.escape(final.name)}.partial-*"))
