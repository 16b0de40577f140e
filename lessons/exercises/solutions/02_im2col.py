"""Exercise 02 - im2col: reference solution.                                (lesson 01)

    cols[n, (c*KH + p)*KW + q, i*Wo + j] = x[n, c, i*s + p - pad, j*s + q - pad]
    y[n] = (w.reshape(F, C*KH*KW) @ cols[n]).reshape(F, Ho, Wo) + b
"""
import numpy as np


def im2col(x, KH, KW, stride=1, padding=0):
    """x (N,C,H,W) -> cols (N, C*KH*KW, Ho*Wo)"""
    N, C, H, W = x.shape
    Ho = (H + 2 * padding - KH) // stride + 1
    Wo = (W + 2 * padding - KW) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = np.zeros((N, C, KH, KW, Ho, Wo), dtype=x.dtype)
    for p in range(KH):
        for q in range(KW):
            # tap (p, q) sees xp[i*s + p, j*s + q] for every output pixel (i, j)
            cols[:, :, p, q] = xp[:, :, p: p + stride * Ho: stride, q: q + stride * Wo: stride]
    return cols.reshape(N, C * KH * KW, Ho * Wo)


def conv2d_im2col(x, w, b=None, stride=1, padding=0):
    """x (N,C,H,W), w (F,C,KH,KW), b (F,) or None -> y (N,F,Ho,Wo)"""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Ho = (H + 2 * padding - KH) // stride + 1
    Wo = (W + 2 * padding - KW) // stride + 1
    cols = im2col(x, KH, KW, stride, padding)
    y = (w.reshape(F, -1) @ cols).reshape(N, F, Ho, Wo)    # (F, CKK) @ (N, CKK, HoWo)
    if b is not None:
        y = y + b[None, :, None, None]
    return y
