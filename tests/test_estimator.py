"""BPTClassifier: scikit-learn manners, training paths, bad input, saving."""

from __future__ import annotations

from functools import partial

import dask.array as da
import numpy as np
import pytest

from bptdask import BPTClassifier, datasets
from bptdask.errors import BptDaskError, ConfigurationError, DataError, NotFittedError, ShapeError
from bptdask.models import lenet5

small_lenet = partial(lenet5, padding=2)


@pytest.fixture(scope="module")
def digits():
    return datasets.split(*datasets.digits(), test_size=397)


@pytest.fixture(scope="module")
def fitted(digits):
    (X, y), _ = digits
    return BPTClassifier(small_lenet, epochs=2, batch_size=32, random_state=0).fit(X, y)


def test_get_set_params_and_clone():
    sklearn_base = pytest.importorskip("sklearn.base")
    clf = BPTClassifier("lenet5", epochs=3, lr=0.01, random_state=7)
    params = clf.get_params()
    assert params["epochs"] == 3 and params["lr"] == 0.01 and params["architecture"] == "lenet5"
    twin = sklearn_base.clone(clf)
    assert twin is not clf and twin.get_params() == params
    assert clf.set_params(epochs=5) is clf and clf.epochs == 5
    with pytest.raises(ConfigurationError, match="Invalid parameter 'epoch'"):
        clf.set_params(epoch=5)
    assert repr(twin) == "BPTClassifier(epochs=3, lr=0.01, random_state=7)"


def test_init_only_stores_arguments():
    clf = BPTClassifier("no-such-net", epochs=-1)
    assert clf.architecture == "no-such-net" and clf.epochs == -1


def test_digits_reach_95_percent(digits):
    (X, y), (X_test, y_test) = digits
    clf = BPTClassifier(small_lenet, epochs=6, batch_size=32, random_state=0)
    assert clf.fit(X, y, validation_data=(X_test, y_test)) is clf
    assert clf.score(X_test, y_test) >= 0.95
    assert [h["epoch"] for h in clf.history_] == list(range(1, 7))
    assert clf.history_[-1]["loss"] < clf.history_[0]["loss"]
    assert clf.history_[0]["lr"] == 0.05 and clf.history_[-1]["lr"] < 0.01
    assert clf.history_[-1]["val_accuracy"] == clf.score(X_test, y_test)


def test_same_seed_same_weights(digits):
    (X, y), _ = digits
    a = BPTClassifier(small_lenet, epochs=1, random_state=3).fit(X[:300], y[:300])
    b = BPTClassifier(small_lenet, epochs=1, random_state=3).fit(X[:300], y[:300])
    c = BPTClassifier(small_lenet, epochs=1, random_state=4).fit(X[:300], y[:300])
    for name in a.params_:
        np.testing.assert_array_equal(a.params_[name], b.params_[name])
    assert not np.array_equal(a.params_["0.weight"], c.params_["0.weight"])


def test_thread_count_does_not_change_the_trained_weights(digits):
    (X, y), _ = digits
    runs = [BPTClassifier(small_lenet, epochs=1, random_state=2, n_threads=n).fit(X[:256], y[:256]) for n in (1, 2)]
    for name in runs[0].params_:
        assert np.array_equal(runs[0].params_[name], runs[1].params_[name]), name


def test_predict_proba_rows_are_distributions(fitted, digits):
    _, (X_test, _) = digits
    proba = fitted.predict_proba(X_test)
    assert proba.shape == (len(X_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(fitted.predict(X_test), fitted.classes_[proba.argmax(axis=1)])


def test_predict_on_dask_array_is_lazy_and_blockwise(fitted, digits):
    _, (X_test, _) = digits
    lazy_X = da.from_array(X_test, chunks=(100, 1, 4, 8))
    lazy = fitted.predict(lazy_X)
    assert isinstance(lazy, da.Array)
    assert lazy.chunks == ((100, 100, 100, 97),)
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), fitted.predict(X_test))
    proba = fitted.predict_proba(lazy_X)
    assert proba.shape == (397, 10) and proba.chunks[1] == (10,)


def test_string_labels_round_trip(digits):
    (X, y), _ = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = BPTClassifier(small_lenet, epochs=1, random_state=0).fit(X[:200], names[y[:200]])
    assert set(clf.predict(X[:20])) <= set(names)
    assert list(clf.classes_) == sorted(names)


def test_partial_fit_needs_all_classes_up_front(digits):
    (X, y), _ = digits
    clf = BPTClassifier(small_lenet, random_state=0)
    first = y < 5
    clf.partial_fit(X[first][:100], y[first][:100], classes=np.arange(10))
    clf.partial_fit(X[~first][:100], y[~first][:100])
    assert len(clf.history_) == 2 and clf.model_.num_classes == 10
    fresh = BPTClassifier(small_lenet, random_state=0).partial_fit(X[first][:100], y[first][:100])
    with pytest.raises(DataError, match=r"labels \[5, 6, 7, 8, 9\] are not among the classes"):
        fresh.partial_fit(X[~first][:100], y[~first][:100])


def test_save_and_load_predict_the_same(fitted, digits, tmp_path):
    _, (X_test, _) = digits
    fitted.save(tmp_path / "clf.npz")
    loaded = BPTClassifier.load(tmp_path / "clf.npz")
    np.testing.assert_array_equal(loaded.predict_proba(X_test), fitted.predict_proba(X_test))
    assert loaded.history_ == fitted.history_
    loaded.partial_fit(X_test[:64], fitted.predict(X_test[:64]))


def test_not_fitted():
    with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
        BPTClassifier().predict(np.zeros((1, 1, 28, 28), np.uint8))


@pytest.mark.parametrize(
    ("X", "y", "error", "message"),
    [
        (np.zeros((10, 28, 28), np.uint8), np.arange(10) % 2, ShapeError, r"4-D array.*X\[:, None\]"),
        (np.zeros((0, 1, 28, 28), np.uint8), np.zeros(0), ShapeError, "X is empty"),
        (np.full((4, 1, 28, 28), np.nan), np.arange(4) % 2, DataError, r"3136 NaN or infinite.*sample 0"),
        (np.zeros((4, 1, 28, 28), np.int32), np.arange(4) % 2, DataError, "uint8.*or floating point, got dtype int32"),
        (np.zeros((4, 1, 28, 28), np.uint8), np.zeros(4), DataError, "at least 2 classes"),
        (np.zeros((4, 1, 28, 28), np.uint8), np.arange(3), ShapeError, r"one label per sample \(4\)"),
        (
            np.zeros((4, 1, 4, 4), np.uint8),
            np.arange(4) % 2,
            ShapeError,
            r"layer 0 \(Conv2D\): kernel \(5, 5\) does not fit input 4×4.*pad by ≥1",
        ),
    ],
)
def test_bad_training_input(X, y, error, message):
    with pytest.raises(error, match=message):
        BPTClassifier(epochs=1, random_state=0).fit(X, y)


def test_channel_count_comes_from_the_data():
    clf = BPTClassifier(epochs=1, random_state=0).fit(np.zeros((4, 3, 28, 28), np.uint8), np.arange(4) % 2)
    assert clf.model_.input_shape == (3, 28, 28) and clf.params_["0.weight"].shape == (20, 3, 5, 5)
    with pytest.raises(DataError, match=r"images of shape \(1, 28, 28\), the model was fitted on \(3, 28, 28\)"):
        clf.predict(np.zeros((2, 1, 28, 28), np.uint8))


def test_nan_located_in_later_sample():
    X = np.zeros((5, 1, 28, 28))
    X[3, 0, 2, 2] = np.inf
    with pytest.raises(DataError, match=r"1 NaN or infinite values.*sample 3"):
        BPTClassifier(epochs=1).fit(X, np.arange(5) % 2)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"architecture": "resnet9000"}, r"unknown architecture 'resnet9000'.*lenet5"),
        ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
        ({"batch_size": 2.5}, "batch_size must be an integer >= 1, got 2.5"),
        ({"lr": -1.0}, "lr must be a finite number > 0"),
        ({"lr": float("inf")}, "lr must be a finite number > 0, got inf"),
        ({"momentum": 1.5}, "momentum must be a finite number >= 0 and < 1"),
        ({"lr_schedule": "step"}, "lr_schedule must be one of 'cosine', 'constant', got 'step'"),
        ({"device": "tpu"}, "device must be one of 'auto', 'cpu', 'gpu', got 'tpu'"),
        ({"n_threads": 0}, "n_threads must be an integer >= 1, got 0"),
        ({"update": "async"}, "update must be one of 'agwu', 'sgwu', got 'async'"),
        ({"merge_weight": 0.0}, r"merge_weight must be a finite number > 0 and <= 1 \(1: one average update a round"),
        ({"staleness_decay": 2.0}, r"staleness_decay must be a finite number > 0 and <= 1 \(1 means no decay\)"),
        ({"max_staleness": -1}, "max_staleness must be an integer >= 0, got -1"),
        ({"worker_timeout": 0}, r"worker_timeout must be a finite number > 0 \(seconds\), got 0"),
        ({"dtype": "int8"}, "dtype must be one of 'float32', 'float64', got 'int8'"),
        ({"architecture": lenet5(num_classes=3)}, "predicts 3 classes, but the data has .* 2 classes"),
    ],
)
def test_bad_settings(settings, message):
    X = np.zeros((4, 1, 28, 28), np.uint8)
    with pytest.raises(ConfigurationError, match=message):
        BPTClassifier(**settings).fit(X, np.arange(4) % 2)


def test_errors_are_catchable_as_builtins():
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        BPTClassifier(epochs=0).fit(np.zeros((2, 1, 28, 28), np.uint8), [0, 1])
    assert issubclass(NotFittedError, (BptDaskError, AttributeError))


def test_predict_rejects_images_of_another_size(fitted):
    with pytest.raises(DataError, match=r"images of shape \(1, 28, 28\), the model was fitted on \(1, 8, 8\)"):
        fitted.predict(np.zeros((2, 1, 28, 28), np.uint8))


def test_score_refuses_labels_of_another_kind_than_the_classes():
    X, y = datasets.digits(random_state=0)
    names = np.asarray([str(label) for label in y])
    clf = BPTClassifier(partial(lenet5, padding=2), epochs=1, random_state=0).fit(X[:200], names[:200])
    assert 0 <= clf.score(X[:20], names[:20]) <= 1
    with pytest.raises(DataError, match=r"none of the labels in y \(such as \[\d, \d, \d\]\) is one of the classes"):
        clf.score(X[:20], y[:20])
