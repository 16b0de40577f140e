"""minicnn: a from-scratch CNN engine for learning how convolutional networks work.

    import minicnn
    x = minicnn.tensor([[1.0, 2.0]], requires_grad=True)

PyTorch's names mean the same here, so a PyTorch script ports by its imports:
`import minicnn as torch`, `import minicnn.nn as nn`, `import minicnn.nn.functional as F`,
`import minicnn.optim as optim`, `from minicnn.utils.data import DataLoader`.
"""
from .tensor import Tensor, tensor, zeros, ones, randn
from .autograd import no_grad, is_grad_enabled
from .random import manual_seed
from .backends import use_cpu_kernels
from . import functional
from . import optim, utils
from .torch_names import (argmax, argmin, bool, cat, cuda, device, double, float, float16,
                          float32, float64, from_numpy, int32, int64, long, max, maximum, min,
                          stack, uint8)

__version__ = "0.1.0"

__all__ = ["Tensor", "tensor", "zeros", "ones", "randn", "no_grad", "is_grad_enabled",
           "manual_seed", "use_cpu_kernels", "functional", "optim", "utils", "max", "min",
           "maximum", "argmax", "argmin", "cat", "stack", "from_numpy", "device", "cuda",
           "float32", "float64", "float16", "int64", "int32", "uint8", "long", "bool", "float",
           "double", "__version__"]
