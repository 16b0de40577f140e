"""Dropout: in training, zero each value with probability p and scale the rest by
1/(1-p), so the expected value is unchanged; in eval mode it passes x through.
Any input shape. The mask is drawn on the device by a counter-based generator
(Philox4x32-10) from a seed that minicnn.random.generator() gives, so a seeded run
drops the same values on every device; backward reuses that mask.
"""
from .. import functional as F
from .module import Module


class Dropout(Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be between 0 and 1, got {p!r}")
        if inplace:
            raise ValueError("Dropout: inplace=True is not supported; use inplace=False")
        self.p = float(p)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"
