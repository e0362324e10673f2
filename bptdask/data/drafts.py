"""Where an ingest writes, and how the result becomes visible.

A local directory is written under a temporary sibling name (``.NAME.partial-*``) and
renamed into place when complete, so the target keeps its old content until then. One
ingest at a time may write a local path: the draft holds the path's
:class:`~bptdask.atomic.WriterLock` from the first check to the final rename, and a
second ingest into the same path is refused with :class:`DatasetBusyError` instead of
removing the first one's temporary data. A crash between the final rename's two steps
leaves the old dataset under ``.NAME.replaced-*``; the next ingest or opening puts it
back (:func:`recover_replaced`).

Any other store is written in place, where the completion marker written last is the
only guard; ``overwrite=True`` clears it first. Each ingest records its ``ingest_id`` in
the pending attribute; every write task, and the final marking, first checks that the
attribute is still its own (:func:`check_owner`), so an ingest that started later makes
an earlier one stop with :class:`DatasetBusyError`. Stores have no lock, though: a write
already past its check when another ingest clears the store can still land in it, so
give each such store one writer at a time.

Neither ever replaces or clears anything but a bptdask dataset.
"""

from __future__ import annotations

from pathlib import Path

import zarr

from bptdask.atomic import WriterLock, discard, lock_path, publish, replaced_paths, restore_replaced, staging_path
from bptdask.data.format import ATTRS_KEY, IMAGES, LABELS, SPLIT
from bptdask.data.location import Location, open_group, partial_paths
from bptdask.errors import (
    DatasetBusyError,
    DatasetError,
    DatasetExistsError,
    DatasetNotFoundError,
    IncompleteDatasetError,
)

#: What a local dataset directory holds; anything else in it is never deleted.
DATASET_ENTRIES = frozenset({"zarr.json", IMAGES, LABELS, SPLIT})


class LocalDraft:
    """A dataset written to a temporary sibling directory and renamed into place, one writer at a time."""

    #: Write tasks need no owner check: the temporary directory is this ingest's alone.
    in_place = None

    def __init__(self, location: Location, *, overwrite: bool):
        self.location = location
        self.final = location.path
        self._lock = _lock(location)
        try:
            _restore(location)
            self.replaces = _occupied(self.final)
            if self.replaces and not overwrite:
                raise DatasetExistsError(
                    f"{location} already exists; pass overwrite=True to replace it, or choose another path"
                )
            if self.replaces:
                _check_replaceable(location)
            self.partial = staging_path(self.final)
        except BaseException:
            self._lock.release()
            raise

    def open_group(self, attributes: dict) -> zarr.Group:
        """Create the group, with ``attributes``, in the temporary directory."""
        return open_group(Location(path=self.partial), mode="w-", attributes=attributes)

    def commit(self, group: zarr.Group, attributes: dict) -> None:
        """Mark the group complete with ``attributes``, rename it into place, and drop leftovers."""
        group.update_attributes(attributes)
        try:
            publish(self.partial, self.final, overwrite=self.replaces)
        except OSError as exc:
            raise DatasetExistsError(
                f"{self.location} was created by someone else during the ingest; pass overwrite=True "
                "to replace it, or choose another path"
            ) from exc
        for stale in [*partial_paths(self.final), *replaced_paths(self.final)]:
            discard(stale)
        self._lock.release()

    def abort(self) -> None:
        """Remove the temporary directory; the target keeps what it held."""
        discard(self.partial)
        self._lock.release()


def _lock(location: Location) -> WriterLock:
    """The writer lock of the local ``location``, creating its parent directory if needed.

    Raises
    ------
    DatasetBusyError
        When another ingest holds it.
    DatasetError
        When the parent directory cannot be created or written.
    """
    try:
        location.path.parent.mkdir(parents=True, exist_ok=True)
        lock = WriterLock.acquire(location.path)
    except OSError as exc:
        raise DatasetError(
            f"cannot write {location}: {exc}; choose a directory this user can write, or fix its permissions"
        ) from exc
    if lock is None:
        raise DatasetBusyError(
            f"another ingest is writing {location} right now (it holds {str(lock_path(location.path))!r}); "
            "wait for it to finish, or write to another path"
        )
    return lock


def _restore(location: Location) -> None:
    """Put back the old dataset a crash left aside between the final rename's two steps (lock held)."""
    try:
        restored = restore_replaced(location.path)
    except OSError as exc:
        aside = replaced_paths(location.path)[-1]
        raise IncompleteDatasetError(
            f"{location} is missing: an ingest crashed while replacing it and left the old dataset in "
            f"{str(aside)!r}, which cannot be moved back ({exc}); rename it to {str(location.path)!r} yourself"
        ) from exc
    if restored is not None:
        for stale in partial_paths(location.path):
            discard(stale)


def recover_replaced(location: Location) -> None:
    """Put back the dataset at the local ``location`` if a crashed ingest left it aside; else nothing.

    Raises
    ------
    IncompleteDatasetError
        When an ingest is replacing it right now, or it cannot be moved back.
    """
    if not replaced_paths(location.path):
        return
    try:
        lock = WriterLock.acquire(location.path)
    except OSError:
        lock = None
    if lock is None:
        raise IncompleteDatasetError(
            f"{location} is being replaced by an ingest right now (or a crashed one left it in "
            f"{str(replaced_paths(location.path)[-1])!r} and this user cannot move it back); "
            "retry when the ingest ends, or rename that directory back yourself"
        )
    try:
        _restore(location)
    finally:
        lock.release()


def _occupied(path: Path) -> bool:
    return path.exists() and not (path.is_dir() and not any(path.iterdir()))


def _check_replaceable(location: Location) -> None:
    """Refuse to replace anything at the local ``location`` but a bptdask dataset and nothing else.

    Raises
    ------
    DatasetExistsError
        When it is a file, holds entries a dataset does not, or is not a bptdask dataset.
    """
    path = location.path
    keep = "choose another path or remove it yourself"
    if not path.is_dir():
        raise DatasetExistsError(
            f"{location} is a file, not a dataset; refusing to replace it even with overwrite=True; {keep}"
        )
    extra = sorted(entry.name for entry in path.iterdir() if entry.name not in DATASET_ENTRIES)
    if extra:
        shown = extra if len(extra) <= 5 else [*extra[:5], "..."]
        raise DatasetExistsError(
            f"{location} holds {shown} besides dataset arrays; refusing to replace it even with overwrite=True, "
            f"which would delete them; move them out, or {keep}"
        )
    try:
        is_dataset = ATTRS_KEY in open_group(location).attrs
    except DatasetError:
        is_dataset = False
    if not is_dataset:
        raise DatasetExistsError(
            f"{location} exists and is not a bptdask dataset (no readable Zarr group with a {ATTRS_KEY!r} "
            f"attribute); refusing to replace it even with overwrite=True; {keep}"
        )


class StoreDraft:
    """A dataset written in place into a store; its completion marker is written last."""

    def __init__(self, location: Location, *, overwrite: bool):
        self.location = location
        try:
            held = open_group(location)
        except DatasetNotFoundError:
            held = None
        except DatasetError as exc:
            held = exc
        if held is not None and not overwrite:
            raise DatasetExistsError(
                f"{location} already exists; pass overwrite=True to replace it, or choose another location"
            )
        if held is not None and (not isinstance(held, zarr.Group) or ATTRS_KEY not in held.attrs):
            raise DatasetExistsError(
                f"{location} holds Zarr data that is not a bptdask dataset; refusing to clear it even with "
                "overwrite=True; choose another location or clear it yourself"
            )
        self.mode = "w" if held is not None else "w-"
        self.in_place = location
        self._ingest_id: str | None = None

    def open_group(self, attributes: dict) -> zarr.Group:
        """Create the group, with ``attributes``, clearing an old bptdask dataset first."""
        self._ingest_id = attributes[ATTRS_KEY].get("ingest_id")
        return open_group(self.location, mode=self.mode, attributes=attributes)

    def commit(self, group: zarr.Group, attributes: dict) -> None:
        """Write ``attributes`` (the completion marker) if the store is still this ingest's.

        Raises
        ------
        DatasetBusyError
            When another ingest started writing the store since this one did.
        """
        check_owner(self.location, self._ingest_id)
        group.update_attributes(attributes)

    def abort(self) -> None:
        """Leave the store marked incomplete; opening it says so."""


def check_owner(location: Location, ingest_id: str) -> None:
    """Raise DatasetBusyError unless the store at ``location`` is still being written by ``ingest_id``."""
    now = open_group(location).attrs.get(ATTRS_KEY, {})
    if now.get("ingest_id") != ingest_id:
        raise DatasetBusyError(
            f"another ingest started writing {location} while this one ran (ingest_id {now.get('ingest_id')!r}, "
            f"not {ingest_id!r}); this one gives way and the other one's result stands; ingest again once it "
            "finishes if you want this data there"
        )


def open_draft(location: Location, *, overwrite: bool) -> LocalDraft | StoreDraft:
    """The draft for ``location``, after checking what it already holds.

    Raises
    ------
    DatasetExistsError
        When it holds data and ``overwrite`` is false, or holds data that is not a
        bptdask dataset.
    DatasetBusyError
        When another ingest is writing the same local path.
    """
    if location.path is not None:
        return LocalDraft(location, overwrite=overwrite)
    return StoreDraft(location, overwrite=overwrite)
