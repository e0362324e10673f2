"""``BPTClassifier``: a scikit-learn style estimator over bptdask's training paths.

``__init__`` only stores its arguments; ``fit`` validates and returns ``self``; learned
attributes end in ``_``. ``get_params``/``set_params`` (:mod:`bptdask.params`) make
``sklearn.base.clone`` work without scikit-learn being a dependency.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bptdask import local
from bptdask.backend import get_namespace, to_device, to_numpy
from bptdask.cluster import current_client, fit_on_cluster
from bptdask.data import Dataset, ingest, open_dataset
from bptdask.errors import ConfigurationError, DataError, NotFittedError
from bptdask.inner.runner import available_cores
from bptdask.model import Sequential
from bptdask.models import build
from bptdask.optim import SGD
from bptdask.outer.run_config import RunConfig
from bptdask.params import ParamsMixin
from bptdask.preprocess import channel_stats, check_images, check_targets, normalize
from bptdask.report import Evaluation
from bptdask.serialize import load_model, save_model
from bptdask.validation import check_integer, check_number


def _is_dask_array(X) -> bool:
    return type(X).__module__.split(".")[0] == "dask"


class BPTClassifier(ParamsMixin):
    """A CNN image classifier trained with bptdask.

    Parameters
    ----------
    architecture : str, callable or Sequential, default "lenet5"
        A name from :data:`bptdask.models.ARCHITECTURES`, a callable
        ``(num_classes=, input_shape=) -> Sequential``, or a ready model.
    epochs : int, default 10
        Passes over the training data in :meth:`fit`.
    batch_size : int, default 64
    lr, momentum, weight_decay, nesterov
        SGD settings (:class:`bptdask.optim.SGD`).
    lr_schedule : {"cosine", "constant"}, default "cosine"
        ``"cosine"`` decays the rate from ``lr`` towards 0 over the ``epochs`` of
        :meth:`fit` (:func:`bptdask.optim.cosine_lr`); :meth:`partial_fit` always uses ``lr``.
    update : {"agwu", "sgwu"}, default "agwu"
        On a Dask cluster: merge each worker's update into the global weights as it
        arrives, damped by staleness (AGWU), or wait for every worker each round and
        average (SGWU, the synchronous baseline).
    client : distributed.Client, optional
        The cluster to train on. None uses the current Dask client if there is one, else
        trains in this process.
    merge_weight, staleness_decay, max_staleness
        AGWU's ``α0``, ``γ`` and staleness bound (:class:`bptdask.outer.weights.WeightServer`).
    chunk_size : int, default 256
        Samples per Zarr chunk when ``fit(X, y)`` writes arrays for a cluster (the unit of
        IDPA's allocation).
    target_accuracy : float, optional
        Stop training once the accuracy on ``fit``'s ``validation_data`` reaches this
        (checked after every epoch); without it, train all ``epochs``.
    device : {"auto", "cpu", "gpu"}, default "auto"
        Train with NumPy (``"cpu"``) or CuPy (``"gpu"``). ``"auto"`` takes CuPy where CuPy
        and a CUDA device are present, else NumPy; on a cluster each worker decides for
        itself, so CPU and GPU workers train one model together.
    n_threads : int or None
        Threads for each training step's task graph (the inner layer). None uses every
        core available to the process on the CPU, and the sequential step on a GPU.
        Results are bit-identical for every thread count.
    dtype : str, default "float32"
        Parameter and activation dtype.
    random_state : int or None
        Seeds weight init, shuffling and dropout; None draws a fresh seed.
    checkpoint_every : int, default 50
        On a cluster with ``fit(..., checkpoint=DIR)``: merges between checkpoints.
    worker_timeout : float, default 60
        On a cluster: seconds a worker may hold a part without a word before it is
        treated as lost (frozen); see :class:`bptdask.outer.run_config.RunConfig`.
    verbose : bool, default False
        Show progress bars and per-epoch lines.

    Attributes
    ----------
    classes_ : ndarray, shape (K,)
    model_ : Sequential
    params_ : dict of arrays
    mean_, std_ : ndarray, shape (C,)
        Per-channel normalisation learned from the training images.
    report_ : RunReport or None
        After a cluster fit: the run's :class:`~bptdask.report.RunReport` (IDPA rounds with
        busy time, makespan and idle fraction; per-worker samples, busy time, power,
        staleness; every merge; lost workers and recoveries).
    history_ : list of dict
        One entry per epoch. In-process: ``epoch``, ``lr``, ``loss``, ``seconds``,
        ``images_per_second`` and, with ``validation_data``, ``val_accuracy``. On a
        cluster: ``epoch``, ``seconds`` (since the start), ``merges`` and ``val_accuracy``
        of the global weights at the end of each epoch (with ``validation_data``; else one
        entry for the whole run).
    """

    def __init__(
        self,
        architecture: str | Callable[..., Sequential] | Sequential = "lenet5",
        *,
        epochs: int = 10,
        batch_size: int = 64,
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        nesterov: bool = False,
        lr_schedule: str = "cosine",
        update: str = "agwu",
        client=None,
        merge_weight: float = 1.0,
        staleness_decay: float = 0.5,
        max_staleness: int | None = None,
        chunk_size: int = 256,
        target_accuracy: float | None = None,
        device: str = "auto",
        n_threads: int | None = None,
        dtype: str = "float32",
        random_state: int | None = None,
        checkpoint_every: int = 50,
        worker_timeout: float = 60.0,
        verbose: bool = False,
    ):
        self.architecture = architecture
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.nesterov = nesterov
        self.lr_schedule = lr_schedule
        self.update = update
        self.client = client
        self.merge_weight = merge_weight
        self.staleness_decay = staleness_decay
        self.max_staleness = max_staleness
        self.chunk_size = chunk_size
        self.target_accuracy = target_accuracy
        self.device = device
        self.n_threads = n_threads
        self.dtype = dtype
        self.random_state = random_state
        self.checkpoint_every = checkpoint_every
        self.worker_timeout = worker_timeout
        self.verbose = verbose

    # ------------------------------------------------------------ helpers
    def _run_config(self, *, seed: int = 0) -> RunConfig:
        """The settings of a fit with ``seed``, validated (the same names as this estimator's parameters)."""
        if self.n_threads is not None:
            check_integer("n_threads", self.n_threads, minimum=1)
        check_integer("chunk_size", self.chunk_size, minimum=1)
        if self.target_accuracy is not None:
            check_number("target_accuracy", self.target_accuracy, above=0, at_most=1)
        return RunConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            nesterov=self.nesterov,
            lr_schedule=self.lr_schedule,
            dtype=self.dtype,
            seed=seed,
            device=self.device,
            update=self.update,
            merge_weight=self.merge_weight,
            staleness_decay=self.staleness_decay,
            max_staleness=self.max_staleness,
            checkpoint_every=self.checkpoint_every,
            worker_timeout=self.worker_timeout,
        )

    def _optimizer(self) -> SGD:
        return self._run_config().optimizer(0, schedule=False)

    def _threads(self) -> int | None:
        if self.n_threads is not None:
            return int(self.n_threads)
        return available_cores() if self._xp() is np else None

    def _xp(self):
        return get_namespace(self.device)

    def _prepare(self, images: np.ndarray):
        return normalize(to_device(images, self._xp()), self.mean_, self.std_, dtype=self.dtype)

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise NotFittedError("this BPTClassifier is not fitted yet; call fit(X, y) first")

    def _encode(self, y: np.ndarray) -> np.ndarray:
        known = np.isin(y, self.classes_)
        if not known.all():
            unknown = np.unique(y[~known])[:5].tolist()
            raise DataError(
                f"labels {unknown} are not among the classes {self.classes_.tolist()}; "
                "pass every class to partial_fit(..., classes=) on the first call"
            )
        return np.searchsorted(self.classes_, y).astype(np.int64)

    def _initialize(self, input_shape: tuple[int, ...], classes, mean: np.ndarray, std: np.ndarray) -> None:
        self.classes_ = np.asarray(classes)
        if len(self.classes_) < 2:
            raise DataError(f"need at least 2 classes to train a classifier, got {self.classes_.tolist()}")
        input_shape = tuple(int(v) for v in input_shape)
        if isinstance(self.architecture, Sequential):
            model = self.architecture
            if model.input_shape != input_shape or model.num_classes != len(self.classes_):
                raise ConfigurationError(
                    f"the given model takes {model.input_shape} and predicts {model.num_classes} classes, "
                    f"but the data has images {input_shape} and {len(self.classes_)} classes"
                )
        else:
            model = build(self.architecture, num_classes=len(self.classes_), input_shape=input_shape)
        self.model_ = model
        self.mean_, self.std_ = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        self._rng = np.random.default_rng(self.random_state)
        self._seed = int(self._rng.integers(2**31))
        self.params_ = model.init_params(self._seed, dtype=self.dtype, xp=self._xp())
        self._state = self._optimizer().init_state(self.params_)
        self.history_ = []
        self.report_ = None

    def _resolve_client(self):
        if self.client is not None:
            return self.client
        return current_client()

    def _fit_local(self, X: np.ndarray, y_encoded: np.ndarray, validation_data) -> None:
        config = self._run_config()
        for epoch in range(config.epochs):
            self._run_epoch(X, y_encoded, config.optimizer(epoch), validation_data)
            if self._reached_target():
                break

    def _reached_target(self) -> bool:
        accuracy = self.history_[-1].get("val_accuracy") if self.history_ else None
        return self.target_accuracy is not None and accuracy is not None and accuracy >= self.target_accuracy

    def _validation_scorer(self, validation_data) -> Callable[[dict], float] | None:
        """``params -> accuracy`` on ``validation_data`` (checked and encoded once), or None."""
        if validation_data is None:
            return None
        X_val = check_images(validation_data[0])
        y_val = self._encode(check_targets(validation_data[1], len(X_val)))

        def accuracy(params: dict) -> float:
            on_device = {name: to_device(value.astype(self.dtype), self._xp()) for name, value in params.items()}
            proba = local.predict_proba(self.model_, on_device, X_val, prepare=self._prepare)
            return float((proba.argmax(axis=1) == y_val).mean())

        return accuracy

    def _fit_cluster(self, client, dataset: Dataset, validation_data, checkpoint) -> None:
        started = time.perf_counter()
        params, self.report_ = fit_on_cluster(
            client,
            dataset,
            self.model_,
            {k: to_numpy(v) for k, v in self.params_.items()},
            self._run_config(seed=self._seed),
            evaluate=self._validation_scorer(validation_data),
            target_accuracy=self.target_accuracy,
            checkpoint=checkpoint,
            on_epoch=(lambda evaluation: self._print(_cluster_record(evaluation))) if self.verbose else None,
        )
        self.params_ = {name: to_device(value.astype(self.dtype), self._xp()) for name, value in params.items()}
        self._state = self._optimizer().init_state(self.params_)
        self.history_ = [_cluster_record(evaluation) for evaluation in self.report_.evaluations]
        if not self.history_:
            seconds = time.perf_counter() - started
            self.history_ = [{"epoch": self.report_.epochs_done, "seconds": seconds, "merges": self.report_.version}]
            if self.verbose:
                self._print(self.history_[0])

    @staticmethod
    def _print(record: dict) -> None:
        print(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))

    def _run_epoch(self, X: np.ndarray, y_encoded: np.ndarray, optimizer: SGD, validation_data) -> None:
        started = time.perf_counter()
        epoch = len(self.history_) + 1
        self.params_, self._state, loss = local.train_epoch(
            self.model_,
            self.params_,
            self._state,
            X,
            y_encoded,
            optimizer=optimizer,
            batch_size=int(self.batch_size),
            prepare=self._prepare,
            xp=self._xp(),
            rng=self._rng,
            n_threads=self._threads(),
            progress=self.verbose,
            description=f"epoch {epoch}",
        )
        seconds = time.perf_counter() - started
        record = {
            "epoch": epoch,
            "lr": optimizer.lr,
            "loss": loss,
            "seconds": seconds,
            "images_per_second": len(X) / seconds,
        }
        if validation_data is not None:
            record["val_accuracy"] = self.score(*validation_data)
        self.history_.append(record)
        if self.verbose:
            self._print(record)

    # ------------------------------------------------------------ public API
    def fit(self, X, y=None, *, validation_data: tuple[Any, Any] | None = None, checkpoint=None) -> BPTClassifier:
        """Train from scratch for ``epochs`` passes, on a Dask cluster when there is a client.

        Parameters
        ----------
        X : array (N, C, H, W), uint8 (0..255) or float; or a bptdask Zarr dataset
            (a path, URL, store or :class:`~bptdask.data.Dataset`) whose training split is used.
        y : array, shape (N,), class labels of any sortable type; None for a dataset
        validation_data : (X_val, y_val), optional
            Scored after every epoch (in-process) or at the end (cluster) into ``history_``.
        checkpoint : str or PathLike, optional
            On a cluster: a directory (shared by the workers and this process) for
            checkpoints. If it holds one of the same run (model, settings, data), the fit
            resumes from it to the same final epoch, for example after this process was
            killed; if the worker holding the global weights dies, training recreates
            them from it and goes on.

        Notes
        -----
        With a client, arrays are first written to a temporary Zarr dataset on this
        machine's disk, which the workers of a local cluster read; for workers elsewhere,
        ingest to shared storage and pass the dataset instead. ``report_`` then holds the
        run's per-round and per-worker report.
        """
        self._run_config()
        if self.target_accuracy is not None and validation_data is None:
            raise ConfigurationError("target_accuracy needs validation_data=(X_val, y_val) in fit")
        client = self._resolve_client()
        if checkpoint is not None and client is None:
            raise ConfigurationError(
                "checkpoint works with training on a Dask cluster; start a Client (or pass client=) to use it"
            )
        if y is None:
            dataset = X if isinstance(X, Dataset) else open_dataset(X)
            self._initialize(dataset.sample_shape, np.asarray(dataset.classes), dataset.mean, dataset.std)
            if client is not None:
                self._fit_cluster(client, dataset, validation_data, checkpoint)
            else:
                images, labels = dataset.read(0, dataset.num_chunks, subset="train")
                self._fit_local(images, labels, validation_data)
            return self
        X = check_images(X)
        y = check_targets(y, len(X))
        self._initialize(X.shape[1:], np.unique(y), *channel_stats(X))
        y_encoded = self._encode(y)
        if client is None:
            self._fit_local(X, y_encoded, validation_data)
            return self
        if X.dtype != np.uint8:
            raise DataError(
                f"training on a cluster stores X as a uint8 Zarr dataset, got dtype {X.dtype}; "
                "pass uint8 images (0..255) or train in-process with client=None outside a Dask client"
            )
        with tempfile.TemporaryDirectory(prefix="bptdask-fit-") as scratch:
            dataset = ingest(
                X,
                y_encoded,
                Path(scratch) / "train.zarr",
                classes=[str(c) for c in self.classes_],
                chunk_size=int(self.chunk_size),
                test_size=0,
                seed=self._seed,
            )
            self._fit_cluster(client, dataset, validation_data, checkpoint)
        return self

    def partial_fit(self, X, y, classes=None) -> BPTClassifier:
        """One more epoch over ``(X, y)`` in this process; the first call initialises the model.

        ``classes`` (all labels that will ever appear) is needed on the first call when
        ``y`` does not contain every class.
        """
        self._run_config()
        X = check_images(X)
        y = check_targets(y, len(X))
        if not hasattr(self, "params_"):
            classes = np.unique(y) if classes is None else np.unique(np.asarray(classes))
            self._initialize(X.shape[1:], classes, *channel_stats(X))
        elif tuple(X.shape[1:]) != self.model_.input_shape:
            raise DataError(f"X has images of shape {X.shape[1:]}, the model was fitted on {self.model_.input_shape}")
        self._run_epoch(X, self._encode(y), self._optimizer(), None)
        return self

    def predict_proba(self, X):
        """Class probabilities ``(N, K)``; a dask array input gives a lazy dask array."""
        self._check_fitted()
        if _is_dask_array(X):
            return self._predict_proba_dask(X)
        X = check_images(X)
        if tuple(X.shape[1:]) != self.model_.input_shape:
            raise DataError(f"X has images of shape {X.shape[1:]}, the model was fitted on {self.model_.input_shape}")
        return local.predict_proba(self.model_, self.params_, X, prepare=self._prepare)

    def _predict_proba_dask(self, X):
        if X.ndim != 4:
            raise DataError(f"X must be a 4-D dask array (N, C, H, W), got shape {X.shape}")
        X = X.rechunk({1: -1, 2: -1, 3: -1})
        return X.map_blocks(
            partial(_predict_block, self),
            drop_axis=[2, 3],
            chunks=(X.chunks[0], (len(self.classes_),)),
            dtype=np.float64,
        )

    def predict(self, X):
        """Predicted class labels ``(N,)``; lazy for a dask array input."""
        proba = self.predict_proba(X)
        if _is_dask_array(proba):
            return proba.argmax(axis=1).map_blocks(self.classes_.take, dtype=self.classes_.dtype)
        return self.classes_[proba.argmax(axis=1)]

    def score(self, X, y) -> float:
        """Mean accuracy of :meth:`predict` on ``(X, y)``.

        Raises
        ------
        DataError
            When no label of ``y`` is one of ``classes_`` (for example class indices
            from ``Dataset.read`` against the class names a dataset fit learned).
        """
        self._check_fitted()
        y = check_targets(y, len(X))
        if len(y) and not np.isin(y, self.classes_).any():
            raise DataError(
                f"none of the labels in y (such as {y[:3].tolist()}) is one of the classes "
                f"{self.classes_.tolist()[:10]}; pass labels of the same kind, e.g. np.asarray(clf.classes_)[indices] "
                "for the class indices a bptdask dataset stores"
            )
        predicted = np.asarray(self.predict(X))
        return float((predicted == y).mean())

    def save(self, path) -> None:
        """Write the fitted model to ``path`` (NPZ, no pickle) atomically."""
        self._check_fitted()
        metadata = {
            "classes": self.classes_.tolist(),
            "mean": self.mean_.tolist(),
            "std": self.std_.tolist(),
            "dtype": self.dtype,
            "history": self.history_,
        }
        save_model(path, self.model_, self.params_, metadata=metadata)

    @classmethod
    def load(cls, path, *, device: str = "auto") -> BPTClassifier:
        """Read a classifier written by :meth:`save`, ready to predict (or train further)."""
        saved = load_model(path)
        meta = saved.metadata
        missing = {"classes", "mean", "std"} - set(meta)
        if missing:
            raise DataError(f"{path} is a bptdask model but not a saved classifier (no {sorted(missing)})")
        estimator = cls(architecture=saved.model, device=device, dtype=meta.get("dtype", "float32"))
        estimator.model_ = saved.model
        estimator.classes_ = np.asarray(meta["classes"])
        estimator.mean_, estimator.std_ = np.asarray(meta["mean"]), np.asarray(meta["std"])
        xp = estimator._xp()
        estimator.params_ = {name: to_device(value, xp) for name, value in saved.params.items()}
        estimator._state = estimator._optimizer().init_state(estimator.params_)
        estimator._rng = np.random.default_rng()
        estimator._seed = int(estimator._rng.integers(2**31))
        estimator.report_ = None
        estimator.history_ = list(meta.get("history", []))
        return estimator


def _predict_block(estimator: BPTClassifier, block: np.ndarray) -> np.ndarray:
    """Probabilities for one dask block ``(n, C, H, W)`` -> ``(n, K)``."""
    return estimator.predict_proba(np.asarray(block))


__all__ = ["BPTClassifier"]


def _cluster_record(evaluation: Evaluation) -> dict:
    """A ``history_`` entry from one of a cluster fit's epoch evaluations."""
    return {
        "epoch": evaluation.epoch,
        "seconds": evaluation.seconds,
        "merges": evaluation.version,
        "val_accuracy": evaluation.accuracy,
    }
