"""Optimiser steps on the CPU (numba), in place, as PyTorch computes them.    lesson 06

SGD with momentum mu, dampening d, weight decay wd, learning rate lr:
    g'  = g + wd * p
    buf = g'                              on the first step
    buf = mu * buf + (1 - d) * g'         afterwards
    dir = g' + mu * buf   (Nesterov)   or   buf   (plain momentum)   or   g'  (mu = 0)
    p  -= lr * dir
Adam with betas (b1, b2), eps, weight decay wd (L2, added to the gradient), step t
counted from 1:
    g' = g + wd * p
    m  = b1 * m + (1 - b1) * g'            (PyTorch: m.lerp_(g', 1 - b1))
    v  = b2 * v + (1 - b2) * g'^2
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

Index map: the parameter is seen flat; task k updates element k of p and of its
state (buf, or m and v): prange tasks for large parameters, a plain loop for small
ones (biases, small filters). Cost: a few reads and writes per element,
memory-bound.
"""
import numpy as np
from numba import njit, prange

from . import PARALLEL_MIN_ELEMENTS


@njit(inline="always")
def _sgd_at(k, p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """The SGD update of element k (of p, and of buf when momentum != 0)."""
    d = g[k] + weight_decay * p[k] if weight_decay != 0 else g[k]
    if momentum != 0:
        if first:
            buf[k] = d
        else:
            buf[k] = momentum * buf[k] + (1 - dampening) * d
        # read buf back: the stored (rounded) value is the one the next step sees
        d = d + momentum * buf[k] if nesterov else buf[k]
    p[k] -= lr * d


@njit(cache=True, parallel=True)
def sgd_parallel(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """p, g, buf (L,); buf is read and written only when momentum != 0."""
    for k in prange(p.size):
        _sgd_at(k, p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first)


@njit(cache=True)
def sgd_serial(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """sgd_parallel on one thread, for small parameters (see PARALLEL_MIN_ELEMENTS)."""
    for k in range(p.size):
        _sgd_at(k, p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first)


@njit(inline="always")
def _adam_at(k, p, g, m, v, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt):
    """The Adam update of element k of p, m and v."""
    w1 = 1 - beta1
    gk = g[k] + weight_decay * p[k] if weight_decay != 0 else g[k]
    # lerp as PyTorch writes it: exact at both ends
    if w1 < 0.5:
        m[k] = m[k] + w1 * (gk - m[k])
    else:
        m[k] = gk - (gk - m[k]) * (1 - w1)
    v[k] = beta2 * v[k] + (1 - beta2) * gk * gk
    p[k] -= step_size * m[k] / (np.sqrt(v[k]) / bc2_sqrt + eps)


@njit(cache=True, parallel=True)
def adam_parallel(p, g, m, v, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt):
    """p, g, m, v (L,); step_size = lr / (1 - b1^t), bc2_sqrt = sqrt(1 - b2^t)."""
    for k in prange(p.size):
        _adam_at(k, p, g, m, v, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt)


@njit(cache=True)
def adam_serial(p, g, m, v, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt):
    """adam_parallel on one thread, for small parameters (see PARALLEL_MIN_ELEMENTS)."""
    for k in range(p.size):
        _adam_at(k, p, g, m, v, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt)


def _flat(a):
    # a view of the whole array as one row; the steps work in place, so no copies
    if not a.flags.c_contiguous:
        raise ValueError("optimiser state must be C-contiguous to be updated in place")
    return a.reshape(-1)


def sgd_step(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """One SGD step in place on p (any shape), g and buf (same shape; buf may be None
    when momentum == 0)."""
    pf = _flat(p)
    bf = _flat(buf) if buf is not None else pf[:0]
    if momentum != 0 and buf is None:
        raise ValueError("sgd_step: momentum needs a buffer")
    kernel = sgd_parallel if pf.size >= PARALLEL_MIN_ELEMENTS else sgd_serial
    kernel(pf, np.ascontiguousarray(g).reshape(-1), bf, float(lr), float(momentum),
               float(dampening), float(weight_decay), bool(nesterov), bool(first))


def adam_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """One Adam step in place on p (any shape), with moments m and v (same shape)."""
    step_size = float(lr) / (1 - float(beta1) ** step)
    bc2_sqrt = (1 - float(beta2) ** step) ** 0.5
    kernel = adam_parallel if p.size >= PARALLEL_MIN_ELEMENTS else adam_serial
    kernel(_flat(p), np.ascontiguousarray(g).reshape(-1), _flat(m), _flat(v),
                float(beta1), float(beta2), float(eps), float(weight_decay), step_size, bc2_sqrt)
