"""Exercise 02 - im2col: convolution as one matrix product                   (lesson 01)

Loops over every output pixel are slow. im2col copies every input patch that a kernel
sees into one column of a matrix; the convolution is then a single matrix product,
which numpy (and a GPU) computes fast.

    cols[n, r, i*Wo + j] = x[n, c, i*s + p - pad, j*s + q - pad]     (0 in the padding)
    with row r = (c*KH + p)*KW + q,   i.e. r runs over (c, p, q) in row-major order

Then, for each image n,

    y[n] = (w.reshape(F, C*KH*KW) @ cols[n]).reshape(F, Ho, Wo) + b[:, None, None]

Shapes:
    x (N, C, H, W), w (F, C, KH, KW), b (F,) or None
    cols (N, C*KH*KW, Ho*Wo)
    y (N, F, Ho, Wo),   Ho = (H + 2*pad - KH) // s + 1,  Wo = (W + 2*pad - KW) // s + 1

Check your answer:   minicnn grade 02
"""
import numpy as np


def im2col(x, KH, KW, stride=1, padding=0):
    """x (N,C,H,W) -> cols (N, C*KH*KW, Ho*Wo), laid out as in the module docstring."""
    N, C, H, W = x.shape
    # TODO: pad x with zeros (np.pad), then fill cols one kernel tap (c, p, q) at a time:
    #       row r = (c*KH + p)*KW + q holds the input pixel that tap sees, for every (i, j).
    raise NotImplementedError("im2col")


def conv2d_im2col(x, w, b=None, stride=1, padding=0):
    """x (N,C,H,W), w (F,C,KH,KW), b (F,) or None -> y (N,F,Ho,Wo), through im2col."""
    # TODO: cols = im2col(...); multiply by w.reshape(F, -1); reshape; add the bias.
    raise NotImplementedError("conv2d_im2col")
