"""Adaptive average pooling on the CPU (numba).                                 lesson 03

The output size (Ho, Wo) is chosen, the windows follow from it (PyTorch's bins):
    rows of bin i:    hs_i = floor(i * H / Ho)  ..  he_i = ceil((i + 1) * H / Ho)  (exclusive)
    columns of bin j: ws_j = floor(j * W / Wo)  ..  we_j = ceil((j + 1) * W / Wo)
    y[n,c,i,j]  = sum of x[n,c, hs_i:he_i, ws_j:we_j] / ((he_i - hs_i) * (we_j - ws_j))
    gx[n,c,h,w] = sum over the bins (i, j) that contain (h, w) of gy[n,c,i,j] / bin size
When H is not a multiple of Ho, neighbouring bins overlap by a row (H = 5, Ho = 3:
rows 0-1, 1-3, 3-4), and a pixel shared by two bins gets both gradients.

Index map: one prange task per (n, c) plane, t = n*C + c; a task writes only its own
plane, so the overlapping bins add into gx without races. Sums in float64.
Cost: every input pixel is read about once per bin holding it; memory-bound.
"""
import numpy as np
from numba import njit, prange


@njit(inline="always")
def _bin(i, size, out):
    return (i * size) // out, ((i + 1) * size + out - 1) // out


@njit(cache=True, parallel=True)
def adaptive_avg_fwd(x, y):
    """x (P,H,W) planes -> y (P,Ho,Wo)."""
    P, H, W = x.shape
    Ho, Wo = y.shape[1], y.shape[2]
    for t in prange(P):
        for i in range(Ho):
            hs, he = _bin(i, H, Ho)
            for j in range(Wo):
                ws, we = _bin(j, W, Wo)
                s = 0.0
                for h in range(hs, he):
                    for w in range(ws, we):
                        s += x[t, h, w]
                y[t, i, j] = s / ((he - hs) * (we - ws))


@njit(cache=True, parallel=True)
def adaptive_avg_bwd(gy, gx):
    """gy (P,Ho,Wo) -> gx (P,H,W), which it zeroes first."""
    P, H, W = gx.shape
    Ho, Wo = gy.shape[1], gy.shape[2]
    for t in prange(P):
        for h in range(H):
            for w in range(W):
                gx[t, h, w] = 0
        for i in range(Ho):
            hs, he = _bin(i, H, Ho)
            for j in range(Wo):
                ws, we = _bin(j, W, Wo)
                share = gy[t, i, j] / ((he - hs) * (we - ws))
                for h in range(hs, he):
                    for w in range(ws, we):
                        gx[t, h, w] += share


def adaptive_avg_pool2d_forward(x, out_hw):
    """x (N,C,H,W), out_hw (Ho, Wo) -> y (N,C,Ho,Wo)."""
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    y = np.empty((N, C, *out_hw), dtype=x.dtype)
    adaptive_avg_fwd(x.reshape(N * C, H, W), y.reshape(N * C, *out_hw))
    return y


def adaptive_avg_pool2d_backward(gy, x_shape):
    """gy (N,C,Ho,Wo) -> gx x_shape (N,C,H,W)."""
    gy = np.ascontiguousarray(gy)
    N, C, H, W = x_shape
    gx = np.empty(x_shape, dtype=gy.dtype)
    adaptive_avg_bwd(gy.reshape(N * C, *gy.shape[2:]), gx.reshape(N * C, H, W))
    return gx
