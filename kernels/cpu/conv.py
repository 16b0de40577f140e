"""2-D convolution on the CPU, the fast path: im2col + BLAS (numba).   lessons 01, 12

First reading: the same sums as plain loops are ladder/conv_v1_loops.py (lesson 01).
This file is the top of the kernel ladder (kernels/cpu/ladder, lesson 12), which
climbs to it one step at a time; `upto` stops a call at any step (STEPS), and
plan_name(x_shape, w_shape, stride, padding) says which path a shape takes.

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
    Y  (F, M*S) = W (F, R) @ col (R, M*S), and y = Y + b on the way out
    [gW | gb] (F, R+1) = GY (F, M*S) @ [col ; 1 ... 1]^T      summed over the chunks
                  (the bias is the weight of an extra input that is always 1)
    gcol (R, M*S) = W^T @ GY, then col2im, the transpose of im2col: it adds each
                  column entry back onto the pixel im2col copied it from
GY is gy laid out like Y. Two layouts of an output row:
  * general (any stride): L = Wo, S = Ho*Wo, im2col copies pixel by pixel.
  * wide rows (stride 1, the common case): first copy the images into a zero-padded
    buffer xp, pw zeros left of each row. A row's right padding is the next row's
    left padding (the flat index runs on into it), so xp is only Wp = W + pw wide
    (wider only when a padding larger than the kernel makes Wo > W + pw, or a
    kernel wider than W + pw + 1 needs room for its last run: _Plan).
    Then compute each output row Wp wide instead of Wo wide (L = Wp, S = Ho*Wp):
    the Wp-Wo extra outputs per row are thrown away (their gradient is 0). In
    exchange row r of col is ONE contiguous run of xp:
        col[r, m*S + t] = xp[m, c].flat[p*Wp + q + t],   t = 0 .. Ho*Wp - 1
    so im2col is KH*KW memory copies per channel instead of a gather.

Two paths skip im2col. A stride-1 convolution of _TAPS_MIN_C channels or more
runs one product per kernel tap straight on the padded image (conv_taps.py),
when its batch is shared out (below).
A 3x3 stride-1 convolution of a single input channel (the first layer) computes
its forward pass and weight gradient directly (conv_direct.py), which is faster
when a product has only 9 terms per output.
Cost: the products do F*C*KH*KW*Ho*Wo multiply-adds per image (compute-bound; BLAS
runs them near the machine's peak); the copies move C*KH*KW*Ho*Wo numbers per image.
The batch goes through in chunks of images whose col buffer is at most
_CHUNK_BYTES, small enough to stay in a core's cache between the copy and the
product. The chunks are dealt out in shares, one per core (as many as numba's
thread count), and each share runs on a thread of its own (workers.py) through
whole chunks, calling BLAS on one thread (conv_chunks.py): the copies then run on
every core, and the cores never wait for each other within a call. There is
nothing to share out with one image, one numba thread, a dtype other than
float32 and float64, or where numpy's BLAS cannot be called from numba
(blas.AVAILABLE is False): then the chunks go through numpy's matmul one after
another (im2col for every convolution but the direct one).
"""
import numba
import numpy as np

from . import blas
from ..reference import out_size
from .activation import relu_backward
from .conv_chunks import ConvGeometry, backward_share, fill_col, forward_share, matrix, padded
from .conv_direct import (conv3x3_forward, conv3x3_relu_pool_forward, conv3x3_relu_pool_weight,
                          conv3x3_weight)
from .conv_pool import pooled_to_rows, rows_to_pooled
from .conv_taps import backward_taps, forward_taps
from .im2col import (bias_grad, col2im, col2im_wide, crop_chunk, images_to_rows, pad_chunk,
                     relu_images_to_rows, rows_to_images)
from .pool import max_pool2d_backward
from .workers import run_shares, share_rows

# bytes of col buffer per chunk (see above); a core here has 1 MiB of L2 cache
_CHUNK_BYTES = 1 << 20
# up to this many input channels, a 3x3 stride-1 convolution's forward pass and
# weight gradient are computed directly (conv_direct.py): measured here, direct
# wins by 2x or more with one channel and loses with three
_DIRECT_MAX_C = 1
# from this many input channels on, a stride-1 convolution runs tap by tap
# (conv_taps.py): measured here from 2 to 16 channels, the forward pass as fast as
# im2col's or faster, the backward pass 1.3-1.6x faster (no im2col, no col2im);
# with one channel (a 5x5 kernel) a product of one term made the forward 2x slower
_TAPS_MIN_C = 2


def _share_count():
    """How many shares a convolution is cut into: numba's thread count (the user's
    NUMBA_NUM_THREADS or numba.set_num_threads), one per core by default."""
    return numba.get_num_threads()


# ----------------------------------------------------------------------------- the table's functions

# The steps that made this path fast, in the order lesson 12 takes them (the
# kernel ladder, kernels/cpu/ladder: rungs v3 to v6 are "shares" to "direct").
# `upto` caps a call at one of them, for study: every step below it still runs,
# none above.
#   in_turn  im2col chunks that fit in cache, one after another (numpy's matmul;
#            also the path with nothing to share out)
#   shares   the chunks dealt out, one share per core, BLAS called from numba
#   wide     stride 1: wide rows, im2col as one contiguous copy per tap and channel
#   taps     stride 1, _TAPS_MIN_C channels or more: one product per tap, no im2col
#   direct   3x3, stride 1, _DIRECT_MAX_C channel: the stencil written out (the engine)
STEPS = ("in_turn", "shares", "wide", "taps", "direct")


def _step(upto):
    if upto not in STEPS:
        raise ValueError(f"conv2d: upto must be one of {', '.join(STEPS)}, got {upto!r}")
    return STEPS.index(upto)


class _Plan:
    """Sizes of one convolution and of its chunks; `wide` selects the wide-row layout,
    `threads` the number of shares run at once (1: numpy's matmul, chunk by chunk);
    `upto` the last of STEPS it may take."""

    def __init__(self, x, w, stride, padding, upto="direct"):
        self.N, self.C, self.H, self.W = x.shape
        self.F, _, self.KH, self.KW = w.shape
        (self.sh, self.sw), (self.ph, self.pw) = stride, padding
        self.step = _step(upto)
        self.Ho = out_size(self.H, self.KH, self.sh, self.ph)
        self.Wo = out_size(self.W, self.KW, self.sw, self.pw)
        self.R = self.C * self.KH * self.KW
        self.wide = self.sh == 1 and self.sw == 1 and self.step >= STEPS.index("wide")
        # wide rows: padded images, one spare row so the last tap's run stays inside;
        # at least Wo wide (to hold an output row) and KW-1 (so the last run fits)
        self.Hp = self.H + 2 * self.ph + 1
        self.Wp = max(self.W + self.pw, self.Wo, self.KW - 1)
        self.L = self.Wp if self.wide else self.Wo      # length of an output row in col
        self.S = self.Ho * self.L                       # columns of col per image
        threaded = blas.AVAILABLE and x.dtype in (np.float32, np.float64) \
            and self.step >= STEPS.index("shares")
        self.threads = max(1, min(_share_count(), self.N)) if threaded else 1
        per_image = (self.R + 1) * self.S * x.itemsize
        M = max(1, min(-(-self.N // self.threads), _CHUNK_BYTES // max(1, per_image)))
        # as many chunks for each thread: round their number up to a multiple of threads
        n_chunks = max(1, -(-self.N // M))
        n_chunks = -(-n_chunks // self.threads) * self.threads
        self.M = max(1, -(-self.N // n_chunks))

    def chunks(self):
        for n0 in range(0, self.N, self.M):
            yield n0, min(self.M, self.N - n0)

    def geo(self):
        """The sizes conv_chunks.py's and conv_taps.py's kernels take."""
        return ConvGeometry(KH=self.KH, KW=self.KW, sh=self.sh, sw=self.sw, ph=self.ph,
                            pw=self.pw, Ho=self.Ho, Wo=self.Wo, Hp=self.Hp, L=self.L, M=self.M,
                            wide=int(self.wide))

    def taps(self):
        """True when conv_taps.py computes it: stride 1, at least _TAPS_MIN_C input
        channels, and shares to run."""
        return self.wide and self.C >= _TAPS_MIN_C and self.threads > 1 \
            and self.step >= STEPS.index("taps")

    def direct(self):
        """True when conv_direct.py's 3x3 kernels compute the forward pass and gw."""
        return (self.KH, self.KW, self.sh, self.sw) == (3, 3, 1, 1) and self.C <= _DIRECT_MAX_C \
            and self.step >= STEPS.index("direct")

    def name(self):
        """The path this plan takes, in words (what plan_name reports)."""
        if self.direct():
            return "direct 3x3 stencil (conv_direct.py)"
        if self.taps():
            return f"tap by tap, {self.threads} shares (conv_taps.py)"
        rows = "wide rows" if self.wide else "gathered rows"
        if self.threads > 1:
            return f"im2col + BLAS, {rows}, {self.threads} shares (conv_chunks.py)"
        return f"im2col + BLAS, {rows}, chunks in turn (numpy matmul)"

    def padded_batch(self, x):
        """x (N,C,H,W) with its zero padding: (N, C, H+2*ph, W+2*pw)."""
        xp = np.empty((self.N, self.C, self.H + 2 * self.ph, self.W + 2 * self.pw), x.dtype)
        pad_chunk(x, 0, self.ph, self.pw, xp)
        return xp

    def buffers(self, rows, out_rows, dtype):
        """Workspace rows, one per share (workers.share_rows): xp (padded images,
        M*C*Hp*Wp; wide rows only), col (rows*M*S) and Y (out_rows*M*S)."""
        T, MS = self.threads, self.M * self.S
        xp = self.M * self.C * self.Hp * self.Wp if self.wide else 0
        return (share_rows(T, xp, dtype), share_rows(T, rows * MS, dtype),
                share_rows(T, out_rows * MS, dtype))


def plan_name(x_shape, w_shape, stride, padding, dtype=np.float32, upto="direct"):
    """Which path conv2d_forward takes for these shapes, in words, e.g.
    "tap by tap, 2 shares (conv_taps.py)" (it depends on numba's thread count).
    x_shape (N,C,H,W), w_shape (F,C,KH,KW); stride, padding (pairs)."""
    x = np.empty(0, dtype=dtype)
    return _Plan(_Shaped(x_shape, x), _Shaped(w_shape, x), stride, padding, upto).name()


class _Shaped:
    """A stand-in array for _Plan: a shape, a dtype, an itemsize, no numbers."""

    def __init__(self, shape, like):
        self.shape, self.dtype, self.itemsize = tuple(shape), like.dtype, like.itemsize


def conv2d_forward(x, w, b, stride, padding, relu=False, upto="direct", pool=False):
    """x (N,C,H,W), w (F,C,KH,KW), b (F,) or None -> y (N,F,Ho,Wo); relu=True also
    takes max(y, 0) on the way out (a ReLU fused in: no pass of its own).
    pool=True (with relu=True): -> (yp, idx), yp (N,F,Ho//2,Wo//2) = the 2x2 stride-2
    max-pool of the ReLU's output and idx (int32, like yp) each window's flat index
    h*Wo + w in its (Ho, Wo) plane (conv_pool.py); the full-size y is never written.
    upto: the last of STEPS the call may take (for study; the default is every one)."""
    x = np.ascontiguousarray(x)
    pl = _Plan(x, w, stride, padding, upto)
    if pool and not relu:
        raise ValueError("conv2d_forward: pool=True fuses a max-pool after the ReLU; "
                         "it needs relu=True")
    F, C, K, S, T = pl.F, pl.C, pl.KH * pl.KW, pl.S, pl.threads
    if pool:
        y = np.empty((pl.N, F, pl.Ho // 2, pl.Wo // 2), dtype=x.dtype)
        idx = np.empty(y.shape, dtype=np.int32)
    else:
        y = np.empty((pl.N, F, pl.Ho, pl.Wo), dtype=x.dtype)
        idx = np.empty((0, 0, 0, 0), dtype=np.int32)       # the kernels' "no pool"
    bias = np.zeros(F, dtype=x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    if pl.direct():
        wc = np.ascontiguousarray(w, dtype=x.dtype)
        if not pool:
            conv3x3_forward(pl.padded_batch(x), wc, bias, relu, y)
            return y
        conv3x3_relu_pool_forward(pl.padded_batch(x), wc, bias, y, idx)
        return y, idx
    if pl.taps():
        w_taps = np.ascontiguousarray(w.transpose(2, 3, 0, 1), dtype=x.dtype).reshape(K, F, C)
        xp, Y = share_rows(T, C * pl.Hp * pl.Wp, x.dtype), share_rows(T, F * S, x.dtype)
        with blas.single_threaded_blas():
            run_shares(forward_taps, T, x, w_taps, bias, pl.geo(), relu, xp, Y, y, idx)
        return (y, idx) if pool else y
    w2 = np.ascontiguousarray(w.reshape(F, pl.R), dtype=x.dtype)
    xp, col, Y = pl.buffers(pl.R, F, x.dtype)
    if T > 1:
        with blas.single_threaded_blas():
            run_shares(forward_share, T, x, w2, bias, pl.geo(), relu, xp, col, Y, y, idx)
        return (y, idx) if pool else y
    geo = pl.geo()
    for n0, m in pl.chunks():
        c, out = matrix(col[0], pl.R, m * S), matrix(Y[0], F, m * S)
        fill_col(x, n0, geo, xp[0], c)
        np.matmul(w2, c, out=out)
        if pool:
            rows_to_pooled(out, n0, pl.Ho, pl.L, pl.Wo, bias, y, idx)
        else:
            rows_to_images(out, n0, pl.L, bias, relu, y)
    return (y, idx) if pool else y


def _unpool(gyp, yp, idx, full_shape):
    """The conv output's gradient (N,F,Ho,Wo) from the pooled one: gyp at idx where
    yp > 0, else 0 (the pool's scatter after the ReLU's mask)."""
    return max_pool2d_backward(np.where(yp > 0, gyp, 0).astype(gyp.dtype), idx, full_shape)


def conv2d_backward(x, w, gy, stride, padding, needs=(True, True, True), relu_y=None,
                    upto="direct", pool_idx=None):
    """x (N,C,H,W), w (F,C,KH,KW), gy (N,F,Ho,Wo) -> (gx (N,C,H,W), gw (F,C,KH,KW), gb (F,)),
    each None where needs (input, weight, bias) says False; upto as conv2d_forward's.

    relu_y: the output of a relu=True forward, or None. The ReLU's backward (gy where
    relu_y > 0, else 0) is then applied as gy is read: by the direct kernel, or in
    the copy of gy into GY.
    pool_idx: the idx of a pool=True forward, or None; gy and relu_y are then the
    pooled gradient and output (N,F,Ho//2,Wo//2), and the conv output's gradient is
    gy at pool_idx where relu_y > 0, else 0 (conv_pool.py), written into GY directly.
    """
    x = np.ascontiguousarray(x)
    w = np.ascontiguousarray(w, dtype=x.dtype)
    gy = np.ascontiguousarray(gy, dtype=x.dtype)
    # the kernels take an empty relu_y for "no ReLU", an empty pool_idx for "no pool"
    relu_y = np.empty((0, 0, 0, 0), dtype=x.dtype) if relu_y is None else \
        np.ascontiguousarray(relu_y, dtype=x.dtype)
    pool_idx = np.empty((0, 0, 0, 0), dtype=np.int32) if pool_idx is None else \
        np.ascontiguousarray(pool_idx, dtype=np.int32)
    pl = _Plan(x, w, stride, padding, upto)
    F = pl.F
    gb = gw = None
    if pool_idx.size > 0 and pl.direct():
        if needs[1]:                                # gw and gb from the pooled gradient
            gw, gb = np.empty(w.shape, dtype=x.dtype), np.empty(F, dtype=x.dtype)
            conv3x3_relu_pool_weight(pl.padded_batch(x), gy, relu_y, pool_idx, gw, gb)
            gb = gb if needs[2] else None
            needs = (needs[0], False, False)
        if needs[0]:                                # gx by the paths below, from full size
            gy = _unpool(gy, relu_y, pool_idx, (pl.N, F, pl.Ho, pl.Wo))
            relu_y, pool_idx = relu_y[:0], pool_idx[:0]
    if needs[1] and pl.direct():                     # gw and gb in one pass over gy
        gw, gb = np.empty(w.shape, dtype=x.dtype), np.empty(F, dtype=x.dtype)
        conv3x3_weight(pl.padded_batch(x), gy, relu_y, gw, gb)
        gb = gb if needs[2] else None
        needs = (needs[0], False, False)            # the rest only for gx, if asked
    if needs[2] and not needs[1]:                    # gb alone: a sum over gy
        gb = np.empty(F, dtype=x.dtype)
        bias_grad(gy if relu_y.size == 0 else relu_backward(gy, relu_y), gb)
        needs = (needs[0], False, False)
    if not (needs[0] or needs[1]):
        return None, gw, gb
    gx = np.empty(x.shape, dtype=x.dtype) if needs[0] else np.empty((0, 0, 0, 0), x.dtype)
    backward = _backward_taps if pl.taps() else _backward_im2col
    gw_gb = backward(pl, x, w, gy, relu_y, pool_idx, needs[1], gx)
    if needs[1]:
        gw, gb = gw_gb[0], (gw_gb[1] if needs[2] else None)
    return (gx if needs[0] else None), gw, gb


def _backward_taps(pl, x, w, gy, relu_y, pool_idx, need_gw, gx):
    """conv_taps.py's backward: (gw, gb), both None unless need_gw; gx filled if it
    has elements."""
    T, K, F, C, dt = pl.threads, pl.KH * pl.KW, pl.F, pl.C, x.dtype
    wt_taps = np.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(K, C, F)
    gws, gbs = share_rows(T, K * C * F, dt, zero=True), share_rows(T, F, dt, zero=True)
    planes = C * pl.Hp * pl.Wp
    with blas.single_threaded_blas():
        run_shares(backward_taps, T, x, wt_taps, gy, relu_y, pool_idx, pl.geo(), need_gw,
                   share_rows(T, planes, dt), share_rows(T, planes, dt),
                   share_rows(T, 2 * F * pl.S, dt), np.ones((pl.S, 1), dtype=dt), gws, gbs, gx)
    if not need_gw:
        return None, None
    gw = gws[:, :K * C * F].sum(axis=0).reshape(pl.KH, pl.KW, C, F).transpose(3, 2, 0, 1)
    return np.ascontiguousarray(gw), gbs[:, :F].sum(axis=0)


def _backward_im2col(pl, x, w, gy, relu_y, pool_idx, need_gw, gx):
    """conv_chunks.py's backward, or the same chunks one after another through numpy's
    matmul: (gw, gb), both None unless need_gw; gx filled if it has elements."""
    F, R = pl.F, pl.R
    # gW and gb: [gW | gb]^T = [col ; 1] @ GY^T, the bias as the weight of an input 1
    wt = np.ascontiguousarray(w.reshape(F, R).T)    # W^T (R, F)
    gwbt = share_rows(pl.threads, (R + 1) * F, x.dtype, zero=True)
    xp, col, GY = pl.buffers(R + 1, F, x.dtype)
    if pl.threads > 1:
        with blas.single_threaded_blas():
            run_shares(backward_share, pl.threads, x, wt, gy, relu_y, pool_idx, pl.geo(), need_gw, xp,
                       col, GY, gwbt, gx)
    else:
        _backward_in_turn(pl, x, wt, gy, relu_y, pool_idx, need_gw, xp[0], col[0], GY[0],
                          matrix(gwbt[0], R + 1, F), gx)
    if not need_gw:
        return None, None
    gwb = gwbt[:, :(R + 1) * F].sum(axis=0).reshape(R + 1, F).T     # (F, R+1)
    return np.ascontiguousarray(gwb[:, :R]).reshape(w.shape), np.ascontiguousarray(gwb[:, R])


def _backward_in_turn(pl, x, wt, gy, relu_y, pool_idx, need_gw, xp, col, GY, gwbt, gx):
    """backward_share's loop, one chunk after another, the products by numpy's matmul."""
    R, S, F, geo = pl.R, pl.S, pl.F, pl.geo()
    for n0, m in pl.chunks():
        c, g = matrix(col, R + 1, m * S), matrix(GY, F, m * S)
        if pool_idx.size > 0:
            pooled_to_rows(gy, relu_y, pool_idx, n0, pl.Ho, pl.L, pl.Wo, g)
        elif relu_y.size == 0:
            images_to_rows(gy, n0, pl.L, g)
        else:
            relu_images_to_rows(gy, relu_y, n0, pl.L, g)
        if need_gw:
            fill_col(x, n0, geo, xp, c[:R])
            c[R] = 1
            gwbt += c @ g.T
        if gx.size > 0:
            gcol = c[:R]                            # the col buffer is free again
            np.matmul(wt, g, out=gcol)
            if pl.wide:
                gxp = padded(xp, m, pl.C, pl.Hp, pl.Wp)
                col2im_wide(gcol, pl.KH, pl.KW, S, gxp)
                crop_chunk(gxp, n0, pl.ph, pl.pw, gx)
            else:
                col2im(gcol, n0, pl.KH, pl.KW, pl.sh, pl.sw, pl.ph, pl.pw, pl.Ho, pl.Wo, gx)
