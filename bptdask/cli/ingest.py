"""``bptdask ingest SOURCE ... OUT``: write a dataset from files or a packaged dataset."""

from __future__ import annotations

import argparse
import contextlib
import math

from bptdask.cli import integer
from bptdask.cluster import connect
from bptdask.data import Dataset, ingest_builtin, ingest_folder, ingest_idx, ingest_npz
from bptdask.data.format import DEFAULT_CHUNK_SIZE
from bptdask.datasets import LOADERS
from bptdask.errors import ConfigurationError

OUT_HELP = "dataset to write: a directory or an fsspec URL"


def _test_size(text: str) -> float | int:
    """``"0.2"`` is a fraction in [0, 1), ``"1000"`` a count (0 or more)."""
    try:
        return integer(0)(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        fraction = float(text)
    except ValueError:
        fraction = math.nan
    if not 0 <= fraction < 1:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1) or a count >= 0, got {text!r}")
    return fraction


def _classes(text: str) -> list[str]:
    return [name.strip() for name in text.split(",")]


def add_parser(subparsers) -> None:
    """Register ``ingest`` and its per-source sub-commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--chunk-size", type=integer(1), default=DEFAULT_CHUNK_SIZE, help="samples per chunk (%(default)s)"
    )
    common.add_argument("--shard-size", type=integer(1), help="samples per shard, a multiple of --chunk-size")
    common.add_argument(
        "--test-size", type=_test_size, default=0.2, help="test fraction (0.2) or count (1000); default %(default)s"
    )
    common.add_argument("--seed", type=integer(0), default=0, help="seeds the shuffle and the split (%(default)s)")
    common.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    common.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    common.add_argument("--scheduler", help="address of a Dask scheduler to write with (default: local threads)")

    parser = subparsers.add_parser(
        "ingest",
        help="write a bptdask dataset (Zarr) from NPZ, IDX, an image folder or a packaged dataset",
        description="Write a bptdask dataset: a Zarr v3 group with images, labels and a seeded train/test split.",
    )
    sources = parser.add_subparsers(dest="source", required=True)

    npz = sources.add_parser("npz", parents=[common], help="an .npz archive with images and labels arrays")
    npz.add_argument("file")
    npz.add_argument("out", help=OUT_HELP)
    npz.add_argument("--images-key")
    npz.add_argument("--labels-key")
    npz.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW")
    npz.add_argument("--classes", type=_classes, help="comma-separated class names, one per label value")

    idx = sources.add_parser("idx", parents=[common], help="IDX images and labels files (MNIST format, gzip or not)")
    idx.add_argument("images")
    idx.add_argument("labels")
    idx.add_argument("out", help=OUT_HELP)
    idx.add_argument("--classes", type=_classes, help="comma-separated class names, one per label value")

    folder = sources.add_parser("folder", parents=[common], help="a folder with one sub-folder of images per class")
    folder.add_argument("root")
    folder.add_argument("out", help=OUT_HELP)
    folder.add_argument(
        "--size", type=integer(1), nargs="+", metavar=("H", "W"), help="resize every image to H×W (or H×H)"
    )
    folder.add_argument(
        "--channels", type=integer(1), choices=(1, 3), help="1 = grayscale, 3 = RGB (default: as the first)"
    )
    folder.add_argument("--no-shuffle", dest="shuffle", action="store_false", help="keep the class-sorted file order")

    for name in LOADERS:
        packaged = sources.add_parser(name, parents=[common], help=f"the packaged {name} dataset (bptdask.datasets)")
        packaged.add_argument("out", help=OUT_HELP)
    parser.set_defaults(func=run)


def _ingest(args: argparse.Namespace) -> Dataset:
    options = {
        "chunk_size": args.chunk_size,
        "shard_size": args.shard_size,
        "test_size": args.test_size,
        "seed": args.seed,
        "overwrite": args.overwrite,
        "progress": args.progress,
    }
    if args.source == "npz":
        return ingest_npz(
            args.file,
            args.out,
            images_key=args.images_key,
            labels_key=args.labels_key,
            layout=args.layout,
            classes=args.classes,
            **options,
        )
    if args.source == "idx":
        return ingest_idx(args.images, args.labels, args.out, classes=args.classes, **options)
    if args.source == "folder":
        if args.size and len(args.size) > 2:
            raise ConfigurationError(f"--size takes H or H W, got {' '.join(map(str, args.size))}")
        size = (args.size[0], args.size[-1]) if args.size else None
        return ingest_folder(args.root, args.out, size=size, channels=args.channels, shuffle=args.shuffle, **options)
    return ingest_builtin(args.source, args.out, **options)


def run(args: argparse.Namespace) -> int:
    """Ingest as ``args`` say and print a one-line summary of the dataset."""
    with connect(args.scheduler) if args.scheduler else contextlib.nullcontext():
        dataset = _ingest(args)
    train, test = len(dataset.indices("train")), len(dataset.indices("test"))
    print(
        f"wrote {dataset.location.name}: {len(dataset)} images {'×'.join(map(str, dataset.sample_shape))}, "
        f"{dataset.num_classes} classes, {train} train / {test} test, "
        f"{dataset.num_chunks} chunks of {dataset.chunk_size}"
    )
    return 0
