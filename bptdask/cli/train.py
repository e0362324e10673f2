"""``bptdask train`` and ``bptdask evaluate``: train on a packaged dataset, score a saved model."""

from __future__ import annotations

import argparse
from functools import partial

from bptdask import datasets
from bptdask.estimator import BPTClassifier
from bptdask.errors import ConfigurationError
from bptdask.models import ARCHITECTURES, lenet5


def add_parser(subparsers) -> None:
    train = subparsers.add_parser("train", help="train a CNN in this process and report test accuracy")
    train.add_argument("--dataset", choices=sorted(datasets.LOADERS), default="mnist-sample")
    train.add_argument("--architecture", choices=sorted(ARCHITECTURES), default="lenet5")
    train.add_argument("--padding", type=int, default=None, help="LeNet-5 convolution padding (2 for 8×8 digits)")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=0.05)
    train.add_argument("--train-size", type=int, default=None, help="samples to train on (default: all but the test set)")
    train.add_argument("--test-size", type=int, default=1000)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                       help="NumPy or CuPy; auto takes the GPU where CuPy sees one")
    train.add_argument("--threads", type=int, default=None,
                       help="threads per training step (default: all cores available to the process)")
    train.add_argument("--output", help="save the trained model to this .npz file")
    train.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser("evaluate", help="score a saved model on a packaged dataset's test split")
    evaluate.add_argument("model", help="a .npz file written by `bptdask train --output`")
    evaluate.add_argument("--dataset", choices=sorted(datasets.LOADERS), default="mnist-sample")
    evaluate.add_argument("--test-size", type=int, default=1000)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.set_defaults(func=run_evaluate)


def _architecture(args: argparse.Namespace):
    if args.padding is None:
        return args.architecture
    if args.architecture != "lenet5":
        raise ConfigurationError(f"--padding applies to lenet5 only, not {args.architecture!r}; drop --padding")
    return partial(lenet5, padding=args.padding)


def run_train(args: argparse.Namespace) -> int:
    images, labels = datasets.load(args.dataset, random_state=args.seed)
    (X_train, y_train), (X_test, y_test) = datasets.split(
        images, labels, test_size=args.test_size, train_size=args.train_size
    )
    classifier = BPTClassifier(
        _architecture(args), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        device=args.device, n_threads=args.threads, random_state=args.seed, verbose=not args.quiet,
    )
    classifier.fit(X_train, y_train, validation_data=(X_test, y_test))
    print(f"test accuracy: {classifier.score(X_test, y_test):.4f} ({len(y_test)} images)")
    if args.output:
        classifier.save(args.output)
        print(f"saved model to {args.output}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    classifier = BPTClassifier.load(args.model)
    images, labels = datasets.load(args.dataset, random_state=args.seed)
    _, (X_test, y_test) = datasets.split(images, labels, test_size=args.test_size)
    print(f"test accuracy: {classifier.score(X_test, y_test):.4f} ({len(y_test)} images)")
    return 0
