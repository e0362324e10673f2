"""What the adversarial tests need of the machine: a process that file modes bind, and a small disk.

CI runs as root, which ignores file modes (``CAP_DAC_OVERRIDE``): a permission case runs
its code in a subprocess without that capability. A disk-full case writes to a tmpfs of
a few MiB.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

#: Capabilities that let root read and write whatever the file modes say.
FILE_MODE_OVERRIDES = "cap_dac_override,cap_dac_read_search"


def run_without_dac_override(code: str) -> subprocess.CompletedProcess:
    """Run Python ``code`` (dedented) in a subprocess that file modes bind, even as root; skip without capsh."""
    if shutil.which("capsh") is None:
        pytest.skip("capsh is not installed: cannot drop CAP_DAC_OVERRIDE")
    command = ["capsh", f"--drop={FILE_MODE_OVERRIDES}", "--", "-c", 'exec "$0" "$1" "$2"']
    return subprocess.run(
        [*command, sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


@contextmanager
def mode(path: str | os.PathLike, bits: int) -> Iterator[Path]:
    """Give ``path`` the permission ``bits`` inside the block, and back its old ones after."""
    path = Path(path)
    before = path.stat().st_mode & 0o7777
    path.chmod(bits)
    try:
        yield path
    finally:
        path.chmod(before)


@contextmanager
def small_disk(directory: str | os.PathLike, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``"1m"``) mounted at ``directory`` (created), unmounted after; skip if not permitted."""
    mount = Path(directory)
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)
