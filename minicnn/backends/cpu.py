"""Device "cpu": the numba kernels of kernels/cpu, with BLAS for matrix products.

Arrays are numpy, C-contiguous, float32 (float64 also works, for gradient checks).
Each kernel is compiled by numba the first time it meets a dtype and cached on disk
(next to its source, or in numba's cache folder), so later runs start quickly.
The table (its shapes) is the class Backend in minicnn/backends/table.py.
"""
import numpy

from minicnn.kernels.cpu.activation import (  # noqa: F401  (the table)
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
)
# conv2d, max_pool2d and linear run the kernel ladder's chosen rung: the top one
# (kernels/cpu/conv.py, pool.py, linear.py) unless one is chosen for study
from minicnn.kernels.cpu.ladder.dispatch import (  # noqa: F401
    conv2d_backward,
    conv2d_forward,
    linear_backward,
    linear_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from minicnn.kernels.cpu.adaptive_pool import (  # noqa: F401
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
)
from minicnn.kernels.cpu.dropout import dropout_backward, dropout_forward  # noqa: F401
from minicnn.kernels.cpu.loss import (  # noqa: F401
    bce_with_logits_backward,
    bce_with_logits_forward,
    cross_entropy_backward,
    cross_entropy_forward,
    log_softmax_backward,
    log_softmax_forward,
    softmax_backward,
    softmax_forward,
)
from minicnn.kernels.cpu.norm import batch_norm_backward, batch_norm_forward  # noqa: F401
from minicnn.kernels.cpu.norm_pool import (  # noqa: F401
    batch_norm_relu_pool_backward,
    batch_norm_relu_pool_forward,
)
from minicnn.kernels.cpu.optim import adam_step, sgd_step  # noqa: F401
from minicnn.kernels.cpu.pool import avg_pool2d_backward, avg_pool2d_forward  # noqa: F401

xp = numpy
