"""Exercise 01 - conv2d forward, by loops                                   (lesson 01)

Write the convolution of lesson 01 with plain Python loops. For every output element

    y[n, f, i, j] = b[f] + sum_c sum_p sum_q  x[n, c, i*s + p - pad, j*s + q - pad] * w[f, c, p, q]

where s is the stride, pad the padding, and a tap that lands outside the input (in the
zero padding) adds nothing. This is cross-correlation, as in PyTorch: the kernel is
NOT flipped.

Shapes:
    x (N, C, H, W)      input images
    w (F, C, KH, KW)    F filters, each C x KH x KW
    b (F,) or None      one bias per filter
    y (N, F, Ho, Wo)    Ho = (H + 2*pad - KH) // s + 1,  Wo = (W + 2*pad - KW) // s + 1

Check your answer:   minicnn grade 01
"""
import numpy as np


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """x (N,C,H,W), w (F,C,KH,KW), b (F,) or None; stride, padding ints -> y (N,F,Ho,Wo)"""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    # TODO: compute Ho and Wo, make y = np.zeros((N, F, Ho, Wo)), then loop over
    #       n, f, i, j and sum over c, p, q; skip taps that fall in the padding.
    raise NotImplementedError("conv2d_forward")
