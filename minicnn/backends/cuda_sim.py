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
    for module in kernels.loaded_modules():
        module.order = order


def thread_order():
    """The order the emulator runs threads in now."""
    return _order


# The backend table (minicnn/backends/table.py): backends.get("cuda-sim") returns this
# object, whose methods are the table's entries (CudaKernels in _cuda_glue.py).
kernels = CudaKernels("cuda-sim", numpy, _load)
xp = kernels.xp
