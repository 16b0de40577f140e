"""linear, rung v2: one BLAS product each (numpy's matmul).                 lesson 12

Why: v1 is a dot product per output, one multiply-add at a time, with w read
again from memory for every sample. BLAS blocks the product for the caches and
registers and runs it on every core (OpenBLAS's own threads):
    y = x @ w^T + b      gx = gy @ w      gw = gy^T @ x      gb = gy summed over n
"""


def forward(x, w, b):
    return x @ w.T + b


def backward(x, w, gy):
    return gy @ w, gy.T @ x, gy.sum(axis=0)
