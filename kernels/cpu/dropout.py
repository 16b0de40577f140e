"""Dropout on the CPU (numba), its mask from the Philox4x32-10 generator.        lesson 05

    keep_k = [(word_k >> 8) >= ceil(p * 2^24)]        24 random bits against p
    y = x * keep * scale,  gx = gy * keep * scale,    scale = 1 / (1 - p)  (0 for p = 1)
word_k is word k % 4 of Philox4x32-10 (kernels/reference.py, philox4x32_10) with
counter (k // 4 low, k // 4 high, offset low, offset high) and key (seed low, seed
high): a pure function of (seed, offset, k), so numpy, numba and CUDA draw the very
same mask. The backward reads the mask the forward kept (uint8, 1 = kept).

Index map: arrays seen flat; prange task g computes one Philox block, the words of
elements 4g .. 4g+3. Cost: ten rounds of two 32x32-bit products per four elements,
then one read and two writes per element.
"""
import numpy as np
from numba import njit, prange

from minicnn.kernels.reference import (
    PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1, _split64, dropout_scale, keep_threshold)

_M0, _M1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
_W0, _W1 = np.uint64(PHILOX_W0), np.uint64(PHILOX_W1)
_LOW = np.uint64(0xFFFFFFFF)
_32, _8 = np.uint64(32), np.uint64(8)


@njit(inline="always")
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Ten Philox rounds on uint64 values holding 32-bit words -> 4 words."""
    for r in range(10):
        if r > 0:
            k0 = (k0 + _W0) & _LOW
            k1 = (k1 + _W1) & _LOW
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = ((p1 >> _32) ^ c1 ^ k0, p1 & _LOW, (p0 >> _32) ^ c3 ^ k1, p0 & _LOW)
    return c0, c1, c2, c3


@njit(inline="always")
def _put(k, word, x, y, mask, threshold, scale):
    if k < x.size:
        keep = 1 if (word >> _8) >= threshold else 0
        mask[k] = keep
        y[k] = x[k] * keep * scale


@njit(cache=True, parallel=True)
def dropout_fwd(x, y, mask, key0, key1, off0, off1, threshold, scale):
    """x, y (n,), mask (n,) uint8; key, offset: 32-bit words as uint64."""
    for g in prange((x.size + 3) // 4):
        gg = np.uint64(g)
        w0, w1, w2, w3 = philox4x32_10(gg & _LOW, gg >> _32, off0, off1, key0, key1)
        _put(4 * g, w0, x, y, mask, threshold, scale)
        _put(4 * g + 1, w1, x, y, mask, threshold, scale)
        _put(4 * g + 2, w2, x, y, mask, threshold, scale)
        _put(4 * g + 3, w3, x, y, mask, threshold, scale)


@njit(cache=True, parallel=True)
def dropout_bwd(gy, mask, gx, scale):
    """gx = gy * mask * scale.   (n,) each"""
    for k in prange(gy.size):
        gx[k] = gy[k] * mask[k] * scale


def dropout_forward(x, p, seed, offset=0):
    """x any shape -> (y like x, mask like x, uint8 1 = kept)."""
    x = np.ascontiguousarray(x)
    y, mask = np.empty_like(x), np.empty(x.shape, np.uint8)
    k0, k1 = _split64(seed)
    o0, o1 = _split64(offset)
    dropout_fwd(x.reshape(-1), y.reshape(-1), mask.reshape(-1), np.uint64(k0), np.uint64(k1),
                np.uint64(o0), np.uint64(o1), np.uint64(keep_threshold(p)),
                x.dtype.type(dropout_scale(p)))
    return y, mask


def dropout_backward(gy, mask, p):
    """gy, mask (the forward's) any shape -> gx."""
    gy, mask = np.ascontiguousarray(gy), np.ascontiguousarray(mask, dtype=np.uint8)
    gx = np.empty_like(gy)
    dropout_bwd(gy.reshape(-1), mask.reshape(-1), gx.reshape(-1), gy.dtype.type(dropout_scale(p)))
    return gx
