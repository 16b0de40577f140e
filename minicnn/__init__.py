"""minicnn: a from-scratch CNN engine for learning how convolutional networks work.

    import minicnn
    x = minicnn.tensor([[1.0, 2.0]], requires_grad=True)
"""
from .tensor import Tensor, tensor, zeros, ones, randn
from .autograd import no_grad, is_grad_enabled
from .random import manual_seed
from .backends import use_cpu_kernels
from . import functional

__version__ = "0.1.0"

__all__ = ["Tensor", "tensor", "zeros", "ones", "randn", "no_grad", "is_grad_enabled",
           "manual_seed", "use_cpu_kernels", "functional", "__version__"]
