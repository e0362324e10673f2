"""Checks of option values shared by every room: integers, numbers in a range, choices, output files.

Each check returns the value in its plain Python type or raises
:class:`~bptdask.errors.ConfigurationError` naming the option, quoting the value and
saying what it must be. ``bool`` is never accepted as a number.
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from collections.abc import Collection
from pathlib import Path

from bptdask.errors import ConfigurationError


def check_integer(name: str, value: object, *, minimum: int = 0) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) of at least ``minimum``.

    Raises
    ------
    ConfigurationError
        Otherwise, e.g. ``epochs must be an integer >= 1, got 0``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(
    name: str,
    value: object,
    *,
    above: float | None = None,
    below: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    why: str = "",
) -> float:
    """``value`` as a finite ``float`` within the given bounds (``above``/``below`` exclusive).

    ``why`` is appended to the message, to say what the bounds mean.

    Raises
    ------
    ConfigurationError
        For a bool, a non-number, NaN, infinity, or a value out of bounds.
    """
    bounds = [f"> {above:g}"] if above is not None else []
    bounds += [f">= {at_least:g}"] if at_least is not None else []
    bounds += [f"< {below:g}"] if below is not None else []
    bounds += [f"<= {at_most:g}"] if at_most is not None else []
    good = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (above is None or value > above)
        and (below is None or value < below)
        and (at_least is None or value >= at_least)
        and (at_most is None or value <= at_most)
    )
    if not good:
        rule = " and ".join(bounds) if bounds else "finite"
        raise ConfigurationError(f"{name} must be a finite number {rule}{why}, got {value!r}")
    return float(value)


def check_choice(name: str, value: object, choices: Collection[str]) -> str:
    """``value`` if it is one of ``choices``.

    Raises
    ------
    ConfigurationError
        Naming the choices, e.g. ``update must be one of 'agwu', 'sgwu', got 'async'``.
    """
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(choice) for choice in choices)
        raise ConfigurationError(f"{name} must be one of {listed}, got {value!r}")
    return value


def check_output_path(name: str, value: str | os.PathLike, *, suffix: str) -> Path:
    """``value`` as a ``Path`` if a file of that name can be written now.

    Checked before the work that produces the file, so that a bad name fails at once
    instead of losing the work: the name ends in ``suffix``, is not a directory, and
    its folder exists and takes a new file (a probe file is created and removed there,
    which also catches read-only file systems and missing permissions).

    Raises
    ------
    ConfigurationError
        Naming the option, the path and what to change.
    """
    path = Path(value)
    if path.suffix.lower() != suffix:
        raise ConfigurationError(f"{name} must name a {suffix} file, got {str(value)!r}; add {suffix} to the name")
    if path.is_dir():
        raise ConfigurationError(f"{name} {str(value)!r} is a directory; name a {suffix} file inside it")
    folder = path.parent
    if not folder.is_dir():
        raise ConfigurationError(
            f"{name} {str(value)!r} cannot be written: the folder {str(folder)!r} does not exist; create it first"
        )
    try:
        descriptor, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.probe-")
    except OSError as exc:
        raise ConfigurationError(
            f"{name} {str(value)!r} cannot be written: the folder {str(folder)!r} takes no new file "
            f"({exc.strerror}); pick a folder you can write to"
        ) from None
    os.close(descriptor)
    os.unlink(probe)
    return path
