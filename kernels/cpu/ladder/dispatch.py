"""The cpu device's table entries for the ops that have a ladder: each call runs
the chosen rung (ladder.chosen: the top one, the engine's, unless a rung is
chosen for study). The engine's own options (a fused ReLU, the gradients
`needs` asks for) are honoured by every rung: a plain rung computes everything
and applies the ReLU, or its backward mask, as a step of its own.
"""
import numpy as np

from ...reference import out_size
from .. import conv, linear, pool
from . import chosen, top


def _plain(x, w, b, gy=None):
    """The arrays a plain rung takes: contiguous, of x's dtype; b zeros for no bias."""
    x = np.ascontiguousarray(x)
    w = np.ascontiguousarray(w, dtype=x.dtype)
    b = np.zeros(w.shape[0], x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    return x, w, b, (None if gy is None else np.ascontiguousarray(gy, dtype=x.dtype))


def _only(grads, needs):
    return tuple(g if need else None for g, need in zip(grads, needs))


def conv2d_forward(x, w, b, stride, padding, relu=False, pool=False):
    rung = chosen("conv2d")
    if rung is top("conv2d"):
        return conv.conv2d_forward(x, w, b, stride, padding, relu, pool=pool)
    x, w, b, _ = _plain(x, w, b)
    y = rung.forward(x, w, b, tuple(stride), tuple(padding))
    y = np.maximum(y, 0, out=y) if relu else y
    return max_pool2d_forward(y, (2, 2), (2, 2), (0, 0)) if pool else y


def conv2d_backward(x, w, gy, stride, padding, needs=(True, True, True), relu_y=None,
                    pool_idx=None):
    rung = chosen("conv2d")
    if rung is top("conv2d"):
        return conv.conv2d_backward(x, w, gy, stride, padding, needs, relu_y, pool_idx=pool_idx)
    x, w, _, gy = _plain(x, w, None, gy)
    if relu_y is not None:                          # the fused ReLU's backward
        gy = np.where(np.asarray(relu_y) > 0, gy, 0).astype(x.dtype)
    if pool_idx is not None:                        # the fused pool's: scatter to full size
        F, (KH, KW) = w.shape[0], w.shape[2:]
        full = (x.shape[0], F, out_size(x.shape[2], KH, stride[0], padding[0]),
                out_size(x.shape[3], KW, stride[1], padding[1]))
        gy = max_pool2d_backward(gy, pool_idx, full)
    return _only(rung.backward(x, w, gy, tuple(stride), tuple(padding)), needs)


def max_pool2d_forward(x, kernel, stride, padding):
    rung = chosen("max_pool2d")
    if rung is top("max_pool2d"):
        return pool.max_pool2d_forward(x, kernel, stride, padding)
    return rung.forward(np.ascontiguousarray(x), tuple(kernel), tuple(stride), tuple(padding))


def max_pool2d_backward(gy, idx, x_shape):
    rung = chosen("max_pool2d")
    if rung is top("max_pool2d"):
        return pool.max_pool2d_backward(gy, idx, x_shape)
    return rung.backward(np.ascontiguousarray(gy), np.ascontiguousarray(idx), tuple(x_shape))


def linear_forward(x, w, b):
    rung = chosen("linear")
    if rung is top("linear"):
        return linear.linear_forward(x, w, b)
    return rung.forward(*_plain(x, w, b)[:3])


def linear_backward(x, w, gy, needs=(True, True, True)):
    rung = chosen("linear")
    if rung is top("linear"):
        return linear.linear_backward(x, w, gy, needs)
    x, w, _, gy = _plain(x, w, None, gy)
    return _only(rung.backward(x, w, gy), needs)
