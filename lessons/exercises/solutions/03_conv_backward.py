"""Exercise 03 - conv2d backward: reference solution.                     (lessons 01, 04)

    gw[f, c, p, q] += gy[n, f, i, j] * x[n, c, h, v]
    gx[n, c, h, v] += gy[n, f, i, j] * w[f, c, p, q]      h = i*s + p - pad, v = j*s + q - pad
    gb[f]          += gy[n, f, i, j]
"""
import numpy as np


def conv2d_backward(x, w, gy, stride=1, padding=0):
    """x (N,C,H,W), w (F,C,KH,KW), gy (N,F,Ho,Wo) -> (gx, gw, gb)"""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    _, _, Ho, Wo = gy.shape
    gx = np.zeros_like(x)
    gw = np.zeros_like(w)
    gb = gy.sum(axis=(0, 2, 3))
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    g = gy[n, f, i, j]
                    for p in range(KH):
                        for q in range(KW):
                            h = i * stride + p - padding
                            v = j * stride + q - padding
                            if 0 <= h < H and 0 <= v < W:
                                gw[f, :, p, q] += g * x[n, :, h, v]   # all channels c at once
                                gx[n, :, h, v] += g * w[f, :, p, q]
    return gx, gw, gb
