"""Where one training step's time goes: each layer's forward and backward, and inside
each convolution its im2col, GEMMs and col2im, on NumPy or CuPy.

Every piece is timed alone (median of repeats, the device synchronised before and
after), so the pieces add up to roughly one sequential ``train_step``, printed beside
them. A guide to what to speed up next, not a comparison with a peer.

    python benchmarks/step_profile.py --network vgg_small --batch-size 256 --device gpu
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from common import print_table, training_batches, write_report

import bptdask
from bptdask import kernels
from bptdask.backend import get_namespace, to_device
from bptdask.kernels.gemm import matmul
from bptdask.layers import Conv2D

NETWORKS = {"lenet5": lambda: bptdask.models.lenet5(), "vgg_small": lambda: bptdask.models.vgg_small()}


def median_seconds(fn, xp, repeats: int) -> float:
    """Median wall seconds of ``fn()`` with the device idle before and finished after."""
    synchronize = xp.cuda.Device().synchronize if xp is not np else (lambda: None)
    fn()
    seconds = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def conv_pieces(layer: Conv2D, params, x, dy, xp) -> dict:
    """The parts of one convolution's forward and backward, as zero-argument callables.

    ``x`` ``(C, H, W, N)`` and ``dy`` ``(O, OH, OW, N)`` are batch-last, as layers pass them.
    """
    weight = params["weight"]
    o, c, kh, kw = weight.shape
    col = kernels.im2col(x, layer.kernel_size, layer.stride, layer.padding)
    rows = weight.reshape(o, c * kh * kw)
    col_rows = col.reshape(c * kh * kw, -1)
    dy_rows = dy.reshape(o, -1)
    dcol = matmul(rows.T, dy_rows)
    return {
        "im2col": lambda: kernels.im2col(x, layer.kernel_size, layer.stride, layer.padding),
        "gemm_forward": lambda: matmul(rows, col_rows),
        "gemm_dweight": lambda: matmul(dy_rows, col_rows.T),
        "gemm_dinput": lambda: matmul(rows.T, dy_rows),
        "col2im": lambda: kernels.col2im(dcol.reshape(col.shape), x.shape, layer.stride, layer.padding),
    }


def profile(network: str, batch_size: int, device: str, repeats: int) -> list[dict]:
    xp = get_namespace(device)
    model = NETWORKS[network]()
    params = {name: to_device(value, xp) for name, value in model.init_params(0).items()}
    x, y = (to_device(a, xp) for a in training_batches(model, batch_size, 1)[0])
    rng = xp.random.default_rng(0)
    activations, caches = [kernels.batch_last(x)], []
    for i, layer in enumerate(model.layers):
        out, cache = layer.forward(model.layer_params(params, i), activations[-1], train=True, rng=rng)
        activations.append(out)
        caches.append(cache)
    _, dlogits = kernels.softmax_cross_entropy(activations[-1], y)
    grads_out = [None] * len(model.layers)
    dy = dlogits
    for i in range(len(model.layers) - 1, -1, -1):
        grads_out[i] = dy
        dy, _ = model.layers[i].backward(model.layer_params(params, i), caches[i], dy, need_input_grad=i > 0)

    rows = []
    for i, layer in enumerate(model.layers):
        local = model.layer_params(params, i)
        forward = median_seconds(
            lambda layer=layer, local=local, i=i: layer.forward(local, activations[i], train=True, rng=rng), xp, repeats
        )
        backward = median_seconds(
            lambda layer=layer, local=local, i=i: layer.backward(local, caches[i], grads_out[i], need_input_grad=i > 0),
            xp,
            repeats,
        )
        rows.append({"piece": f"{i} {type(layer).__name__} forward", "ms": forward * 1e3})
        rows.append({"piece": f"{i} {type(layer).__name__} backward", "ms": backward * 1e3})
        if isinstance(layer, Conv2D):
            for name, fn in conv_pieces(layer, local, activations[i], grads_out[i], xp).items():
                rows.append({"piece": f"  {i} conv {name}", "ms": median_seconds(fn, xp, repeats) * 1e3})
    optimizer = bptdask.SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)
    state = optimizer.init_state(params)
    rows.append(
        {
            "piece": "SGD update (all weights)",
            "ms": median_seconds(lambda: optimizer.update(params, params, state), xp, repeats) * 1e3,
        }
    )
    step = median_seconds(
        lambda: bptdask.train_step(model, params, state, x, y, optimizer=optimizer, rng=rng, validate=False),
        xp,
        repeats,
    )
    rows.append({"piece": "whole train_step", "ms": step * 1e3})
    for row in rows:
        row.update(network=network, batch_size=batch_size, device=device)
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", choices=sorted(NETWORKS), default="vgg_small")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    rows = profile(args.network, args.batch_size, args.device, args.repeats)
    print_table(rows, [("piece", "piece", "s"), ("ms", "ms", ".3f")])
    print(f"wrote {write_report(f'step_profile_{args.network}_{args.device}', rows)}")
    return rows


if __name__ == "__main__":
    main()
