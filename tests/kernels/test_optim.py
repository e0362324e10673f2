"""SGD with momentum, Nesterov and weight decay against a hand-written PyTorch rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bptdask import kernels
from bptdask.backend import to_numpy
from bptdask.errors import ConfigurationError
from bptdask.optim import SGD
from bptdask.testing import assert_allclose, reference
from bptdask.testing.strategies import SEEDS

DTYPES = ["float32", "float64"]
EXAMPLES = settings(max_examples=40, deadline=None)
STEPS = 5


@st.composite
def hyperparameters(draw):
    """Keyword arguments of one SGD configuration, Nesterov only with momentum."""
    momentum = draw(st.sampled_from([0.0, 0.5, 0.9, 0.99]))
    return {
        "lr": draw(st.sampled_from([1e-3, 0.01, 0.1, 0.5])),
        "momentum": momentum,
        "weight_decay": draw(st.sampled_from([0.0, 1e-4, 0.05])),
        "nesterov": momentum > 0 and draw(st.booleans()),
    }


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(options=hyperparameters(), seed=SEEDS)
def test_sgd_update_matches_torch_rule_over_several_steps(xp, dtype, options, seed):
    rng = np.random.default_rng(seed)
    param = rng.standard_normal((3, 4)).astype(dtype)
    grads = [rng.standard_normal((3, 4)).astype(dtype) for _ in range(STEPS)]
    expected = reference.torch_sgd_steps(param, grads, **options)
    current, velocity = xp.asarray(param), xp.zeros(param.shape, dtype=dtype)
    for step, grad in enumerate(grads):
        current, velocity = kernels.sgd_momentum_update(current, xp.asarray(grad), velocity, **options)
        assert current.dtype == velocity.dtype == np.dtype(dtype)
        assert_allclose(current, expected[step], dtype=dtype, scale=10, err_msg=f"step {step}")


def test_sgd_first_steps_by_hand(xp):
    param, grad = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    options = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}
    p1, v1 = kernels.sgd_momentum_update(xp.asarray(param), xp.asarray(grad), xp.zeros(2), **options)
    np.testing.assert_allclose(to_numpy(v1), [0.6, 0.05])
    np.testing.assert_allclose(to_numpy(p1), [0.94, -2.005])
    p2, v2 = kernels.sgd_momentum_update(p1, xp.asarray(grad), v1, **options)
    np.testing.assert_allclose(to_numpy(v2), [0.9 * 0.6 + 0.5 + 0.094, 0.9 * 0.05 + 0.25 - 0.2005])
    np.testing.assert_allclose(to_numpy(p2), to_numpy(p1) - 0.1 * to_numpy(v2))
    p_nesterov, _ = kernels.sgd_momentum_update(
        xp.asarray(param), xp.asarray(grad), xp.zeros(2), nesterov=True, **options
    )
    np.testing.assert_allclose(to_numpy(p_nesterov), param - 0.1 * (1 + 0.9) * np.array([0.6, 0.05]))


def test_sgd_update_leaves_inputs_unchanged(xp):
    rng = np.random.default_rng(1)
    arrays = [xp.asarray(rng.standard_normal(6).astype("float32")) for _ in range(3)]
    before = [to_numpy(a).copy() for a in arrays]
    kernels.sgd_momentum_update(*arrays, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)
    for got, want in zip(arrays, before, strict=True):
        np.testing.assert_array_equal(to_numpy(got), want)


def test_sgd_optimizer_updates_every_parameter_without_touching_inputs():
    rng = np.random.default_rng(2)
    params = {"0.weight": rng.standard_normal((2, 3)), "0.bias": rng.standard_normal(2)}
    grads = {name: rng.standard_normal(v.shape) for name, v in params.items()}
    optimizer = SGD(lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True)
    state = optimizer.init_state(params)
    snapshot = {name: v.copy() for name, v in {**params, **{f"g{n}": g for n, g in grads.items()}}.items()}
    new_params, new_state = optimizer.update(params, grads, state)
    assert set(new_params) == set(new_state) == set(params)
    for name in params:
        expected = reference.torch_sgd_steps(
            params[name], [grads[name]], lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True
        )[0]
        np.testing.assert_allclose(new_params[name], expected, rtol=1e-12)
        np.testing.assert_array_equal(state[name], 0.0)
        np.testing.assert_array_equal(params[name], snapshot[name])
        np.testing.assert_array_equal(grads[name], snapshot[f"g{name}"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lr": 0.0}, r"lr must be a finite number > 0, got 0\.0"),
        ({"lr": float("inf")}, r"lr must be a finite number > 0, got inf"),
        ({"momentum": 1.0}, r"momentum must be a finite number >= 0 and < 1, got 1\.0"),
        ({"weight_decay": -0.1}, r"weight_decay must be a finite number >= 0, got -0\.1"),
        ({"weight_decay": float("nan")}, r"weight_decay must be a finite number >= 0, got nan"),
        ({"momentum": 0.0, "nesterov": True}, r"nesterov=True needs momentum > 0"),
    ],
)
def test_sgd_rejects_bad_hyperparameters(options, message):
    with pytest.raises(ConfigurationError, match=message):
        SGD(**options)
