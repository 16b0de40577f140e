"""Fully connected (linear) layer on the CPU: a matrix product.              lesson 05

    y[n,o]  = sum_i x[n,i] * w[o,i] + b[o]        y  = x @ w^T + b
    gx[n,i] = sum_o gy[n,o] * w[o,i]              gx = gy @ w
    gw[o,i] = sum_n gy[n,o] * x[n,i]              gw = gy^T @ x
    gb[o]   = sum_n gy[n,o]

Index map: each output element y[n,o] is the dot product of row n of x with row o
of w. A matrix product is the one place where a hand-written loop cannot compete
with the decades of tuning in BLAS (cache blocking, vector registers), so these
kernels hand the products to BLAS, one share of the output's columns per core
(blas.matmul; the CUDA kernels in kernels/cuda are where the product is written
out and tiled by hand).
Cost: N*In*Out multiply-adds per product, compute-bound.
"""
from .blas import matmul


def linear_forward(x, w, b):
    """x (N,In), w (Out,In), b (Out,) or None -> y (N,Out)."""
    y = matmul(x, w.T)
    if b is not None:
        y += b
    return y


def linear_backward(x, w, gy, needs=(True, True, True)):
    """x (N,In), w (Out,In), gy (N,Out) -> (gx (N,In), gw (Out,In), gb (Out,)),
    each None where needs (input, weight, bias) says False."""
    gx = matmul(gy, w) if needs[0] else None
    gw = matmul(gy.T, x) if needs[1] else None
    gb = gy.sum(axis=0) if needs[2] else None
    return gx, gw, gb
