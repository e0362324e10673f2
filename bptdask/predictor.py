"""What prediction needs of a fitted classifier, and nothing else: small, picklable, graph-safe.

A :class:`Predictor` holds the model (its layer specifications), NumPy weights, the class
labels and the input normalisation. It is what a lazy prediction on a dask array puts in
the task graph: once, under a key starting ``bptdask-predictor``, with one
``bptdask-predict-*`` task per block; never the estimator or a client.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import dask
import numpy as np
from dask.base import tokenize

from bptdask._typing import Params
from bptdask.backend import get_namespace, to_device, to_numpy
from bptdask.errors import DataError, ShapeError
from bptdask.kernels import softmax
from bptdask.model import Sequential
from bptdask.preprocess import normalize

#: Samples per forward pass when predicting.
BATCH = 1024


@dataclass(frozen=True, eq=False)
class Predictor:
    """A fitted classifier's model, weights, classes and normalisation.

    Parameters
    ----------
    model : Sequential
    params : dict of NumPy arrays
    classes : ndarray, shape (K,)
        The label of each output.
    mean, std : ndarray, shape (C,)
        Per-channel normalisation of the training images.
    dtype : str
        Activation dtype.
    device : {"auto", "cpu", "gpu"}
        Where to compute; each process that predicts decides for itself.
    vectors : bool
        Inputs are feature vectors ``(N, F)``, seen by the model as ``(N, F, 1, 1)``.
    """

    model: Sequential
    params: Params
    classes: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    dtype: str = "float32"
    device: str = "auto"
    vectors: bool = False
    _on_device: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        """Refuse parts that would predict wrongly: one class per output, finite ``mean``, ``std > 0``."""
        if len(self.classes) != self.model.num_classes:
            raise ShapeError(
                f"{len(self.classes)} class labels for a model with {self.model.num_classes} outputs; "
                "pass one label per output"
            )
        channels = self.model.input_shape[0]
        for name in ("mean", "std"):
            value = np.asarray(getattr(self, name))
            if value.shape != (channels,) or not np.isfinite(value).all() or (name == "std" and (value <= 0).any()):
                raise DataError(
                    f"{name} is {value.tolist()!r}; prediction needs {channels} finite values (one per input "
                    f"channel{', all > 0' if name == 'std' else ''})"
                )

    def __reduce__(self):
        host = {name: to_numpy(value) for name, value in self.params.items()}
        fields_ = (self.model, host, self.classes, self.mean, self.std, self.dtype, self.device, self.vectors)
        return Predictor, fields_

    def with_params(self, params: Params) -> Predictor:
        """The same predictor with other weights (an epoch's global weights, to score them)."""
        return dataclasses.replace(self, params=params)

    def as_images(self, X):
        """``X`` as the model sees it: ``(N, F)`` vectors become ``(N, F, 1, 1)``."""
        return X.reshape(*X.shape, 1, 1) if self.vectors else X

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, float64 ``(N, K)``, for raw inputs ``X`` (images or vectors)."""
        xp = get_namespace(self.device)
        params = self._weights(xp)
        images = self.as_images(np.asarray(X))
        out = np.empty((len(images), len(self.classes)), dtype=np.float64)
        for start in range(0, len(images), BATCH):
            batch = normalize(to_device(images[start : start + BATCH], xp), self.mean, self.std, dtype=self.dtype)
            out[start : start + BATCH] = to_numpy(softmax(self.model.forward(params, batch)))
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels ``(N,)``."""
        return self.classes[self.predict_proba(X).argmax(axis=1)]

    def _weights(self, xp) -> Params:
        """The weights on ``xp``'s device, moved there once per process."""
        if xp.__name__ not in self._on_device:
            self._on_device[xp.__name__] = {name: to_device(value, xp) for name, value in self.params.items()}
        return self._on_device[xp.__name__]

    # ------------------------------------------------------------ lazy, on dask arrays
    def predict_proba_lazy(self, X):
        """``predict_proba`` of a dask array ``X``, as a dask array ``(N, K)`` computed block by block."""
        X = X.rechunk(dict.fromkeys(range(1, X.ndim), -1))
        token = tokenize(X.name, self.model.to_config(), {k: to_numpy(v) for k, v in self.params.items()})
        handle = dask.delayed(self, name=f"bptdask-predictor-{token}", pure=True)
        return X.map_blocks(
            _proba_block,
            handle,
            drop_axis=list(range(2, X.ndim)),
            chunks=(X.chunks[0], (len(self.classes),)),
            dtype=np.float64,
            meta=np.empty((0, len(self.classes)), dtype=np.float64),
            name=f"bptdask-predict-proba-{token}",
        )

    def predict_lazy(self, X):
        """``predict`` of a dask array ``X``, as a dask array of labels ``(N,)``."""
        proba = self.predict_proba_lazy(X)
        return proba.map_blocks(
            _labels_of,
            self.classes,
            drop_axis=1,
            dtype=self.classes.dtype,
            name=f"bptdask-predict-labels-{tokenize(proba.name)}",
        )


def _proba_block(block: np.ndarray, predictor: Predictor) -> np.ndarray:
    return predictor.predict_proba(block)


def _labels_of(proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return classes[proba.argmax(axis=1)]
