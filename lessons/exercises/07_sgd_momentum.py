"""Exercise 07 - one step of SGD with momentum                                 (lesson 06)

Plain gradient descent moves each parameter against its gradient: p <- p - lr * g.
Momentum keeps a running velocity v, so that steps in a consistent direction build
up speed and zig-zags cancel out. The rule minicnn.optim.SGD uses (PyTorch's):

    g' = g + weight_decay * p             (L2 weight decay, optional)
    v  = g'                  on the first step (velocity is None)
    v  = momentum * v + g'   on every later step
    p  = p - lr * v

Shapes: p, g and velocity all have the parameter's shape; lr, momentum and
weight_decay are floats. Return NEW arrays (p_new, v_new); do not rely on
changing the arguments in place.

Check your answer:   minicnn grade 07
"""
import numpy as np


def sgd_momentum_step(p, g, velocity, lr, momentum, weight_decay=0.0):
    """p, g (any shape), velocity (same shape) or None on the first step -> (p_new, v_new)"""
    # TODO: add the weight decay to g, update the velocity, then move p.
    raise NotImplementedError("sgd_momentum_step")
