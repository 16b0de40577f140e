"""linear, rung v3: the engine, products cut into shares (blas.matmul).     lesson 12

Why: OpenBLAS's own threads, once woken by a large product, keep polling for
about 0.1 s; on a machine with few cores they then halve the speed of the
convolution shares that follow in a training step. Cutting the product by
columns into one share per core, each on a single-threaded BLAS (workers.py),
keeps them asleep. Alone, v3 need not beat v2 (the ladder's table shows how
they compare here); the gain shows in a whole training step, after the
product. Code: linear.py as the engine calls it.
"""
from .. import linear


def forward(x, w, b):
    return linear.linear_forward(x, w, b)


def backward(x, w, gy):
    return linear.linear_backward(x, w, gy)
