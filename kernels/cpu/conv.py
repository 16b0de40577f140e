"""2-D convolution on the CPU: im2col + matrix multiply (numba + BLAS).      lesson 01

Forward, with stride (sh, sw) and zero padding (ph, pw):
    y[n,f,i,j] = b[f] + sum_c sum_p sum_q  w[f,c,p,q] * x[n,c, i*sh+p-ph, j*sw+q-pw]
Backward, given gy = dL/dy:
    gw[f,c,p,q] = sum_n sum_i sum_j gy[n,f,i,j] * x[n,c, i*sh+p-ph, j*sw+q-pw]
    gb[f]       = sum_n sum_i sum_j gy[n,f,i,j]
    gx[n,c,h,w] = sum of gy[n,f,i,j] * w[f,c,p,q] over every (f,i,j,p,q) whose tap
                  lands on (h, w), i.e. h = i*sh+p-ph and w = j*sw+q-pw

The trick (im2col): copy, for one image n, every input pixel each output pixel sees
into a matrix
    col[n][r, s]   with  r = (c*KH + p)*KW + q   (one row per kernel tap)
                         s = i*Wo + j             (one column per output pixel)
    col[n][r, s] = x[n, c, i*sh+p-ph, j*sw+q-pw]  (0 where that lands in the padding)
Then the whole convolution is one matrix product per image, done by BLAS:
    y[n]  (F, Ho*Wo) = W (F, C*KH*KW) @ col[n] (C*KH*KW, Ho*Wo)         (+ b)
    gw    (F, C*KH*KW) = sum_n gy[n] (F, Ho*Wo) @ col[n]^T
    gcol[n] (C*KH*KW, Ho*Wo) = W^T @ gy[n]
and gx is gcol folded back onto the image (col2im: the transpose of im2col, which
adds where im2col copied).

Index maps of the numba loops (parallel with prange):
    im2col / col2im: one task per (image n, input channel c) plane; it owns the rows
        r = c*KH*KW ... (c+1)*KH*KW - 1 of col[n] and the plane x[n, c] (or gx[n, c]),
        so no two tasks write the same element.
    add_bias: one task per (n, f) output plane.   bias_grad: one task per f.
Cost: the matrix products do N*F*C*KH*KW*Ho*Wo multiply-adds each; im2col moves
C*KH*KW*Ho*Wo numbers per image. The batch is processed in chunks so that the col
buffer stays a few megabytes (cache-sized, and small next to the activations).
"""
import numpy as np
from numba import njit, prange

# bytes of col buffer per chunk of images: big enough for efficient BLAS calls,
# small enough to stay in cache and not add much to peak memory
_CHUNK_BYTES = 4 << 20


def out_size(size, k, s, pad):
    """Output length of a window of k, stride s, padding pad over `size` (floor mode)."""
    return (size + 2 * pad - k) // s + 1


@njit(cache=True, parallel=True)
def im2col(x, n0, KH, KW, sh, sw, ph, pw, col):
    """col[m, r, s] = x[n0+m, c, i*sh+p-ph, j*sw+q-pw] (0 in the padding).

    x (N,C,H,W); col (M, C*KH*KW, Ho*Wo) for images n0 .. n0+M-1
    """
    M = col.shape[0]
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    Ho = (H + 2 * ph - KH) // sh + 1
    Wo = (W + 2 * pw - KW) // sw + 1
    zero = x.dtype.type(0)
    for t in prange(M * C):
        m = t // C
        c = t % C
        for p in range(KH):
            for q in range(KW):
                r = (c * KH + p) * KW + q
                # columns j whose tap lands inside the image: 0 <= j*sw + q - pw < W
                jlo = max(0, -((q - pw) // sw))
                jhi = min(Wo, (W - 1 + pw - q) // sw + 1)
                jhi = max(jhi, jlo)
                for i in range(Ho):
                    h = i * sh + p - ph
                    s0 = i * Wo
                    if h < 0 or h >= H:
                        for j in range(Wo):
                            col[m, r, s0 + j] = zero
                        continue
                    for j in range(jlo):
                        col[m, r, s0 + j] = zero
                    for j in range(jlo, jhi):
                        col[m, r, s0 + j] = x[n0 + m, c, h, j * sw + q - pw]
                    for j in range(jhi, Wo):
                        col[m, r, s0 + j] = zero


@njit(cache=True, parallel=True)
def col2im(gcol, n0, KH, KW, sh, sw, ph, pw, gx):
    """gx[n0+m, c, h, w] = sum of gcol[m, r, s] over the (r, s) that im2col copied from (h, w).

    gcol (M, C*KH*KW, Ho*Wo); gx (N,C,H,W), planes n0 .. n0+M-1 overwritten
    """
    M = gcol.shape[0]
    C, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
    Ho = (H + 2 * ph - KH) // sh + 1
    Wo = (W + 2 * pw - KW) // sw + 1
    for t in prange(M * C):
        m = t // C
        c = t % C
        n = n0 + m
        for h in range(H):
            for w in range(W):
                gx[n, c, h, w] = 0
        for p in range(KH):
            for q in range(KW):
                r = (c * KH + p) * KW + q
                jlo = max(0, -((q - pw) // sw))
                jhi = min(Wo, (W - 1 + pw - q) // sw + 1)
                for i in range(Ho):
                    h = i * sh + p - ph
                    if h < 0 or h >= H:
                        continue
                    s0 = i * Wo
                    for j in range(jlo, jhi):
                        gx[n, c, h, j * sw + q - pw] += gcol[m, r, s0 + j]


@njit(cache=True, parallel=True)
def add_bias(y, b):
    """y[n, f, s] += b[f].   y (N,F,S), b (F,)"""
    N, F, S = y.shape
    for t in prange(N * F):
        n = t // F
        f = t % F
        bf = b[f]
        for s in range(S):
            y[n, f, s] += bf


@njit(cache=True, parallel=True)
def bias_grad(gy, gb):
    """gb[f] = sum_n sum_s gy[n, f, s]  (accumulated in float64).   gy (N,F,S), gb (F,)"""
    N, F, S = gy.shape
    for f in prange(F):
        acc = 0.0
        for n in range(N):
            for s in range(S):
                acc += gy[n, f, s]
        gb[f] = acc


def _chunk(N, rows, cols, itemsize):
    """How many images fit in one col buffer of about _CHUNK_BYTES."""
    return int(max(1, min(N, _CHUNK_BYTES // max(1, rows * cols * itemsize))))


def _is_pointwise(KH, KW, stride, padding):
    # a 1x1 kernel with stride 1 and no padding: col[n] is just x[n] seen as (C, H*W)
    return KH == 1 and KW == 1 and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)


def conv2d_forward(x, w, b, stride, padding):
    """x (N,C,H,W), w (F,C,KH,KW), b (F,) or None -> y (N,F,Ho,Wo)."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    sh, sw = stride
    ph, pw = padding
    Ho, Wo = out_size(H, KH, sh, ph), out_size(W, KW, sw, pw)
    R, S = C * KH * KW, Ho * Wo
    w2 = w.reshape(F, R)
    y = np.empty((N, F, Ho, Wo), dtype=x.dtype)
    y3 = y.reshape(N, F, S)
    if _is_pointwise(KH, KW, stride, padding):
        np.matmul(w2, x.reshape(N, C, S), out=y3)
    else:
        M = _chunk(N, R, S, x.itemsize)
        col = np.empty((M, R, S), dtype=x.dtype)
        for n0 in range(0, N, M):
            m = min(M, N - n0)
            im2col(x, n0, KH, KW, sh, sw, ph, pw, col[:m])
            np.matmul(w2, col[:m], out=y3[n0:n0 + m])
    if b is not None:
        add_bias(y3, b)
    return y


def conv2d_backward(x, w, gy, stride, padding, needs=(True, True, True)):
    """x (N,C,H,W), w (F,C,KH,KW), gy (N,F,Ho,Wo) -> (gx (N,C,H,W), gw (F,C,KH,KW), gb (F,)),
    each None where needs (input, weight, bias) says False."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    sh, sw = stride
    ph, pw = padding
    _, _, Ho, Wo = gy.shape
    R, S = C * KH * KW, Ho * Wo
    w2 = w.reshape(F, R)
    gy3 = gy.reshape(N, F, S)
    gx = np.empty_like(x) if needs[0] else None
    gw = None
    gb = None
    if needs[2]:
        gb = np.empty(F, dtype=gy.dtype)
        bias_grad(gy3, gb)
    if not (needs[0] or needs[1]):
        return gx, gw, gb
    if _is_pointwise(KH, KW, stride, padding):
        if needs[1]:
            gw = np.matmul(gy3, x.reshape(N, C, S).transpose(0, 2, 1)).sum(axis=0)
        if needs[0]:
            np.matmul(w2.T, gy3, out=gx.reshape(N, C, S))
        return gx, (gw.reshape(w.shape) if gw is not None else None), gb
    M = _chunk(N, R, S, x.itemsize)
    col = np.empty((M, R, S), dtype=x.dtype)
    gw_parts = np.empty((M, F, R), dtype=x.dtype) if needs[1] else None
    if needs[1]:
        gw2 = np.zeros((F, R), dtype=x.dtype)
    for n0 in range(0, N, M):
        m = min(M, N - n0)
        c = col[:m]
        if needs[1]:
            im2col(x, n0, KH, KW, sh, sw, ph, pw, c)
            np.matmul(gy3[n0:n0 + m], c.transpose(0, 2, 1), out=gw_parts[:m])
            gw2 += gw_parts[:m].sum(axis=0)
        if needs[0]:
            np.matmul(w2.T, gy3[n0:n0 + m], out=c)      # the col buffer is free again
            col2im(c, n0, KH, KW, sh, sw, ph, pw, gx)
    if needs[1]:
        gw = gw2.reshape(w.shape)
    return gx, gw, gb
