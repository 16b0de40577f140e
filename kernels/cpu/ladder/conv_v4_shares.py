"""conv2d, rung v4: the chunks shared out over the cores.                    lesson 12

Why: in v3 numpy's matmul spreads each product over all cores, but the copies
around it (im2col, the copy out) run on one core while the others wait, and the
cores meet at every product. Deal the chunks out instead, one share per core
(workers.py), and let each core run whole chunks by itself, copies included,
with BLAS called from inside the numba kernel on one thread (blas.py), on data
still in its own cache. There is nothing to share with one image or one thread.
Code: conv_chunks.py's forward_share / backward_share (upto="shares").
"""
from .. import conv

STEP = "shares"


def forward(x, w, b, stride, padding):
    return conv.conv2d_forward(x, w, b, stride, padding, upto=STEP)


def backward(x, w, gy, stride, padding):
    return conv.conv2d_backward(x, w, gy, stride, padding, upto=STEP)
