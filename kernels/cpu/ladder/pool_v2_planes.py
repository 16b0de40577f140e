"""max_pool2d, rung v2: one task per plane, the window clipped once.     lessons 03, 12

Why: v1 tests every tap against the image's edges and has only N tasks to share
among the cores (with a batch of 1, one core works). Flatten the batch to N*C
planes, one prange task each, and clip each window to the image once per
output (its rows hs..he and columns vs..ve), so the inner loops test nothing.
Indices are int32 (half the bytes of int64 to write, and to read back).
Code: pool.py's general kernels, max_pool_fwd and max_pool_bwd.
"""
import numpy as np

from .. import pool


def forward(x, kernel, stride, padding):
    """x (N,C,H,W) -> (y, idx) (N,C,Ho,Wo)."""
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
    Ho, Wo = pool.out_size(H, KH, sh, ph), pool.out_size(W, KW, sw, pw)
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    idx = np.empty((N, C, Ho, Wo), dtype=np.int32 if H * W < 2**31 else np.int64)
    pool.max_pool_fwd(x.reshape(N * C, H * W), H, W, KH, KW, sh, sw, ph, pw, Ho, Wo,
                      y.reshape(N * C, Ho * Wo), idx.reshape(N * C, Ho * Wo))
    return y, idx


# gy, idx (N,C,Ho,Wo) -> gx (N,C,H,W): one task per plane, each adding its gy onto
# the pixels that won (pool.py's max_pool_bwd)
backward = pool.max_pool2d_backward
