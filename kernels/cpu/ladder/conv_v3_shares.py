"""conv2d, rung v3: chunks that fit in cache, shared out over the cores.     lesson 12

Why: v2's col matrix for a whole batch is tens of megabytes, written by im2col
to main memory and read back from there by BLAS, and while numpy's BLAS spreads
the product over the cores, the copies around it run on one core while the
others wait. Two changes, which only pay together:
  * chunks: im2col a few images at a time, so that col stays under about 1 MiB
    (a core's L2 cache, conv.py's _CHUNK_BYTES) and is still in cache when BLAS
    reads it; the buffer is reused, so memory no longer grows with the batch;
  * shares: deal the chunks out, one share per core (workers.py); each core runs
    whole chunks by itself, copies included, with BLAS called from inside the
    numba kernel on one thread (blas.py). No core waits for another.
    for each chunk of M images of this core's share:
        col <- im2col     Y = W @ col     y <- Y + b
Chunks alone, each small product through numpy's multi-threaded matmul, can be
slower than v2 (every product wakes all of BLAS's threads, and the copies still
run on one core): conv.py runs that with upto="in_turn", which is also what it
does when there is nothing to share (one image, one thread).
Code: conv_chunks.py's forward_share / backward_share (upto="shares").
"""
from .. import conv

STEP = "shares"


def forward(x, w, b, stride, padding):
    return conv.conv2d_forward(x, w, b, stride, padding, upto=STEP)


def backward(x, w, gy, stride, padding):
    return conv.conv2d_backward(x, w, gy, stride, padding, upto=STEP)
