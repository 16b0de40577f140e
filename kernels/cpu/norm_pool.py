"""Batch norm -> ReLU -> 2x2 max-pool (stride 2, floor mode) as one op (numba).  lesson 12

maxpool2x2(relu(batch_norm(x))) with the full-size batch norm output never written.
x (N, C, H, W) is seen as (N, C, L), L = H*W, for the statistics (norm.py: mean_c,
invstd_c and the running-statistics update are those of norm.batch_norm_forward).
Per channel, scale_c = invstd_c * w_c and shift_c = b_c - mean_c * scale_c, and
    v            = x[n,c,h,w] * scale_c + shift_c          (norm.bn_apply's numbers)
    yp[n,c,i,j]  = max(max over the window of v, 0),  window h = 2i + dh, w = 2j + dw,
                   dh, dw in 0..1
    idx[n,c,i,j] = h*W + w of the window's first maximum of v in row-major order (a NaN
                   wins, pool.py's rule)
which is max_pool2d(relu(v), 2): max and ReLU commute; where the maximum is not
positive yp is 0 and so is its gradient, whatever idx says.
Backward, the gradient of v is g = gy at idx where yp > 0 and 0 everywhere else (rows
and columns no window covers included), so with M = N*L
    gb_c = sum of gy over the windows with yp > 0
    gw_c = sum of gy * xhat(x[idx]) over those windows,   xhat = (x - mean_c) * invstd_c
    gx   = B_c * (x - mean_c) + D_c everywhere, plus A_c * gy at each such idx, where
           A = w*invstd, B = -A*invstd*gw/M, D = -A*gb/M (training; eval B = D = 0)
the expansion of norm.py's gx = A/M * (M*g - gb - xhat*gw), coefficients in float64.

Index maps: the forward statistics are norm.bn_stats (one task per channel); the fused
pass is one prange task per (n, c) plane, t = n*C + c, reading two input rows per pooled
row and writing only yp and idx. The gradient sums: one task per channel, walking n, then
the windows (a fixed order: the same bits on every run; float64 sums). The gradient pass:
one task per plane, writing every gx value once and then the window maxima again.
Cost: forward reads x three times (two for the statistics) and writes a quarter of its
size twice (yp, idx); backward reads gy, yp, idx and the window maxima of x, then x once
and writes gx once: memory-bound, the full-size v, its ReLU and g never exist.
"""
import numpy as np
from numba import njit, prange

from .norm import batch_statistics, or_fill
from .pool import first_max


@njit(cache=True, parallel=True)
def bn_relu_pool_fwd(x, scale, shift, H, W, Hq, Wq, yp, idx):
    """x (P, H*W) planes, P = N*C; scale, shift (C,) in x's dtype -> yp (P, Hq*Wq),
    idx (P, Hq*Wq) flat indices into a plane."""
    P = x.shape[0]
    C = scale.shape[0]
    for t in prange(P):
        c = t % C
        s, d = scale[c], shift[c]
        plane = x[t]
        for i in range(Hq):
            a = 2 * i * W                            # first pixel of input row 2i
            top, bottom = plane[a: a + 2 * Wq], plane[a + W: a + W + 2 * Wq]
            out, arg_out = yp[t, i * Wq: (i + 1) * Wq], idx[t, i * Wq: (i + 1) * Wq]
            for j in range(Wq):                      # taps in row-major order
                best, arg = top[2 * j] * s + d, a + 2 * j
                best, arg = first_max(top[2 * j + 1] * s + d, a + 2 * j + 1, best, arg)
                best, arg = first_max(bottom[2 * j] * s + d, a + W + 2 * j, best, arg)
                best, arg = first_max(bottom[2 * j + 1] * s + d, a + W + 2 * j + 1, best, arg)
                out[j] = 0 if best < 0 else best     # keeps NaN, as the ReLU
                arg_out[j] = arg


@njit(cache=True, fastmath={"reassoc"})
def _window_grad_sums(g, on, at, row, m, inv):
    """(sum of g, sum of g * (row[at] - m) * inv) over the windows with on > 0, in float64;
    "reassoc" as norm._row_sum (a fixed order once compiled)."""
    sg = 0.0
    sgx = 0.0
    for s in range(g.shape[0]):
        if on[s] > 0:
            gs = np.float64(g[s])
            sg += gs
            sgx += gs * ((np.float64(row[at[s]]) - m) * inv)
    return sg, sgx


@njit(cache=True, parallel=True)
def bn_relu_pool_grad_sums(gy, y, idx, x, mean, invstd, gw, gb):
    """gb[c], gw[c] (float64) over n and the windows with y > 0.
    gy, y, idx (N, C, Hq*Wq); x (N, C, H*W); mean, invstd (C,)"""
    N, C = x.shape[0], x.shape[1]
    for c in prange(C):
        m, inv = np.float64(mean[c]), np.float64(invstd[c])
        sg = 0.0
        sgx = 0.0
        for n in range(N):
            a, b = _window_grad_sums(gy[n, c], y[n, c], idx[n, c], x[n, c], m, inv)
            sg += a
            sgx += b
        gb[c] = sg
        gw[c] = sgx


@njit(cache=True, parallel=True)
def bn_relu_pool_grad_input(gy, y, idx, x, mean, invstd, w, gw, gb, training, gx):
    """gx = B*(x - mean) + D everywhere, A*gy + B*(x - mean) + D at each idx with y > 0
    (module docstring; x - mean first, as in norm.bn_grad_input)
    gy, y, idx (P, Hq*Wq); x, gx (P, H*W), P = N*C; mean, invstd, w (C,); gw, gb float64."""
    P, L = x.shape
    C = w.shape[0]
    M = (P // C) * L
    for t in prange(P):
        c = t % C
        a = np.float64(w[c]) * np.float64(invstd[c])
        bx = -a * np.float64(invstd[c]) * gw[c] / M if training else 0.0
        d = -a * gb[c] / M if training else 0.0
        A, B, D, mu = x.dtype.type(a), x.dtype.type(bx), x.dtype.type(d), mean[c]
        row, out = x[t], gx[t]
        for l in range(L):
            out[l] = B * (row[l] - mu) + D
        g, on, at = gy[t], y[t], idx[t]
        for s in range(g.shape[0]):
            if on[s] > 0:                            # windows do not overlap: one write each
                k = at[s]
                out[k] = A * g[s] + B * (row[k] - mu) + D   # norm.bn_grad_input's order


def _check_x(x):
    if x.ndim != 4:
        raise ValueError(f"batch_norm_relu_pool: x must be (N, C, H, W), got shape {x.shape}")
    return x.shape


def batch_norm_relu_pool_forward(x, weight, bias, running_mean, running_var, training,
                                 momentum, eps):
    """x (N,C,H,W) -> (yp (N,C,H//2,W//2), idx (N,C,H//2,W//2) int32 (int64 for planes of
    2**31 pixels or more), mean (C,), invstd (C,)); running stats updated in place when
    training and not None, as norm.batch_norm_forward on the (N, C, H*W) view."""
    x = np.ascontiguousarray(x)
    N, C, H, W = _check_x(x)
    L = H * W
    mean, invstd = batch_statistics(x.reshape(N, C, L), running_mean, running_var, training,
                                    momentum, eps)
    # the same per-channel constants, in x's dtype, as norm.bn_apply
    scale = invstd * or_fill(weight, C, 1, x.dtype)
    shift = or_fill(bias, C, 0, x.dtype) - mean * scale
    Hq, Wq = H // 2, W // 2
    yp = np.empty((N, C, Hq, Wq), dtype=x.dtype)
    idx = np.empty((N, C, Hq, Wq), dtype=np.int32 if L < 2**31 else np.int64)
    bn_relu_pool_fwd(x.reshape(N * C, L), scale, shift, H, W, Hq, Wq,
                     yp.reshape(N * C, Hq * Wq), idx.reshape(N * C, Hq * Wq))
    return yp, idx, mean, invstd


def batch_norm_relu_pool_backward(gy, x, y, idx, weight, mean, invstd, training,
                                  needs=(True, True, True)):
    """gy, y, idx (N,C,H//2,W//2), x (N,C,H,W) -> (gx (N,C,H,W), gw (C,), gb (C,)),
    None where needs (input, weight, bias) says False."""
    gy, x = np.ascontiguousarray(gy), np.ascontiguousarray(x)
    y, idx = np.ascontiguousarray(y), np.ascontiguousarray(idx)
    N, C, H, W = _check_x(x)
    Hq, Wq = H // 2, W // 2
    for name, a in (("gy", gy), ("y", y), ("idx", idx)):
        if a.shape != (N, C, Hq, Wq):
            raise ValueError(f"batch_norm_relu_pool_backward: {name} must be {(N, C, Hq, Wq)} "
                             f"(x {x.shape} pooled 2x2), got {a.shape}")
    if idx.dtype not in (np.int32, np.int64):
        idx = idx.astype(np.int64)
    L, S = H * W, Hq * Wq
    gw, gb = np.zeros(C), np.zeros(C)
    if training or needs[1] or needs[2]:                 # eval's gx needs no sums
        bn_relu_pool_grad_sums(gy.reshape(N, C, S), y.reshape(N, C, S), idx.reshape(N, C, S),
                               x.reshape(N, C, L), mean, invstd, gw, gb)
    gx = None
    if needs[0]:
        gx = np.empty_like(x)
        bn_relu_pool_grad_input(gy.reshape(N * C, S), y.reshape(N * C, S),
                                idx.reshape(N * C, S), x.reshape(N * C, L), mean, invstd,
                                or_fill(weight, C, 1, x.dtype), gw, gb, bool(training),
                                gx.reshape(N * C, L))
    return (gx, gw.astype(x.dtype) if needs[1] else None,
            gb.astype(x.dtype) if needs[2] else None)
