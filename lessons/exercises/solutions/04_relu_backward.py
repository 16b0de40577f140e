"""Exercise 04 - ReLU backward: reference solution.                         (lesson 02)

    gx = gy where x > 0, else 0   (0 at x == 0, as PyTorch)
"""
import numpy as np


def relu_backward(gy, x):
    """gy = dL/dy, x = the input ReLU saw (same shape) -> gx = dL/dx (same shape)"""
    return np.where(x > 0, gy, 0.0)
