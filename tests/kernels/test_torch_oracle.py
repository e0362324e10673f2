"""PyTorch as an independent oracle: kernels, whole networks and SGD, all in float64."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from bptdask import kernels, layers
from bptdask.inner import train_step
from bptdask.models import lenet5, vgg_small
from bptdask.optim import SGD
from bptdask.testing.strategies import conv_cases, dense_cases, pool_cases

torch = pytest.importorskip("torch")
F = torch.nn.functional

from bptdask.testing.torch_peer import torch_network  # noqa: E402  (needs torch)

pytestmark = pytest.mark.torch
EXAMPLES = settings(max_examples=30, deadline=None)
CLOSE = {"rtol": 1e-9, "atol": 1e-11}


def _leaf(array: np.ndarray):
    return torch.tensor(array, dtype=torch.float64, requires_grad=True)


def _grads(output, dy, *inputs) -> list[np.ndarray]:
    """Gradients of ``sum(output * dy)`` with respect to ``inputs``, as NumPy arrays."""
    return [g.numpy() for g in torch.autograd.grad(output, inputs, torch.from_numpy(dy))]


@EXAMPLES
@given(case=conv_cases(max_batch=3, max_channels=4, max_size=11, max_kernel=5, max_stride=3, max_padding=3))
def test_conv_matches_torch(case):
    x, weight, bias, dy = case.arrays("float64")
    image = kernels.batch_last(x)
    y, col = kernels.conv2d_forward(image, weight, bias, stride=case.stride, padding=case.padding)
    dx, dweight, dbias = kernels.conv2d_backward(
        kernels.batch_last(dy), col, weight, image.shape, stride=case.stride, padding=case.padding
    )
    y, dx = kernels.batch_first(y), kernels.batch_first(dx)
    tx, tw, tb = _leaf(x), _leaf(weight), _leaf(bias)
    ty = F.conv2d(tx, tw, tb, stride=case.stride, padding=case.padding)
    np.testing.assert_allclose(y, ty.detach().numpy(), **CLOSE)
    for got, want in zip((dx, dweight, dbias), _grads(ty, dy, tx, tw, tb), strict=True):
        np.testing.assert_allclose(got, want, **CLOSE)


@EXAMPLES
@given(case=pool_cases(max_size=11, max_window=4, max_stride=4))
def test_pooling_matches_torch(case):
    x, dy = case.arrays("float64")
    x = np.random.default_rng(case.seed).standard_normal(x.shape)
    image, dy_image = kernels.batch_last(x), kernels.batch_last(dy)
    y, argmax = kernels.max_pool2d_forward(image, case.size, case.stride)
    dx = kernels.max_pool2d_backward(dy_image, argmax, image.shape, case.size, case.stride)
    y, dx = kernels.batch_first(y), kernels.batch_first(dx)
    tx = _leaf(x)
    ty = F.max_pool2d(tx, case.size, case.stride)
    np.testing.assert_allclose(y, ty.detach().numpy(), **CLOSE)
    np.testing.assert_allclose(dx, _grads(ty, dy, tx)[0], **CLOSE)

    y = kernels.batch_first(kernels.avg_pool2d_forward(image, case.size, case.stride))
    dx = kernels.batch_first(kernels.avg_pool2d_backward(dy_image, image.shape, case.size, case.stride))
    ty = F.avg_pool2d(tx, case.size, case.stride)
    np.testing.assert_allclose(y, ty.detach().numpy(), **CLOSE)
    np.testing.assert_allclose(dx, _grads(ty, dy, tx)[0], **CLOSE)


@EXAMPLES
@given(case=dense_cases(max_batch=6, max_features=20))
def test_dense_matches_torch(case):
    x, weight, bias, dy = case.arrays("float64")
    y = kernels.dense_forward(x, weight, bias)
    grads = kernels.dense_backward(dy, x, weight)
    tx, tw, tb = _leaf(x), _leaf(weight), _leaf(bias)
    ty = F.linear(tx, tw, tb)
    np.testing.assert_allclose(y, ty.detach().numpy(), **CLOSE)
    for got, want in zip(grads, _grads(ty, dy, tx, tw, tb), strict=True):
        np.testing.assert_allclose(got, want, **CLOSE)


class RecordingGenerator:
    """A NumPy ``Generator`` stand-in that remembers every uniform array it hands out."""

    def __init__(self, seed: int):
        self._rng = np.random.default_rng(seed)
        self.draws: list[np.ndarray] = []

    def random(self, shape, dtype=np.float64):
        values = self._rng.random(shape, dtype=dtype)
        self.draws.append(values.copy())
        return values


class ReplayedDropout(torch.nn.Module):
    """Inverted dropout whose keep decisions come from uniforms recorded elsewhere."""

    def __init__(self, p: float, draws: list[np.ndarray]):
        super().__init__()
        self.p, self.draws = p, draws

    def forward(self, x):
        if not self.training:
            return x
        keep = torch.from_numpy(self.draws.pop(0) >= self.p).to(x.dtype)
        return x * keep / (1.0 - self.p)


def _torch_network(model, params, dropout_draws=()):
    """A float64 ``torch.nn.Sequential`` like ``model``; its dropouts replay ``dropout_draws``."""
    replayed = {
        i: ReplayedDropout(layer.p, list(dropout_draws))
        for i, layer in enumerate(model.layers)
        if isinstance(layer, layers.Dropout)
    }
    return torch_network(model, params, dtype=torch.float64, modules=replayed)


def _batch(model, n: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *model.input_shape)), rng.integers(0, model.num_classes, n)


@pytest.mark.parametrize("build", [lenet5, vgg_small], ids=["lenet5", "vgg_small"])
def test_network_forward_and_gradients_match_torch(build):
    model = build()
    params = model.init_params(3, dtype="float64")
    for name, value in params.items():
        if name.endswith(".bias"):
            params[name] = value + np.random.default_rng(len(name)).standard_normal(value.shape) * 0.1
    x, y = _batch(model, 3, seed=4)
    rng = RecordingGenerator(5)
    loss, grads = model.loss_and_grads(params, x, y, rng=rng)
    assert len(rng.draws) == sum(isinstance(layer, layers.Dropout) for layer in model.layers)
    network = _torch_network(model, params, rng.draws)
    np.testing.assert_allclose(model.forward(params, x), network.eval()(torch.from_numpy(x)).detach().numpy(), **CLOSE)
    network.zero_grad()
    torch_loss = F.cross_entropy(network.train()(torch.from_numpy(x)), torch.from_numpy(y))
    torch_loss.backward()
    assert loss == pytest.approx(torch_loss.item(), rel=1e-10)
    torch_grads = {name: p.grad.numpy() for name, p in network.named_parameters()}
    assert list(grads) == list(torch_grads)
    for name, grad in grads.items():
        scale = np.abs(torch_grads[name]).max()
        np.testing.assert_allclose(grad, torch_grads[name], rtol=1e-8, atol=1e-10 * scale, err_msg=name)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_training_steps_match_torch(nesterov):
    model = lenet5(input_shape=(1, 12, 12), padding=2, dropout=0)
    params = model.init_params(6, dtype="float64")
    network = _torch_network(model, params)
    options = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": nesterov}
    optimizer, torch_optimizer = SGD(**options), torch.optim.SGD(network.parameters(), **options)
    state = optimizer.init_state(params)
    for step in range(4):
        x, y = _batch(model, 6, seed=10 + step)
        result = train_step(model, params, state, x, y, optimizer=optimizer)
        params, state = result.params, result.state
        torch_optimizer.zero_grad()
        torch_loss = F.cross_entropy(network(torch.from_numpy(x)), torch.from_numpy(y))
        torch_loss.backward()
        torch_optimizer.step()
        assert result.loss == pytest.approx(torch_loss.item(), rel=1e-9)
    for name, p in network.named_parameters():
        np.testing.assert_allclose(params[name], p.detach().numpy(), rtol=1e-8, atol=1e-11, err_msg=name)
