"""Max and average pooling on the CPU (numba).                                 lesson 03

Window of output pixel (i, j), kernel (KH, KW), stride (sh, sw), padding (ph, pw):
    rows h = i*sh - ph + p, p = 0..KH-1;   columns w = j*sw - pw + q, q = 0..KW-1
Max pooling (padding counts as -inf, so it never wins):
    y[n,c,i,j]   = max over the window of x[n,c,h,w]
    idx[n,c,i,j] = h*W + w of the first maximum in row-major window order (ties go
                   to the lowest index, a NaN wins and propagates, as in PyTorch)
    gx[n,c].flat[idx[n,c,i,j]] += gy[n,c,i,j]
Average pooling (padding counts as 0 and is counted in the divisor, PyTorch's
count_include_pad=True; in floor mode every window lies inside the padded image,
so the divisor is always KH*KW):
    y[n,c,i,j]  = (1 / (KH*KW)) * sum over the window of x[n,c,h,w]
    gx[n,c,h,w] = sum over the windows (i, j) containing (h, w) of gy[n,c,i,j] / (KH*KW)

Index map: one prange task per (n, c) plane, the planes flattened to t = n*C + c.
A task reads and writes only its own plane, so overlapping windows (stride <
kernel) add into gx without races. Cost: Ho*Wo*KH*KW reads per plane, memory-bound.
"""
import numpy as np
from numba import njit, prange


def out_size(size, k, s, pad):
    """Output length of a window of k, stride s, padding pad over `size` (floor mode)."""
    return (size + 2 * pad - k) // s + 1


@njit(cache=True, parallel=True)
def max_pool_fwd(x, H, W, KH, KW, sh, sw, ph, pw, Wo, y, idx):
    """x (P, H*W) planes -> y (P, Ho*Wo), idx (P, Ho*Wo) int64 flat indices into a plane."""
    P, S = y.shape
    for t in prange(P):
        for s in range(S):
            i = s // Wo
            j = s % Wo
            hs = max(i * sh - ph, 0)
            he = min(i * sh - ph + KH, H)
            ws = max(j * sw - pw, 0)
            we = min(j * sw - pw + KW, W)
            best = -np.inf
            arg = hs * W + ws
            for h in range(hs, he):
                for w in range(ws, we):
                    v = x[t, h * W + w]
                    if v > best or np.isnan(v):
                        best = v
                        arg = h * W + w
            y[t, s] = best
            idx[t, s] = arg


@njit(cache=True, parallel=True)
def max_pool_bwd(gy, idx, gx):
    """gx[t, idx[t, s]] += gy[t, s].   gy, idx (P, Ho*Wo); gx (P, H*W) overwritten."""
    P, S = gy.shape
    for t in prange(P):
        for a in range(gx.shape[1]):
            gx[t, a] = 0
        for s in range(S):
            gx[t, idx[t, s]] += gy[t, s]


@njit(cache=True, parallel=True)
def avg_pool_fwd(x, H, W, KH, KW, sh, sw, ph, pw, Wo, y):
    """x (P, H*W) planes -> y (P, Ho*Wo)."""
    P, S = y.shape
    inv = 1.0 / (KH * KW)
    for t in prange(P):
        for s in range(S):
            i = s // Wo
            j = s % Wo
            hs = max(i * sh - ph, 0)
            he = min(i * sh - ph + KH, H)
            ws = max(j * sw - pw, 0)
            we = min(j * sw - pw + KW, W)
            acc = 0.0
            for h in range(hs, he):
                for w in range(ws, we):
                    acc += x[t, h * W + w]
            y[t, s] = acc * inv


@njit(cache=True, parallel=True)
def avg_pool_bwd(gy, H, W, KH, KW, sh, sw, ph, pw, Wo, gx):
    """gy (P, Ho*Wo) -> gx (P, H*W) overwritten."""
    P, S = gy.shape
    inv = 1.0 / (KH * KW)
    for t in prange(P):
        for a in range(gx.shape[1]):
            gx[t, a] = 0
        for s in range(S):
            i = s // Wo
            j = s % Wo
            hs = max(i * sh - ph, 0)
            he = min(i * sh - ph + KH, H)
            ws = max(j * sw - pw, 0)
            we = min(j * sw - pw + KW, W)
            share = gy[t, s] * inv
            for h in range(hs, he):
                for w in range(ws, we):
                    gx[t, h * W + w] += share


def max_pool2d_forward(x, kernel, stride, padding):
    """x (N,C,H,W) -> (y (N,C,Ho,Wo), idx (N,C,Ho,Wo) int64)."""
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    Ho, Wo = out_size(H, KH, sh, ph), out_size(W, KW, sw, pw)
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    idx = np.empty((N, C, Ho, Wo), dtype=np.int64)
    max_pool_fwd(x.reshape(N * C, H * W), H, W, KH, KW, sh, sw, ph, pw, Wo,
                 y.reshape(N * C, Ho * Wo), idx.reshape(N * C, Ho * Wo))
    return y, idx


def max_pool2d_backward(gy, idx, x_shape):
    """gy, idx (N,C,Ho,Wo) -> gx x_shape (N,C,H,W)."""
    N, C, H, W = x_shape
    gx = np.empty((N, C, H, W), dtype=gy.dtype)
    P = N * C
    max_pool_bwd(gy.reshape(P, -1), idx.reshape(P, -1), gx.reshape(P, H * W))
    return gx


def avg_pool2d_forward(x, kernel, stride, padding):
    """x (N,C,H,W) -> y (N,C,Ho,Wo)."""
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    Ho, Wo = out_size(H, KH, sh, ph), out_size(W, KW, sw, pw)
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    avg_pool_fwd(x.reshape(N * C, H * W), H, W, KH, KW, sh, sw, ph, pw, Wo,
                 y.reshape(N * C, Ho * Wo))
    return y


def avg_pool2d_backward(gy, x_shape, kernel, stride, padding):
    """gy (N,C,Ho,Wo) -> gx x_shape (N,C,H,W)."""
    N, C, H, W = x_shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    Wo = gy.shape[3]
    gx = np.empty((N, C, H, W), dtype=gy.dtype)
    avg_pool_bwd(gy.reshape(N * C, -1), H, W, KH, KW, sh, sw, ph, pw, Wo,
                 gx.reshape(N * C, H * W))
    return gx
