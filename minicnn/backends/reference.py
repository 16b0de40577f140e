"""The reference kernels: the maths in plain numpy (kernels/reference.py).

Slow and obvious, for reading and for testing the fast kernels against. Chosen for
the "cpu" device by minicnn.use_cpu_kernels("reference"). Arrays are numpy, float32
or float64. The table (its shapes) is the class Backend in minicnn/backends/table.py.
"""
import numpy

from minicnn.kernels.reference import (  # noqa: F401  (the table)
    adam_step,
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    avg_pool2d_backward,
    avg_pool2d_forward,
    batch_norm_backward,
    batch_norm_forward,
    batch_norm_relu_pool_backward,
    batch_norm_relu_pool_forward,
    bce_with_logits_backward,
    bce_with_logits_forward,
    conv2d_backward,
    conv2d_forward,
    cross_entropy_backward,
    cross_entropy_forward,
    dropout_backward,
    dropout_forward,
    linear_backward,
    linear_forward,
    log_softmax_backward,
    log_softmax_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    relu_backward,
    relu_forward,
    sgd_step,
    sigmoid_backward,
    sigmoid_forward,
    softmax_backward,
    softmax_forward,
)

xp = numpy
