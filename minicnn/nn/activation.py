"""ReLU, Sigmoid, Softmax and LogSoftmax as layers (lesson 02), and Identity.

    ReLU:    y = max(0, x)             dy/dx = 1 where x > 0, else 0
    Sigmoid: y = 1 / (1 + exp(-x))     dy/dx = y * (1 - y)

Any input shape, same output shape. ReLU(inplace=True), as PyTorch scripts often
write it, gives the same output; minicnn computes it into a new array (the input is
left as it was), since its autograd keeps every tensor unchanged.
"""
from .. import functional as F
from .module import Module


class ReLU(Module):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, x):
        return F.relu(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Softmax(Module):
    """softmax along `dim` (PyTorch's default None: see F.softmax)."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.softmax(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    def forward(self, x):
        return F.log_softmax(x, self.dim)


class Identity(Module):
    """Passes its input through (a placeholder, e.g. for a removed layer)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x
