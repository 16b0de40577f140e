"""Exercise 03 - conv2d backward                                          (lessons 01, 04)

Given gy = dL/dy, the gradient of the loss with respect to the output of
conv2d_forward (exercise 01), find the gradients with respect to its inputs.
Every output element y[n, f, i, j] was a sum of products x[n, c, h, v] * w[f, c, p, q]
with h = i*s + p - pad and v = j*s + q - pad, so each product sends gradient back
to both of its factors:

    gw[f, c, p, q] += gy[n, f, i, j] * x[n, c, h, v]
    gx[n, c, h, v] += gy[n, f, i, j] * w[f, c, p, q]      (only for taps inside the input)
    gb[f]          += gy[n, f, i, j]

summed over every (n, f, i, j, c, p, q). Loops are fine; so is im2col (exercise 02):
lesson 04's last section, "The backward pass of a convolution", derives both forms,
gw = GY @ col.T and gx = col2im(W.T @ GY).

Shapes:
    x (N, C, H, W), w (F, C, KH, KW), gy (N, F, Ho, Wo)
    -> gx (N, C, H, W), gw (F, C, KH, KW), gb (F,)

Check your answer:   minicnn grade 03
"""
import numpy as np


def conv2d_backward(x, w, gy, stride=1, padding=0):
    """x (N,C,H,W), w (F,C,KH,KW), gy (N,F,Ho,Wo) -> (gx, gw, gb)"""
    gx = np.zeros_like(x)
    gw = np.zeros_like(w)
    gb = np.zeros(w.shape[0], dtype=w.dtype)
    # TODO: loop over the output elements as in exercise 01, and for each tap inside
    #       the input add the two products above into gx and gw; sum gy into gb.
    raise NotImplementedError("conv2d_backward")
