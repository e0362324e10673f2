"""``bptdask train`` and ``bptdask evaluate``: train on a Dask cluster (or in-process), score a saved model.

``bptdask train`` trains on a bptdask Zarr dataset (``DATA``, its training split; its test
split scores the model) or on a packaged dataset (``--dataset``). With no ``--scheduler``
it starts a ``LocalCluster`` of ``--workers`` processes on loopback (the embedded
default) and closes it afterwards; ``--workers 0`` trains in this process without Dask.
Every option, ``--output`` and ``--report`` included, is checked before training starts.

``bptdask evaluate`` scores a saved model on a dataset's test split (``DATA``) or on a
packaged dataset's. A model trained on a Zarr dataset knows its classes by name
(``"0"`` .. ``"9"`` for an ingested packaged dataset), one trained on a packaged dataset
by integer; evaluate matches the labels to the model's kind either way.
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from functools import partial

import numpy as np

from bptdask import datasets
from bptdask.cli import integer, positive_number
from bptdask.cluster import connect
from bptdask.data import open_dataset
from bptdask.errors import ConfigurationError
from bptdask.estimator import BPTClassifier
from bptdask.models import ARCHITECTURES, lenet5
from bptdask.outer.merge_rules import MERGE_RULES
from bptdask.report import format_report, save_report
from bptdask.validation import check_output_path

#: The largest useful LeNet-5 padding: a 5×5 kernel padded further sees only zeros at the border.
MAX_PADDING = 4


def add_parser(subparsers) -> None:
    train = subparsers.add_parser("train", help="train a CNN on a Dask cluster and report test accuracy")
    train.add_argument("data", nargs="?", help="a bptdask Zarr dataset (path or URL); default: --dataset")
    train.add_argument(
        "--dataset",
        choices=sorted(datasets.LOADERS),
        default="mnist-sample",
        help="packaged dataset used when DATA is not given",
    )
    train.add_argument("--architecture", choices=sorted(ARCHITECTURES), default="lenet5")
    train.add_argument(
        "--padding", type=integer(0), default=None, help="LeNet-5 convolution padding (2 for 8×8 digits)"
    )
    train.add_argument("--epochs", type=integer(1), default=10)
    train.add_argument("--batch-size", type=integer(1), default=64)
    train.add_argument("--lr", type=positive_number, default=0.05)
    train.add_argument(
        "--train-size", type=integer(1), default=None, help="samples to train on (default: all but the test set)"
    )
    train.add_argument("--test-size", type=integer(1), default=1000, help="test images split off a packaged dataset")
    train.add_argument("--seed", type=integer(0), default=0)
    train.add_argument(
        "--update",
        choices=("agwu", "sgwu"),
        default="agwu",
        help="merge each worker's update on arrival (agwu) or average each round (sgwu)",
    )
    train.add_argument(
        "--merge-rule",
        choices=MERGE_RULES,
        default=MERGE_RULES[0],
        help="how AGWU weighs an update by its staleness s: inverse 1/(s+1) (default), concurrency, "
        "polynomial, or the BPT-CNN paper's exponential",
    )
    train.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:port)")
    train.add_argument(
        "--workers",
        type=integer(0),
        default=None,
        help="local cluster size (default: the cores over --threads-per-worker); 0 trains in this process",
    )
    train.add_argument(
        "--threads-per-worker",
        "--threads",
        dest="threads",
        type=integer(1),
        default=None,
        help="threads of each worker's training step (default: 1 per local worker; in-process: all cores)",
    )
    train.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="NumPy or CuPy; auto takes the GPU where CuPy sees one",
    )
    train.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="checkpoint directory shared with the workers: resume from it if it holds this run, "
        "and recover from a lost coordinator",
    )
    train.add_argument("--output", help="save the trained model to this .npz file (its folder must exist)")
    train.add_argument("--report", help="write the cluster run's per-round report to this .json file")
    train.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="score a saved model on a dataset's test split (DATA, or a packaged dataset)"
    )
    evaluate.add_argument("model", help="a .npz file written by `bptdask train --output`")
    evaluate.add_argument("data", nargs="?", help="a bptdask Zarr dataset (path or URL); default: --dataset")
    evaluate.add_argument(
        "--dataset", choices=sorted(datasets.LOADERS), default="mnist-sample", help="packaged dataset without DATA"
    )
    evaluate.add_argument("--test-size", type=integer(1), default=1000, help="test images of the packaged dataset")
    evaluate.add_argument("--seed", type=integer(0), default=0)
    evaluate.set_defaults(func=run_evaluate)


def _architecture(args: argparse.Namespace):
    if args.padding is None:
        return args.architecture
    if args.architecture != "lenet5":
        raise ConfigurationError(f"--padding applies to lenet5 only, not {args.architecture!r}; drop --padding")
    if args.padding > MAX_PADDING:
        raise ConfigurationError(
            f"--padding must be at most {MAX_PADDING} (LeNet-5's 5×5 kernels see nothing beyond), got {args.padding}"
        )
    return partial(lenet5, padding=args.padding)


def _training_data(args: argparse.Namespace):
    """``(what fit takes, (X_test, y_test) or None)`` for DATA or the packaged dataset."""
    if args.data is None:
        images, labels = datasets.load(args.dataset, random_state=args.seed)
        train, test = datasets.split(images, labels, test_size=args.test_size, train_size=args.train_size)
        return train, test
    dataset = open_dataset(args.data)
    return (dataset, None), _test_split(dataset)


def _test_split(dataset) -> tuple[np.ndarray, np.ndarray] | None:
    """A dataset's test split as images ``(N, C, H, W)`` and class names ``(N,)``; None when it has none."""
    if not dataset.chunk_sizes("test").sum():
        return None
    X_test, y_test = dataset.read(0, dataset.num_chunks, subset="test")
    return X_test, np.asarray(dataset.classes)[y_test]


def _as_the_model_knows_them(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``labels`` in the kind of the model's ``classes``: digits as the names ``"0"``.. or names ``"0"``.. as digits.

    A model trained on an ingested dataset knows its classes by name (a packaged dataset
    is ingested with the names ``"0"`` .. ``"9"``), one trained on a packaged dataset by
    integer; the same labels are matched either way. Other labels are returned as they are.
    """
    if classes.dtype.kind in "US" and labels.dtype.kind in "iu":
        return labels.astype(str)
    if classes.dtype.kind in "iu" and labels.dtype.kind in "US" and all(str(name).isdecimal() for name in labels):
        return labels.astype(np.int64)
    return labels


def _check_outputs(args: argparse.Namespace, *, in_process: bool) -> None:
    """Refuse, before any training, the options whose files could not be written afterwards."""
    for option in ("checkpoint", "report"):
        if in_process and getattr(args, option):
            raise ConfigurationError(f"--{option} needs a cluster; drop --workers 0 or --{option}")
    if args.output:
        check_output_path("--output", args.output, suffix=".npz")
    if args.report:
        check_output_path("--report", args.report, suffix=".json")


def run_train(args: argparse.Namespace) -> int:
    in_process = args.workers == 0 and args.scheduler is None
    _check_outputs(args, in_process=in_process)
    architecture = _architecture(args)
    (X, y), test = _training_data(args)
    where = (
        nullcontext(None)
        if in_process
        else connect(args.scheduler, n_workers=args.workers, threads_per_worker=args.threads or 1)
    )
    with where as client:
        classifier = BPTClassifier(
            architecture,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            update=args.update,
            merge_rule=args.merge_rule,
            client=client,
            device=args.device,
            n_threads=args.threads if in_process else None,
            random_state=args.seed,
            verbose=not args.quiet,
        )
        classifier.fit(X, y, validation_data=test, checkpoint=args.checkpoint)
    if test is not None:
        print(f"test accuracy: {classifier.score(*test):.4f} ({len(test[1])} images)")
    if classifier.report_ is not None:
        print(format_report(classifier.report_))
        if args.report:
            print(f"wrote the run report to {save_report(classifier.report_, args.report)}")
    if args.output:
        classifier.save(args.output)
        print(f"saved model to {args.output}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    classifier = BPTClassifier.load(args.model)
    if args.data is not None:
        test = _test_split(open_dataset(args.data))
        if test is None:
            raise ConfigurationError(f"{args.data} has no test split; ingest it again with --test-size above 0")
    else:
        images, labels = datasets.load(args.dataset, random_state=args.seed)
        _, test = datasets.split(images, labels, test_size=args.test_size)
    X_test, y_test = test[0], _as_the_model_knows_them(test[1], classifier.classes_)
    print(f"test accuracy: {classifier.score(X_test, y_test):.4f} ({len(y_test)} images)")
    return 0
