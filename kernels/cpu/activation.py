"""Elementwise activations on the CPU (numba).                                lesson 02

    relu:     y = max(x, 0)                    gx = gy if y > 0 else 0
    sigmoid:  y = 1 / (1 + exp(-x))            gx = gy * y * (1 - y)
The sigmoid is evaluated as 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0 with
e = exp(-|x|) <= 1, the same number written so that exp never overflows.

Index map: the arrays are seen flat (any shape, C-contiguous); task k computes
element k (prange tasks; a plain loop for relu on small arrays). Cost: one read
and one write per element, memory-bound.
"""
import numpy as np
from numba import njit, prange

from . import PARALLEL_MIN_ELEMENTS


@njit(inline="always")
def _relu_at(k, x, y):
    v = x[k]
    y[k] = 0 if v < 0 else v                # keeps NaN, as PyTorch


@njit(cache=True, parallel=True)
def relu_fwd(x, y):
    """y[k] = max(x[k], 0).   x, y (L,)"""
    for k in prange(x.size):
        _relu_at(k, x, y)


@njit(cache=True)
def relu_fwd_serial(x, y):
    """relu_fwd on one thread, for small arrays (see PARALLEL_MIN_ELEMENTS)."""
    for k in range(x.size):
        _relu_at(k, x, y)


@njit(cache=True, parallel=True)
def relu_bwd(gy, y, gx):
    """gx[k] = gy[k] if y[k] > 0 else 0.   (L,) each"""
    for k in prange(gy.size):
        gx[k] = gy[k] if y[k] > 0 else 0


@njit(cache=True)
def relu_bwd_serial(gy, y, gx):
    """relu_bwd on one thread, for small arrays (see PARALLEL_MIN_ELEMENTS)."""
    for k in range(gy.size):
        gx[k] = gy[k] if y[k] > 0 else 0


@njit(cache=True, parallel=True)
def sigmoid_fwd(x, y):
    """y[k] = 1 / (1 + exp(-x[k])), without overflow.   (L,) each"""
    for k in prange(x.size):
        v = x[k]
        e = np.exp(-abs(v))
        y[k] = 1 / (1 + e) if v >= 0 else e / (1 + e)


@njit(cache=True, parallel=True)
def sigmoid_bwd(gy, y, gx):
    """gx[k] = gy[k] * y[k] * (1 - y[k]).   (L,) each"""
    for k in prange(gy.size):
        gx[k] = gy[k] * y[k] * (1 - y[k])


def relu_forward(x):
    """x any shape -> y same shape."""
    x = np.asarray(x, order="C")
    y = np.empty(x.shape, dtype=x.dtype)
    kernel = relu_fwd if x.size >= PARALLEL_MIN_ELEMENTS else relu_fwd_serial
    kernel(x.reshape(-1), y.reshape(-1))
    return y


def relu_backward(gy, y):
    """gy, y any shape -> gx same shape."""
    gy, y = np.asarray(gy, order="C"), np.asarray(y, order="C")
    gx = np.empty(gy.shape, dtype=gy.dtype)
    kernel = relu_bwd if gy.size >= PARALLEL_MIN_ELEMENTS else relu_bwd_serial
    kernel(gy.reshape(-1), y.reshape(-1), gx.reshape(-1))
    return gx


def sigmoid_forward(x):
    """x any shape -> y same shape."""
    x = np.asarray(x, order="C")
    y = np.empty(x.shape, dtype=x.dtype)
    sigmoid_fwd(x.reshape(-1), y.reshape(-1))
    return y


def sigmoid_backward(gy, y):
    """gy, y any shape -> gx same shape."""
    gy, y = np.asarray(gy, order="C"), np.asarray(y, order="C")
    gx = np.empty(gy.shape, dtype=gy.dtype)
    sigmoid_bwd(gy.reshape(-1), y.reshape(-1), gx.reshape(-1))
    return gx
