"""``Sequential``: shapes, parameters, configuration, whole-model gradients and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bptdask import kernels
from bptdask.errors import BptDaskError, ConfigurationError, DataError, ShapeError
from bptdask.inner import train_step
from bptdask.layers import AvgPool2D, Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D, ReLU
from bptdask.model import Sequential
from bptdask.models import lenet5, vgg_small
from bptdask.optim import SGD
from bptdask.testing.gradcheck import directional_check


def small_model() -> Sequential:
    """Every layer type, odd non-square sizes, strides, padding and dropout."""
    return Sequential(
        [
            Conv2D(4, 3, stride=2, padding=1),
            ReLU(),
            AvgPool2D(2, stride=1),
            Conv2D(5, (2, 3)),
            ReLU(),
            MaxPool2D(2),
            Flatten(),
            Dense(7),
            ReLU(),
            Dropout(0.3),
            Dense(4),
        ],
        input_shape=(2, 11, 9),
    )


def _batch(model: Sequential, n: int, seed: int, dtype="float64"):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *model.input_shape)).astype(dtype), rng.integers(0, model.num_classes, n)


def test_lenet5_shapes_and_parameter_layouts():
    model = lenet5()
    assert model.shapes == (
        (1, 28, 28),
        (20, 24, 24),
        (20, 24, 24),
        (20, 12, 12),
        (50, 8, 8),
        (50, 8, 8),
        (50, 4, 4),
        (800,),
        (500,),
        (500,),
        (500,),
        (10,),
    )
    assert model.param_shapes() == {
        "0.weight": (20, 1, 5, 5),
        "0.bias": (20,),
        "3.weight": (50, 20, 5, 5),
        "3.bias": (50,),
        "7.weight": (500, 800),
        "7.bias": (500,),
        "10.weight": (10, 500),
        "10.bias": (10,),
    }
    assert model.num_classes == 10
    assert "9.weight" in lenet5(dropout=0).param_shapes()


@pytest.mark.parametrize("build", [small_model, lenet5, vgg_small, lambda: lenet5(input_shape=(1, 8, 8), padding=2)])
def test_inferred_shapes_match_the_forward_pass(build):
    model = build()
    params = model.init_params(0, dtype="float64")
    x, _ = _batch(model, 2, seed=1)
    x = kernels.batch_last(x)
    for i, layer in enumerate(model.layers):
        # Layers pass images batch-last (C, H, W, N) and flat activations as (N, F).
        expected = (*model.shapes[i], 2) if x.ndim == 4 else (2, *model.shapes[i])
        assert x.shape == expected, f"input of layer {i}"
        local = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(f"{i}.")}
        x, _ = layer.forward(local, x, train=True, rng=np.random.default_rng(0))
    assert x.shape == (2, *model.output_shape)
    assert model.forward(params, _batch(model, 3, seed=2)[0]).shape == (3, model.num_classes)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_init_params_names_shapes_and_dtype(dtype):
    model = small_model()
    params = model.init_params(0, dtype=dtype)
    assert list(params) == ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "10.weight", "10.bias"]
    assert {name: p.shape for name, p in params.items()} == model.param_shapes()
    assert model.param_shapes()["0.weight"] == (4, 2, 3, 3)
    assert model.param_shapes()["3.weight"] == (5, 4, 2, 3)
    assert model.param_shapes()["10.weight"] == (4, 7)
    assert all(p.dtype == np.dtype(dtype) for p in params.values())
    assert all(np.isfinite(p).all() and np.abs(p).max() > 0 for p in params.values())


def test_init_params_is_deterministic_for_a_seed():
    model = lenet5()
    first, second, other = model.init_params(7), model.init_params(7), model.init_params(8)
    assert first.keys() == second.keys() == other.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
        assert not np.array_equal(first[name], other[name]), name


def test_config_round_trips_through_json():
    for model in (small_model(), lenet5(), vgg_small(width=8)):
        config = json.loads(json.dumps(model.to_config()))
        rebuilt = Sequential.from_config(config)
        assert rebuilt == model
        assert rebuilt.layers == model.layers
        assert rebuilt.shapes == model.shapes
        assert rebuilt.to_config() == model.to_config()
        for name, value in model.init_params(3).items():
            np.testing.assert_array_equal(rebuilt.init_params(3)[name], value)
    assert Sequential.from_config(lenet5().to_config()) != lenet5(num_classes=5)


@pytest.mark.parametrize("build", [small_model, lambda: vgg_small(width=4, input_shape=(3, 12, 12))])
def test_whole_model_gradient_matches_directional_derivative(build):
    model = build()
    params = model.init_params(1, dtype="float64")
    x, y = _batch(model, 4, seed=2)

    def loss(point):
        return model.loss_and_grads(point, x, y, rng=np.random.default_rng(9))[0]

    value, grads = model.loss_and_grads(params, x, y, rng=np.random.default_rng(9))
    assert value != pytest.approx(model.loss_and_grads(params, x, y, rng=np.random.default_rng(10))[0])
    for seed in range(3):
        numerical, analytic = directional_check(loss, params, grads, np.random.default_rng(seed))
        assert numerical == pytest.approx(analytic, rel=1e-6, abs=1e-9)


def test_float32_model_tracks_float64():
    model = lenet5(input_shape=(1, 12, 12), padding=2, dropout=0)
    x, y = _batch(model, 4, seed=5)
    params64 = model.init_params(2, dtype="float64")
    params32 = model.init_params(2, dtype="float32")
    loss64, grads64 = model.loss_and_grads(params64, x, y)
    loss32, grads32 = model.loss_and_grads(params32, x.astype("float32"), y)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for name, grad in grads64.items():
        assert grads32[name].dtype == np.float32, name
        np.testing.assert_allclose(grads32[name], grad, rtol=1e-3, atol=1e-4 * np.abs(grad).max(), err_msg=name)


def test_train_step_leaves_its_inputs_unchanged():
    model = small_model()
    params = model.init_params(0)
    optimizer = SGD(lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True)
    state = {name: np.full_like(p, 0.01) for name, p in params.items()}
    x, y = _batch(model, 5, seed=3, dtype="float32")
    snapshot = [{k: v.copy() for k, v in d.items()} for d in (params, state)]
    x_before, y_before = x.copy(), y.copy()
    result = train_step(model, params, state, x, y, optimizer=optimizer, rng=np.random.default_rng(0))
    for current, before in zip((params, state), snapshot, strict=True):
        assert current.keys() == before.keys()
        for name in before:
            np.testing.assert_array_equal(current[name], before[name])
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)
    assert all(not np.array_equal(result.params[name], params[name]) for name in params)
    assert all(result.params[name] is not params[name] for name in params)
    assert np.isfinite(result.loss)


def test_errors_subclass_the_builtin_they_resemble():
    for error in (ShapeError, DataError, ConfigurationError):
        assert issubclass(error, BptDaskError) and issubclass(error, ValueError)


def test_wrong_input_rank_is_a_shape_error():
    model = lenet5()
    params = model.init_params(0)
    with pytest.raises(
        ShapeError,
        match=r"expected input of shape \(N, 1, 28, 28\), got \(2, 28, 28\); "
        r"add a channel axis with x\[:, None\]",
    ):
        model.forward(params, np.zeros((2, 28, 28), "float32"))


def test_wrong_channel_count_is_a_shape_error():
    model = lenet5()
    with pytest.raises(ShapeError, match=r"expected input of shape \(N, 1, 28, 28\), got \(2, 3, 28, 28\)$"):
        model.forward(model.init_params(0), np.zeros((2, 3, 28, 28), "float32"))


def test_integer_images_are_a_data_error():
    model = lenet5()
    with pytest.raises(DataError, match=r"must be floating point, got dtype uint8; convert with"):
        model.forward(model.init_params(0), np.zeros((2, 1, 28, 28), "uint8"))


def test_kernel_larger_than_padded_input_suggests_padding():
    with pytest.raises(
        ShapeError,
        match=r"layer 0 \(Conv2D\): kernel \(5, 5\) does not fit input 4×4 with "
        r"padding 0; pad by ≥1 or use a smaller kernel",
    ):
        Sequential([Conv2D(3, 5), Flatten(), Dense(2)], input_shape=(1, 4, 4))
    with pytest.raises(ShapeError, match=r"kernel \(7, 3\) does not fit input 3×6 .*pad by ≥2"):
        Sequential([Conv2D(3, (7, 3)), Flatten(), Dense(2)], input_shape=(1, 3, 6))
    Sequential([Conv2D(3, 5, padding=1), Flatten(), Dense(2)], input_shape=(1, 4, 4))


def test_pool_window_larger_than_input_is_a_shape_error():
    with pytest.raises(ShapeError, match=r"layer 1 \(MaxPool2D\): MaxPool2D window 5 does not fit input 3×3"):
        Sequential([Conv2D(2, 2), MaxPool2D(5), Flatten(), Dense(2)], input_shape=(1, 4, 4))


def test_dense_without_flatten_is_a_shape_error():
    with pytest.raises(ShapeError, match=r"layer 2 \(Dense\): Dense needs a flat input .*insert Flatten\(\) before it"):
        Sequential([Conv2D(2, 3), ReLU(), Dense(10)], input_shape=(1, 8, 8))


def test_model_must_end_in_class_scores():
    with pytest.raises(ShapeError, match=r"must end in class scores .*Flatten\(\) and Dense\(num_classes\)"):
        Sequential([Conv2D(2, 3), ReLU()], input_shape=(1, 8, 8))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([0, 10, 3]), r"label 10 is out of range for a model with 10 classes \(labels must lie in \[0, 9\]\)"),
        (np.array([0, -1, 3]), r"label -1 is out of range"),
        (np.array([0.0, 1.0, 2.0]), r"labels must be integers, got dtype float64"),
    ],
)
def test_bad_labels_are_a_data_error(labels, message):
    model = lenet5()
    x = np.zeros((3, 1, 28, 28), "float32")
    with pytest.raises(DataError, match=message):
        model.loss_and_grads(model.init_params(0), x, labels)


@pytest.mark.parametrize("labels", [np.array([1]), np.array([[1], [2], [3]]), np.array([1, 2, 3, 4])])
def test_labels_must_match_the_batch(labels):
    model = lenet5()
    x = np.zeros((3, 1, 28, 28), "float32")
    with pytest.raises(ShapeError, match=rf"labels have shape \({labels.shape[0]},.*\); expected \(3,\)"):
        model.loss_and_grads(model.init_params(0), x, labels)


def test_unknown_layer_type_in_config_is_a_configuration_error():
    config = lenet5().to_config()
    config["layers"][1] = {"type": "Conv3D", "out_channels": 2}
    with pytest.raises(ConfigurationError, match=r"unknown layer type 'Conv3D'; known types: \[.*'Conv2D'"):
        Sequential.from_config(config)
    with pytest.raises(ConfigurationError, match=r"unknown layer type None"):
        Layer.from_config({"size": 2})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Conv2D(4, 3, stride=-1), r"Conv2D stride must be a positive integer, got -1"),
        (lambda: Conv2D(4, 3, stride=0), r"Conv2D stride must be a positive integer, got 0"),
        (lambda: Conv2D(4, 3, padding=-1), r"Conv2D padding must be an int >= 0, got -1"),
        (lambda: Conv2D(4, 0), r"Conv2D kernel_size must be a positive int or a pair of them, got 0"),
        (lambda: Conv2D(0, 3), r"Conv2D out_channels must be a positive integer, got 0"),
        (lambda: MaxPool2D(2, stride=-2), r"MaxPool2D stride must be a positive integer, got -2"),
        (lambda: AvgPool2D(0), r"AvgPool2D size must be a positive integer, got 0"),
        (lambda: Dense(-3), r"Dense out_features must be a positive integer, got -3"),
        (lambda: Dropout(1.0), r"Dropout p must be in \[0, 1\), got 1\.0"),
        (lambda: Dropout(-0.1), r"Dropout p must be in \[0, 1\), got -0\.1"),
    ],
)
def test_bad_hyperparameters_are_configuration_errors(make, message):
    with pytest.raises(ConfigurationError, match=message):
        make()


def test_dropout_in_training_needs_a_generator():
    model = small_model()
    x, y = _batch(model, 2, seed=0)
    with pytest.raises(ConfigurationError, match=r"Dropout in training needs a random generator; pass rng="):
        model.loss_and_grads(model.init_params(0, dtype="float64"), x, y)
    model.forward(model.init_params(0, dtype="float64"), x)


def test_parameters_of_the_wrong_shape_are_rejected():
    model = small_model()
    params = model.init_params(0)
    params["3.weight"] = params["3.weight"][:, :, :1]
    wrong_shape = r"parameter '3.weight' has shape \(5, 4, 1, 3\), the model needs \(5, 4, 2, 3\)"
    with pytest.raises(ShapeError, match=wrong_shape):
        model.check_params(params)
    del params["3.weight"]
    with pytest.raises(ShapeError, match=r"missing \['3.weight'\], unexpected \[\]"):
        model.check_params(params)
