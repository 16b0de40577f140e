"""max_pool2d, rung v1: the formula as straight loops (numba).              lessons 03, 12

Window (KH, KW), stride (sh, sw), padding (ph, pw) (padding counts as -inf), taps (p, q):
    y[n,c,i,j]   = max over (p, q) of x[n,c, i*sh+p-ph, j*sw+q-pw]
    idx[n,c,i,j] = h*W + v of the first maximum, h = i*sh+p-ph, v = j*sw+q-pw
                   (taps in row-major order; a NaN wins, as in PyTorch)
    gx[n,c].flat[idx[n,c,i,j]] += gy[n,c,i,j]
Index map: prange over n; one output element y[n,c,i,j] per iteration (backward:
one gy element, added onto the pixel that won; a task writes only image n).
Cost: N*C*Ho*Wo*KH*KW reads, memory-bound: a comparison per number read.
"""
import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def forward(x, KH, KW, sh, sw, ph, pw, y, idx):
    """x (N,C,H,W) -> y (N,C,Ho,Wo), idx (N,C,Ho,Wo) flat indices into a plane; overwritten."""
    N, C, H, W = x.shape
    Ho, Wo = y.shape[2], y.shape[3]
    for n in prange(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    best, arg = -np.inf, -1
                    for p in range(KH):
                        h = i * sh + p - ph
                        for q in range(KW):
                            v = j * sw + q - pw
                            if 0 <= h < H and 0 <= v < W:
                                value = x[n, c, h, v]
                                if arg < 0 or value > best or value != value:
                                    best, arg = value, h * W + v
                    y[n, c, i, j] = best
                    idx[n, c, i, j] = arg


@njit(parallel=True, cache=True)
def backward(gy, idx, gx):
    """gy, idx (N,C,Ho,Wo) -> gx (N,C,H,W), overwritten."""
    N, C, H, W = gx.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    for n in prange(N):
        gx[n] = 0
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    k = idx[n, c, i, j]
                    gx[n, c, k // W, k % W] += gy[n, c, i, j]
