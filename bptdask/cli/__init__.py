"""The ``bptdask`` command line: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import importlib
import sys

from bptdask.errors import BptDaskError

#: Sub-command modules; each has ``add_parser(subparsers)`` that sets ``func`` on its parser.
SUBCOMMANDS = ("bptdask.cli.train", "bptdask.cli.ingest")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bptdask", description="Bi-layered parallel CNN training on Dask.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in SUBCOMMANDS:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bptdask`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BptDaskError as exc:
        print(f"bptdask: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
