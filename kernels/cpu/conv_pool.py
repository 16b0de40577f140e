"""A 2x2 max-pool (stride 2, floor mode) fused onto a convolution's ReLU (numba).  lesson 12

maxpool2x2(relu(conv(x))) as one op: the full-size feature map is never written.
conv.py's products leave each chunk's output in its row layout Y (F, M*S), S = Ho*L
(conv.py: an output row is L long, the first Wo entries real). On the way out of
Y, instead of copying every output (rows_to_images), each 2x2 window is reduced:
    v          = Y[f, m*S + h*L + w] + b[f]     for (h, w) in the window of (i, j):
                                                 h = 2i + dh, w = 2j + dw, dh, dw in 0..1
    yp[n,f,i,j]  = max(max over the window of v, 0)
    idx[n,f,i,j] = h*Wo + w of the window's first maximum of v, row-major (a NaN wins)
so yp equals max_pool2d(relu(y), 2) of the unfused ops: max and ReLU commute, and
where the window's maximum is not positive yp is 0 and so is its gradient, whatever
idx says. Backward, the gradient of the conv output is gyp at idx where yp > 0, and
0 elsewhere (the ReLU's mask and the pool's scatter at once), written straight into
conv.py's GY rows (pooled_to_rows): the full-size gradient is never written either.
Index maps: one chunk of m images per call, on one thread (conv_chunks.py and
conv_taps.py run the shares); each window is read once, each GY entry written once
(windows do not overlap at stride 2).
"""
from numba import njit

from .pool import first_max  # the first-maximum rule of every max-pool here


@njit(cache=True)
def rows_to_pooled(Y, n0, Ho, L, Wo, b, yp, idx):
    """yp[n0+m], idx[n0+m] <- the 2x2 windows of Y + b (see the module docstring), for
    the M = Y.shape[1] // (Ho*L) images of the chunk.
    Y (F, M*Ho*L), b (F,); yp (N,F,Ho//2,Wo//2); idx like yp, int32."""
    F, Hq, Wq = yp.shape[1], yp.shape[2], yp.shape[3]
    S = Ho * L
    M = Y.shape[1] // S
    for m in range(M):
        for f in range(F):
            bf = b[f]
            for i in range(Hq):
                top = Y[f, m * S + 2 * i * L: m * S + 2 * i * L + 2 * Wq]
                bottom = Y[f, m * S + (2 * i + 1) * L: m * S + (2 * i + 1) * L + 2 * Wq]
                out, arg_out = yp[n0 + m, f, i], idx[n0 + m, f, i]
                a = 2 * i * Wo                      # index of the window row's first pixel
                for j in range(Wq):
                    best, arg = top[2 * j] + bf, a + 2 * j
                    best, arg = first_max(top[2 * j + 1] + bf, a + 2 * j + 1, best, arg)
                    best, arg = first_max(bottom[2 * j] + bf, a + Wo + 2 * j, best, arg)
                    best, arg = first_max(bottom[2 * j + 1] + bf, a + Wo + 2 * j + 1, best, arg)
                    out[j] = 0 if best < 0 else best
                    arg_out[j] = arg


@njit(cache=True)
def pooled_to_rows(gyp, yp, idx, n0, Ho, L, Wo, GY):
    """GY[f, m*S + h*L + w] = gyp[n0+m, f, i, j] at (h, w) = divmod(idx[n0+m, f, i, j], Wo)
    where yp > 0; 0 everywhere else in the chunk's GY (F, M*S), S = Ho*L.
    gyp, yp, idx (N,F,Ho//2,Wo//2)."""
    F, Hq, Wq = gyp.shape[1], gyp.shape[2], gyp.shape[3]
    S = Ho * L
    M = GY.shape[1] // S
    GY[:] = 0
    for m in range(M):
        for f in range(F):
            row = GY[f, m * S: (m + 1) * S]
            for i in range(Hq):
                g, on, at = gyp[n0 + m, f, i], yp[n0 + m, f, i], idx[n0 + m, f, i]
                for j in range(Wq):
                    if on[j] > 0:
                        h, w = divmod(at[j], Wo)
                        row[h * L + w] = g[j]
