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

from .conv_direct import conv3x3_forward, conv3x3_weight
from .activation import relu_backward
from .im2col import (bias_grad, col2im, col2im_wide, crop_chunk, im2col, im2col_wide,
                     images_to_rows, pad_chunk, relu_images_to_rows, rows_to_images)

# bytes of col buffer per chunk (see above)
_CHUNK_BYTES = 4 << 20
# up to this many input channels, a 3x3 stride-1 convolution's forward pass and
# weight gradient are computed directly (conv_direct.py): measured here, direct
# wins by 2x or more with one channel and loses with three
_DIRECT_MAX_C = 1


def out_size(size, k, s, pad):
    """Output length of a window of k, stride s, padding pad over `size` (floor mode)."""
    return (size + 2 * pad - k) // s + 1


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


def conv2d_forward(x, w, b, stride, padding, relu=False):
    """x (N,C,H,W), w (F,C,KH,KW), b (F,) or None -> y (N,F,Ho,Wo); relu=True also
    takes max(y, 0) on the way out (a ReLU fused in: no pass of its own)."""
    x = np.ascontiguousarray(x)
    pl = _Plan(x, w, stride, padding)
    F, R, S = pl.F, pl.R, pl.S
    if pl.direct():
        y = np.empty((pl.N, F, pl.Ho, pl.Wo), dtype=x.dtype)
        bias = np.zeros(F, dtype=x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
        conv3x3_forward(pl.padded_batch(x), np.ascontiguousarray(w, dtype=x.dtype), bias, relu, y)
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
        rows_to_images(Y[:, :m * S], n0, pl.L, relu, y)
    return y


def conv2d_backward(x, w, gy, stride, padding, needs=(True, True, True), relu_y=None):
    """x (N,C,H,W), w (F,C,KH,KW), gy (N,F,Ho,Wo) -> (gx (N,C,H,W), gw (F,C,KH,KW), gb (F,)),
    each None where needs (input, weight, bias) says False.

    relu_y: the output of a relu=True forward, or None. The ReLU's backward (gy where
    relu_y > 0, else 0) is then applied as gy is read: by the direct kernel, or in
    the copy of gy into GY.
    """
    x = np.ascontiguousarray(x)
    gy = np.ascontiguousarray(gy, dtype=x.dtype)
    # the kernels take an empty relu_y for "no ReLU"
    relu_y = np.empty((0, 0, 0, 0), dtype=x.dtype) if relu_y is None else \
        np.ascontiguousarray(relu_y, dtype=x.dtype)
    pl = _Plan(x, w, stride, padding)
    F, R, S = pl.F, pl.R, pl.S
    gb = gw = None
    if needs[1] and pl.direct():                     # gw and gb in one pass over gy
        gw, gb = np.empty(w.shape, dtype=x.dtype), np.empty(F, dtype=x.dtype)
        conv3x3_weight(pl.padded_batch(x), gy, relu_y, gw, gb)
        gb = gb if needs[2] else None
        needs = (needs[0], False, False)            # im2col below only for gx, if asked
    if not (needs[0] or needs[1]):                   # at most gb left: a sum over gy
        if needs[2]:
            gb = np.empty(F, dtype=x.dtype)
            bias_grad(gy if relu_y.size == 0 else relu_backward(gy, relu_y), gb)
        return None, gw, gb
    wt = np.ascontiguousarray(w.reshape(F, R).T)    # W^T (R, F)
    gx = np.empty(x.shape, dtype=x.dtype) if needs[0] else None
    gwt = np.zeros((R, F), dtype=x.dtype) if needs[1] else None
    part = np.empty((R, F), dtype=x.dtype)
    col = np.empty((R, pl.M * S), dtype=x.dtype)
    GY = np.empty((F, pl.M * S), dtype=x.dtype)
    # gW = GY @ col^T sums over the long dimension M*S, with both matrices stored
    # along it. BLAS does best with gW^T = col @ GY^T, GY^T passed as a transposed
    # view (no copy), when GY is the smaller (F < R); with few rows in col (R <= F,
    # e.g. a 1x1 convolution of few channels) an image-by-image product, summed.
    by_rows = needs[1] and F < R
    xp = pl.padded_buffer(x.dtype)
    gb64 = np.zeros(F) if needs[2] else None
    for n0, m in pl.chunks():
        c, g = col[:, :m * S], GY[:, :m * S]
        if relu_y.size == 0:
            images_to_rows(gy, n0, pl.L, g)
        else:
            relu_images_to_rows(gy, relu_y, n0, pl.L, g)
        if gb64 is not None:                        # gb from GY's rows (0 past Wo)
            gb64 += g.sum(axis=1)                    # pairwise in float32, chunks in float64
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
    if gb64 is not None:
        gb = gb64.astype(gy.dtype)
    return gx, gw, gb
