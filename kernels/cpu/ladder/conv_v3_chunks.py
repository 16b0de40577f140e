"""conv2d, rung v3: the batch in chunks that fit in cache.                   lesson 12

Why: v2's col matrix for a whole batch is tens of megabytes; it is written by
im2col, then read back by BLAS from main memory, which is many times slower
than the cache. Cut the batch into chunks of images whose col stays under about
1 MiB (a core's L2 cache, conv.py's _CHUNK_BYTES): each chunk is copied and then
multiplied while its col is still in cache, and the buffer is reused, so the
memory the convolution needs no longer grows with the batch.
    for each chunk of M images:   col <- im2col     Y = W @ col     y <- Y + b
Code: conv.py's chunk loop, stopped at its first step (upto="in_turn"): the
chunks go one after another through numpy's matmul.
"""
from .. import conv

STEP = "in_turn"


def forward(x, w, b, stride, padding):
    return conv.conv2d_forward(x, w, b, stride, padding, upto=STEP)


def backward(x, w, gy, stride, padding):
    return conv.conv2d_backward(x, w, gy, stride, padding, upto=STEP)
