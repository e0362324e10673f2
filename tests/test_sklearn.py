"""BPTClassifier keeps scikit-learn's estimator contract: checks, meta-estimators, clone, pickle."""

from __future__ import annotations

import copy
import pickle
from functools import partial

import numpy as np
import pytest
import sklearn.exceptions
from distributed import Client, LocalCluster
from sklearn.base import clone, is_classifier
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_is_fitted

from bptdask import BPTClassifier, datasets
from bptdask.errors import BptDaskError, NotFittedError
from bptdask.models import lenet5

small_lenet = partial(lenet5, padding=2)


@pytest.fixture(scope="module")
def digits():
    """The 8×8 digits as 4-D images: ``(X (1797, 1, 8, 8) uint8, y int64)``."""
    return datasets.digits(random_state=0)


@pytest.fixture(scope="module")
def in_process_client():
    """A cluster in this process, not made the default client (the other tests train in-process)."""
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


@parametrize_with_checks([BPTClassifier("mlp", epochs=30, batch_size=32, random_state=0, device="cpu", n_threads=1)])
def test_scikit_learn_checks_pass_on_feature_vectors(estimator, check):
    """Every scikit-learn check runs on the ``mlp`` architecture, which takes feature vectors (N, F).

    Image architectures take 4-D input only and say so (``two_d_array=False``), for which
    scikit-learn's checks, written for 2-D data, do not apply.
    """
    check(estimator)


def test_image_networks_declare_4d_input_and_are_classifiers():
    assert is_classifier(BPTClassifier())
    assert BPTClassifier().__sklearn_tags__().input_tags.two_d_array is False
    assert BPTClassifier("mlp").__sklearn_tags__().input_tags.two_d_array is True


def test_pipeline_grid_search_and_cross_validation_on_4d_images(digits):
    X, y = digits
    cnn = BPTClassifier(small_lenet, epochs=4, batch_size=32, random_state=0, n_threads=1)
    search = GridSearchCV(Pipeline([("cnn", cnn)]), {"cnn__lr": [0.05, 0.1]}, cv=2).fit(X[:800], y[:800])
    assert search.best_params_["cnn__lr"] in (0.05, 0.1) and search.best_score_ > 0.6
    check_is_fitted(search.best_estimator_["cnn"])
    scores = cross_val_score(clone(cnn), X[:800], y[:800], cv=2)
    assert scores.shape == (2,) and (scores > 0.6).all()


def test_not_fitted_is_scikit_learns_error_too():
    with pytest.raises(sklearn.exceptions.NotFittedError, match="not fitted yet"):
        check_is_fitted(BPTClassifier())
    with pytest.raises(NotFittedError):
        BPTClassifier().predict(np.zeros((1, 1, 28, 28), np.uint8))
    assert issubclass(NotFittedError, (BptDaskError, sklearn.exceptions.NotFittedError, AttributeError))


def test_the_html_repr_shows_the_changed_parameters():
    html = BPTClassifier("lenet5", epochs=3)._repr_html_()
    assert "BPTClassifier" in html and "epochs" in html


def test_clone_deepcopy_and_pickle_drop_the_client(digits, in_process_client):
    X, y = digits
    clf = BPTClassifier(small_lenet, epochs=1, client=in_process_client, random_state=0).fit(X[:256], y[:256])
    assert clf.report_ is not None, "it trained on the cluster"
    for twin in (clone(clf), copy.deepcopy(clf), pickle.loads(pickle.dumps(clf))):
        assert twin.client is None
        with in_process_client.as_current():
            assert twin.client_ is in_process_client, "the current client is found again"
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict(X[:50]), clf.predict(X[:50]))
    assert clone(clf).get_params()["epochs"] == 1 and not hasattr(clone(clf), "params_")


def test_labels_keep_their_type(digits, tmp_path):
    import bptdask

    X, y = digits
    dataset = bptdask.ingest(X[:400], y[:400], tmp_path / "digits.zarr", chunk_size=100, test_size=100)
    assert dataset.classes == tuple(range(10))
    clf = BPTClassifier(small_lenet, epochs=1, random_state=0).fit(dataset)
    predicted = clf.predict(X[:10])
    assert predicted.dtype.kind == "i" and clf.classes_.dtype.kind == "i"
    assert 0 <= clf.score(X[:50], y[:50]) <= 1
    assert 0 <= clf.score(dataset) <= 1, "a dataset scores its test split"
    named = bptdask.ingest(X[:200], y[:200], tmp_path / "named.zarr", classes=[f"d{i}" for i in range(10)])
    assert set(BPTClassifier(small_lenet, epochs=1).fit(named).predict(X[:5])) <= {f"d{i}" for i in range(10)}


def test_lazy_prediction_puts_a_small_predictor_in_the_graph(digits):
    import dask.array as da

    X, y = digits
    clf = BPTClassifier(small_lenet, epochs=1, random_state=0).fit(X[:256], y[:256])
    lazy = clf.predict(da.from_array(X[:300], chunks=(100, 1, 8, 8)))
    graph = dict(lazy.__dask_graph__())
    predictors = [key for key in graph if isinstance(key, str) and key.startswith("bptdask-predictor")]
    assert len(predictors) == 1, "the predictor travels once"
    weights = sum(value.nbytes for value in clf.params_.values())
    assert len(pickle.dumps(graph[predictors[0]])) < weights + 20_000, "the weights and little else"
    assert "BPTClassifier" not in repr(graph)
    assert all(
        str(key[0] if isinstance(key, tuple) else key).startswith(("bptdask-predict", "array-")) for key in graph
    )
    np.testing.assert_array_equal(lazy.compute(), clf.predict(X[:300]))
