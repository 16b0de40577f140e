"""conv2d, rung v2: im2col + one BLAS matrix product.                        lesson 12

Why: v1 reads each weight and each input pixel again for every output it feeds,
one multiply-add at a time. Copy every input pixel each output sees into one
matrix (im2col), and the whole convolution is ONE matrix product, which BLAS
runs near the machine's peak: blocked for the caches, 8 or 16 multiply-adds per
instruction, on every core (numpy's OpenBLAS spreads the product out).
    col[r, n*S + i*Wo + j] = x[n, c, i*sh+p-ph, j*sw+q-pw]   (0 in the padding)
    r = (c*KH + p)*KW + q    (R = C*KH*KW rows, S = Ho*Wo columns per image)
    forward   Y (F, N*S) = W (F, R) @ col (R, N*S);  y[n,f,i,j] = Y[f, n*S + i*Wo + j] + b[f]
    backward  GY (F, N*S) <- gy;   gW = GY @ col^T;   gb = GY @ 1
              gcol = W^T @ GY;     gx = col2im(gcol)  (adds each entry back onto its pixel)
Cost: the same FLOPs as v1, plus copying R*N*S numbers; the col matrix of the
whole batch is C*KH*KW times the size of the input (here it can be tens of MB).
The copies are im2col.py's numba loops, the same ones the fast path uses.
"""
import numpy as np

from ..im2col import col2im, im2col
from ..pool import out_size


def forward(x, w, b, stride, padding):
    """x (N,C,H,W), w (F,C,KH,KW), b (F,) -> y (N,F,Ho,Wo)."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    (sh, sw), (ph, pw) = stride, padding
    Ho, Wo = out_size(H, KH, sh, ph), out_size(W, KW, sw, pw)
    col = np.empty((C * KH * KW, N * Ho * Wo), dtype=x.dtype)
    im2col(x, 0, KH, KW, sh, sw, ph, pw, Ho, Wo, col)
    Y = w.reshape(F, -1) @ col                                  # the one product
    return np.ascontiguousarray(Y.reshape(F, N, Ho, Wo).transpose(1, 0, 2, 3)) + b[:, None, None]


def backward(x, w, gy, stride, padding):
    """x (N,C,H,W), w (F,C,KH,KW), gy (N,F,Ho,Wo) -> (gx, gw, gb)."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    (sh, sw), (ph, pw), Ho, Wo = stride, padding, gy.shape[2], gy.shape[3]
    col = np.empty((C * KH * KW, N * Ho * Wo), dtype=x.dtype)
    im2col(x, 0, KH, KW, sh, sw, ph, pw, Ho, Wo, col)
    GY = np.ascontiguousarray(gy.transpose(1, 0, 2, 3)).reshape(F, N * Ho * Wo)
    gw = (GY @ col.T).reshape(w.shape)
    gb = GY.sum(axis=1)
    gcol = np.ascontiguousarray(w.reshape(F, -1).T) @ GY       # (R, N*S)
    gx = np.empty_like(x)
    col2im(gcol, 0, KH, KW, sh, sw, ph, pw, Ho, Wo, gx)
    return gx, gw, gb
