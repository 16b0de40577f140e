"""Stride-1 convolution as one matrix product per kernel tap, without im2col.

In the wide-row layout (conv.py) the input a tap (p, q) sees for every output of
an image is one contiguous run of each padded plane: xp[c].flat[p*Wp + q + t].
So the run of all channels is a (C, S) view of xp, C rows Hp*Wp apart, which BLAS
reads in place; no col matrix is built. With w_pq = w[:, :, p, q] (F, C):
    forward:  Y (F, S)  = sum over taps of w_pq @ xp[:, p*Wp+q : p*Wp+q+S]
              y[n]      = Y (crop) + b, through max(., 0) for a fused ReLU
    backward: GY (F, S) <- gy[n] (0 past Wo, masked by a fused ReLU)
              gw_pq^T  += xp[:, p*Wp+q : ...] @ GY^T          (C, F)
              gb       += GY @ 1                              (F,)
              gxp[:, p*Wp+q : p*Wp+q+S] += w_pq^T @ GY        (the transpose: taps add
              back onto the pixels they read), then gx[n] <- gxp (crop)
Each product has only C terms per output (not C*KH*KW), yet measured here BLAS
runs these as fast as the single im2col product (100-110 GFLOP/s on one core)
and the im2col and col2im copies are gone. conv.py takes this path when C is
large enough (_TAPS_MIN_C). For gw with more than _GY_T_ABOVE_C channels, GY^T
is copied out once per image (S, F): BLAS measured 1.1-1.6x faster with it than
with the transposed view of GY, which wins with few channels (no copy).
Every product goes over the S columns in blocks of _S_BLOCK, so that a block of
Y (or GY) and of the runs stays in cache for the KH*KW products that use it:
at 64x64 (S = 4160) that took BLAS from 84 to 101 GFLOP/s.

Shares as in conv_chunks.py: share t takes images t, t+T, t+2T, ..., one at a
time, with its own buffers, and adds into its own gw/gb partial sums; each
buffer argument holds one row of workspace per share (workers.share_rows).
geo: a ConvGeometry (conv_chunks.py), from conv.py's _Plan
(sh = sw = 1, L = Wp).
"""
from numba import njit

from .blas import gemm
from .conv_chunks import matrix, padded
from .conv_pool import pooled_to_rows, rows_to_pooled
from .im2col import crop_chunk, images_to_rows, pad_chunk, relu_images_to_rows, rows_to_images


# columns per block of the products, and when to copy GY^T (see above)
_S_BLOCK = 1024
_GY_T_ABOVE_C = 16


@njit(inline="always")
def _transpose(a, out):
    """out[j, i] = a[i, j].  a (P, Q), out (Q, P)"""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[j, i] = a[i, j]


@njit(nogil=True, cache=True)
def forward_taps(t, x, w_taps, b, geo, relu, xps, Ys, y, idx):
    """Share t of y (N,F,Ho,Wo) from x (N,C,H,W), w_taps (KH*KW, F, C), b (F,); with a
    fused pool (idx has elements: conv_pool.py), y is yp (N,F,Ho//2,Wo//2), idx its indices.
    Workspace rows of share t: xps[t] (>= C*Hp*Wp), Ys[t] (>= F*S)."""
    KH, KW, ph, pw, Ho, Hp, L = geo.KH, geo.KW, geo.ph, geo.pw, geo.Ho, geo.Hp, geo.L
    N, S, T = x.shape[0], Ho * L, xps.shape[0]
    F, C = w_taps.shape[1], w_taps.shape[2]
    xp = padded(xps[t], 1, C, Hp, L)
    planes = xp.reshape(C, Hp * L)
    Y = matrix(Ys[t], F, S)
    for n in range(t, N, T):
        pad_chunk(x, n, ph, pw, xp, n == t)         # the padding stays zero after the first
        for s0 in range(0, S, _S_BLOCK):
            s1 = min(S, s0 + _S_BLOCK)
            for p in range(KH):
                for q in range(KW):
                    run = p * L + q
                    gemm(w_taps[p * KW + q], planes[:, run + s0:run + s1], Y[:, s0:s1],
                         0.0 if run == 0 else 1.0)
        if idx.size > 0:
            rows_to_pooled(Y, n, Ho, L, geo.Wo, b, y, idx)
        else:
            rows_to_images(Y, n, L, b, relu, y)


@njit(nogil=True, cache=True)
def backward_taps(t, x, wt_taps, gy, relu_y, pool_idx, geo, need_gw, xps, gxps, GYs, ones, gws, gbs,
                  gx):
    """Share t of: when need_gw, gws[t] += run @ GY^T as (KH*KW, C, F) and gbs[t] += GY @ 1
    as (F,) (both zeroed by the caller); gx (N,C,H,W) when it has elements.
    wt_taps (KH*KW, C, F): w_pq^T; relu_y: a fused ReLU's output, or empty; with a fused
    pool (pool_idx has elements), gy and relu_y are the pooled gradient and output;
    workspace rows of share t: xps[t], gxps[t] (>= C*Hp*Wp), GYs[t] (>= 2*F*S); ones (S, 1)."""
    KH, KW, ph, pw, Ho, Hp, L = geo.KH, geo.KW, geo.ph, geo.pw, geo.Ho, geo.Hp, geo.L
    N, S, T = x.shape[0], Ho * L, xps.shape[0]
    K, C, F = wt_taps.shape
    xp, gxp = padded(xps[t], 1, C, Hp, L), padded(gxps[t], 1, C, Hp, L)
    planes, gplanes = xp.reshape(C, Hp * L), gxp.reshape(C, Hp * L)
    g, gT = matrix(GYs[t], F, S), matrix(GYs[t][F * S:], S, F)
    gw, gb = matrix(gws[t], K * C, F), matrix(gbs[t], F, 1)
    for n in range(t, N, T):
        if pool_idx.size > 0:
            pooled_to_rows(gy, relu_y, pool_idx, n, Ho, L, geo.Wo, g)
        elif relu_y.size == 0:
            images_to_rows(gy, n, L, g)
        else:
            relu_images_to_rows(gy, relu_y, n, L, g)
        if need_gw:
            gemm(g, ones, gb, 1.0)
            pad_chunk(x, n, ph, pw, xp, n == t)
            gyt = g.T                               # (S, F): a view, or a copy
            if C > _GY_T_ABOVE_C:
                _transpose(g, gT)
                gyt = gT
            for s0 in range(0, S, _S_BLOCK):
                s1 = min(S, s0 + _S_BLOCK)
                for p in range(KH):
                    for q in range(KW):
                        run, tap = p * L + q, p * KW + q
                        gemm(planes[:, run + s0:run + s1], gyt[s0:s1], gw[tap * C:(tap + 1) * C],
                             1.0)
        if gx.size > 0:
            gplanes[:] = 0
            for s0 in range(0, S, _S_BLOCK):
                s1 = min(S, s0 + _S_BLOCK)
                for p in range(KH):
                    for q in range(KW):
                        run = p * L + q
                        gemm(wt_taps[p * KW + q], g[:, s0:s1], gplanes[:, run + s0:run + s1], 1.0)
            crop_chunk(gxp, n, ph, pw, gx)
