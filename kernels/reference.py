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

def out_size(size, k, s, pad):
    """Output length of a window of k, stride s, padding pad over `size` (floor mode):
    the Ho and Wo above. Every layer of minicnn that needs it imports this one."""
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

def conv2d_forward(x, w, b, stride, padding, relu=False, pool=False):
    """y[n,f,i,j] = b[f] + sum_c sum_p sum_q x[n,c,i*sh+p-ph, j*sw+q-pw] * w[f,c,p,q]
    and then, with relu=True, y = max(y, 0) (a ReLU fused in); with pool=True too,
    -> max_pool2d_forward(y, 2x2, stride 2): (yp (N,F,Ho//2,Wo//2), idx).

    x (N,C,H,W), w (F,C,KH,KW), b (F,) or None -> y (N,F,Ho,Wo)
    """
    if pool:
        return max_pool2d_forward(conv2d_forward(x, w, b, stride, padding, relu=True),
                                  (2, 2), (2, 2), (0, 0))
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Ho = out_size(H, KH, stride[0], padding[0])
    Wo = out_size(W, KW, stride[1], padding[1])
    xp = _pad(x, padding, 0)
    y = np.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for p in range(KH):
        for q in range(KW):
            # one tap of the kernel: y[n,f] += sum_c x_tap[n,c] * w[f,c,p,q]
            y += np.einsum("nchw,fc->nfhw", _tap(xp, p, q, stride, Ho, Wo), w[:, :, p, q])
    if b is not None:
        y += b[None, :, None, None]
    return relu_forward(y) if relu else y


def conv2d_backward(x, w, gy, stride, padding, needs=(True, True, True), relu_y=None,
                    pool_idx=None):
    """Gradients of conv2d_forward, given gy = dL/dy.

    relu_y: the output of a forward pass with relu=True, or None. When given, gy
    first goes back through the ReLU: gy = gy where relu_y > 0, else 0.
    pool_idx: the idx of a pool=True forward; gy and relu_y are then the pooled
    gradient and output, and go back through the ReLU and then the pool's scatter.

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
    if pool_idx is not None:
        full = (N, F, out_size(H, KH, stride[0], padding[0]), out_size(W, KW, stride[1], padding[1]))
        gy = max_pool2d_backward(gy, pool_idx, full)
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
    Ho, Wo = out_size(H, KH, sh, ph), out_size(W, KW, sw, pw)
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
    Ho = out_size(H, KH, stride[0], padding[0])
    Wo = out_size(W, KW, stride[1], padding[1])
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


# ----------------------------------------------------------------------------- batch norm (lesson 05)

def batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """Per channel c, over the M = N*L values x[:, c, :]:

    training:  mean_c = (1/M) sum x,   var_c = (1/M) sum (x - mean_c)^2   (biased)
               running_mean = (1 - momentum) * running_mean + momentum * mean_c
               running_var  = (1 - momentum) * running_var  + momentum * var_c * M/(M-1)
               (unbiased for the running estimate, as PyTorch; updated in place)
    eval:      mean_c = running_mean[c],  var_c = running_var[c]
    invstd_c = 1 / sqrt(var_c + eps)
    y[n,c,l] = (x[n,c,l] - mean_c) * invstd_c * weight[c] + bias[c]

    x (N,C,L) (images are (N,C,H*W), vectors (N,C,1)); weight, bias (C,) or None;
    running_mean, running_var (C,) or None -> (y (N,C,L), mean (C,), invstd (C,))
    """
    N, C, L = x.shape
    if training:
        mean = x.mean(axis=(0, 2))
        var = ((x - mean[None, :, None]) ** 2).mean(axis=(0, 2))
        M = N * L
        if running_mean is not None:
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean
        if running_var is not None:
            running_var[...] = (1 - momentum) * running_var + momentum * var * (M / (M - 1))
    else:
        mean = running_mean.astype(x.dtype)
        var = running_var.astype(x.dtype)
    invstd = (1 / np.sqrt(var + eps)).astype(x.dtype)
    y = (x - mean[None, :, None]) * invstd[None, :, None]
    if weight is not None:
        y = y * weight[None, :, None]
    if bias is not None:
        y = y + bias[None, :, None]
    return y.astype(x.dtype), mean.astype(x.dtype), invstd


def batch_norm_backward(gy, x, weight, mean, invstd, training, needs=(True, True, True)):
    """xhat = (x - mean_c) * invstd_c, w = weight (1 if None), sums over n and l:

    gb[c] = sum gy                     gw[c] = sum gy * xhat
    training:  gx = w[c] * invstd_c / M * (M * gy - gb[c] - xhat * gw[c])
               (mean and var depend on x too: the two sums are their share)
    eval:      gx = gy * w[c] * invstd_c        (the statistics are constants)

    gy, x (N,C,L); mean, invstd (C,) from the forward -> (gx, gw, gb); an entry is
    None where needs (input, weight, bias) says False.
    """
    N, C, L = x.shape
    M = N * L
    xhat = (x - mean[None, :, None]) * invstd[None, :, None]
    gb = gy.sum(axis=(0, 2))
    gw = (gy * xhat).sum(axis=(0, 2))
    w = np.ones(C, dtype=x.dtype) if weight is None else weight
    gx = None
    if needs[0]:
        scale = (w * invstd)[None, :, None]
        if training:
            gx = scale / M * (M * gy - gb[None, :, None] - xhat * gw[None, :, None])
        else:
            gx = gy * scale
        gx = gx.astype(x.dtype)
    return (gx, gw.astype(x.dtype) if needs[1] else None,
            gb.astype(x.dtype) if needs[2] else None)


def batch_norm_relu_pool_forward(x, weight, bias, running_mean, running_var, training,
                                 momentum, eps):
    """max_pool2d(relu(batch_norm(x)), 2): the three in turn.
    x (N,C,H,W) -> (y (N,C,H//2,W//2), idx like y, mean (C,), invstd (C,))"""
    N, C, H, W = x.shape
    v, mean, invstd = batch_norm_forward(x.reshape(N, C, H * W), weight, bias, running_mean,
                                         running_var, training, momentum, eps)
    y, idx = max_pool2d_forward(relu_forward(v.reshape(x.shape)), (2, 2), (2, 2), (0, 0))
    return y, idx, mean, invstd


def batch_norm_relu_pool_backward(gy, x, y, idx, weight, mean, invstd, training,
                                  needs=(True, True, True)):
    """Gradients of batch_norm_relu_pool_forward: gy goes back through the pool (to idx),
    the ReLU (where y > 0) and the batch norm.   gy, y, idx (N,C,H//2,W//2), x (N,C,H,W)"""
    N, C, H, W = x.shape
    g = max_pool2d_backward(relu_backward(gy, y), idx, x.shape)
    gx, gw, gb = batch_norm_backward(g.reshape(N, C, H * W), x.reshape(N, C, H * W), weight,
                                     mean, invstd, training, needs)
    return (None if gx is None else gx.reshape(x.shape)), gw, gb


# ----------------------------------------------------------------------------- dropout (lesson 05)
# The mask comes from Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy
# as 1, 2, 3", SC 2011), a counter-based generator: the random words for element k
# are a pure function of (seed, offset, k), so every device (numpy here, numba,
# CUDA) draws the same mask without sharing any state, and a GPU thread computes
# its own element's numbers without waiting for anyone.
#
#   one round:  (c0, c1, c2, c3) -> (hi(M1*c2) ^ c1 ^ k0, lo(M1*c2), hi(M0*c0) ^ c3 ^ k1, lo(M0*c0))
#   ten rounds, the key (k0, k1) bumped by (W0, W1) between rounds (mod 2^32)
#   element k: counter (k // 4 low word, k // 4 high word, offset low, offset high),
#              key (seed low word, seed high word); it takes word k % 4 of the result
#   u = (word >> 8) / 2^24, 24 random bits in [0, 1); keep the element when u >= p,
#   in integers: (word >> 8) >= keep_threshold(p) = ceil(p * 2^24)
#   y = x * mask * scale, scale = 1 / (1 - p) (0 when p = 1: everything dropped)
#   gx = gy * mask * scale, with the forward's mask

PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57      # the round multipliers
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85      # the key bumps (golden ratio, sqrt(3) - 1)
_MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(counter, key):
    """Philox4x32-10. counter: 4 arrays (or ints) of 32-bit words, key: 2 ints
    -> 4 uint64 arrays holding the 32-bit output words."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in counter)
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    m0, m1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
    for r in range(10):
        if r:
            k0 = (k0 + np.uint64(PHILOX_W0)) & _MASK32
            k1 = (k1 + np.uint64(PHILOX_W1)) & _MASK32
        p0, p1 = m0 * c0, m1 * c2              # 32 x 32 -> 64 bits: exact in uint64
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _MASK32,
                          (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & _MASK32)
    return c0, c1, c2, c3


def keep_threshold(p):
    """ceil(p * 2^24): an element is kept when its 24 random bits are >= this."""
    return int(np.ceil(float(p) * 2.0 ** 24))


def dropout_scale(p):
    """1 / (1 - p), the factor on the kept values (0 when p = 1)."""
    return 0.0 if p >= 1 else 1.0 / (1.0 - float(p))


def _split64(v):
    v = int(v)
    if not 0 <= v < 2 ** 64:
        raise ValueError(f"dropout: seed and offset must be in [0, 2**64), got {v}")
    return v & 0xFFFFFFFF, v >> 32


def dropout_mask(n, p, seed, offset=0):
    """The keep mask (n,) uint8 (1 = kept) that Philox gives (seed, offset); see above."""
    g = np.arange((n + 3) // 4, dtype=np.uint64)
    words = philox4x32_10((g & _MASK32, g >> np.uint64(32), *_split64(offset)), _split64(seed))
    bits = np.stack(words, axis=1).reshape(-1)[:n] >> np.uint64(8)
    return (bits >= np.uint64(keep_threshold(p))).astype(np.uint8)


def dropout_forward(x, p, seed, offset=0):
    """y = x * mask * scale.   x any shape -> (y like x, mask like x, uint8)"""
    mask = dropout_mask(x.size, p, seed, offset).reshape(x.shape)
    return (x * mask * x.dtype.type(dropout_scale(p))).astype(x.dtype), mask


def dropout_backward(gy, mask, p):
    """gx = gy * mask * scale, mask from the forward.   gy, mask like x -> gx"""
    return (gy * mask * gy.dtype.type(dropout_scale(p))).astype(gy.dtype)


# ----------------------------------------------------------------------------- adaptive average pooling (lesson 03)

def adaptive_bins(size, out):
    """[(start, end)] of the out bins over `size`: start = floor(i*size/out),
    end = ceil((i+1)*size/out), as PyTorch. Neighbouring bins may share a pixel."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def adaptive_avg_pool2d_forward(x, out_hw):
    """y[n,c,i,j] = mean of x[n,c, hs_i:he_i, ws_j:we_j], the bins of adaptive_bins.

    x (N,C,H,W), out_hw (Ho, Wo) -> y (N,C,Ho,Wo)
    """
    N, C, H, W = x.shape
    Ho, Wo = out_hw
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    for i, (hs, he) in enumerate(adaptive_bins(H, Ho)):
        for j, (ws, we) in enumerate(adaptive_bins(W, Wo)):
            y[:, :, i, j] = x[:, :, hs:he, ws:we].mean(axis=(2, 3))
    return y


def adaptive_avg_pool2d_backward(gy, x_shape):
    """gx[n,c,h,w] = sum over the bins (i,j) containing (h,w) of gy[n,c,i,j] / bin size

    gy (N,C,Ho,Wo) -> gx x_shape (N,C,H,W)
    """
    N, C, H, W = x_shape
    Ho, Wo = gy.shape[2:]
    gx = np.zeros(x_shape, dtype=gy.dtype)
    for i, (hs, he) in enumerate(adaptive_bins(H, Ho)):
        for j, (ws, we) in enumerate(adaptive_bins(W, Wo)):
            gx[:, :, hs:he, ws:we] += (gy[:, :, i, j] / gy.dtype.type((he - hs) * (we - ws)))[
                :, :, None, None]
    return gx


# ----------------------------------------------------------------------------- binary cross-entropy with logits (lesson 06)

def _softplus_neg(x):
    """log(1 + exp(-x)) = max(-x, 0) + log1p(exp(-|x|)), never overflowing."""
    return np.maximum(-x, 0) + np.log1p(np.exp(-np.abs(x)))


def bce_with_logits_forward(x, target, weight, pos_weight, reduction):
    """loss = w * ((1 - t) * x + (1 + (pw - 1) * t) * log(1 + exp(-x)))
    which with pw = 1 is the familiar max(x, 0) - x*t + log1p(exp(-|x|)), the stable
    form of -[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))], as PyTorch.

    x, target any one shape; weight, pos_weight that shape or None (broadcast by the
    caller); reduction "none" -> loss like x; "sum"; "mean" = sum / x.size
    """
    if pos_weight is None:
        loss = np.maximum(x, 0) - x * target + np.log1p(np.exp(-np.abs(x)))
    else:
        loss = (1 - target) * x + (1 + (pos_weight - 1) * target) * _softplus_neg(x)
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss.astype(x.dtype)
    total = loss.sum()
    return np.asarray(total / x.size if reduction == "mean" else total, dtype=x.dtype)


def bce_with_logits_backward(x, target, weight, pos_weight, reduction, gloss,
                             needs=(True, False)):
    """d loss / d x = w * ((1 - t) - (1 + (pw - 1) * t) * sigmoid(-x))   (= w * (sigmoid(x) - t) for pw = 1)
    d loss / d t = w * (-x + (pw - 1) * log(1 + exp(-x)))               (= -w * x for pw = 1)
    each times gloss (per element for "none"; once for "sum"; / x.size for "mean").

    -> (gx, gt); an entry is None where needs (input, target) says False.
    """
    g = np.asarray(gloss, dtype=x.dtype)
    if reduction == "mean":
        g = g / x.dtype.type(max(x.size, 1))
    if weight is not None:
        g = g * weight
    e = np.exp(-np.abs(x))                     # <= 1: neither sigmoid overflows
    sig = np.where(x >= 0, 1 / (1 + e), e / (1 + e))          # sigmoid(x)
    sig_neg = np.where(x >= 0, e / (1 + e), 1 / (1 + e))      # sigmoid(-x)
    gx = gt = None
    if needs[0]:
        if pos_weight is None:
            gx = g * (sig - target)
        else:
            gx = g * ((1 - target) - (1 + (pos_weight - 1) * target) * sig_neg)
        gx = gx.astype(x.dtype)
    if needs[1]:
        gt = -x if pos_weight is None else -x + (pos_weight - 1) * _softplus_neg(x)
        gt = (g * gt).astype(x.dtype)
    return gx, gt
