"""CNN kernels written once against the array namespace of their inputs (NumPy or CuPy).

Every function takes and returns arrays; none holds state. Images are batch-last
``(C, H, W, N)`` (:mod:`bptdask.kernels.layout`), flat activations ``(N, F)``, and
weights in PyTorch's layouts.
"""

from bptdask.kernels.activation import (
    dropout_backward,
    dropout_forward,
    dropout_mask,
    relu_backward,
    relu_forward,
)
from bptdask.kernels.conv import (
    col2im,
    conv2d_backward,
    conv2d_forward,
    conv2d_input_grad,
    conv2d_weight_grad,
    conv_output_size,
    im2col,
)
from bptdask.kernels.dense import dense_backward, dense_forward, dense_input_grad, dense_weight_grad
from bptdask.kernels.layout import batch_first, batch_last
from bptdask.kernels.loss import log_softmax, softmax, softmax_cross_entropy
from bptdask.kernels.optim import sgd_momentum_update
from bptdask.kernels.pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    pool_output_size,
)

__all__ = [
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "batch_first",
    "batch_last",
    "col2im",
    "conv2d_backward",
    "conv2d_forward",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "conv_output_size",
    "dense_backward",
    "dense_forward",
    "dense_input_grad",
    "dense_weight_grad",
    "dropout_backward",
    "dropout_forward",
    "dropout_mask",
    "im2col",
    "log_softmax",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "pool_output_size",
    "relu_backward",
    "relu_forward",
    "sgd_momentum_update",
    "softmax",
    "softmax_cross_entropy",
]
