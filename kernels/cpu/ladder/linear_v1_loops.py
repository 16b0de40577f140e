"""linear, rung v1: the formula as straight loops (numba).                  lessons 05, 12

    y[n,o]  = b[o] + sum_i x[n,i] * w[o,i]
    gx[n,i] = sum_o gy[n,o] * w[o,i]
    gw[o,i] = sum_n gy[n,o] * x[n,i]
    gb[o]   = sum_n gy[n,o]
Index map: forward and gx, prange over n, one output element per iteration;
gw and gb, prange over o (every sample adds into every weight).
Cost: 2*N*In*Out FLOPs a product, compute-bound.
"""
from numba import njit, prange


@njit(parallel=True, cache=True)
def forward(x, w, b, y):
    """x (N,In), w (Out,In), b (Out,) -> y (N,Out), overwritten."""
    N, In = x.shape
    Out = w.shape[0]
    for n in prange(N):
        for o in range(Out):
            acc = b[o]
            for i in range(In):
                acc += x[n, i] * w[o, i]
            y[n, o] = acc


@njit(parallel=True, cache=True)
def backward(x, w, gy, gx, gw, gb):
    """x (N,In), w (Out,In), gy (N,Out) -> gx (N,In), gw (Out,In), gb (Out,), overwritten."""
    N, In = x.shape
    Out = w.shape[0]
    for n in prange(N):
        for i in range(In):
            acc = 0.0
            for o in range(Out):
                acc += gy[n, o] * w[o, i]
            gx[n, i] = acc
    for o in prange(Out):
        acc_b = 0.0
        for n in range(N):
            acc_b += gy[n, o]
        gb[o] = acc_b
        for i in range(In):
            acc = 0.0
            for n in range(N):
                acc += gy[n, o] * x[n, i]
            gw[o, i] = acc
