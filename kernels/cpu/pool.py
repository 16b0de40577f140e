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

from ..reference import out_size  # noqa: F401  (also the ladder's)


@njit(inline="always")
def _inside(i, s, p, k, n):
    """(start, end) of window i (stride s, padding p, size k) clipped to 0 .. n."""
    return max(i * s - p, 0), min(i * s - p + k, n)


@njit(cache=True, parallel=True)
def max_pool_fwd(x, H, W, KH, KW, sh, sw, ph, pw, Ho, Wo, y, idx):
    """x (P, H*W) planes -> y (P, Ho*Wo), idx (P, Ho*Wo) flat indices into a plane (int32, or int64
    for planes of 2**31 pixels or more: see max_pool2d_forward)."""
    P = y.shape[0]
    for t in prange(P):
        plane, out, arg_out = x[t], y[t], idx[t]
        for i in range(Ho):
            hs, he = _inside(i, sh, ph, KH, H)      # the window's rows inside the image
            for j in range(Wo):
                ws, we = _inside(j, sw, pw, KW, W)
                best = -np.inf
                arg = hs * W + ws
                for h in range(hs, he):
                    for w in range(ws, we):
                        best, arg = first_max(plane[h * W + w], h * W + w, best, arg)
                out[i * Wo + j] = best
                arg_out[i * Wo + j] = arg


@njit(inline="always")
def first_max(v, a, best, arg):
    """(best, arg) after looking at value v at index a: v wins if strictly larger
    (so the first maximum stays) or NaN, as in PyTorch."""
    take = (v > best) | (v != v)
    return (v if take else best), (a if take else arg)


@njit(cache=True, parallel=True)
def max_pool_fwd_2x2(x, H, W, Ho, Wo, y, idx):
    """max_pool_fwd for the common kernel 2, stride 2, no padding. The four taps are
    written out and each output row reads two input rows through row views, so
    the compiler sees straight-line code over arrays it can vectorise (4x faster
    than the general loop)."""
    P = y.shape[0]
    for t in prange(P):
        plane = x[t]
        for i in range(Ho):
            a = 2 * i * W                            # first pixel of input row 2i
            top, bottom = plane[a: a + 2 * Wo], plane[a + W: a + W + 2 * Wo]
            out, arg_out = y[t, i * Wo: (i + 1) * Wo], idx[t, i * Wo: (i + 1) * Wo]
            for j in range(Wo):                      # taps in row-major order
                best, arg = top[2 * j], a + 2 * j
                best, arg = first_max(top[2 * j + 1], a + 2 * j + 1, best, arg)
                best, arg = first_max(bottom[2 * j], a + W + 2 * j, best, arg)
                best, arg = first_max(bottom[2 * j + 1], a + W + 2 * j + 1, best, arg)
                out[j] = best
                arg_out[j] = arg


@njit(cache=True, parallel=True)
def max_pool_bwd(gy, idx, gx):
    """gx[t, idx[t, s]] += gy[t, s].   gy, idx (P, Ho*Wo); gx (P, H*W) overwritten."""
    P, S = gy.shape
    for t in prange(P):
        g, arg, out = gy[t], idx[t], gx[t]
        out[:] = 0
        for s in range(S):
            out[arg[s]] += g[s]


@njit(cache=True, parallel=True)
def avg_pool_fwd(x, H, W, KH, KW, sh, sw, ph, pw, Ho, Wo, y):
    """x (P, H*W) planes -> y (P, Ho*Wo)."""
    P = y.shape[0]
    inv = 1.0 / (KH * KW)
    for t in prange(P):
        plane, out = x[t], y[t]
        for i in range(Ho):
            hs, he = _inside(i, sh, ph, KH, H)
            for j in range(Wo):
                ws, we = _inside(j, sw, pw, KW, W)
                acc = 0.0
                for h in range(hs, he):
                    for w in range(ws, we):
                        acc += plane[h * W + w]
                out[i * Wo + j] = acc * inv


@njit(cache=True, parallel=True)
def avg_pool_bwd(gy, H, W, KH, KW, sh, sw, ph, pw, Ho, Wo, gx):
    """gy (P, Ho*Wo) -> gx (P, H*W) overwritten."""
    P = gy.shape[0]
    inv = 1.0 / (KH * KW)
    for t in prange(P):
        g, out = gy[t], gx[t]
        out[:] = 0
        for i in range(Ho):
            hs, he = _inside(i, sh, ph, KH, H)
            for j in range(Wo):
                ws, we = _inside(j, sw, pw, KW, W)
                share = g[i * Wo + j] * inv
                for h in range(hs, he):
                    for w in range(ws, we):
                        out[h * W + w] += share


def max_pool2d_forward(x, kernel, stride, padding):
    """x (N,C,H,W) -> (y (N,C,Ho,Wo), idx (N,C,Ho,Wo) int32, or int64 for planes of
    2**31 pixels or more: half the bytes to write and read back)."""
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    Ho, Wo = out_size(H, KH, sh, ph), out_size(W, KW, sw, pw)
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    idx = np.empty((N, C, Ho, Wo), dtype=np.int32 if H * W < 2**31 else np.int64)
    planes, out, arg = x.reshape(N * C, H * W), y.reshape(N * C, Ho * Wo), idx.reshape(N * C, Ho * Wo)
    if (KH, KW, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0):
        max_pool_fwd_2x2(planes, H, W, Ho, Wo, out, arg)
    else:
        max_pool_fwd(planes, H, W, KH, KW, sh, sw, ph, pw, Ho, Wo, out, arg)
    return y, idx


def max_pool2d_backward(gy, idx, x_shape):
    """gy, idx (N,C,Ho,Wo) -> gx x_shape (N,C,H,W)."""
    gy, idx = np.ascontiguousarray(gy), np.ascontiguousarray(idx)
    if idx.dtype not in (np.int32, np.int64):
        idx = idx.astype(np.int64)
    N, C, H, W = x_shape
    gx = np.empty((N, C, H, W), dtype=gy.dtype)
    P = N * C
    max_pool_bwd(gy.reshape(P, -1), idx.reshape(P, -1), gx.reshape(P, H * W))
    return gx


def avg_pool2d_forward(x, kernel, stride, padding):
    """x (N,C,H,W) -> y (N,C,Ho,Wo)."""
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    Ho, Wo = out_size(H, KH, sh, ph), out_size(W, KW, sw, pw)
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    avg_pool_fwd(x.reshape(N * C, H * W), H, W, KH, KW, sh, sw, ph, pw, Ho, Wo,
                 y.reshape(N * C, Ho * Wo))
    return y


def avg_pool2d_backward(gy, x_shape, kernel, stride, padding):
    """gy (N,C,Ho,Wo) -> gx x_shape (N,C,H,W)."""
    gy = np.ascontiguousarray(gy)
    N, C, H, W = x_shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    Ho, Wo = gy.shape[2], gy.shape[3]
    gx = np.empty((N, C, H, W), dtype=gy.dtype)
    avg_pool_bwd(gy.reshape(N * C, -1), H, W, KH, KW, sh, sw, ph, pw, Ho, Wo,
                 gx.reshape(N * C, H * W))
    return gx
