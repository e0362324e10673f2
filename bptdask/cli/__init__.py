"""The ``bptdask`` command line: one sub-command per module in this package.

An expected failure (a :class:`~bptdask.errors.BptDaskError`, an ``OSError`` on a path
the user named, or running out of memory) prints one line, ``bptdask: error: ...``, to
stderr and ends with the exit status of its kind (:data:`EXIT_STATUSES`); only a bug
prints a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Callable

from bptdask.errors import BptDaskError, ClusterTrainingError, ConfigurationError, ProtocolError, TrainingDivergedError

#: Sub-command modules; each has ``add_parser(subparsers)`` that sets ``func`` on its parser.
SUBCOMMANDS = ("bptdask.cli.train", "bptdask.cli.ingest")

#: ``(exception classes, exit status, meaning)``; the first row whose classes match wins.
EXIT_STATUSES = (
    ((ConfigurationError,), 2, "a bad command line or option value (also argparse's usage errors)"),
    ((TrainingDivergedError,), 4, "training diverged (NaN or infinite values): lower --lr"),
    ((ClusterTrainingError, ProtocolError), 5, "the Dask cluster could not be reached, or the distributed fit failed"),
    ((BptDaskError, OSError), 3, "unusable input or output: a dataset, model file, checkpoint, source file or path"),
    ((MemoryError,), 6, "out of memory: use a smaller --batch-size or model"),
)
#: What ``main`` turns into an exit status and one line.
EXPECTED = (BptDaskError, OSError, MemoryError)
#: Exit status after Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED = 130


def exit_status_help() -> str:
    """The table of exit statuses, for ``--help``."""
    rows = [(0, "success"), *((status, meaning) for _, status, meaning in EXIT_STATUSES)]
    rows.append((INTERRUPTED, "interrupted (Ctrl-C)"))
    return "exit statuses:\n" + "\n".join(f"  {status:<4}{meaning}" for status, meaning in sorted(rows))


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def integer(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def positive_number(text: str) -> float:
    """An argparse ``type``: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="bptdask",
        description="Bi-layered parallel CNN training on Dask.",
        epilog=exit_status_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in SUBCOMMANDS:
        importlib.import_module(module_name).add_parser(subparsers)
    for command in subparsers.choices.values():
        command.epilog, command.formatter_class = parser.epilog, parser.formatter_class
    return parser


def describe_failure(exc: BptDaskError | OSError | MemoryError) -> tuple[int, str]:
    """``(exit status, one-line message)`` of an expected failure."""
    status = next(status for classes, status, _ in EXIT_STATUSES if isinstance(exc, classes))
    return status, " ".join(_text(exc).split())


def _text(exc: BptDaskError | OSError | MemoryError) -> str:
    """What went wrong: a bptdask error's message, ``cannot use PATH: why`` for a file, or the memory asked for."""
    if isinstance(exc, MemoryError):
        return f"out of memory ({exc or 'no details'}); use a smaller --batch-size or model, or more memory"
    if isinstance(exc, OSError) and not isinstance(exc, BptDaskError) and exc.filename is not None:
        paths = " -> ".join(str(path) for path in (exc.filename, exc.filename2) if path is not None)
        return f"cannot use {paths}: {exc.strerror or exc}"
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bptdask`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("bptdask: interrupted", file=sys.stderr)
        return INTERRUPTED
    except EXPECTED as exc:
        status, message = describe_failure(exc)
        print(f"bptdask: error: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
