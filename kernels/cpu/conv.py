"""2-D convolution on the CPU: im2col + matrix multiply (numba + BLAS).      lesson 01

Forward, with stride (sh, sw) and zero padding (ph, pw):
    y[n,f,i,j] = b[f] + sum_c sum_p sum_q  w[f,c,p,q] * x[n,c, i*sh+p-ph, j*sw+q-pw]
Backward, given gy = dL/dy:
    gw[f,c,p,q] = sum_n sum_i sum_j gy[n,f,i,j] * x[n,c, i*sh+p-ph, j*sw+q-pw]
    gb[f]       = sum_n sum_i sum_j gy[n,f,i,j]
    gx[n,c,h,w] = sum of gy[n,f,i,j] * w[f,c,p,q] over every (f,i,j,p,q) whose tap
                  lands on (h, w), i.e. h = i*sh+p-ph and w = j*sw+q-pw

The trick (im2col): copy every input pixel each output pixel sees into a matrix,
one row per kernel tap and one column per output pixel, for a chunk of M images:
    col[r, m*S + i*L + j] = x[n0+m, c, i*sh+p-ph, j*sw+q-pw]     (0 in the padding)
    r = (c*KH + p)*KW + q   (R = C*KH*KW rows)
Then the convolution of the whole chunk is ONE matrix product, done by BLAS:
    Y  (F, M*S) = [W | b] (F, R+1) @ [col ; 1 ... 1] (R+1, M*S)
                  (the bias is the weight of an extra input that is always 1)
    gW (F, R)   = GY (F, M*S) @ col^T      summed over the chunks
    gcol (R, M*S) = W^T @ GY, then col2im, the transpose of im2col: it adds each
                  column entry back onto the pixel im2col copied it from
GY is gy laid out like Y. Two layouts of an output row:
  * general (any stride): L = Wo, S = Ho*Wo, im2col copies pixel by pixel.
  * wide rows (stride 1, the common case): first copy the images into a zero-padded
    buffer xp of width Wp = W + 2*pw. Then compute each output row Wp wide instead
    of Wo wide (L = Wp, S = Ho*Wp): the KW-1 extra outputs per row are thrown away
    (and their gradient is 0). In exchange row r of col is ONE contiguous run of xp:
        col[r, m*S + t] = xp[m, c].flat[p*Wp + q + t],   t = 0 .. Ho*Wp - 1
    so im2col is KH*KW memory copies per channel instead of a gather.

Index maps of the numba loops (plain loops on one thread: the threads are BLAS's,
and two thread pools taking turns would cost more than these copies; the inner
loops run over row views, src[t] -> dst[t], which numba turns into fast copies):
    pad_chunk:       xp[m, c, ph+h, pw+w]      =  x[n0+m, c, h, w]
    im2col_wide:     col[r, m*S + t]           =  xp[m, c].flat[p*Wp + q + t]
    col2im_wide:     gxp[m, c].flat[p*Wp+q+t]  += gcol[r, m*S + t]
    im2col/col2im:   col[r, m*S + i*Wo + j]   <-> x[n0+m, c, i*sh+p-ph, j*sw+q-pw]
    rows_to_images:  y[n0+m, f, i, j]          =  Y[f, m*S + i*L + j],  j < Wo
    images_to_rows:  GY[f, m*S + i*L + j]      =  gy[n0+m, f, i, j]  (0 for j >= Wo)
A 3x3 stride-1 convolution of a single input channel (the first layer) skips all
this: its forward pass and weight gradient are computed directly
(conv_direct.py), which is faster when a product has only 9 terms per output.
Cost: the products do F*C*KH*KW*Ho*Wo multiply-adds per image (compute-bound; BLAS
runs them near the machine's peak); the copies move C*KH*KW*Ho*Wo numbers per image.
The batch goes through in chunks whose col buffer is at most _CHUNK_BYTES: few
enough products that BLAS's threads fork and join only a few times per call (each
join waits for the slowest thread, which on a busy machine may be waiting for a
core), yet a buffer that adds little to peak memory next to the activations.
"""
import numpy as np
from numba import njit, prange

from .conv_direct import conv3x3_forward, conv3x3_weight

# bytes of col buffer per chunk (see above)
_CHUNK_BYTES = 4 << 20
# up to this many input channels, a 3x3 stride-1 convolution's forward pass and
# weight gradient are computed directly (conv_direct.py): measured here, direct
# wins by 2x or more with one channel and loses with three
_DIRECT_MAX_C = 1


def out_size(size, k, s, pad):
    """Output length of a window of k, stride s, padding pad over `size` (floor mode)."""
    return (size + 2 * pad - k) // s + 1


# ----------------------------------------------------------------------------- wide rows (stride 1)

@njit(cache=True)
def pad_chunk(x, n0, ph, pw, xp):
    """xp[m, c, ph+h, pw+w] = x[n0+m, c, h, w], 0 elsewhere.  x (N,C,H,W), xp (M,C,Hp,Wp)"""
    M, C, Hp, Wp = xp.shape
    H, W = x.shape[2], x.shape[3]
    xp[:] = 0
    for m in range(M):
        for c in range(C):
            for h in range(H):
                src = x[n0 + m, c, h]
                dst = xp[m, c, ph + h, pw: pw + W]
                for w in range(W):
                    dst[w] = src[w]


@njit(cache=True)
def im2col_wide(xp, KH, KW, S, col):
    """col[r, m*S + t] = xp[m, c].flat[p*Wp + q + t], r = (c*KH + p)*KW + q.

    xp (M,C,Hp,Wp), flattened per plane; col (>= C*KH*KW, M*S)
    """
    M, C, Hp, Wp = xp.shape
    planes = xp.reshape(M, C, Hp * Wp)
    for m in range(M):
        for c in range(C):
            for p in range(KH):
                for q in range(KW):
                    r = (c * KH + p) * KW + q
                    src = planes[m, c, p * Wp + q: p * Wp + q + S]
                    dst = col[r, m * S: (m + 1) * S]
                    for t in range(S):      # a plain loop over views: numba makes it a fast copy
                        dst[t] = src[t]


@njit(cache=True)
def col2im_wide(gcol, KH, KW, S, gxp):
    """gxp[m, c].flat[p*Wp + q + t] += gcol[r, m*S + t]; gxp (M,C,Hp,Wp) zeroed first."""
    M, C, Hp, Wp = gxp.shape
    planes = gxp.reshape(M, C, Hp * Wp)
    planes[:] = 0
    for m in range(M):
        for c in range(C):
            for p in range(KH):
                for q in range(KW):
                    r = (c * KH + p) * KW + q
                    src = gcol[r, m * S: (m + 1) * S]
                    dst = planes[m, c, p * Wp + q: p * Wp + q + S]
                    for t in range(S):
                        dst[t] += src[t]


@njit(cache=True)
def crop_chunk(gxp, n0, ph, pw, gx):
    """gx[n0+m, c, h, w] = gxp[m, c, ph+h, pw+w]: the image without its padding."""
    M, C = gxp.shape[0], gxp.shape[1]
    H, W = gx.shape[2], gx.shape[3]
    for m in range(M):
        for c in range(C):
            for h in range(H):
                src = gxp[m, c, ph + h, pw: pw + W]
                dst = gx[n0 + m, c, h]
                for w in range(W):
                    dst[w] = src[w]


# ----------------------------------------------------------------------------- general strides

@njit(cache=True)
def im2col(x, n0, KH, KW, sh, sw, ph, pw, Ho, Wo, col):
    """col[r, m*S + i*Wo + j] = x[n0+m, c, i*sh+p-ph, j*sw+q-pw] (0 in the padding).

    x (N,C,H,W); col (>= C*KH*KW, M*Ho*Wo)
    """
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    S = Ho * Wo
    M = col.shape[1] // S
    for c in range(C):
        for p in range(KH):
            for q in range(KW):
                r = (c * KH + p) * KW + q
                # the columns j whose tap lands inside the image: 0 <= j*sw + q - pw < W
                jlo = min(Wo, max(0, -((q - pw) // sw)))
                jhi = max(jlo, min(Wo, (W - 1 + pw - q) // sw + 1))
                for m in range(M):
                    for i in range(Ho):
                        h = i * sh + p - ph
                        dst = col[r, m * S + i * Wo: m * S + (i + 1) * Wo]
                        if h < 0 or h >= H:
                            for j in range(Wo):
                                dst[j] = 0
                            continue
                        src = x[n0 + m, c, h]
                        w0 = jlo * sw + q - pw          # first pixel, then every sw-th
                        for j in range(jlo):
                            dst[j] = 0
                        for j in range(jhi - jlo):
                            dst[jlo + j] = src[w0 + j * sw]
                        for j in range(jhi, Wo):
                            dst[j] = 0


@njit(cache=True)
def col2im(gcol, n0, KH, KW, sh, sw, ph, pw, Ho, Wo, gx):
    """gx[n0+m, c, h, w] = sum of gcol[r, m*S + s] over the (r, s) im2col copied from (h, w).

    gcol (C*KH*KW, M*Ho*Wo); gx (N,C,H,W): images n0 .. n0+M-1 overwritten
    """
    C, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
    S = Ho * Wo
    M = gcol.shape[1] // S
    gx[n0:n0 + M] = 0
    for c in range(C):
        for p in range(KH):
            for q in range(KW):
                r = (c * KH + p) * KW + q
                jlo = min(Wo, max(0, -((q - pw) // sw)))
                jhi = max(jlo, min(Wo, (W - 1 + pw - q) // sw + 1))
                for m in range(M):
                    for i in range(Ho):
                        h = i * sh + p - ph
                        if h < 0 or h >= H:
                            continue
                        src = gcol[r, m * S + i * Wo: m * S + (i + 1) * Wo]
                        dst = gx[n0 + m, c, h]
                        w0 = jlo * sw + q - pw
                        for j in range(jhi - jlo):
                            dst[w0 + j * sw] += src[jlo + j]


# ----------------------------------------------------------------------------- both layouts

@njit(cache=True)
def rows_to_images(Y, n0, L, y):
    """y[n0+m, f, i, j] = Y[f, m*S + i*L + j] for j < Wo (S = Ho*L).  Y (F, M*S), y (N,F,Ho,Wo)"""
    F, Ho, Wo = y.shape[1], y.shape[2], y.shape[3]
    S = Ho * L
    M = Y.shape[1] // S
    for m in range(M):
        for f in range(F):
            for i in range(Ho):
                src = Y[f, m * S + i * L: m * S + i * L + Wo]
                dst = y[n0 + m, f, i]
                for j in range(Wo):
                    dst[j] = src[j]


@njit(cache=True)
def images_to_rows(gy, n0, L, GY):
    """GY[f, m*S + i*L + j] = gy[n0+m, f, i, j], and 0 for Wo <= j < L.  The inverse layout."""
    F, Ho, Wo = gy.shape[1], gy.shape[2], gy.shape[3]
    S = Ho * L
    M = GY.shape[1] // S
    for m in range(M):
        for f in range(F):
            for i in range(Ho):
                src = gy[n0 + m, f, i]
                dst = GY[f, m * S + i * L: m * S + (i + 1) * L]
                for j in range(Wo):
                    dst[j] = src[j]
                for j in range(Wo, L):
                    dst[j] = 0


@njit(cache=True, parallel=True, fastmath={"reassoc"})
def bias_grad(gy, gb):
    """gb[f] = sum_n sum_i sum_j gy[n, f, i, j], accumulated in float64.  gb (F,)

    One prange task per f. fastmath "reassoc" lets the compiler add in any order,
    which is what makes a sum fast (several partial sums in vector registers).
    """
    N, F, Ho, Wo = gy.shape
    for f in prange(F):
        acc = 0.0
        for n in range(N):
            plane = gy[n, f].reshape(-1)
            for k in range(Ho * Wo):
                acc += plane[k]
        gb[f] = acc


# ----------------------------------------------------------------------------- the table's functions

class _Plan:
    """Sizes of one convolution and of its chunks; `wide` selects the wide-row layout."""

    def __init__(self, x, w, stride, padding):
        self.N, self.C, self.H, self.W = x.shape
        self.F, _, self.KH, self.KW = w.shape
        (self.sh, self.sw), (self.ph, self.pw) = stride, padding
        self.Ho = out_size(self.H, self.KH, self.sh, self.ph)
        self.Wo = out_size(self.W, self.KW, self.sw, self.pw)
        self.R = self.C * self.KH * self.KW
        self.wide = self.sh == 1 and self.sw == 1
        # wide rows: padded images, one spare row so the last tap's run stays inside
        self.Hp, self.Wp = self.H + 2 * self.ph + 1, self.W + 2 * self.pw
        self.L = self.Wp if self.wide else self.Wo      # length of an output row in col
        self.S = self.Ho * self.L                       # columns of col per image
        per_image = (self.R + 1) * self.S * x.itemsize
        self.M = int(max(1, min(self.N, _CHUNK_BYTES // max(1, per_image))))

    def chunks(self):
        for n0 in range(0, self.N, self.M):
            yield n0, min(self.M, self.N - n0)

    def fill_col(self, x, n0, m, xp, col):
        """col[:R, :m*S] for images n0 .. n0+m-1."""
        if self.wide:
            pad_chunk(x, n0, self.ph, self.pw, xp[:m])
            im2col_wide(xp[:m], self.KH, self.KW, self.S, col)
        else:
            im2col(x, n0, self.KH, self.KW, self.sh, self.sw, self.ph, self.pw,
                   self.Ho, self.Wo, col)

    def direct(self):
        """True when conv_direct.py's 3x3 kernels compute the forward pass and gw."""
        return (self.KH, self.KW, self.sh, self.sw) == (3, 3, 1, 1) and self.C <= _DIRECT_MAX_C

    def padded_batch(self, x):
        """x (N,C,H,W) with its zero padding: (N, C, H+2*ph, W+2*pw)."""
        xp = np.empty((self.N, self.C, self.H + 2 * self.ph, self.W + 2 * self.pw), x.dtype)
        pad_chunk(x, 0, self.ph, self.pw, xp)
        return xp

    def padded_buffer(self, dtype):
        return np.empty((self.M, self.C, self.Hp, self.Wp), dtype=dtype) if self.wide else None


def conv2d_forward(x, w, b, stride, padding):
    """x (N,C,H,W), w (F,C,KH,KW), b (F,) or None -> y (N,F,Ho,Wo)."""
    x = np.ascontiguousarray(x)
    pl = _Plan(x, w, stride, padding)
    F, R, S = pl.F, pl.R, pl.S
    if pl.direct():
        y = np.empty((pl.N, F, pl.Ho, pl.Wo), dtype=x.dtype)
        bias = np.zeros(F, dtype=x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
        conv3x3_forward(pl.padded_batch(x), np.ascontiguousarray(w, dtype=x.dtype), bias, y)
        return y
    # [W | b]: the bias rides along as the weight of a constant input 1
    wb = np.empty((F, R + 1), dtype=x.dtype)
    wb[:, :R] = w.reshape(F, R)
    wb[:, R] = 0 if b is None else b
    y = np.empty((pl.N, F, pl.Ho, pl.Wo), dtype=x.dtype)
    col = np.empty((R + 1, pl.M * S), dtype=x.dtype)
    col[R] = 1
    Y = np.empty((F, pl.M * S), dtype=x.dtype)
    xp = pl.padded_buffer(x.dtype)
    for n0, m in pl.chunks():
        c = col[:, :m * S]
        pl.fill_col(x, n0, m, xp, c)
        np.matmul(wb, c, out=Y[:, :m * S])
        rows_to_images(Y[:, :m * S], n0, pl.L, y)
    return y


def conv2d_backward(x, w, gy, stride, padding, needs=(True, True, True)):
    """x (N,C,H,W), w (F,C,KH,KW), gy (N,F,Ho,Wo) -> (gx (N,C,H,W), gw (F,C,KH,KW), gb (F,)),
    each None where needs (input, weight, bias) says False."""
    x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
    pl = _Plan(x, w, stride, padding)
    F, R, S = pl.F, pl.R, pl.S
    gb = None
    if needs[2]:
        gb = np.empty(F, dtype=gy.dtype)
        bias_grad(gy, gb)
    gw = None
    if needs[1] and pl.direct():
        gw = np.empty(w.shape, dtype=x.dtype)
        conv3x3_weight(pl.padded_batch(x), gy, gw)
        needs = (needs[0], False, needs[2])         # im2col below only for gx, if asked
    if not (needs[0] or needs[1]):
        return None, gw, gb
    wt = np.ascontiguousarray(w.reshape(F, R).T)    # W^T (R, F)
    gx = np.empty(x.shape, dtype=x.dtype) if needs[0] else None
    gwt = np.zeros((R, F), dtype=x.dtype) if needs[1] else None
    part = np.empty((R, F), dtype=x.dtype)
    col = np.empty((R, pl.M * S), dtype=x.dtype)
    GY = np.empty((F, pl.M * S), dtype=x.dtype)
    # gW = GY @ col^T sums over the long dimension M*S, with both matrices stored
    # along it. BLAS does best with gW^T = col @ GY^T, GY^T passed as a transposed
    # view (no copy), when GY is the smaller (F < R); with few rows in col (one
    # input channel: R = 9) an image-by-image product, summed, does best.
    by_rows = needs[1] and F < R
    xp = pl.padded_buffer(x.dtype)
    for n0, m in pl.chunks():
        c, g = col[:, :m * S], GY[:, :m * S]
        images_to_rows(gy, n0, pl.L, g)
        if needs[1]:
            pl.fill_col(x, n0, m, xp, c)
            if by_rows:
                np.matmul(c, g.T, out=part)
                gwt += part
            else:
                per_image = np.matmul(c.reshape(R, m, S).transpose(1, 0, 2),
                                      g.reshape(F, m, S).transpose(1, 2, 0))   # (m, R, F)
                gwt += per_image.sum(axis=0)
        if needs[0]:
            np.matmul(wt, g, out=c)                 # the col buffer is free again: gcol
            if pl.wide:
                col2im_wide(c, pl.KH, pl.KW, S, xp[:m])
                crop_chunk(xp[:m], n0, pl.ph, pl.pw, gx)
            else:
                col2im(c, n0, pl.KH, pl.KW, pl.sh, pl.sw, pl.ph, pl.pw, pl.Ho, pl.Wo, gx)
    if needs[1]:
        gw = np.ascontiguousarray(gwt.T).reshape(w.shape)
    return gx, gw, gb
