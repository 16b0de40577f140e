"""The copies around conv.py's matrix products: im2col, col2im and layouts (numba).

conv.py explains what col, Y and GY are; these loops only move numbers between
the images and those matrices.

Index maps (plain loops, each call on one thread; the inner loops run over row
views, src[t] -> dst[t], which numba turns into fast copies):
    pad_chunk:       xp[m, c, ph+h, pw+w]      =  x[n0+m, c, h, w]
    im2col_wide:     col[r, m*S + t]           =  xp[m, c].flat[p*Wp + q + t]
    col2im_wide:     gxp[m, c].flat[p*Wp+q+t]  += gcol[r, m*S + t]
    im2col/col2im:   col[r, m*S + i*Wo + j]   <-> x[n0+m, c, i*sh+p-ph, j*sw+q-pw]
    rows_to_images:  y[n0+m, f, i, j]          =  Y[f, m*S + i*L + j] + b[f],  j < Wo
                     (then max(., 0), the fused ReLU)
    images_to_rows:  GY[f, m*S + i*L + j]      =  gy[n0+m, f, i, j]  (0 for j >= Wo)
                     (relu_images_to_rows: 0 also where a fused ReLU's output relu_y <= 0)
"""
import numpy as np
from numba import njit, prange


# ----------------------------------------------------------------------------- wide rows (stride 1)

@njit(cache=True)
def pad_chunk(x, n0, ph, pw, xp, zero=True):
    """xp[m, c, ph+h, pw+w] = x[n0+m, c, h, w], 0 elsewhere.  x (N,C,H,W), xp (M,C,Hp,Wp)
    zero=False leaves the padding as it is (zeros already, from an earlier call)."""
    M, C, Hp, Wp = xp.shape
    H, W = x.shape[2], x.shape[3]
    if zero:
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

@njit(inline="always")
def _columns_inside(q, sw, pw, W, Wo):
    """(jlo, jhi): the output columns j whose tap q lands inside the image,
    0 <= j*sw + q - pw < W."""
    jlo = min(Wo, max(0, -((q - pw) // sw)))
    return jlo, max(jlo, min(Wo, (W - 1 + pw - q) // sw + 1))


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
                jlo, jhi = _columns_inside(q, sw, pw, W, Wo)
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
                jlo, jhi = _columns_inside(q, sw, pw, W, Wo)
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
def rows_to_images(Y, n0, L, b, relu, y):
    """y[n0+m, f, i, j] = Y[f, m*S + i*L + j] + b[f] for j < Wo (S = Ho*L), through
    max(., 0) when relu is True (the fused ReLU; NaN stays NaN).
    Y (F, M*S), b (F,), y (N,F,Ho,Wo)"""
    F, Ho, Wo = y.shape[1], y.shape[2], y.shape[3]
    S = Ho * L
    M = Y.shape[1] // S
    for m in range(M):
        for f in range(F):
            bf = b[f]
            for i in range(Ho):
                src = Y[f, m * S + i * L: m * S + i * L + Wo]
                dst = y[n0 + m, f, i]
                if relu:
                    for j in range(Wo):
                        v = src[j] + bf
                        dst[j] = 0 if v < 0 else v
                else:
                    for j in range(Wo):
                        dst[j] = src[j] + bf


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


@njit(cache=True)
def relu_images_to_rows(gy, relu_y, n0, L, GY):
    """images_to_rows of gy after a fused ReLU's backward: gy where relu_y > 0, else 0.
    A kernel of its own: with the mask as an option of images_to_rows, the copy
    measured 40% slower (the compiler no longer vectorises the masked loop)."""
    F, Ho, Wo = gy.shape[1], gy.shape[2], gy.shape[3]
    S = Ho * L
    M = GY.shape[1] // S
    for m in range(M):
        for f in range(F):
            for i in range(Ho):
                src, on = gy[n0 + m, f, i], relu_y[n0 + m, f, i]
                dst = GY[f, m * S + i * L: m * S + (i + 1) * L]
                for j in range(Wo):
                    dst[j] = src[j] if on[j] > 0 else 0
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
