"""``BPTClassifier``: a scikit-learn estimator over bptdask's training paths.

It is a real scikit-learn classifier (``BaseEstimator``, ``ClassifierMixin``): ``__init__``
only stores its arguments, ``fit`` validates and returns ``self``, learned attributes end
in ``_``, and it works in ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``. With a Dask
client it trains on the cluster (:func:`bptdask.cluster.fit_on_cluster`), else in this
process. Pickling, ``copy.deepcopy`` and ``sklearn.base.clone`` drop the client, which
cannot travel; :attr:`BPTClassifier.client_` resolves it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d, validate_data

from bptdask import local
from bptdask.backend import get_namespace, to_device, to_numpy
from bptdask.cluster import current_client, fit_on_cluster
from bptdask.cluster.chunks import persist_chunks, scatter_chunks
from bptdask.cluster.connect import check_open
from bptdask.cluster.preflight import wait_for_workers
from bptdask.data import Dataset
from bptdask.errors import ConfigurationError, DataError, ModelFileError, NotFittedError, TrainingDivergedError
from bptdask.inner.runner import available_cores
from bptdask.inputs import (
    LabelledImages,
    as_dataset,
    check_label_kinds,
    is_dask,
    is_dataset,
    is_vectors,
    labelled_images,
)
from bptdask.model import Sequential
from bptdask.models import build
from bptdask.optim import SGD
from bptdask.outer.run_config import RunConfig
from bptdask.predictor import Predictor
from bptdask.preprocess import check_images, check_targets, normalize
from bptdask.report import Evaluation
from bptdask.serialize import load_model, save_model
from bptdask.validation import check_integer, check_number, check_output_path


class BPTClassifier(ClassifierMixin, BaseEstimator):
    """A CNN image classifier trained with bptdask.

    Parameters
    ----------
    architecture : str, callable or Sequential, default "lenet5"
        A name from :data:`bptdask.models.ARCHITECTURES` (``"mlp"`` also takes feature
        vectors ``(N, F)``), a callable ``(num_classes=, input_shape=) -> Sequential``, or
        a ready model.
    epochs : int, default 10
        Passes over the training data in :meth:`fit`.
    batch_size : int, default 64
        Samples per step; with fewer samples than that, each epoch is one step over all.
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
        The cluster to train on. None uses the current Dask client if there is one
        (outside Dask tasks), else trains in this process. Dropped by pickling, deepcopy
        and clone; :attr:`client_` resolves it.
    merge_rule : {"inverse", "concurrency", "polynomial", "exponential"}, default "inverse"
        How AGWU weighs an update by its staleness (:mod:`bptdask.outer.merge_rules`):
        ``"inverse"`` scales a push by ``1/(s + 1)``, so a round of on-time pushes adds
        one average update whatever the number of workers and learning goes on with many
        workers (``benchmarks/RESULTS.md``); ``"exponential"`` is the BPT-CNN paper's rule.
    merge_weight, staleness_decay, max_staleness
        AGWU's ``α0``, ``γ`` and staleness bound (:class:`bptdask.outer.weights.WeightServer`).
    chunk_size : int, default 256
        Samples per chunk when ``fit(X, y)`` puts arrays on a cluster (the unit of IDPA's
        allocation).
    target_accuracy : float, optional
        Stop training once the accuracy on ``fit``'s ``validation_data`` reaches this
        (checked after every epoch); without it, train all ``epochs``.
    device : {"auto", "cpu", "gpu"}, default "auto"
        Train with NumPy (``"cpu"``) or CuPy (``"gpu"``). ``"auto"`` takes CuPy where CuPy
        and a CUDA device are present, else NumPy; on a cluster each worker decides for
        itself, so CPU and GPU workers train one model together.
    n_threads : int or None
        Threads for each training step's task graph (the inner layer) in this process.
        None uses every core available to the process on the CPU, and the sequential
        step on a GPU. Results are bit-identical for every thread count.
    dtype : {"float32", "float64"}, default "float32"
        Parameter and activation dtype.
    random_state : int or None
        Seeds weight init, shuffling and dropout; None draws a fresh seed.
    checkpoint_every : int, default 50
        On a cluster with ``fit(..., checkpoint=DIR)``: merges between checkpoints.
    worker_timeout : float, default 60
        On a cluster: seconds a worker may hold a part without a word before it is
        treated as lost (frozen); see :class:`bptdask.outer.run_config.RunConfig`.
    min_workers : int, default 1
        On a cluster: workers to wait for before training (a cluster whose jobs are still
        queued), at most ten minutes (:data:`bptdask.cluster.preflight.START_TIMEOUT`).
    verbose : bool, default False
        Show progress bars and per-epoch lines.

    Attributes
    ----------
    classes_ : ndarray, shape (K,)
    model_ : Sequential
    params_ : dict of arrays
    mean_, std_ : ndarray, shape (C,)
        Per-channel normalisation learned from the training images.
    n_features_in_ : int
        Features of each vector, when fitted on feature vectors ``(N, F)``.
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
        merge_rule: str = "inverse",
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
        min_workers: int = 1,
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
        self.merge_rule = merge_rule
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
        self.min_workers = min_workers
        self.verbose = verbose

    # ------------------------------------------------------------ scikit-learn protocol
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = self.architecture == "mlp"  # image networks take (N, C, H, W) only
        tags.classifier_tags.multi_label = False
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "params_")

    def __sklearn_clone__(self):
        params = self.get_params(deep=False)
        params["client"] = None
        return type(self)(**{name: clone(value, safe=False) for name, value in params.items()})

    def set_params(self, **params) -> BPTClassifier:
        """Set constructor arguments by name (scikit-learn protocol); returns self."""
        try:
            return super().set_params(**params)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None

    def __getstate__(self):
        state = super().__getstate__()
        state["client"] = None  # a Client cannot be pickled; client_ finds the current one
        return state

    @property
    def client_(self):
        """The client to train with: ``client``, else the current Dask client, else None."""
        return self.client if self.client is not None else current_client()

    # ------------------------------------------------------------ settings
    def _run_config(self, *, seed: int = 0) -> RunConfig:
        """The settings of a fit with ``seed``, validated (the same names as this estimator's parameters)."""
        if self.n_threads is not None:
            check_integer("n_threads", self.n_threads, minimum=1)
        check_integer("chunk_size", self.chunk_size, minimum=1)
        check_integer("min_workers", self.min_workers, minimum=1)
        if self.target_accuracy is not None:
            check_number("target_accuracy", self.target_accuracy, above=0, at_most=1)
        if self.random_state is not None and not isinstance(self.random_state, np.random.Generator):
            check_integer("random_state", self.random_state)
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
            merge_rule=self.merge_rule,
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

    # ------------------------------------------------------------ input
    def _vectors(self, X, *, reset: bool) -> np.ndarray:
        """Feature vectors checked the scikit-learn way (features counted and named), ``(N, F)`` float."""
        try:
            return validate_data(self, X, reset=reset, dtype=(np.float64, np.float32))
        except ValueError as exc:
            raise DataError(str(exc)) from exc

    def _checked(self, X, y, *, reset: bool) -> LabelledImages:
        """``(X, y)`` checked for training; NumPy labels as scikit-learn checks classification targets."""
        if is_dask(X) or is_dask(y):
            return labelled_images(X, y)
        try:
            y = check_label_kinds(column_or_1d(y, warn=True))
            check_classification_targets(y)
        except ValueError as exc:
            raise DataError(str(exc)) from exc
        if scipy.sparse.issparse(X) or np.asarray(X).ndim == 2:
            return labelled_images(self._vectors(X, reset=reset), y)
        return labelled_images(X, y)

    def _initialize(self, data: LabelledImages | Dataset, classes=None) -> None:
        if isinstance(data, Dataset):
            found, mean, std, input_shape = np.asarray(data.classes), data.mean, data.std, data.sample_shape
        else:
            found, mean, std = data.summary()
            input_shape = data.images.shape[1:]
        self.classes_ = np.asarray(found) if classes is None else np.unique(np.asarray(classes))
        if len(self.classes_) < 2:
            raise DataError(
                f"need at least 2 classes to train a classifier, got {len(self.classes_)} class: "
                f"{self.classes_.tolist()}"
            )
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
        self._vectors_in = not isinstance(data, Dataset) and data.vectors
        if not self._vectors_in and hasattr(self, "n_features_in_"):
            del self.n_features_in_
        self._rng = np.random.default_rng(self.random_state)
        self._seed = int(self._rng.integers(2**31))
        self.params_ = model.init_params(self._seed, dtype=self.dtype, xp=self._xp())
        self._state = self._optimizer().init_state(self.params_)
        self.history_ = []
        self.report_ = None

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise NotFittedError("this BPTClassifier is not fitted yet; call fit(X, y) first")

    def predictor(self) -> Predictor:
        """The fitted model as a small picklable :class:`~bptdask.predictor.Predictor`."""
        self._check_fitted()
        return Predictor(
            self.model_,
            {name: to_numpy(value) for name, value in self.params_.items()},
            self.classes_,
            self.mean_,
            self.std_,
            self.dtype,
            self.device,
            getattr(self, "_vectors_in", False),
        )

    # ------------------------------------------------------------ training
    def fit(self, X, y=None, *, validation_data: tuple[Any, Any] | None = None, checkpoint=None) -> BPTClassifier:
        """Train from scratch for ``epochs`` passes, on a Dask cluster when there is a client.

        Parameters
        ----------
        X : images (N, C, H, W), uint8 (0..255) or float; feature vectors (N, F); NumPy or
            dask; or a bptdask dataset (a path, URL, store or :class:`~bptdask.data.Dataset`)
            whose training split is used.
        y : array, shape (N,), class labels of any sortable type (NumPy or dask); None
            for a dataset.
        validation_data : (X_val, y_val), optional
            Scored after every epoch into ``history_``.
        checkpoint : str or PathLike, optional
            On a cluster: a directory (shared by the workers and this process) for
            checkpoints. If it holds one of the same run (model, settings, data), the fit
            resumes from it to the same final epoch, for example after this process was
            killed; if the worker holding the global weights dies, training recreates
            them from it and goes on.

        Notes
        -----
        On a cluster, arrays are put on the workers chunk by chunk (NumPy arrays are
        scattered, dask arrays persisted where they are), never through a disk; a dataset
        is read by the workers from its store. ``report_`` then holds the run's report.
        """
        self._run_config()
        if self.target_accuracy is not None and validation_data is None:
            raise ConfigurationError("target_accuracy needs validation_data=(X_val, y_val) in fit")
        if validation_data is not None and (
            not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2
        ):
            raise ConfigurationError(
                f"validation_data must be a pair (X_val, y_val), got {type(validation_data).__name__}; pass a tuple"
            )
        client = self.client_
        if client is not None:
            check_open(client)
        if checkpoint is not None and client is None:
            raise ConfigurationError(
                "checkpoint works with training on a Dask cluster; start a Client (or pass client=) to use it"
            )
        if y is None:
            if not is_dataset(X):
                raise DataError(
                    "BPTClassifier requires y to be passed, but the target y is None; pass labels y with arrays X, "
                    "or a bptdask dataset (path, URL or Dataset) as X"
                )
            dataset = as_dataset(X)
            self._initialize(dataset)
            if client is not None:
                return self._fit_cluster(client, dataset, validation_data, checkpoint)
            images, labels = dataset.read(0, dataset.num_chunks, subset="train")
            return self._fit_local(images, labels, validation_data)
        data = self._checked(X, y, reset=True)
        self._initialize(data)
        labels = data.encoded(self.classes_)
        if client is not None:
            wait_for_workers(client, int(self.min_workers))  # the chunks need workers to go to
            make = persist_chunks if data.lazy else scatter_chunks
            chunks = make(client, data.images, labels, chunk_size=int(self.chunk_size), mean=self.mean_, std=self.std_)
            return self._fit_cluster(client, chunks, validation_data, checkpoint)
        images = np.asarray(data.images.compute() if data.lazy else data.images)
        return self._fit_local(
            check_images(images), np.asarray(labels.compute() if data.lazy else labels), validation_data
        )

    def _fit_local(self, images: np.ndarray, labels: np.ndarray, validation_data) -> BPTClassifier:
        config = self._run_config()
        for epoch in range(config.epochs):
            self._run_epoch(images, labels, config.optimizer(epoch), validation_data)
            accuracy = self.history_[-1].get("val_accuracy")
            if self.target_accuracy is not None and accuracy is not None and accuracy >= self.target_accuracy:
                break
        return self

    def _fit_cluster(self, client, data, validation_data, checkpoint) -> BPTClassifier:
        started = time.perf_counter()
        params, self.report_ = fit_on_cluster(
            client,
            data,
            self.model_,
            {k: to_numpy(v) for k, v in self.params_.items()},
            self._run_config(seed=self._seed),
            evaluate=self._validation_scorer(validation_data),
            target_accuracy=self.target_accuracy,
            checkpoint=checkpoint,
            min_workers=int(self.min_workers),
            seed_fixed=isinstance(self.random_state, (int, np.integer)),
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
        return self

    def _validation_scorer(self, validation_data) -> Callable[[dict], float] | None:
        """``params -> accuracy`` on ``validation_data`` (checked and encoded once), or None."""
        if validation_data is None:
            return None
        X_val, y_val = self._evaluation_arrays(*validation_data)
        predictor = self.predictor()

        def accuracy(params: dict) -> float:
            scoring = predictor.with_params(params)
            predicted = scoring.predict_lazy(X_val).compute() if is_dask(X_val) else scoring.predict(X_val)
            return float((np.asarray(predicted) == y_val).mean())

        return accuracy

    def _run_epoch(self, images: np.ndarray, labels: np.ndarray, optimizer: SGD, validation_data) -> None:
        started = time.perf_counter()
        epoch = len(self.history_) + 1
        params, state, loss = local.train_epoch(
            self.model_,
            self.params_,
            self._state,
            images,
            labels,
            optimizer=optimizer,
            batch_size=int(self.batch_size),
            prepare=self._prepare,
            xp=self._xp(),
            rng=self._rng,
            n_threads=self._threads(),
            progress=self.verbose,
            description=f"epoch {epoch}",
        )
        local.check_converging(params, loss, epoch=epoch, lr=optimizer.lr)  # keeps the last finite weights
        self.params_, self._state = params, state
        seconds = time.perf_counter() - started
        record = {"epoch": epoch, "lr": optimizer.lr, "loss": loss, "seconds": seconds}
        record["images_per_second"] = len(labels) / seconds
        if validation_data is not None:
            record["val_accuracy"] = self.score(*validation_data)
        self.history_.append(record)
        if self.verbose:
            self._print(record)

    @staticmethod
    def _print(record: dict) -> None:
        print(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))

    def partial_fit(self, X, y, classes=None) -> BPTClassifier:
        """One more epoch over ``(X, y)`` in this process; the first call initialises the model.

        ``classes`` (all labels that will ever appear) is needed on the first call when
        ``y`` does not contain every class.
        """
        self._run_config()
        first = not hasattr(self, "params_")
        data = self._checked(X, y, reset=first)
        if data.lazy:
            data = labelled_images(data.images.compute(), np.asarray(data.labels))
        if first:
            self._initialize(data, classes)
        elif tuple(data.images.shape[1:]) != self.model_.input_shape:
            raise DataError(
                f"X has images of shape {data.images.shape[1:]}, the model was fitted on {self.model_.input_shape}"
            )
        self._run_epoch(data.images, data.encoded(self.classes_), self._optimizer(), None)
        return self

    # ------------------------------------------------------------ prediction
    def _prediction_input(self, X, subset: str):
        """``X`` as the predictor takes it: checked NumPy, a dask array, or a dataset's images lazily."""
        self._check_fitted()
        if is_dataset(X):
            return as_dataset(X).images(subset)
        vectors = getattr(self, "_vectors_in", False)
        if is_dask(X):
            return X
        X = self._vectors(X, reset=False) if vectors else check_images(np.asarray(X))
        shape = X.shape[1:] if not vectors else (X.shape[1], 1, 1)
        if tuple(shape) != self.model_.input_shape:
            raise DataError(f"X has images of shape {tuple(shape)}, the model was fitted on {self.model_.input_shape}")
        return X

    def predict_proba(self, X, *, subset: str = "test"):
        """Class probabilities ``(N, K)``; lazy (a dask array) for a dask array or a dataset.

        ``subset`` picks a dataset's samples: ``"test"`` (its test split), ``"train"`` or
        ``"all"``.
        """
        X = self._prediction_input(X, subset)
        predictor = self.predictor()
        return predictor.predict_proba_lazy(X) if is_dask(X) else predictor.predict_proba(X)

    def predict(self, X, *, subset: str = "test"):
        """Predicted class labels ``(N,)``; lazy for a dask array or a dataset (write it with ``.to_zarr``)."""
        X = self._prediction_input(X, subset)
        predictor = self.predictor()
        return predictor.predict_lazy(X) if is_dask(X) else predictor.predict(X)

    def _evaluation_arrays(self, X, y=None, *, subset: str = "test") -> tuple[Any, np.ndarray]:
        """``(X, y)`` to score, with ``y`` as labels of ``classes_`` (a dataset's stored labels mapped)."""
        if is_dataset(X):
            dataset = as_dataset(X)
            return dataset.images(subset), np.asarray(dataset.classes)[dataset.labels[dataset.indices(subset)]]
        if is_vectors(X) and not getattr(self, "_vectors_in", False):
            raise DataError(f"X holds feature vectors {np.shape(X)}, the model was fitted on images")
        if y is None:
            raise DataError("scoring arrays X needs their labels y; pass score(X, y), or a dataset as X alone")
        return X, check_label_kinds(check_targets(np.asarray(y), np.shape(X)[0]))

    def score(self, X, y=None, sample_weight=None, *, subset: str = "test") -> float:
        """Mean accuracy of :meth:`predict` on ``(X, y)``, or on a dataset's ``subset`` (``y=None``).

        Raises
        ------
        DataError
            When no label of ``y`` is one of ``classes_`` (for example class indices
            against the class names a fit learned).
        """
        self._check_fitted()
        X, y = self._evaluation_arrays(X, y, subset=subset)
        if len(y) and not np.isin(y, self.classes_).any():
            raise DataError(
                f"none of the labels in y (such as {y[:3].tolist()}) is one of the classes "
                f"{self.classes_.tolist()[:10]}; pass labels of the same kind as the training labels"
            )
        predicted = self.predict(X, subset=subset)
        predicted = np.asarray(predicted.compute() if is_dask(predicted) else predicted)
        correct = (predicted == y).astype(np.float64)
        return float(np.average(correct, weights=sample_weight))

    # ------------------------------------------------------------ saving
    def save(self, path) -> None:
        """Write the fitted model to ``path`` (an ``.npz`` file, no pickle) atomically.

        Raises
        ------
        ConfigurationError
            ``path`` does not end in ``.npz``, or its folder is missing or not writable.
        TrainingDivergedError
            The weights hold NaN or infinite values (nothing is written).
        """
        self._check_fitted()
        path = check_output_path("path", path, suffix=".npz")
        broken = sorted(name for name, value in self.params_.items() if not np.isfinite(to_numpy(value)).all())
        if broken:
            raise TrainingDivergedError(
                f"the model's weights {broken} hold NaN or infinite values; nothing was written to {path}; "
                "train again with a lower learning rate"
            )
        metadata = {
            "classes": self.classes_.tolist(),
            "mean": self.mean_.tolist(),
            "std": self.std_.tolist(),
            "dtype": self.dtype,
            "vectors": getattr(self, "_vectors_in", False),
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
            raise ModelFileError(
                f"{path} is a bptdask model but not a saved classifier (no {sorted(missing)}); load it with "
                "bptdask.load_model, or save the classifier with BPTClassifier.save"
            )
        estimator = cls(architecture=saved.model, device=device, dtype=meta.get("dtype", "float32"))
        estimator.model_ = saved.model
        estimator.classes_ = np.asarray(meta["classes"])
        estimator.mean_, estimator.std_ = np.asarray(meta["mean"]), np.asarray(meta["std"])
        estimator._vectors_in = bool(meta.get("vectors", False))
        if estimator._vectors_in:
            estimator.n_features_in_ = saved.model.input_shape[0]
        xp = estimator._xp()
        estimator.params_ = {name: to_device(value, xp) for name, value in saved.params.items()}
        estimator._state = estimator._optimizer().init_state(estimator.params_)
        estimator._rng = np.random.default_rng()
        estimator._seed = int(estimator._rng.integers(2**31))
        estimator.report_ = None
        estimator.history_ = list(meta.get("history", []))
        return estimator


def _cluster_record(evaluation: Evaluation) -> dict:
    """A ``history_`` entry from one of a cluster fit's epoch evaluations."""
    return {
        "epoch": evaluation.epoch,
        "seconds": evaluation.seconds,
        "merges": evaluation.version,
        "val_accuracy": evaluation.accuracy,
    }
