"""The CPU kernel ladder: each op from its formula as loops up to the engine's path.

Numbered versions side by side, as in llm.c's dev/cuda: v1 is the formula as
straight numba loops (read it first, lessons 01 and 03), each rung above is one
step faster with its reason, and the top rung is what the engine runs. Every
rung computes the same function (tests/test_ladder.py holds each to
kernels/reference.py and to PyTorch); `minicnn bench --ladder OP` times them
(lesson 12).

    conv2d      conv_v1_loops, conv_v2_im2col, conv_v3_shares, conv_v4_wide, conv_v5_taps,
                conv_v6_engine
    max_pool2d  pool_v1_loops, pool_v2_planes, pool_v3_2x2
    linear      linear_v1_loops, linear_v2_blas, linear_v3_shares

A rung's calls, one signature per op (dispatch.py adapts the engine's table to them):
    conv2d      forward(x, w, b, stride, padding) -> y
                backward(x, w, gy, stride, padding) -> (gx, gw, gb)
    max_pool2d  forward(x, kernel, stride, padding) -> (y, idx)
                backward(gy, idx, x_shape) -> gx
    linear      forward(x, w, b) -> y;  backward(x, w, gy) -> (gx, gw, gb)
b is an array (zeros for no bias); x, w, gy C-contiguous, one float dtype.

To study a rung, make the cpu device run it:
    with minicnn.kernels.cpu.ladder.use("conv2d", "v1"): ...     (this thread and others)
    MINICNN_CONV2D_RUNG=v1 python ...     (also MINICNN_MAX_POOL2D_RUNG, MINICNN_LINEAR_RUNG)
`use` wins over the environment; without either the top rung runs.
"""
import contextlib
import os
import threading
from typing import Callable, NamedTuple

import numpy as np

from . import (conv_v1_loops, conv_v2_im2col, conv_v3_shares, conv_v4_wide, conv_v5_taps,
               conv_v6_engine, linear_v1_loops, linear_v2_blas, linear_v3_shares, pool_v1_loops,
               pool_v2_planes, pool_v3_2x2)
from ..pool import out_size


class Rung(NamedTuple):
    """One version of an op: name ("v1"), title, why it is faster than the one below,
    its forward and backward (the signatures above), and the file that holds it."""
    name: str
    title: str
    reason: str
    forward: Callable
    backward: Callable
    file: str


# ----------------------------------------------------------------------------- plain rungs' glue

def _conv_v1_forward(x, w, b, stride, padding):
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    (sh, sw), (ph, pw) = stride, padding
    y = np.empty((N, F, out_size(H, KH, sh, ph), out_size(W, KW, sw, pw)), dtype=x.dtype)
    conv_v1_loops.forward(x, w, b, sh, sw, ph, pw, y)
    return y


def _conv_v1_backward(x, w, gy, stride, padding):
    gx, gw, gb = np.empty_like(x), np.empty_like(w), np.empty(w.shape[0], dtype=x.dtype)
    conv_v1_loops.backward(x, w, gy, *stride, *padding, gx, gw, gb)
    return gx, gw, gb


def _pool_v1_forward(x, kernel, stride, padding):
    N, C, H, W = x.shape
    Ho = out_size(H, kernel[0], stride[0], padding[0])
    Wo = out_size(W, kernel[1], stride[1], padding[1])
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    idx = np.empty((N, C, Ho, Wo), dtype=np.int32 if H * W < 2**31 else np.int64)
    pool_v1_loops.forward(x, *kernel, *stride, *padding, y, idx)
    return y, idx


def _pool_v1_backward(gy, idx, x_shape):
    gx = np.empty(x_shape, dtype=gy.dtype)
    pool_v1_loops.backward(gy, idx, gx)
    return gx


def _linear_v1_forward(x, w, b):
    y = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
    linear_v1_loops.forward(x, w, b, y)
    return y


def _linear_v1_backward(x, w, gy):
    gx, gw, gb = np.empty_like(x), np.empty_like(w), np.empty(w.shape[0], dtype=x.dtype)
    linear_v1_loops.backward(x, w, gy, gx, gw, gb)
    return gx, gw, gb


def _rung(name, title, reason, module, forward=None, backward=None):
    return Rung(name, title, reason, forward or module.forward, backward or module.backward,
                "kernels/cpu/ladder/" + module.__name__.rsplit(".", 1)[1] + ".py")


RUNGS = {
    "conv2d": (
        _rung("v1", "loops", "the formula as loops, one output element at a time",
              conv_v1_loops, _conv_v1_forward, _conv_v1_backward),
        _rung("v2", "im2col + BLAS", "copy the taps into a matrix: the convolution becomes "
              "one BLAS product, blocked for the caches, vectorised, on every core",
              conv_v2_im2col),
        _rung("v3", "chunks shared over cores", "a few images at a time, so col is still "
              "in cache when BLAS reads it, and each core runs whole chunks, copies "
              "included, with a one-thread BLAS: no core waits", conv_v3_shares),
        _rung("v4", "wide rows", "stride 1: rows computed Wp wide, so each row of col is "
              "one contiguous copy of the padded image, not a gather", conv_v4_wide),
        _rung("v5", "tap by tap", "stride 1: one product per tap read in place from the "
              "padded image; no im2col, no col2im copies at all", conv_v5_taps),
        _rung("v6", "engine", "one input channel, 3x3: a written-out stencil beats BLAS "
              "when a product has only 9 terms", conv_v6_engine),
    ),
    "max_pool2d": (
        _rung("v1", "loops", "the formula as loops, one output element at a time",
              pool_v1_loops, _pool_v1_forward, _pool_v1_backward),
        _rung("v2", "planes", "N*C plane tasks for the cores, each window clipped once "
              "(no edge test per tap), int32 indices", pool_v2_planes),
        _rung("v3", "engine", "2x2 stride 2 written out over row views: code the "
              "compiler vectorises", pool_v3_2x2),
    ),
    "linear": (
        _rung("v1", "loops", "the formula as loops, one output element at a time",
              linear_v1_loops, _linear_v1_forward, _linear_v1_backward),
        _rung("v2", "BLAS", "one blocked, vectorised BLAS product on every core",
              linear_v2_blas),
        _rung("v3", "engine", "the product cut into one-thread BLAS shares: OpenBLAS's "
              "own threads never wake and slow the convolutions", linear_v3_shares),
    ),
}
OPS = tuple(RUNGS)
ENV = {op: f"MINICNN_{op.upper()}_RUNG" for op in OPS}

_chosen = {}            # op -> rung name, set by use()
_lock = threading.Lock()


def rungs(op):
    """The rungs of op, v1 first, the engine last."""
    _check_op(op)
    return RUNGS[op]


def top(op):
    """The rung the engine runs: the last."""
    return rungs(op)[-1]


def find(op, name, where="rung"):
    """The rung of op called name ("v3", or "3"); a UserError naming `where` otherwise."""
    name = str(name).strip().lower()
    name = name if name.startswith("v") else "v" + name
    for rung in rungs(op):
        if rung.name == name:
            return rung
    from minicnn.errors import UserError
    raise UserError(f"{where}: {op} has no rung {name!r}; choose one of "
                    + ", ".join(f"{r.name} ({r.title})" for r in RUNGS[op]))


def chosen(op):
    """The rung the cpu device runs for op now: use()'s, else the environment's, else top."""
    name = _chosen.get(op)
    if name is not None:
        return find(op, name)
    env = os.environ.get(ENV[op], "")
    return find(op, env, where=ENV[op]) if env.strip() else top(op)


@contextlib.contextmanager
def use(op, name):
    """Run rung `name` of op on the cpu device inside the block (every thread), e.g.
    `with use("conv2d", "v1"): model(x)`. Blocks nest; the outer choice comes back."""
    rung = find(op, name, where="ladder.use")
    with _lock:
        before = _chosen.get(op)
        _chosen[op] = rung.name
    try:
        yield rung
    finally:
        with _lock:
            if before is None:
                _chosen.pop(op, None)
            else:
                _chosen[op] = before


def _check_op(op):
    if op not in RUNGS:
        from minicnn.errors import UserError
        raise UserError(f"ladder: no op {op!r}; the ladder has {', '.join(RUNGS)}")
