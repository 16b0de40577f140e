"""ReLU and Sigmoid as layers (lesson 02); any input shape, same output shape.

    ReLU:    y = max(0, x)             dy/dx = 1 where x > 0, else 0
    Sigmoid: y = 1 / (1 + exp(-x))     dy/dx = y * (1 - y)
"""
from .. import functional as F
from .module import Module


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)
