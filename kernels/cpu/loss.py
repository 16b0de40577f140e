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
    binary cross-entropy with logits x, targets t (same shape), weight w and
    pos_weight pw (same shape, 1 if absent; the caller broadcasts them):
                  loss = w * ((1 - t) * x + (1 + (pw - 1) * t) * softplus(-x)),
                  softplus(-x) = log(1 + exp(-x)) = max(-x, 0) + log1p(exp(-|x|))
                  (pw = 1: max(x, 0) - x*t + log1p(exp(-|x|)), PyTorch's stable form)
                  "mean" divides the sum by the number of elements
                  gx = g * w * ((1 - t) - (1 + (pw - 1) * t) * sigmoid(-x))
                  gt = g * w * (-x + (pw - 1) * softplus(-x)),
                  g = gloss per element ("none"), gloss ("sum"), gloss / size ("mean")

Index map: one loop iteration per row r; the row sums are accumulated in float64.
Binary cross-entropy: the arrays seen flat, one iteration per element; the sum of
"mean" and "sum" in float64, in element order.
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


# ----------------------------------------------------------------------------- binary cross-entropy with logits

@njit(inline="always")
def _softplus_neg(v):
    """log(1 + exp(-v)) without overflow."""
    return (-v if v < 0 else 0.0) + np.log1p(np.exp(-abs(v)))


@njit(cache=True)
def bce_fwd(x, t, w, pw, has_w, has_pw, loss):
    """loss[k] (float64) of element k.   x, t (L,); w, pw (L,) or unread when has_* is False"""
    for k in range(x.size):
        v = x[k]
        if has_pw:
            l = (1 - t[k]) * v + (1 + (pw[k] - 1) * t[k]) * _softplus_neg(v)
        else:
            l = (v if v > 0 else 0.0) - v * t[k] + np.log1p(np.exp(-abs(v)))
        loss[k] = l * w[k] if has_w else l


@njit(cache=True)
def bce_bwd(x, t, w, pw, has_w, has_pw, g, per_element, scale, gx, gt, need_x, need_t):
    """gx, gt (L,) of the loss; g the loss gradient, (L,) when per_element else g[0] * scale."""
    for k in range(x.size):
        v = x[k]
        gk = g[k] if per_element else g[0] * scale
        if has_w:
            gk = gk * w[k]
        e = np.exp(-abs(v))                              # <= 1, no overflow
        sig_neg = e / (1 + e) if v >= 0 else 1 / (1 + e)  # sigmoid(-v)
        if need_x:
            if has_pw:
                gx[k] = gk * ((1 - t[k]) - (1 + (pw[k] - 1) * t[k]) * sig_neg)
            else:
                sig = 1 / (1 + e) if v >= 0 else e / (1 + e)
                gx[k] = gk * (sig - t[k])
        if need_t:
            d = -v + (pw[k] - 1) * _softplus_neg(v) if has_pw else -v
            gt[k] = gk * d


def _flat_or_dummy(a, like):
    if a is None:
        return like.reshape(-1)[:1] if like.size else np.zeros(1, like.dtype), False
    return np.ascontiguousarray(a, dtype=like.dtype).reshape(-1), True


def bce_with_logits_forward(x, target, weight, pos_weight, reduction):
    """x, target one shape; weight, pos_weight that shape or None -> loss like x ("none") or ()."""
    x = np.ascontiguousarray(x)
    t = np.ascontiguousarray(target, dtype=x.dtype).reshape(-1)
    w, has_w = _flat_or_dummy(weight, x)
    pw, has_pw = _flat_or_dummy(pos_weight, x)
    loss = np.empty(x.size, dtype=np.float64)
    bce_fwd(x.reshape(-1), t, w, pw, has_w, has_pw, loss)
    if reduction == "none":
        return loss.astype(x.dtype).reshape(x.shape)
    total = loss.sum()
    return np.asarray(total / x.size if reduction == "mean" else total, dtype=x.dtype)


def bce_with_logits_backward(x, target, weight, pos_weight, reduction, gloss, needs=(True, False)):
    """-> (gx, gt) like x, None where needs (input, target) says False."""
    x = np.ascontiguousarray(x)
    t = np.ascontiguousarray(target, dtype=x.dtype).reshape(-1)
    w, has_w = _flat_or_dummy(weight, x)
    pw, has_pw = _flat_or_dummy(pos_weight, x)
    g = np.ascontiguousarray(gloss, dtype=np.float64).reshape(-1)
    per_element = reduction == "none"
    scale = 1.0 / max(x.size, 1) if reduction == "mean" else 1.0
    gx, gt = np.empty_like(x), np.empty_like(x)
    if x.size:
        bce_bwd(x.reshape(-1), t, w, pw, has_w, has_pw, g, per_element, scale,
                gx.reshape(-1), gt.reshape(-1), bool(needs[0]), bool(needs[1]))
    return (gx if needs[0] else None), (gt if needs[1] else None)
