"""Write a file or a directory so that readers see the old one or the complete new one.

Everything bptdask writes to a local disk (models, reports, checkpoints, datasets) is
written under a hidden sibling name (``.NAME.partial-<random>``) and renamed into place
once complete. A write that fails or is killed half-way leaves the target as it was
and, at worst, a hidden partial sibling.

- :func:`replacing` is the usual form: ``with replacing(path) as staged: write(staged)``.
- :func:`staging_path`, :func:`publish` and :func:`discard` are its three steps, for
  writers whose start and end happen in different calls (a dataset ingest).
- :class:`WriterLock` lets one writer at a time prepare a target, so that two writers
  cannot remove each other's staged data; :func:`restore_replaced` puts back a
  directory that a crash left moved aside between :func:`publish`'s two renames.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Infix of the hidden name a replaced directory has between publish's two renames.
REPLACED = "replaced"


def staging_path(target: Path) -> Path:
    """A fresh hidden sibling of ``target`` to write before :func:`publish` (not created here)."""
    return target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:12]}")


def publish(staged: Path, target: Path, *, overwrite: bool = True) -> None:
    """Move the complete ``staged`` file or directory to ``target``.

    A file is flushed to disk first and replaces ``target`` in one rename. A directory
    takes the place of an existing ``target`` by two renames (the old one moved aside,
    the new one moved in, the old one deleted), so ``target`` is only missing for the
    instant between them.

    Raises
    ------
    FileExistsError
        When ``overwrite`` is false and ``target`` exists and is not an empty directory;
        ``staged`` is left in place.
    """
    occupied = target.exists() and not (target.is_dir() and not any(target.iterdir()))
    if occupied and not overwrite:
        raise FileExistsError(f"{target} exists")
    if not staged.is_dir():
        with open(staged, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(staged, target)
        return
    if not occupied:
        if target.is_dir():
            target.rmdir()
        os.rename(staged, target)
        return
    aside = target.with_name(f".{target.name}.{REPLACED}-{uuid.uuid4().hex[:12]}")
    os.rename(target, aside)
    os.rename(staged, target)
    discard(aside)


def discard(staged: Path) -> None:
    """Remove ``staged`` (a file, a symlink or a directory) if it exists."""
    if staged.is_dir() and not staged.is_symlink():
        shutil.rmtree(staged, ignore_errors=True)
    else:
        staged.unlink(missing_ok=True)


@contextmanager
def replacing(target: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a hidden sibling path of ``target`` to write; publish it when the block ends.

    If the block raises (or ``publish`` does), the staged path is removed and
    ``target`` keeps what it held.
    """
    target = Path(target)
    staged = staging_path(target)
    try:
        yield staged
        publish(staged, target, overwrite=overwrite)
    except BaseException:
        discard(staged)
        raise


def replaced_paths(target: Path) -> list[Path]:
    """Directories that :func:`publish` moved aside from ``target`` and has not deleted yet, oldest first."""
    if not target.parent.is_dir():
        return []
    found = target.parent.glob(f".{glob.escape(target.name)}.{REPLACED}-*")
    return sorted(found, key=lambda path: path.lstat().st_mtime_ns)


def restore_replaced(target: Path) -> Path | None:
    """Move the directory a crash left aside back to ``target`` when ``target`` is missing.

    A crash between :func:`publish`'s two renames leaves the old directory under a
    hidden name and nothing at ``target``. Call this while holding the target's
    :class:`WriterLock`. Returns the path it restored from, or None.
    """
    if target.exists():
        return None
    aside = replaced_paths(target)
    if not aside:
        return None
    os.rename(aside[-1], target)
    return aside[-1]


class WriterLock:
    """An exclusive, non-blocking lock on ``target``, held through the hidden file ``.NAME.lock``.

    The operating system releases it when the holding process dies, so a crashed writer
    never leaves a target locked. Two holders in one process exclude each other too.
    Use :meth:`acquire` to take it.
    """

    def __init__(self, target: Path, descriptor: int):
        self.path = lock_path(target)
        self._descriptor: int | None = descriptor

    @classmethod
    def acquire(cls, target: Path) -> WriterLock | None:
        """The lock on ``target``, or None when another writer holds it (the parent must exist)."""
        path = lock_path(target)
        while True:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                return None
            # The previous holder may have removed the file between our open and lock.
            if _same_file(descriptor, path):
                return cls(target, descriptor)
            os.close(descriptor)

    def release(self) -> None:
        """Remove the lock file and let go (a second call does nothing)."""
        if self._descriptor is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._descriptor)
        self._descriptor = None


def lock_path(target: Path) -> Path:
    """The hidden sibling file through which :class:`WriterLock` locks ``target``."""
    return target.with_name(f".{target.name}.lock")


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)
