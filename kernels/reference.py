"""The maths of every kernel in plain numpy, straight from the formulas.

Slow, obvious and true: this is the implementation the numba kernels (kernels/cpu)
and the CUDA kernels (kernels/cuda) are tested against, and the one a reader should
check first when a formula in a lesson looks strange. It works in float32 and in
float64 (gradient checks run in float64) and keeps the dtype of its inputs.

Layout NCHW. Conventions shared by every function below:
  stride = (sh, sw), padding = (ph, pw), kernel = (KH, KW)
  Ho = (H + 2*ph - KH) // sh + 1        (floor mode: a window that would run past
  Wo = (W + 2*pw - KW) // sw + 1         the padded input is dropped)
  output pixel (i, j) sees input pixel (i*sh + p - ph, j*sw + q - pw) through
  kernel tap (p, q); taps that land in the padding see 0 (conv, avg pool) or
  -inf (max pool).

Lessons: 01 convolution, 02 activations, 03 pooling, 06 loss and optimisation.
"""
import numpy as np


# ----------------------------------------------------------------------------- helpers

def _out_size(size, k, s, pad):
    return (size + 2 * pad - k) // s + 1


def _pad(x, padding, value):
    """x (N,C,H,W) -> (N,C,H+2ph,W+2pw), the border filled with `value`."""
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _tap(xp, p, q, stride, Ho, Wo):
    """The input pixels that kernel tap (p, q) sees, one per output pixel.

    xp is the padded input (N,C,Hp,Wp); the result is a strided view (N,C,Ho,Wo)
    whose element [n, c, i, j] is xp[n, c, i*sh + p, j*sw + q].
    """
    sh, sw = stride
    return xp[:, :, p: p + sh * (Ho - 1) + 1: sh, q: q + sw * (Wo - 1) + 1: sw]


# ----------------------------------------------------------------------------- convolution (lesson 01)

def conv2d_forward(x, w, b, stride, padding, relu=False):
    """y[n,f,i,j] = b[f] + sum_c sum_p sum_q x[n,c,i*sh+p-ph, j*sw+q-pw] * w[f,c,p,q]
    and then, with relu=True, y = max(y, 0) (a ReLU fused in).

    x (N,C,H,W), w (F,C,KH,KW), b (F,) or None -> y (N,F,Ho,Wo)
    """
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Ho = _out_size(H, KH, stride[0], padding[0])
    Wo = _out_size(W, KW, stride[1], padding[1])
    xp = _pad(x, padding, 0)
    y = np.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for p in range(KH):
        for q in range(KW):
            # one tap of the kernel: y[n,f] += sum_c x_tap[n,c] * w[f,c,p,q]
            y += np.einsum("nchw,fc->nfhw", _tap(xp, p, q, stride, Ho, Wo), w[:, :, p, q])
    if b is not None:
        y += b[None, :, None, None]
    return relu_forward(y) if relu else y


def conv2d_backward(x, w, gy, stride, padding, needs=(True, True, True), relu_y=None):
    """Gradients of conv2d_forward, given gy = dL/dy.

    relu_y: the output of a forward pass with relu=True, or None. When given, gy
    first goes back through the ReLU: gy = gy where relu_y > 0, else 0.

    gx[n,c,h,w]  = sum over (f,i,j,p,q) with i*sh+p-ph = h, j*sw+q-pw = w of gy[n,f,i,j] w[f,c,p,q]
    gw[f,c,p,q]  = sum_n sum_i sum_j gy[n,f,i,j] * x[n,c,i*sh+p-ph, j*sw+q-pw]
    gb[f]        = sum_n sum_i sum_j gy[n,f,i,j]

    x (N,C,H,W), w (F,C,KH,KW), gy (N,F,Ho,Wo) -> gx (N,C,H,W), gw like w, gb (F,);
    an entry is None where needs (input, weight, bias) says False.
    """
    if relu_y is not None:
        gy = relu_backward(gy, relu_y)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    _, _, Ho, Wo = gy.shape
    ph, pw = padding
    sh, sw = stride
    xp = _pad(x, padding, 0)
    gxp = np.zeros_like(xp) if needs[0] else None
    gw = np.zeros_like(w) if needs[1] else None
    for p in range(KH):
        for q in range(KW):
            if needs[0]:
                # each output pixel sends gy * w back to the input pixel the tap saw
                gxp[:, :, p: p + sh * (Ho - 1) + 1: sh, q: q + sw * (Wo - 1) + 1: sw] += \
                    np.einsum("nfhw,fc->nchw", gy, w[:, :, p, q])
            if needs[1]:
                gw[:, :, p, q] = np.einsum("nfhw,nchw->fc", gy, _tap(xp, p, q, stride, Ho, Wo))
    gx = gxp[:, :, ph: ph + H, pw: pw + W].copy() if needs[0] else None
    gb = gy.sum(axis=(0, 2, 3)) if needs[2] else None
    return gx, gw, gb


# ----------------------------------------------------------------------------- pooling (lesson 03)

def max_pool2d_forward(x, kernel, stride, padding):
    """y[n,c,i,j] = max_{p,q} x[n,c,i*sh+p-ph, j*sw+q-pw]   (padding counts as -inf)

    idx[n,c,i,j] = h*W + w of the first maximum in row-major window order.
    x (N,C,H,W) -> y (N,C,Ho,Wo), idx (N,C,Ho,Wo) int64
    """
    N, C, H, W = x.shape
    KH, KW = kernel
    sh, sw = stride
    ph, pw = padding
    Ho, Wo = _out_size(H, KH, sh, ph), _out_size(W, KW, sw, pw)
    xp = _pad(x, padding, -np.inf)
    # every window laid out along a last axis, taps in row-major order (p, then q)
    windows = np.stack([_tap(xp, p, q, stride, Ho, Wo)
                        for p in range(KH) for q in range(KW)], axis=-1)
    k = np.argmax(windows, axis=-1)                 # argmax returns the first maximum
    y = np.take_along_axis(windows, k[..., None], axis=-1)[..., 0]
    p, q = k // KW, k % KW
    i = np.arange(Ho)[:, None]
    j = np.arange(Wo)[None, :]
    h = i * sh + p - ph
    w_ = j * sw + q - pw
    idx = (h * W + w_).astype(np.int64)
    return y, idx


def max_pool2d_backward(gy, idx, x_shape):
    """gx[n,c].flat[idx[n,c,i,j]] += gy[n,c,i,j]

    gy (N,C,Ho,Wo), idx (N,C,Ho,Wo) -> gx x_shape (N,C,H,W)
    """
    N, C, H, W = x_shape
    gx = np.zeros((N * C, H * W), dtype=gy.dtype)
    planes = np.arange(N * C)[:, None]
    np.add.at(gx, (planes, idx.reshape(N * C, -1)), gy.reshape(N * C, -1))
    return gx.reshape(x_shape)


def avg_pool2d_forward(x, kernel, stride, padding):
    """y[n,c,i,j] = (1 / (KH*KW)) * sum_{p,q} x[n,c,i*sh+p-ph, j*sw+q-pw]   (padding counts as 0)

    x (N,C,H,W) -> y (N,C,Ho,Wo)
    """
    N, C, H, W = x.shape
    KH, KW = kernel
    Ho = _out_size(H, KH, stride[0], padding[0])
    Wo = _out_size(W, KW, stride[1], padding[1])
    xp = _pad(x, padding, 0)
    y = np.zeros((N, C, Ho, Wo), dtype=x.dtype)
    for p in range(KH):
        for q in range(KW):
            y += _tap(xp, p, q, stride, Ho, Wo)
    return y / x.dtype.type(KH * KW)


def avg_pool2d_backward(gy, x_shape, kernel, stride, padding):
    """gx[n,c,h,w] = sum over windows (i,j) that contain (h,w) of gy[n,c,i,j] / (KH*KW)

    gy (N,C,Ho,Wo) -> gx x_shape (N,C,H,W)
    """
    N, C, H, W = x_shape
    KH, KW = kernel
    sh, sw = stride
    ph, pw = padding
    _, _, Ho, Wo = gy.shape
    gxp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=gy.dtype)
    share = gy / gy.dtype.type(KH * KW)
    for p in range(KH):
        for q in range(KW):
            gxp[:, :, p: p + sh * (Ho - 1) + 1: sh, q: q + sw * (Wo - 1) + 1: sw] += share
    return gxp[:, :, ph: ph + H, pw: pw + W].copy()


# ----------------------------------------------------------------------------- activations (lesson 02)

def relu_forward(x):
    """y = max(x, 0), any shape."""
    return np.where(x < 0, x.dtype.type(0), x)


def relu_backward(gy, y):
    """gx = gy where y > 0 else 0."""
    return np.where(y > 0, gy, gy.dtype.type(0))


def sigmoid_forward(x):
    """y = 1 / (1 + exp(-x)), any shape.

    Written two ways so that exp never overflows: for x >= 0 use 1 / (1 + exp(-x));
    for x < 0 use exp(x) / (1 + exp(x)), the same number.
    """
    e = np.exp(-np.abs(x))                      # in (0, 1], never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def sigmoid_backward(gy, y):
    """gx = gy * y * (1 - y)."""
    return gy * y * (1 - y)


# ----------------------------------------------------------------------------- linear layer (lesson 01)

def linear_forward(x, w, b):
    """y[n,o] = sum_i x[n,i] * w[o,i] + b[o].  x (N,In), w (Out,In), b (Out,) or None -> y (N,Out)"""
    y = x @ w.T
    if b is not None:
        y = y + b
    return y


def linear_backward(x, w, gy, needs=(True, True, True)):
    """gx = gy @ w, gw = gy^T @ x, gb = sum_n gy.  gy (N,Out) -> gx (N,In), gw (Out,In), gb (Out,)"""
    gx = gy @ w if needs[0] else None
    gw = gy.T @ x if needs[1] else None
    gb = gy.sum(axis=0) if needs[2] else None
    return gx, gw, gb


# ----------------------------------------------------------------------------- softmax and loss (lesson 06)

def softmax_forward(x):
    """y[r,k] = exp(x[r,k] - m_r) / sum_j exp(x[r,j] - m_r), m_r = max_j x[r,j].

    Subtracting the row maximum changes nothing mathematically and keeps exp <= 1.
    x (R,K) -> y (R,K)
    """
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_backward(gy, y):
    """gx[r,k] = y[r,k] * (gy[r,k] - sum_j gy[r,j] * y[r,j])."""
    return y * (gy - (gy * y).sum(axis=1, keepdims=True))


def log_softmax_forward(x):
    """y[r,k] = x[r,k] - m_r - log sum_j exp(x[r,j] - m_r).  x (R,K) -> y (R,K)"""
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def log_softmax_backward(gy, y):
    """gx[r,k] = gy[r,k] - exp(y[r,k]) * sum_j gy[r,j]."""
    return gy - np.exp(y) * gy.sum(axis=1, keepdims=True)


def cross_entropy_forward(logits, target, weight, reduction):
    """loss_n = -weight[t_n] * log softmax(logits[n])[t_n]

    reduction "none" -> loss (N,); "sum" -> sum_n loss_n;
    "mean" -> sum_n loss_n / sum_n weight[t_n]   (N when weight is None).
    logits (N,K), target (N,) int64, weight (K,) or None -> (loss, probs (N,K))
    """
    N = logits.shape[0]
    logp = log_softmax_forward(logits)
    wt = weight[target] if weight is not None else np.ones(N, dtype=logits.dtype)
    losses = -wt * logp[np.arange(N), target]
    if reduction == "none":
        loss = losses
    elif reduction == "sum":
        loss = np.asarray(losses.sum(), dtype=logits.dtype)
    else:
        loss = np.asarray(losses.sum() / wt.sum(), dtype=logits.dtype)
    return loss, np.exp(logp)


def cross_entropy_backward(probs, target, weight, reduction, gloss):
    """dloss_n / dlogits[n,k] = weight[t_n] * (probs[n,k] - [k == t_n]), scaled by gloss
    (per row for "none", once for "sum", divided by sum_n weight[t_n] for "mean").

    probs (N,K), target (N,), gloss () or (N,) -> glogits (N,K)
    """
    N = probs.shape[0]
    wt = weight[target] if weight is not None else np.ones(N, dtype=probs.dtype)
    onehot = np.zeros_like(probs)
    onehot[np.arange(N), target] = 1
    g = (probs - onehot) * wt[:, None]
    if reduction == "none":
        return (g * gloss[:, None]).astype(probs.dtype)
    if reduction == "sum":
        return (g * gloss).astype(probs.dtype)
    return (g * (gloss / wt.sum())).astype(probs.dtype)


# ----------------------------------------------------------------------------- optimisers (lesson 06)

def sgd_step(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """One SGD step in place (PyTorch's rule).

    g' = g + weight_decay * p
    buf = g'  on the first step, else  momentum * buf + (1 - dampening) * g'
    d = g' + momentum * buf  if nesterov, else buf       (d = g' when momentum == 0)
    p -= lr * d
    p, g, buf: arrays of one shape; buf is written only when momentum != 0.
    """
    d = g + weight_decay * p if weight_decay != 0 else g.copy()
    if momentum != 0:
        if first:
            buf[...] = d
        else:
            buf[...] = momentum * buf + (1 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    p -= (lr * d).astype(p.dtype)


def adam_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """One Adam step in place (PyTorch's rule, L2 weight decay, step counted from 1).

    g' = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * g'          first moment
    v = beta2 * v + (1 - beta2) * g'^2        second moment
    p -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
    """
    gd = g + weight_decay * p if weight_decay != 0 else g
    m[...] = beta1 * m + (1 - beta1) * gd
    v[...] = beta2 * v + (1 - beta2) * gd * gd
    bc1 = 1 - beta1 ** step
    bc2 = 1 - beta2 ** step
    p -= (lr / bc1 * m / (np.sqrt(v) / np.sqrt(bc2) + eps)).astype(p.dtype)
