"""Exercise 01 - conv2d forward, by loops: reference solution.            (lesson 01)

    y[n, f, i, j] = b[f] + sum_c sum_p sum_q  x[n, c, i*s + p - pad, j*s + q - pad] * w[f, c, p, q]

x (N, C, H, W), w (F, C, KH, KW), b (F,) or None -> y (N, F, Ho, Wo),
Ho = (H + 2*pad - KH) // s + 1, Wo likewise.
"""
import numpy as np


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """x (N,C,H,W), w (F,C,KH,KW), b (F,) or None; stride, padding ints -> y (N,F,Ho,Wo)"""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Ho = (H + 2 * padding - KH) // stride + 1
    Wo = (W + 2 * padding - KW) // stride + 1
    y = np.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    total = 0.0 if b is None else b[f]
                    for c in range(C):
                        for p in range(KH):
                            for q in range(KW):
                                h = i * stride + p - padding
                                v = j * stride + q - padding
                                if 0 <= h < H and 0 <= v < W:   # taps in the padding add 0
                                    total += x[n, c, h, v] * w[f, c, p, q]
                    y[n, f, i, j] = total
    return y
