"""3x3 convolution, stride 1, computed directly from its formula (numba).  lesson 01

With the input already zero-padded (xp = x with ph rows and pw columns of zeros
around it), a 3x3 convolution of stride 1 is a stencil over three input rows:
    y[n,f,i,j] = b[f] + sum_c sum_{p,q in 0..2} w[f,c,p,q] * xp[n,c,i+p,j+q]
and the weight gradient sums the same products against gy, the bias gradient
(gb[f] = sum of gy[n,f,i,j]) coming along in the same pass:
    gw[f,c,p,q] = sum_n sum_i sum_j gy[n,f,i,j] * xp[n,c,i+p,j+q]
(the input gradient is left to conv.py). With a fused ReLU, gy is first zeroed
where the ReLU's output is not positive, as it is read.

Fused with the 2x2 max-pool that follows the first layer (stride 2, floor mode),
with z = conv + b and Ho2, Wo2 = Ho // 2, Wo // 2:
    yp[n,f,a,e]  = max(0, max over the window of z[n,f,2a+u,2e+v], u, v in 0..1)
    idx[n,f,a,e] = (2a+u)*Wo + (2e+v) of the window's first maximum of z in
                   row-major order (ties to the first, a NaN wins: pool.py's rule);
                   relu(max z) = max(relu z), so the max is taken before the ReLU
    weight gradient: gz = gyp at idx where yp > 0, else 0 (the pool's and the
                   ReLU's backward), then gw and gb as above with gz for gy,
                   summed over the windows only (gz is 0 off them)
The full-size z is never written. The forward pass first cuts each padded image
into its four phases (even/odd rows by even/odd columns, Wq = Wp/2 wide): the four
taps of every pool window are then plain runs over the phases, a flat run per
block of window rows, and every product computed is one a window uses. The weight
gradient reads the same runs, weighted by gyp at the tap idx names.

When to use it: im2col + matrix product (conv.py) copies C*9 numbers per output
pixel into a buffer before BLAS multiplies them. With a single input channel
(the first layer on grayscale X-rays) that is 9 multiply-adds per copied
number, so the copy costs as much as the arithmetic and BLAS runs far below its
peak. Here the nine products are written out. With more channels BLAS wins
again (conv.py decides: _DIRECT_MAX_C); every C stays correct here.

Flat runs. A row of 28 outputs is less than two 16-lane vectors, so a loop per
row spends its time starting and ending. Instead a block of rows is computed as
one flat run over the padded plane, Wp = Wo + 2 wide:
    out[t] = b + sum of w[p,q] * xp.flat[t0 + t + p*Wp + q],  t = r*Wp + j
one loop of (rows-1)*Wp + Wo steps; the outputs at j >= Wo (two per row) read
across the row's end and are thrown away (the weight gradient gives them gz = 0).
A block is _BLOCK numbers or fewer, so the run, its input rows and gz stay in L1.
Rows of _IN_PLACE_WO or more vectorise on their own: the forward pass then runs
one row at a time straight into y (the copy out of a run cost 25-45% at 128-224 px).

Index map (one share per core, workers.run_shares, each on a thread of its own:
measured at 28 px, 64 images, a prange over the shares was 20% faster on numba's
OpenMP layer but twice as slow on its "workqueue" layer, the one used when PyTorch
is loaded; shares behave the same under both): the work is cut into units (n, g),
image n and a group g of filters (g = 0 only, all F filters, unless the batch has
fewer images than there are shares); share s takes a contiguous range of units and
writes only the outputs of its units, so each image's input is read once for all
of its filters. The weight gradient of unit (n, g) goes into its own float64 slots
part[n, f] (a block's sums are taken in the arrays' precision in vector lanes,
then added there), and part is summed over n in a fixed order: the result does
not depend on the number of shares.
Cost: 9*C multiply-adds per output, compute-bound; the pool adds 3 compares per
output and writes a quarter of it.
"""
import numba
import numpy as np
from numba import njit

from .pool import first_max
from .workers import run_shares

# numbers per flat run: 8 KiB of float32, with its input rows well inside a
# core's 48 KiB L1 cache (a 28x28 image is one run of 838)
_BLOCK = 2048
# rows at least this wide vectorise on their own: the forward pass then runs row
# by row straight into y, without the detour through a run and a copy
_IN_PLACE_WO = 64


# ----------------------------------------------------------------------------- shares of the work

def _plan(N, F):
    """(shares, G): how many shares to run and how many filter groups per image."""
    S = max(1, numba.get_num_threads())
    G = 1 if N >= S else min(F, -(-S // max(N, 1)))
    return max(1, min(S, N * G)), G


@njit(inline="always")
def _units(s, S, U):
    """The units of share s of S: a contiguous range of 0 .. U-1."""
    return s * U // S, (s + 1) * U // S


@njit(inline="always")
def _filters(g, G, F):
    return g * F // G, (g + 1) * F // G


@njit(inline="always")
def _rows_per_block(Ho, Wp):
    """Rows per flat run: as many as fit in _BLOCK numbers."""
    return min(max(1, _BLOCK // Wp), max(Ho, 1))


# ----------------------------------------------------------------------------- forward

@njit(inline="always")
def _run(xf, w, b, n, f, t0, L, Wp, out):
    """out[t] = b[f] + sum_c sum_{p,q} w[f,c,p,q] * xf[n,c,t0 + t + p*Wp + q], t < L;
    xf (N, C, Hp*Wp): the padded planes, flat."""
    C = xf.shape[1]
    for c in range(C):
        # one view per kernel row: the indices are then t, t+1, t+2, which the
        # compiler knows are not negative (t + Wp would cost a check per load)
        x = xf[n, c]
        r0, r1, r2 = x[t0:], x[t0 + Wp:], x[t0 + 2 * Wp:]
        k = w[f, c]
        k00, k01, k02 = k[0, 0], k[0, 1], k[0, 2]
        k10, k11, k12 = k[1, 0], k[1, 1], k[1, 2]
        k20, k21, k22 = k[2, 0], k[2, 1], k[2, 2]
        if c == 0:
            bf = b[f]
            for t in range(L):
                out[t] = (bf + k00 * r0[t] + k01 * r0[t + 1] + k02 * r0[t + 2]
                          + k10 * r1[t] + k11 * r1[t + 1] + k12 * r1[t + 2]
                          + k20 * r2[t] + k21 * r2[t + 1] + k22 * r2[t + 2])
        else:
            for t in range(L):
                out[t] += (k00 * r0[t] + k01 * r0[t + 1] + k02 * r0[t + 2]
                           + k10 * r1[t] + k11 * r1[t + 1] + k12 * r1[t + 2]
                           + k20 * r2[t] + k21 * r2[t + 1] + k22 * r2[t + 2])


@njit(nogil=True, cache=True, fastmath={"contract"})
def _forward_share(s, S, G, xp, w, b, relu, y):
    """Share s of S of y (N,F,Ho,Wo) = conv(xp, w) + b (through max(., 0) when relu)."""
    N, F, Ho, Wo = y.shape
    Wp = Wo + 2
    xf = xp.reshape((N, xp.shape[1], xp.shape[2] * Wp))  # once: a reshape per run costs
    in_place = Wo >= _IN_PLACE_WO
    R = _rows_per_block(Ho, Wp)
    run = np.empty(R * Wp, dtype=y.dtype)
    zero = np.zeros(1, dtype=y.dtype)[0]
    u0, u1 = _units(s, S, N * G)
    for u in range(u0, u1):
        n, g = u // G, u % G
        f0, f1 = _filters(g, G, F)
        for f in range(f0, f1):                     # plane by plane: y is written in order
            if in_place:                            # a run per row, straight into y
                for i in range(Ho):
                    out = y[n, f, i]
                    _run(xf, w, b, n, f, i * Wp, Wo, Wp, out)
                    if relu:
                        for j in range(Wo):
                            v = out[j]
                            out[j] = zero if v < 0 else v   # NaN stays NaN
                continue
            for i0 in range(0, Ho, R):
                rows = min(R, Ho - i0)
                L = (rows - 1) * Wp + Wo
                _run(xf, w, b, n, f, i0 * Wp, L, Wp, run)
                for r in range(rows):               # (loops: numba's out[:] = src is 8x slower)
                    src, out = run[r * Wp:], y[n, f, i0 + r]
                    if relu:
                        for j in range(Wo):
                            v = src[j]
                            out[j] = zero if v < 0 else v
                    else:
                        for j in range(Wo):
                            out[j] = src[j]


@njit(cache=True)
def _split_phases(xp, n, Wq, q):
    """q[c, 2a + e, r*Wq + v] = xp[n, c, 2r + a, 2v + e]: image n's padded planes cut into
    their four phases (even/odd row a, even/odd column e); places past the plane are
    never written (0)."""
    C, Hp, Wp = xp.shape[1], xp.shape[2], xp.shape[3]
    for c in range(C):
        for i in range(Hp):
            row = xp[n, c, i]
            ev, od = q[c, 2 * (i % 2), (i // 2) * Wq:], q[c, 2 * (i % 2) + 1, (i // 2) * Wq:]
            for v in range(Wp // 2):
                ev[v] = row[2 * v]
                od[v] = row[2 * v + 1]
            if Wp % 2:
                ev[Wp // 2] = row[Wp - 1]


@njit(inline="always")
def _four(V, K, u):
    """The four taps' sums of window u (no bias): V the 16 runs (see _window_runs), K the
    nine weights of one channel."""
    ee00, ee01, ee10, ee11, eo00, eo01, eo10, eo11 = V[0], V[1], V[2], V[3], V[4], V[5], V[6], V[7]
    oe00, oe01, oe10, oe11, oo00, oo01, oo10, oo11 = V[8], V[9], V[10], V[11], V[12], V[13], V[14], V[15]
    k00, k01, k02, k10, k11, k12, k20, k21, k22 = K
    s00 = (k00 * ee00[u] + k01 * eo00[u] + k02 * ee01[u]
           + k10 * oe00[u] + k11 * oo00[u] + k12 * oe01[u]
           + k20 * ee10[u] + k21 * eo10[u] + k22 * ee11[u])
    s01 = (k00 * eo00[u] + k01 * ee01[u] + k02 * eo01[u]
           + k10 * oo00[u] + k11 * oe01[u] + k12 * oo01[u]
           + k20 * eo10[u] + k21 * ee11[u] + k22 * eo11[u])
    s10 = (k00 * oe00[u] + k01 * oo00[u] + k02 * oe01[u]
           + k10 * ee10[u] + k11 * eo10[u] + k12 * ee11[u]
           + k20 * oe10[u] + k21 * oo10[u] + k22 * oe11[u])
    s11 = (k00 * oo00[u] + k01 * oe01[u] + k02 * oo01[u]
           + k10 * eo10[u] + k11 * ee11[u] + k12 * eo11[u]
           + k20 * oo10[u] + k21 * oe11[u] + k22 * oo11[u])
    return s00, s01, s10, s11


@njit(inline="always")
def _window_max(s00, s01, s10, s11, Wo):
    """(first max, its tap 0, 1, Wo or Wo + 1) of a window's taps in row-major order."""
    best, arg = s00, np.int32(0)
    best, arg = first_max(s01, np.int32(1), best, arg)
    best, arg = first_max(s10, np.int32(Wo), best, arg)
    return first_max(s11, np.int32(Wo + 1), best, arg)


@njit(cache=True, fastmath={"contract"})
def _window_runs(q, w, b, f, u0, L, Wq, Wo, z4, mb, mc):
    """mb[u], mc[u] = the first max of conv + b over pool window (r, v) and its tap (0, 1,
    Wo or Wo + 1), for the flat window index u0 + u = r*Wq + v, u < L (z4: the four
    taps' sums while channels remain).

    Tap (p, s) of output (2r + dh, 2v + dw) reads row 2r + dh + p, column 2v + dw + s:
    phase ((dh+p) % 2, (dw+s) % 2) at offset ((dh+p) // 2)*Wq + (dw+s) // 2 of the
    window's index. So the 36 products of a window read 16 plain runs of the phases,
    named <row phase><column phase><row offset><column offset> (e even, o odd). Each
    loop has no branch, so that it vectorises."""
    C = q.shape[0]
    bf = b[f]
    z00, z01, z10, z11 = z4[0], z4[1], z4[2], z4[3]
    for c in range(C):
        k = w[f, c]
        K = (k[0, 0], k[0, 1], k[0, 2], k[1, 0], k[1, 1], k[1, 2], k[2, 0], k[2, 1], k[2, 2])
        ee, eo, oe, oo = q[c, 0], q[c, 1], q[c, 2], q[c, 3]
        a, d, e = u0 + 1, u0 + Wq, u0 + Wq + 1
        V = (ee[u0:], ee[a:], ee[d:], ee[e:], eo[u0:], eo[a:], eo[d:], eo[e:],
             oe[u0:], oe[a:], oe[d:], oe[e:], oo[u0:], oo[a:], oo[d:], oo[e:])
        if C == 1:
            for u in range(L):
                s00, s01, s10, s11 = _four(V, K, u)
                mb[u], mc[u] = _window_max(bf + s00, bf + s01, bf + s10, bf + s11, Wo)
        elif c == 0:
            for u in range(L):
                s00, s01, s10, s11 = _four(V, K, u)
                z00[u], z01[u], z10[u], z11[u] = bf + s00, bf + s01, bf + s10, bf + s11
        elif c < C - 1:
            for u in range(L):
                s00, s01, s10, s11 = _four(V, K, u)
                z00[u] += s00
                z01[u] += s01
                z10[u] += s10
                z11[u] += s11
        else:
            for u in range(L):
                s00, s01, s10, s11 = _four(V, K, u)
                mb[u], mc[u] = _window_max(z00[u] + s00, z01[u] + s01, z10[u] + s10,
                                           z11[u] + s11, Wo)


@njit(cache=True)
def _pool_rows(L, Wq, r0, Wo, mb, mc, out, arg_out):
    """out[r0 + r, v], arg_out[r0 + r, v] = relu of the first max of window (r0 + r, v) and
    its flat index in the (Ho, Wo) plane, from mb and mc (the block's maxima and their
    taps, u = r*Wq + v, as _window_runs leaves them: the max is taken there, in the
    long flat loop that vectorises; a loop per row of Wo/2 = 14 ran scalar)."""
    zero = np.float32(0)
    for r in range((L + Wq - 1) // Wq):
        m, t = mb[r * Wq:], mc[r * Wq:]
        a = 2 * (r0 + r) * Wo                        # flat index of the window row's start
        o, ao = out[r0 + r], arg_out[r0 + r]
        for v in range(o.shape[0]):
            best = m[v]
            o[v] = zero if best < 0 else best        # NaN stays NaN
            ao[v] = a + 2 * v + t[v]


@njit(inline="always")
def _phase_plan(xp, Ho2):
    """What a fused share works with: (Wo, Wq, R window rows per block, q the buffer for
    one image's four phases (C, 4, (Hp//2 + 1) * Wq), zeroed)."""
    C, Hp, Wp = xp.shape[1], xp.shape[2], xp.shape[3]
    Wo, Wq = Wp - 2, (Wp + 1) // 2
    R = max(1, min(Ho2, _BLOCK // (4 * Wq)))
    return Wo, Wq, R, np.zeros((C, 4, (Hp // 2 + 1) * Wq), dtype=xp.dtype)


@njit(nogil=True, cache=True)
def _pool_forward_share(s, S, G, xp, w, b, yp, idx):
    """Share s of S of yp (N,F,Ho2,Wo2) = maxpool2x2(relu(conv + b)) and its idx.

    Each image is first cut into its four phases (even/odd rows and columns, Wq =
    Wp/2 wide): then the four taps of every window, for all windows of a block of
    window rows, are plain runs over the phases (_window_runs), which vectorise, and
    no conv output is computed that no window uses."""
    N, F, Ho2, Wo2 = yp.shape
    Wo, Wq, R, q = _phase_plan(xp, Ho2)
    z4 = np.empty((4, R * Wq), dtype=yp.dtype)
    mb, mc = np.empty(R * Wq, dtype=yp.dtype), np.empty(R * Wq, dtype=np.int32)
    u0, u1 = _units(s, S, N * G)
    last = -1
    for u in range(u0, u1):
        n, g = u // G, u % G
        f0, f1 = _filters(g, G, F)
        if n != last:
            _split_phases(xp, n, Wq, q)
            last = n
        for r0 in range(0, Ho2, R):
            L = (min(R, Ho2 - r0) - 1) * Wq + Wo2
            for f in range(f0, f1):
                _window_runs(q, w, b, f, r0 * Wq, L, Wq, Wo, z4, mb, mc)
                _pool_rows(L, Wq, r0, Wo, mb, mc, yp[n, f], idx[n, f])


# ----------------------------------------------------------------------------- weight gradient

@njit(inline="always")
def _add_sums(p, c, s00, s01, s02, s10, s11, s12, s20, s21, s22, sb):
    """p[3*p + q] += s_pq, the nine taps' sums of one channel (and p[9] += sb, the bias's,
    once: with channel 0): the float64 totals of a block's vector-lane sums."""
    p[0] += s00
    p[1] += s01
    p[2] += s02
    p[3] += s10
    p[4] += s11
    p[5] += s12
    p[6] += s20
    p[7] += s21
    p[8] += s22
    if c == 0:
        p[9] += sb


@njit(nogil=True, cache=True, fastmath={"contract", "reassoc"})
def _sums(g, x, L, Wp, c, part):
    """part[c, 3*p + q] += sum_t g[t] * x[t + p*Wp + q] for t < L (and part[c, 9] += sum g
    when c == 0). The block's sums run in vector lanes ("reassoc") in the arrays'
    precision; only their totals go to the float64 part."""
    r0, r1, r2 = x, x[Wp:], x[2 * Wp:]
    s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = sb = np.float32(0)  # float64 for float64 arrays
    for t in range(L):
        gt = g[t]
        s00 += gt * r0[t]
        s01 += gt * r0[t + 1]
        s02 += gt * r0[t + 2]
        s10 += gt * r1[t]
        s11 += gt * r1[t + 1]
        s12 += gt * r1[t + 2]
        s20 += gt * r2[t]
        s21 += gt * r2[t + 1]
        s22 += gt * r2[t + 2]
        sb += gt
    _add_sums(part[c], c, s00, s01, s02, s10, s11, s12, s20, s21, s22, sb)


@njit(inline="always")
def _block_sums(xf, n, i0, L, Wp, gz, part):
    """_sums of the run gz (rows i0 ..) against every channel of image n (xf: flat planes)."""
    for c in range(xf.shape[1]):
        _sums(gz, xf[n, c, i0 * Wp:], L, Wp, c, part)


@njit(cache=True)
def _rows_in(gy, relu_y, n, f, i0, rows, Wp, gz):
    """gz[r*Wp + j] = gy[n, f, i0 + r, j] (0 where relu_y <= 0, when relu_y has elements).
    Both arrays are read unconditionally and then selected, so the loop vectorises."""
    Wo = gy.shape[3]
    zero = np.float32(0)
    if relu_y.size > 0:
        for r in range(rows):
            src, on, out = gy[n, f, i0 + r], relu_y[n, f, i0 + r], gz[r * Wp:]
            for j in range(Wo):
                v, m = src[j], on[j]
                out[j] = v if m > 0 else zero
    else:
        for r in range(rows):
            src, out = gy[n, f, i0 + r], gz[r * Wp:]
            for j in range(Wo):
                out[j] = src[j]


@njit(nogil=True, cache=True)
def _weight_share(s, S, G, xp, gy, relu_y, part):
    """Share s of S: part[n, f] (C, 10) += the sums of image n (gy masked where relu_y <= 0
    when relu_y has elements)."""
    N, F, Ho, Wo = gy.shape
    Wp = Wo + 2
    xf = xp.reshape((N, xp.shape[1], xp.shape[2] * Wp))
    R = _rows_per_block(Ho, Wp)
    gz = np.zeros(R * Wp, dtype=gy.dtype)           # columns j >= Wo stay 0
    u0, u1 = _units(s, S, N * G)
    for u in range(u0, u1):
        n, g = u // G, u % G
        f0, f1 = _filters(g, G, F)
        for i0 in range(0, Ho, R):
            rows = min(R, Ho - i0)
            L = (rows - 1) * Wp + Wo
            for f in range(f0, f1):
                _rows_in(gy, relu_y, n, f, i0, rows, Wp, gz)
                _block_sums(xf, n, i0, L, Wp, gz, part[n, f])


@njit(cache=True)
def _window_grads(gyp, yp, idx, n, f, r0, rows, Wq, Wo, gm, kc):
    """gm[r*Wq + v] = gyp[n, f, r0 + r, v] where yp > 0 there, else 0, and kc[r*Wq + v] the
    window's tap that idx names (0, 1, Wo or Wo + 1): the block's gz, by window. Columns
    v >= Wo//2 are never written (gm 0)."""
    zero = np.float32(0)
    for r in range(rows):
        gp, on, arg = gyp[n, f, r0 + r], yp[n, f, r0 + r], idx[n, f, r0 + r]
        g_out, k_out = gm[r * Wq:], kc[r * Wq:]
        a = np.int32(2 * (r0 + r) * Wo)
        for v in range(gp.shape[0]):
            g, m = gp[v], on[v]
            k = arg[v] - (a + np.int32(2 * v))
            g_out[v] = g if m > 0 else zero
            k_out[v] = k


@njit(cache=True, fastmath={"contract", "reassoc"})
def _window_sums(gm, kc, q, u0, L, Wq, Wo, part):
    """part[c, 3*p + s] += sum over the block's windows u < L of gm[u] * xp[c, 2r + dh + p,
    2v + dw + s] (u0 + u = r*Wq + v), (dh, dw) the tap kc[u] names, read from the phases q
    as in _window_runs; part[0, 9] += sum gm. Returns how many kc name no tap (an idx
    outside its window: its gradient is dropped). In vector lanes ("reassoc"; no stores in
    the loop, so it vectorises), in the arrays' precision; only the totals go to the
    float64 part."""
    zero, one = np.float32(0), np.float32(1)
    k1, k2 = np.int32(Wo), np.int32(Wo + 1)
    wrong = 0
    for c in range(q.shape[0]):
        ee, eo, oe, oo = q[c, 0], q[c, 1], q[c, 2], q[c, 3]
        a, d, e = u0 + 1, u0 + Wq, u0 + Wq + 1
        ee00, ee01, ee10, ee11 = ee[u0:], ee[a:], ee[d:], ee[e:]
        eo00, eo01, eo10, eo11 = eo[u0:], eo[a:], eo[d:], eo[e:]
        oe00, oe01, oe10, oe11 = oe[u0:], oe[a:], oe[d:], oe[e:]
        oo00, oo01, oo10, oo11 = oo[u0:], oo[a:], oo[d:], oo[e:]
        s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = sb = np.float32(0)  # float64 for float64
        bad = np.float32(0)                         # (a float count: it vectorises)
        for u in range(L):
            g, k = gm[u], kc[u]
            bad += zero if (k == np.int32(0)) | (k == np.int32(1)) | (k == k1) | (k == k2) else one
            w00 = g if k == np.int32(0) else zero
            w01 = g if k == np.int32(1) else zero
            w10 = g if k == k1 else zero
            w11 = g if k == k2 else zero
            s00 += w00 * ee00[u] + w01 * eo00[u] + w10 * oe00[u] + w11 * oo00[u]
            s01 += w00 * eo00[u] + w01 * ee01[u] + w10 * oo00[u] + w11 * oe01[u]
            s02 += w00 * ee01[u] + w01 * eo01[u] + w10 * oe01[u] + w11 * oo01[u]
            s10 += w00 * oe00[u] + w01 * oo00[u] + w10 * ee10[u] + w11 * eo10[u]
            s11 += w00 * oo00[u] + w01 * oe01[u] + w10 * eo10[u] + w11 * ee11[u]
            s12 += w00 * oe01[u] + w01 * oo01[u] + w10 * ee11[u] + w11 * eo11[u]
            s20 += w00 * ee10[u] + w01 * eo10[u] + w10 * oe10[u] + w11 * oo10[u]
            s21 += w00 * eo10[u] + w01 * ee11[u] + w10 * oo10[u] + w11 * oe11[u]
            s22 += w00 * ee11[u] + w01 * eo11[u] + w10 * oe11[u] + w11 * oo11[u]
            sb += g
        _add_sums(part[c], c, s00, s01, s02, s10, s11, s12, s20, s21, s22, sb)
        if c == 0:
            wrong = int(bad)
    return wrong


@njit(nogil=True, cache=True)
def _pool_weight_share(s, S, G, xp, gyp, yp, idx, part, bad):
    """Share s of S: part[n, f] += the sums of image n against gz, gyp put back (where
    yp > 0) at the tap idx names in each window; bad[s] counts idx outside their window.
    The image in phases, as the forward pass: only the windows' runs are summed."""
    N, F, Ho2, Wo2 = gyp.shape
    Wo, Wq, R, q = _phase_plan(xp, Ho2)
    gm, kc = np.zeros(R * Wq, dtype=gyp.dtype), np.zeros(R * Wq, dtype=np.int32)
    u0, u1 = _units(s, S, N * G)
    last = -1
    for u in range(u0, u1):
        n, g = u // G, u % G
        f0, f1 = _filters(g, G, F)
        if n != last:
            _split_phases(xp, n, Wq, q)
            last = n
        for r0 in range(0, Ho2, R):
            rows = min(R, Ho2 - r0)
            L = (rows - 1) * Wq + Wo2
            for f in range(f0, f1):
                _window_grads(gyp, yp, idx, n, f, r0, rows, Wq, Wo, gm, kc)
                bad[s] += _window_sums(gm, kc, q, r0 * Wq, L, Wq, Wo, part[n, f])


# ----------------------------------------------------------------------------- the calls

def _check(name, xp, w, out, out_name, pooled):
    """Shapes and dtypes of a call, with an error that names what is wrong."""
    if xp.ndim != 4:
        raise ValueError(f"{name}: xp must be (N,C,Ho+2,Wo+2), got shape {xp.shape}")
    N, C, Hp, Wp = xp.shape
    if Hp < 3 or Wp < 3:
        raise ValueError(f"{name}: padded input {Hp}x{Wp} is smaller than the 3x3 kernel")
    F = w.shape[0] if w.ndim == 4 else -1
    if w.shape != (F, C, 3, 3):
        raise ValueError(f"{name}: w must be (F, {C}, 3, 3) for xp {xp.shape}, got {w.shape}")
    Ho, Wo = Hp - 2, Wp - 2
    want = (N, F, Ho // 2, Wo // 2) if pooled else (N, F, Ho, Wo)
    if out.shape != want:
        raise ValueError(f"{name}: {out_name} must be {want} for xp {xp.shape} and w "
                         f"{w.shape}, got {out.shape}")
    for a, a_name in ((w, "w"), (out, out_name)):
        if a.dtype != xp.dtype:
            raise ValueError(f"{name}: {a_name} is {a.dtype}, xp is {xp.dtype}: pass one dtype")
    for a, a_name in ((xp, "xp"), (w, "w"), (out, out_name)):
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}: {a_name} must be C-contiguous (np.ascontiguousarray)")
    return N, F


def _like(name, a, a_name, shape, dtype):
    if a.shape != tuple(shape) or a.dtype != dtype or not a.flags.c_contiguous:
        raise ValueError(f"{name}: {a_name} must be a C-contiguous {np.dtype(dtype)} array of "
                         f"shape {tuple(shape)}, got {a.dtype} {a.shape}")


def _gradients(part, gw, gb):
    """gw (F,C,3,3), gb (F,) <- part (N,F,C,10) summed over n, n = 0, 1, ... in turn."""
    total = np.zeros(part.shape[1:])
    for n in range(part.shape[0]):
        total += part[n]
    gw[...] = total[:, :, :9].reshape(gw.shape)
    gb[...] = total[:, 0, 9]


def conv3x3_forward(xp, w, b, relu, y):
    """xp (N,C,Ho+2,Wo+2) padded input, w (F,C,3,3), b (F,) -> y (N,F,Ho,Wo) overwritten;
    relu=True then takes max(y, 0) (the fused ReLU; NaN stays NaN)."""
    N, F = _check("conv3x3_forward", xp, w, y, "y", False)
    _like("conv3x3_forward", b, "b", (F,), xp.dtype)
    S, G = _plan(N, F)
    run_shares(_forward_share, S, S, G, xp, w, b, bool(relu), y)


def conv3x3_weight(xp, gy, relu_y, gw, gb):
    """xp (N,C,Ho+2,Wo+2) padded input, gy (N,F,Ho,Wo) -> gw (F,C,3,3) and the bias
    gradient gb (F,) = sum of gy over n, i, j, both overwritten, in one pass over gy.

    relu_y (N,F,Ho,Wo), the output of the fused ReLU, or an empty array: gy is then
    taken where relu_y > 0, else 0 (the ReLU's backward), as it is read.
    """
    C = xp.shape[1] if xp.ndim == 4 else -1
    N, F = _check("conv3x3_weight", xp, np.empty((gy.shape[1] if gy.ndim == 4 else 0, C, 3, 3),
                                                  xp.dtype), gy, "gy", False)
    if relu_y.size > 0:
        _like("conv3x3_weight", relu_y, "relu_y", gy.shape, xp.dtype)
    _like("conv3x3_weight", gw, "gw", (F, C, 3, 3), xp.dtype)
    _like("conv3x3_weight", gb, "gb", (F,), xp.dtype)
    part = np.zeros((N, F, C, 10))
    S, G = _plan(N, F)
    run_shares(_weight_share, S, S, G, xp, gy, relu_y, part)
    _gradients(part, gw, gb)


def conv3x3_relu_pool_forward(xp, w, b, yp, idx):
    """xp (N,C,Ho+2,Wo+2) padded input, w (F,C,3,3), b (F,) -> yp (N,F,Ho//2,Wo//2) =
    maxpool2x2(relu(conv + b)) and idx (same shape, int32) = the flat index h*Wo + w in
    the (Ho, Wo) conv plane of each window's first maximum, both overwritten."""
    name = "conv3x3_relu_pool_forward"
    N, F = _check(name, xp, w, yp, "yp", True)
    _like(name, b, "b", (F,), xp.dtype)
    _like(name, idx, "idx", yp.shape, np.int32)
    S, G = _plan(N, F)
    run_shares(_pool_forward_share, S, S, G, xp, w, b, yp, idx)


def conv3x3_relu_pool_weight(xp, gyp, yp, idx, gw, gb):
    """xp (N,C,Ho+2,Wo+2) padded input, gyp (N,F,Ho//2,Wo//2) the gradient of yp, and
    yp, idx from conv3x3_relu_pool_forward -> gw (F,C,3,3), gb (F,), overwritten: the
    conv's gradients with gyp at the positions idx where yp > 0, and 0 elsewhere."""
    name = "conv3x3_relu_pool_weight"
    C = xp.shape[1] if xp.ndim == 4 else -1
    F = gyp.shape[1] if gyp.ndim == 4 else 0
    N, F = _check(name, xp, np.empty((F, C, 3, 3), xp.dtype), gyp, "gyp", True)
    _like(name, yp, "yp", gyp.shape, xp.dtype)
    _like(name, idx, "idx", gyp.shape, np.int32)
    _like(name, gw, "gw", (F, C, 3, 3), xp.dtype)
    _like(name, gb, "gb", (F,), xp.dtype)
    part = np.zeros((N, F, C, 10))
    S, G = _plan(N, F)
    bad = np.zeros(S, dtype=np.int64)
    run_shares(_pool_weight_share, S, S, G, xp, gyp, yp, idx, part, bad)
    if bad.sum():
        raise ValueError(f"{name}: {int(bad.sum())} entries of idx lie outside their 2x2 "
                         "window: pass the idx conv3x3_relu_pool_forward returned")
    _gradients(part, gw, gb)
