"""Softmax, log-softmax and cross-entropy on the CPU (numba).                 lesson 06

Row r of x (R, K), with m_r = max_k x[r,k] and Z_r = sum_k exp(x[r,k] - m_r):
    softmax:      y[r,k] = exp(x[r,k] - m_r) / Z_r
                  gx[r,k] = y[r,k] * (gy[r,k] - sum_j gy[r,j] * y[r,j])
    log_softmax:  y[r,k] = x[r,k] - m_r - log Z_r
                  gx[r,k] = gy[r,k] - exp(y[r,k]) * sum_j gy[r,j]
    cross-entropy with targets t (N,), class weights wt (K,) (all 1 if absent):
                  loss_n = -wt[t_n] * log_softmax(x)[n, t_n]
                  "none": loss (N,); "sum": sum_n loss_n;
                  "mean": sum_n loss_n / sum_n wt[t_n]
                  glogits[n,k] = scale_n * (softmax(x)[n,k] - [k == t_n]),
                  scale_n = wt[t_n] * gloss_n ("none"), wt[t_n] * gloss ("sum"),
                            wt[t_n] * gloss / sum_n wt[t_n] ("mean")
Subtracting m_r first keeps every exp in (0, 1]: logits of 1e4 do not overflow.

Index map: one loop iteration per row r; the row sums are accumulated in float64.
Plain loops on one thread: a batch of logits is a few thousand numbers, fewer
than waking a pool of threads would cost (tens of microseconds).
Cost: a few passes over K numbers per row.
"""
import numpy as np
from numba import njit


@njit(cache=True)
def softmax_rows(x, y, log):
    """y = softmax(x) (log=False) or log_softmax(x) (log=True) along rows.  x, y (R,K)"""
    R, K = x.shape
    for r in range(R):
        m = x[r, 0]
        for k in range(1, K):
            if x[r, k] > m:
                m = x[r, k]
        z = 0.0
        for k in range(K):
            z += np.exp(x[r, k] - m)
        if log:
            logz = np.log(z)
            for k in range(K):
                y[r, k] = (x[r, k] - m) - logz
        else:
            for k in range(K):
                y[r, k] = np.exp(x[r, k] - m) / z


@njit(cache=True)
def softmax_rows_bwd(gy, y, gx, log):
    """Backward of softmax_rows, given its output y.  gy, y, gx (R,K)"""
    R, K = y.shape
    for r in range(R):
        acc = 0.0
        if log:
            for k in range(K):
                acc += gy[r, k]
            for k in range(K):
                gx[r, k] = gy[r, k] - np.exp(y[r, k]) * acc
        else:
            for k in range(K):
                acc += gy[r, k] * y[r, k]
            for k in range(K):
                gx[r, k] = y[r, k] * (gy[r, k] - acc)


@njit(cache=True)
def ce_rows(x, target, nll, probs):
    """nll[n] = -log softmax(x)[n, t_n] and probs = softmax(x).  x, probs (N,K); target, nll (N,)"""
    N, K = x.shape
    for n in range(N):
        m = x[n, 0]
        for k in range(1, K):
            if x[n, k] > m:
                m = x[n, k]
        z = 0.0
        for k in range(K):
            z += np.exp(x[n, k] - m)
        for k in range(K):
            probs[n, k] = np.exp(x[n, k] - m) / z
        nll[n] = -((x[n, target[n]] - m) - np.log(z))


@njit(cache=True)
def ce_rows_bwd(probs, target, scale, g):
    """g[n,k] = scale[n] * (probs[n,k] - [k == t_n]).  probs, g (N,K); target, scale (N,)"""
    N, K = probs.shape
    for n in range(N):
        for k in range(K):
            onehot = 1.0 if k == target[n] else 0.0
            g[n, k] = scale[n] * (probs[n, k] - onehot)


def _rows_forward(x, log):
    x = np.asarray(x, order="C")
    y = np.empty(x.shape, dtype=x.dtype)
    softmax_rows(x, y, log)
    return y


def _rows_backward(gy, y, log):
    gy, y = np.asarray(gy, order="C"), np.asarray(y, order="C")
    gx = np.empty(gy.shape, dtype=gy.dtype)
    softmax_rows_bwd(gy, y, gx, log)
    return gx


def softmax_forward(x):
    """x (R,K) -> y (R,K)."""
    return _rows_forward(x, False)


def softmax_backward(gy, y):
    """gy, y (R,K) -> gx (R,K)."""
    return _rows_backward(gy, y, False)


def log_softmax_forward(x):
    """x (R,K) -> y (R,K)."""
    return _rows_forward(x, True)


def log_softmax_backward(gy, y):
    """gy, y (R,K) -> gx (R,K)."""
    return _rows_backward(gy, y, True)


def _target_weights(target, weight, n):
    # wt[t_n] for each sample: a handful of numbers, plain numpy is enough
    if weight is None:
        return np.ones(n, dtype=np.float64)
    return weight[target].astype(np.float64)


def cross_entropy_forward(logits, target, weight, reduction):
    """logits (N,K), target (N,) int64, weight (K,) or None -> (loss () or (N,), probs (N,K))."""
    logits = np.asarray(logits, order="C")
    target = np.ascontiguousarray(target, dtype=np.int64)
    N = logits.shape[0]
    nll = np.empty(N, dtype=np.float64)
    probs = np.empty(logits.shape, dtype=logits.dtype)
    ce_rows(logits, target, nll, probs)
    losses = _target_weights(target, weight, N) * nll
    if reduction == "none":
        loss = losses.astype(logits.dtype)
    elif reduction == "sum":
        loss = np.asarray(losses.sum(), dtype=logits.dtype)
    else:
        loss = np.asarray(losses.sum() / _target_weights(target, weight, N).sum(),
                          dtype=logits.dtype)
    return loss, probs


def cross_entropy_backward(probs, target, weight, reduction, gloss):
    """probs (N,K), target (N,), weight (K,) or None, gloss () or (N,) -> glogits (N,K)."""
    probs = np.asarray(probs, order="C")
    target = np.ascontiguousarray(target, dtype=np.int64)
    N = probs.shape[0]
    wt = _target_weights(target, weight, N)
    gloss = np.asarray(gloss, dtype=np.float64)
    if reduction == "none":
        scale = wt * gloss.reshape(N)
    elif reduction == "sum":
        scale = wt * gloss
    else:
        scale = wt * (gloss / wt.sum())
    g = np.empty(probs.shape, dtype=probs.dtype)
    ce_rows_bwd(probs, target, np.ascontiguousarray(scale, dtype=np.float64), g)
    return g
