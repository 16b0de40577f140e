"""Exercise 07 - one step of SGD with momentum: reference solution.           (lesson 06)

    g' = g + weight_decay * p;  v = g' (first step) or momentum * v + g';  p = p - lr * v
"""
import numpy as np


def sgd_momentum_step(p, g, velocity, lr, momentum, weight_decay=0.0):
    """p, g (any shape), velocity (same shape) or None on the first step -> (p_new, v_new)"""
    g = g + weight_decay * p
    v = g.copy() if velocity is None else momentum * velocity + g
    return p - lr * v, v
