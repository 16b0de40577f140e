"""conv.py's chunk loop, cut into shares: one share per core, whole chunks each.

With T shares, share t takes chunks t, t+T, t+2T, ... and runs each through its
own buffers (xp, col, Y or GY), calling BLAS on one thread (blas.py):
    forward:   col <- images (im2col)       Y = W @ col       y <- Y + b (crop, ReLU)
    backward:  GY <- gy (masked by a fused ReLU)
               col <- images                gWb^T[t] += [col ; 1] @ GY^T
               gcol = W^T @ GY              gx <- gcol (col2im)
A row of ones under col (the bias's constant input) makes BLAS compute the bias
gradient as well: its row of gWb^T is sum over the columns of GY = gb.
(Stride-1 convolutions of more than a few channels skip im2col: conv_taps.py.)
Each share adds into its own gWb^T[t]; conv.py sums the T partial results.
workers.py runs the T shares at once, each on a thread of its own (nogil=True:
a share runs without Python's global lock).
geo: a ConvGeometry (below), made by conv.py's _Plan.geo().

Each buffer argument holds a row of workspace per share (workers.share_rows).
A share's col, Y and GY are viewed as a matrix m*S wide for a chunk of m images:
a view that is contiguous, which numba knows and turns into fast copies (a
column slice of a wider matrix would compile to loops 3x slower).
"""
from collections import namedtuple

from numba import njit

from .blas import gemm
from .conv_pool import pooled_to_rows, rows_to_pooled
from .im2col import (col2im, col2im_wide, crop_chunk, im2col, im2col_wide, images_to_rows,
                     pad_chunk, relu_images_to_rows, rows_to_images)

# The sizes the chunk and tap kernels work with, by name (numba reads a namedtuple's
# fields as constants-in-a-struct, as fast as loose ints):
#   KH, KW kernel; sh, sw stride; ph, pw padding; Ho, Wo output; Hp padded rows per
#   plane (+1 spare); L length of an output row in col (Wp on the wide path, else Wo);
#   M images per chunk; wide 1 when stride 1 (im2col_wide on padded planes), else 0
ConvGeometry = namedtuple("ConvGeometry", "KH KW sh sw ph pw Ho Wo Hp L M wide")


@njit(cache=True)
def fill_col(x, n0, geo, xp, col):
    """col[:R, :m*S] <- images n0 .. n0+m-1 of x (m = col's columns / S).
    xp: the share's workspace row for the padded images (wide rows only)."""
    m = col.shape[1] // (geo.Ho * geo.L)
    if geo.wide:
        xpm = padded(xp, m, x.shape[1], geo.Hp, geo.L)
        pad_chunk(x, n0, geo.ph, geo.pw, xpm)
        im2col_wide(xpm, geo.KH, geo.KW, geo.Ho * geo.L, col)
    else:
        im2col(x, n0, geo.KH, geo.KW, geo.sh, geo.sw, geo.ph, geo.pw, geo.Ho, geo.Wo, col)


@njit(inline="always")
def _chunk(k, M, N):
    """(first image, number of images) of chunk k."""
    return k * M, min(M, N - k * M)


@njit(inline="always")
def matrix(buf, rows, cols):
    """The first rows*cols numbers of the flat buffer buf as a (rows, cols) matrix."""
    return buf[:rows * cols].reshape(rows, cols)


@njit(inline="always")
def padded(buf, m, C, Hp, Wp):
    """The start of the flat buffer buf as m padded images (m, C, Hp, Wp)."""
    return buf[:m * C * Hp * Wp].reshape(m, C, Hp, Wp)


@njit(nogil=True, cache=True)
def forward_share(t, x, w2, b, geo, relu, xps, cols, Ys, y, idx):
    """Share t of y (N,F,Ho,Wo) from x (N,C,H,W), w2 = W (F, R) and b (F,); with a fused
    pool (idx has elements: conv_pool.py), y is yp (N,F,Ho//2,Wo//2) and idx its indices.
    Workspace rows of share t: xps[t] (>= M*C*Hp*Wp), cols[t] (>= R*M*S), Ys[t] (>= F*M*S)."""
    Ho, L, M = geo.Ho, geo.L, geo.M
    N, S, T = x.shape[0], Ho * L, cols.shape[0]
    F, R = w2.shape
    for k in range(t, (N + M - 1) // M, T):
        n0, m = _chunk(k, M, N)
        col, Y = matrix(cols[t], R, m * S), matrix(Ys[t], F, m * S)
        fill_col(x, n0, geo, xps[t], col)
        gemm(w2, col, Y, 0.0)
        if idx.size > 0:
            rows_to_pooled(Y, n0, Ho, L, geo.Wo, b, y, idx)
        else:
            rows_to_images(Y, n0, L, b, relu, y)


@njit(nogil=True, cache=True)
def backward_share(t, x, wt, gy, relu_y, pool_idx, geo, need_gw, xps, cols, GYs, gwbt, gx):
    """Share t of: when need_gw, gwbt[t] += [col ; 1] @ GY^T as (R+1, F) (zeroed by the
    caller); gx (N,C,H,W) = col2im(W^T @ GY) when gx has elements.
    wt = W^T (R, F); relu_y: a fused ReLU's output, or empty; with a fused pool
    (pool_idx has elements), gy and relu_y are the pooled gradient and output; workspace rows as
    forward_share's (cols[t] >= (R+1)*M*S)."""
    KH, KW, sh, sw, ph, pw = geo.KH, geo.KW, geo.sh, geo.sw, geo.ph, geo.pw
    Ho, Wo, Hp, L, M = geo.Ho, geo.Wo, geo.Hp, geo.L, geo.M
    N, S, T = x.shape[0], Ho * L, cols.shape[0]
    R, F = wt.shape
    C = x.shape[1]
    gwb = matrix(gwbt[t], R + 1, F)
    for k in range(t, (N + M - 1) // M, T):
        n0, m = _chunk(k, M, N)
        col, g = matrix(cols[t], R + 1, m * S), matrix(GYs[t], F, m * S)
        if pool_idx.size > 0:
            pooled_to_rows(gy, relu_y, pool_idx, n0, Ho, L, Wo, g)
        elif relu_y.size == 0:
            images_to_rows(gy, n0, L, g)
        else:
            relu_images_to_rows(gy, relu_y, n0, L, g)
        if need_gw:
            fill_col(x, n0, geo, xps[t], col[:R])
            col[R] = 1
            gemm(col, g.T, gwb, 1.0)
        if gx.size > 0:
            gcol = col[:R]                          # col is free again
            gemm(wt, g, gcol, 0.0)
            if geo.wide:
                gxp = padded(xps[t], m, C, Hp, L)
                col2im_wide(gcol, KH, KW, S, gxp)
                crop_chunk(gxp, n0, ph, pw, gx)
            else:
                col2im(gcol, n0, KH, KW, sh, sw, ph, pw, Ho, Wo, gx)
