"""Exercise 04 - ReLU backward                                                (lesson 02)

ReLU passes positive values and zeroes the rest:  y = max(x, 0).
Its derivative is 1 where x > 0 and 0 where x < 0. At x = 0 the function has a corner;
minicnn, like PyTorch, uses 0 there. By the chain rule the gradient that flows back is

    gx = gy * (1 if x > 0 else 0)

Shapes: gy and x have the same shape (any shape); gx has that shape too.

Check your answer:   minicnn grade 04
"""
import numpy as np


def relu_backward(gy, x):
    """gy = dL/dy, x = the input ReLU saw (same shape) -> gx = dL/dx (same shape)"""
    # TODO: one line with np.where (or a boolean mask).
    raise NotImplementedError("relu_backward")
