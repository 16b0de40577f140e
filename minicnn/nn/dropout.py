"""Dropout: in training, zero each value with probability p and scale the rest by
1/(1-p), so the expected value is unchanged; in eval mode it passes x through.
Any input shape. The mask comes from minicnn.random.generator().
"""
from .. import functional as F
from .module import Module


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be between 0 and 1, got {p}")
        self.p = float(p)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"
