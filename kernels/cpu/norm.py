"""Batch normalisation on the CPU (numba).                                      lesson 05

x seen as (N, C, L): images (N, C, H, W) with L = H*W, vectors (N, C) with L = 1.
Per channel c, over its M = N*L values:
    training:  mean_c = (1/M) sum x,  var_c = (1/M) sum (x - mean_c)^2     (biased)
               running_mean = (1 - momentum) * running_mean + momentum * mean_c
               running_var  = (1 - momentum) * running_var + momentum * var_c * M/(M-1)
    eval:      mean_c, var_c = running_mean[c], running_var[c]
    invstd_c = 1 / sqrt(var_c + eps),   xhat = (x - mean_c) * invstd_c
    y = weight[c] * xhat + bias[c]
Backward, with gb[c] = sum gy and gw[c] = sum gy * xhat over n and l:
    training:  gx = weight[c] * invstd_c / M * (M * gy - gb[c] - xhat * gw[c])
    eval:      gx = gy * weight[c] * invstd_c

Index map: the statistics and the two gradient sums: one prange task per channel c,
which walks n, and within each (n, c) row of L values keeps vector lanes of partial
sums (the order is fixed once compiled: the same bits on every run); the elementwise
passes: one task per (n, c) row. Sums accumulate in float64.
Cost: training reads x three times (mean, variance, normalise), backward reads gy
and x twice; memory-bound.
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, fastmath={"reassoc"})
def _row_sum(row, m):
    """(sum of row, sum of (row - m)^2) in float64; "reassoc" lets the compiler keep
    several partial sums in vector lanes (a fixed order once compiled: the same bits on
    every run), instead of one add waiting for the last."""
    s = 0.0
    q = 0.0
    for l in range(row.shape[0]):
        v = np.float64(row[l])
        s += v
        q += (v - m) * (v - m)
    return s, q


@njit(cache=True, parallel=True)
def bn_stats(x, mean, var):
    """mean[c], var[c] (biased) over n and l.   x (N,C,L); mean, var (C,) float64"""
    N, C, L = x.shape
    for c in prange(C):
        s = 0.0
        for n in range(N):
            s += _row_sum(x[n, c], 0.0)[0]
        m = s / (N * L)
        q = 0.0
        for n in range(N):
            q += _row_sum(x[n, c], m)[1]
        mean[c] = m
        var[c] = q / (N * L)


@njit(cache=True)
def bn_update_running(running_mean, running_var, mean, var, momentum, unbiased):
    """running = (1 - momentum) * running + momentum * batch (var times M/(M-1)), in place."""
    for c in range(mean.size):
        running_mean[c] = (1 - momentum) * running_mean[c] + momentum * mean[c]
        running_var[c] = (1 - momentum) * running_var[c] + momentum * var[c] * unbiased


@njit(cache=True, parallel=True)
def bn_apply(x, mean, invstd, w, b, y):
    """y = (x - mean[c]) * invstd[c] * w[c] + b[c].   x, y (N,C,L); the rest (C,)
    Written as y = x * scale + shift per channel: one multiply-add a value."""
    N, C, L = x.shape
    for t in prange(N * C):
        n, c = t // C, t % C
        scale = invstd[c] * w[c]
        shift = b[c] - mean[c] * scale
        row, out = x[n, c], y[n, c]
        for l in range(L):
            out[l] = row[l] * scale + shift


@njit(cache=True, fastmath={"reassoc"})
def _row_grad_sums(g, row, m, inv):
    """(sum of g, sum of g * (row - m) * inv) in float64, vectorised as _row_sum."""
    sg = 0.0
    sgx = 0.0
    for l in range(g.shape[0]):
        gl = np.float64(g[l])
        sg += gl
        sgx += gl * ((np.float64(row[l]) - m) * inv)
    return sg, sgx


@njit(cache=True, parallel=True)
def bn_grad_sums(gy, x, mean, invstd, gw, gb):
    """gb[c] = sum gy, gw[c] = sum gy * xhat over n and l.   gw, gb (C,) float64"""
    N, C, L = x.shape
    for c in prange(C):
        sg = 0.0
        sgx = 0.0
        for n in range(N):
            a, b = _row_grad_sums(gy[n, c], x[n, c], np.float64(mean[c]), np.float64(invstd[c]))
            sg += a
            sgx += b
        gb[c] = sg
        gw[c] = sgx


@njit(cache=True, parallel=True)
def bn_grad_input(gy, x, mean, invstd, w, gw, gb, training, gx):
    """gx of the batch norm (see the module docstring).   gy, x, gx (N,C,L)
    Training, expanded per channel (xhat = (x - mean) * invstd) into
    gx = A * gy + B * (x - mean) + D with A = w*invstd, B = -A*invstd*gw/M, D = -A*gb/M,
    the coefficients in float64, then one pass in x's precision. x - mean comes first:
    B * x and B * mean are large when the mean is far from 0 and the spread small, and
    their difference, rounded in float32, would lose the digits the gradient needs."""
    N, C, L = x.shape
    M = N * L
    for t in prange(N * C):
        n, c = t // C, t % C
        a = np.float64(w[c]) * np.float64(invstd[c])
        bx = -a * np.float64(invstd[c]) * gw[c] / M if training else 0.0
        d = -a * gb[c] / M if training else 0.0
        A, B, D, mu = gy.dtype.type(a), gy.dtype.type(bx), gy.dtype.type(d), mean[c]
        g, row, out = gy[n, c], x[n, c], gx[n, c]
        for l in range(L):
            out[l] = A * g[l] + B * (row[l] - mu) + D


def or_fill(a, c, value, dtype):
    """a as a contiguous (C,) array of dtype, or c copies of value where a is None."""
    return np.full(c, value, dtype=dtype) if a is None else np.ascontiguousarray(a, dtype=dtype)


def batch_statistics(x, running_mean, running_var, training, momentum, eps):
    """(mean (C,), invstd (C,)) in x's dtype that normalise x (N,C,L): the batch's when
    training (the running ones, when given, updated in place), else the running ones."""
    N, C, L = x.shape
    if training:
        mean, var = np.empty(C), np.empty(C)
        bn_stats(x, mean, var)
        if running_mean is not None:
            M = N * L
            bn_update_running(running_mean, running_var, mean, var, float(momentum), M / (M - 1))
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
    return mean.astype(x.dtype), (1.0 / np.sqrt(var + eps)).astype(x.dtype)


def batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """x (N,C,L) -> (y (N,C,L), mean (C,), invstd (C,)); running stats updated in place
    when training (see minicnn/backends/table.py)."""
    x = np.ascontiguousarray(x)
    C = x.shape[1]
    mean, invstd = batch_statistics(x, running_mean, running_var, training, momentum, eps)
    y = np.empty_like(x)
    bn_apply(x, mean, invstd, or_fill(weight, C, 1, x.dtype), or_fill(bias, C, 0, x.dtype), y)
    return y, mean, invstd


def batch_norm_backward(gy, x, weight, mean, invstd, training, needs=(True, True, True)):
    """gy, x (N,C,L) -> (gx, gw, gb), None where needs says False."""
    gy, x = np.ascontiguousarray(gy), np.ascontiguousarray(x)
    C = x.shape[1]
    gw, gb = np.empty(C), np.empty(C)
    bn_grad_sums(gy, x, mean, invstd, gw, gb)
    gx = None
    if needs[0]:
        gx = np.empty_like(x)
        bn_grad_input(gy, x, mean, invstd, or_fill(weight, C, 1, x.dtype), gw, gb,
                      bool(training), gx)
    return (gx, gw.astype(x.dtype) if needs[1] else None,
            gb.astype(x.dtype) if needs[2] else None)
