"""Device "cuda-sim": the CUDA C kernels of kernels/cuda/*.cu on the CPU emulator (lesson 10).

The same glue as device "cuda" (minicnn/backends/_cuda_glue.py), over numpy arrays:
each .cu file is compiled by g++ against the emulator's header and every launch runs
the CUDA threads of each block on the CPU (minicnn.kernels.cuda.emu). Slow, but a
whole training step runs through the CUDA kernels on a machine with no GPU, and can be
compared with the "cpu" device.

set_thread_order("forward" | "reverse" | "shuffle") changes the order the emulator runs
threads and blocks in; a kernel that is right gives the same answer in every order.
"""
import numpy

from minicnn.backends._cuda_glue import CudaKernels
from minicnn.kernels.cuda.emu import load_module

_order = "forward"


def _load(path):
    """Compile kernels/cuda/<family>.cu for the emulator."""
    return load_module(path, order=_order, seed=0)


def set_thread_order(order):
    """Run the threads of later launches in this order: "forward", "reverse" or "shuffle"."""
    global _order
    if order not in ("forward", "reverse", "shuffle"):
        raise ValueError(f"thread order must be 'forward', 'reverse' or 'shuffle', got {order!r}")
    _order = order
    for module in _kernels.loaded_modules():
        module.order = order


def thread_order():
    """The order the emulator runs threads in now."""
    return _order


xp = numpy
_kernels = CudaKernels("cuda-sim", numpy, _load)
# The backend table (minicnn/backends/__init__.py), spelled out so each name can be found:
conv2d_forward = _kernels.conv2d_forward
conv2d_backward = _kernels.conv2d_backward
max_pool2d_forward = _kernels.max_pool2d_forward
max_pool2d_backward = _kernels.max_pool2d_backward
avg_pool2d_forward = _kernels.avg_pool2d_forward
avg_pool2d_backward = _kernels.avg_pool2d_backward
relu_forward = _kernels.relu_forward
relu_backward = _kernels.relu_backward
sigmoid_forward = _kernels.sigmoid_forward
sigmoid_backward = _kernels.sigmoid_backward
linear_forward = _kernels.linear_forward
linear_backward = _kernels.linear_backward
softmax_forward = _kernels.softmax_forward
softmax_backward = _kernels.softmax_backward
log_softmax_forward = _kernels.log_softmax_forward
log_softmax_backward = _kernels.log_softmax_backward
cross_entropy_forward = _kernels.cross_entropy_forward
cross_entropy_backward = _kernels.cross_entropy_backward
batch_norm_forward = _kernels.batch_norm_forward
batch_norm_backward = _kernels.batch_norm_backward
dropout_forward = _kernels.dropout_forward
dropout_backward = _kernels.dropout_backward
adaptive_avg_pool2d_forward = _kernels.adaptive_avg_pool2d_forward
adaptive_avg_pool2d_backward = _kernels.adaptive_avg_pool2d_backward
bce_with_logits_forward = _kernels.bce_with_logits_forward
bce_with_logits_backward = _kernels.bce_with_logits_backward
sgd_step = _kernels.sgd_step
adam_step = _kernels.adam_step
