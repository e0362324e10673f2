"""Where a dataset lives: a local directory, a Zarr store object, or an fsspec URL.

A :class:`Location` is small and picklable, so it is what travels to a worker process
that opens the dataset there; the data itself never travels.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore

from bptdask.errors import ConfigurationError

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
        location = Location(path=Path(path_or_store.root))
    elif isinstance(path_or_store, Store):
        location = Location(store=path_or_store)
    elif isinstance(path_or_store, (str, os.PathLike)):
        text = os.fspath(path_or_store)
        if isinstance(text, bytes):
            raise ConfigurationError(f"dataset path must be text, got bytes {text!r}; decode it first")
        if text.startswith("file://"):
            location = Location(path=Path(text.removeprefix("file://")))
        elif "://" in text:
            return Location(url=text, storage_options=dict(storage_options or {}))
        else:
            location = Location(path=Path(text))
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


def partial_paths(final: Path) -> list[Path]:
    """Temporary siblings of ``final`` (:func:`bptdask.atomic.staging_path`) left by ingests that have not finished."""
    if not final.parent.is_dir():
        return []
    return sorted(final.parent.glob(f".{glob.escape(final.name)}.partial-*"))
