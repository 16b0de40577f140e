"""The CPU kernels, compiled by numba: one module per op family (lessons 01, 02, 03, 05, 06).

    conv.py        conv2d forward / backward: which path, and the plan of chunks
    conv_taps.py   stride 1, many channels: one BLAS product per kernel tap
    conv_chunks.py the others: im2col + one BLAS product per chunk of images
    im2col.py      the copies around those matrix products
    conv_direct.py 3x3 convolution of one input channel, without BLAS
    blas.py        BLAS's matrix product called from numba, and products cut in shares
    workers.py     the threads that run a job's shares at once
    pool.py        max and average pooling
    activation.py  relu, sigmoid
    linear.py      fully connected layer (BLAS)
    loss.py        softmax, log-softmax, cross-entropy, binary cross-entropy with logits
    norm.py        batch norm, training and eval
    dropout.py     dropout, its mask from the Philox counter-based generator
    adaptive_pool.py  adaptive average pooling (PyTorch's bins)
    optim.py       SGD and Adam steps
    memory.py      why large arrays are slow to make, and the malloc setting used
    ladder/        the same ops as numbered rungs, v1 the formula as plain loops up to the
                   engine's path; lesson 12 and `minicnn bench --ladder OP` walk them

Pools of threads share the cores during a training step: numba's, which runs the
`prange` loops (pooling, activations, optimiser steps), workers.py's, which runs
the shares of the matrix products, and OpenBLAS's own, which minicnn keeps idle
(blas.py says why). A pool whose idle threads keep spinning for a while after a
job, hoping for the next one, holds back the others on a machine with few cores,
and one switch can cost milliseconds (measured here: 8 ms for a 20-microsecond
kernel following a multi-threaded matrix product). workers.py's threads sleep
when idle; so, before numba starts its threads, ask the same of numba's:
  * numba's default OpenMP pool reads OMP_WAIT_POLICY when OpenMP is first loaded;
    PASSIVE makes idle threads sleep (waking them costs tens of microseconds per
    parallel loop, which is why small arrays skip the pool: PARALLEL_MIN_ELEMENTS).
  * if OpenMP is already loaded by someone else (PyTorch, for one, loads its own
    and numba then shares it), that setting comes too late: use numba's simpler
    "workqueue" pool instead, whose idle threads always sleep.
A setting made by the user (OMP_WAIT_POLICY or NUMBA_THREADING_LAYER) is kept.
"""
import os

# Below this many elements an elementwise kernel runs on one thread: waking the
# sleeping threads of a parallel loop costs tens of microseconds (measured here:
# 40-100 us per loop), more than a thread needs for 64K numbers.
PARALLEL_MIN_ELEMENTS = 1 << 16


def _openmp_loaded():
    """True when an OpenMP runtime is already mapped into this process (Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            return any("libgomp" in line or "libiomp" in line or "libomp" in line
                       for line in maps)
    except OSError:
        return False


def _threads_that_sleep_when_idle():
    import numba
    from numba.np.ufunc import parallel

    if getattr(parallel, "_is_initialized", False):
        return                                   # numba's threads run already
    if "NUMBA_THREADING_LAYER" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        return                                   # the user chose
    if _openmp_loaded():
        numba.config.THREADING_LAYER = "workqueue"
    else:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def _setup():
    from .memory import keep_freed_memory
    _threads_that_sleep_when_idle()
    keep_freed_memory()


_setup()
