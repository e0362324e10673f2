"""Where an ingest writes, and how the result becomes visible.

A local directory is written under a temporary sibling name (``.NAME.partial-*``) and
renamed into place when complete, so the target keeps its old content until then. Any
other store is written in place, where the completion marker written last is the only
guard; ``overwrite=True`` clears it first. Neither ever deletes data that is not Zarr.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import zarr
import zarr.errors

from bptdask.atomic import discard, publish, staging_path
from bptdask.data.location import Location, partial_paths
from bptdask.errors import DatasetExistsError


class LocalDraft:
    """A dataset written to a temporary sibling directory and renamed into place."""

    def __init__(self, final: Path, *, overwrite: bool):
        self.final = final
        self.replaces = _occupied(final)
        if self.replaces and not overwrite:
            raise DatasetExistsError(
                f"{str(final)!r} already exists; pass overwrite=True to replace it, or choose another path"
            )
        if self.replaces and not (final.is_dir() and _is_zarr_dir(final)):
            raise DatasetExistsError(
                f"{str(final)!r} exists and is not a Zarr store; refusing to replace it even with overwrite=True; "
                "choose another path or remove it yourself"
            )
        self.partial = staging_path(final)

    def open_group(self, attributes: dict) -> zarr.Group:
        """Create the group, with ``attributes``, in the temporary directory."""
        self.final.parent.mkdir(parents=True, exist_ok=True)
        return zarr.open_group(zarr.storage.LocalStore(self.partial), mode="w-", attributes=attributes)

    def commit(self) -> None:
        """Rename the finished dataset into place (replacing the old one) and drop stale partial data."""
        try:
            publish(self.partial, self.final, overwrite=self.replaces)
        except OSError as exc:
            raise DatasetExistsError(
                f"{str(self.final)!r} was created by someone else during the ingest; pass overwrite=True "
                "to replace it, or choose another path"
            ) from exc
        for stale in partial_paths(self.final):
            shutil.rmtree(stale, ignore_errors=True)

    def abort(self) -> None:
        """Remove the temporary directory; the target keeps what it held."""
        discard(self.partial)


def _occupied(path: Path) -> bool:
    return path.exists() and not (path.is_dir() and not any(path.iterdir()))


def _is_zarr_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in ("zarr.json", ".zgroup", ".zarray"))


class StoreDraft:
    """A dataset written in place into a store; its completion marker is written last."""

    def __init__(self, location: Location, *, overwrite: bool):
        self.location = location
        self.store = location.open_store(read_only=False)
        try:
            zarr.open_group(self.store, mode="r")
            holds_zarr = True
        except zarr.errors.ContainsArrayError:
            holds_zarr = True
        except (FileNotFoundError, zarr.errors.NodeNotFoundError):
            holds_zarr = False
        if holds_zarr and not overwrite:
            raise DatasetExistsError(
                f"{location} already exists; pass overwrite=True to replace it, or choose another location"
            )
        self.mode = "w" if holds_zarr else "w-"

    def open_group(self, attributes: dict) -> zarr.Group:
        """Create the group, with ``attributes``, clearing an old Zarr group first."""
        try:
            return zarr.open_group(self.store, mode=self.mode, attributes=attributes)
        except FileExistsError:
            raise DatasetExistsError(
                f"{self.location} holds data that is not a Zarr group; refusing to replace it even with "
                "overwrite=True; choose another location or clear it yourself"
            ) from None

    def commit(self) -> None:
        """Nothing to move: the completion marker written last makes the dataset visible."""

    def abort(self) -> None:
        """Leave the store marked incomplete; opening it says so."""


def open_draft(location: Location, *, overwrite: bool) -> LocalDraft | StoreDraft:
    """The draft for ``location``, after checking what it already holds.

    Raises
    ------
    DatasetExistsError
        When it holds data and ``overwrite`` is false, or holds data that is not Zarr.
    """
    if location.path is not None:
        return LocalDraft(location.path, overwrite=overwrite)
    return StoreDraft(location, overwrite=overwrite)
