"""Exercise 05 - max-pool backward: reference solution.                      (lesson 03)

    gx[n, c, i*s + p*, j*s + q*] += gy[n, c, i, j],  (p*, q*) the first maximum of the window
"""
import numpy as np


def max_pool2d_backward(x, gy, kernel_size, stride):
    """x (N,C,H,W), gy (N,C,Ho,Wo); kernel_size, stride ints -> gx (N,C,H,W)"""
    k, s = kernel_size, stride
    N, C, Ho, Wo = gy.shape
    gx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    window = x[n, c, i * s: i * s + k, j * s: j * s + k]
                    first = np.argmax(window)            # row-major: ties go to the first
                    p, q = divmod(int(first), k)
                    gx[n, c, i * s + p, j * s + q] += gy[n, c, i, j]
    return gx
