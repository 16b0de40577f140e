"""conv2d, rung v5: tap by tap, no im2col at all (stride 1).               lesson 12

Why: v4 still copies every input pixel KH*KW times into col (and, backward,
adds KH*KW copies back in col2im): moving numbers, not arithmetic. In the
wide-row layout the input tap (p, q) sees is already a (C, Ho*Wp) matrix lying
in the padded image, C rows Hp*Wp apart, which BLAS can read in place. So run
one product per tap straight on the image and add them up:
    Y = sum over (p, q) of w[:, :, p, q] @ xp[:, p*Wp+q : p*Wp+q + Ho*Wp]
Each product has only C terms per output, yet BLAS runs them about as fast, and
the copies are gone. Taken from 2 input channels on (conv.py's _TAPS_MIN_C) when
the batch is shared out; otherwise v4. Code: conv_taps.py (upto="taps").
"""
from .. import conv

STEP = "taps"


def forward(x, w, b, stride, padding):
    return conv.conv2d_forward(x, w, b, stride, padding, upto=STEP)


def backward(x, w, gy, stride, padding):
    return conv.conv2d_backward(x, w, gy, stride, padding, upto=STEP)
