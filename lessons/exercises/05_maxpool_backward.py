"""Exercise 05 - max-pool backward                                            (lesson 03)

Max pooling keeps the largest value of each k x k window:

    y[n, c, i, j] = max over (p, q) of x[n, c, i*s + p, j*s + q]      (no padding here)

Only the element that won the max influenced y, so the whole gradient gy[n, c, i, j]
goes back to that one element, and the others in the window get nothing from it:

    gx[n, c, i*s + p*, j*s + q*] += gy[n, c, i, j]     (p*, q*) = the position of the max

Two details decide whether you match PyTorch and minicnn exactly:
  - ties: when several elements equal the max, the FIRST one in row-major window order
    (smallest p, then smallest q) gets the gradient;
  - overlapping windows (stride < kernel): one element can win several windows, so
    its gradients add up (+=, not =).

Shapes:
    x (N, C, H, W), gy (N, C, Ho, Wo) with Ho = (H - k) // s + 1, Wo = (W - k) // s + 1
    -> gx (N, C, H, W)

Check your answer:   minicnn grade 05
"""
import numpy as np


def max_pool2d_backward(x, gy, kernel_size, stride):
    """x (N,C,H,W), gy (N,C,Ho,Wo); kernel_size, stride ints -> gx (N,C,H,W)"""
    gx = np.zeros_like(x)
    # TODO: for each output (n, c, i, j): find the first maximum of its window
    #       (np.argmax returns the first one), then add gy[n, c, i, j] to gx there.
    raise NotImplementedError("max_pool2d_backward")
