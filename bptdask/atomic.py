"""Write a file or a directory so that readers see the old one or the complete new one.

Everything bptdask writes to a local disk (models, reports, checkpoints, datasets) is
written under a hidden sibling name (``.NAME.partial-<random>``) and renamed into place
once complete. A write that fails or is killed half-way leaves the target as it was
and, at worst, a hidden partial sibling.

- :func:`replacing` is the usual form: ``with replacing(path) as staged: write(staged)``.
- :func:`staging_path`, :func:`publish` and :func:`discard` are its three steps, for
  writers whose start and end happen in different calls (a dataset ingest).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
    aside = target.with_name(f".{target.name}.replaced-{uuid.uuid4().hex[:12]}")
    os.rename(target, aside)
    os.rename(staged, target)
    if aside.is_dir():
        shutil.rmtree(aside)
    else:
        aside.unlink()


def discard(staged: Path) -> None:
    """Remove ``staged`` (a file or a directory) if it exists."""
    if staged.is_dir():
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
