"""Run the shares of a job at once, one thread per share (the kernels of
conv_taps.py and conv_chunks.py, and blas.matmul's).

    run_shares(kernel, T, *args)  calls kernel(t, *args) for t = 0 .. T-1 at once:
                                  share 0 on the calling thread, the others on a
                                  pool of T-1 threads kept for the next job
    share_rows(T, n, dtype, zero=False)
                                  a row of n-or-more numbers of workspace per share

Why not numba's own `prange`: numba runs prange loops on a threading layer, and
which one it gets depends on what else is loaded (conv.py's parent package says
why: with PyTorch loaded it is "workqueue"). Measured here, a two-share prange
loop on the workqueue layer took 4.5 ms one call and 7 ms the next (the calling
thread polls for the workers while they run: three busy threads on two cores).
Plain threads behave the same under every layer: the kernels are compiled with
nogil=True, so each runs without Python's global lock, and the calling thread
runs a share itself instead of waiting idle.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_pool = None
_pool_size = 0
_pool_pid = None
_pool_lock = threading.Lock()


def _workers(n):
    """A pool of at least n threads (a new one after a fork: threads are not copied)."""
    global _pool, _pool_size, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid() or _pool_size < n:
            if _pool is not None and _pool_pid == os.getpid():
                _pool.shutdown(wait=False)          # its threads end once idle
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="minicnn")
            _pool_size, _pool_pid = n, os.getpid()
        return _pool


def _after_fork_in_child():
    global _pool_lock
    _pool_lock = threading.Lock()                   # the parent's may have been held


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def run_shares(kernel, T, *args):
    """kernel(t, *args) for t in 0 .. T-1, at once; returns when all have finished
    (the first exception of a share is raised then)."""
    futures = [_workers(T - 1).submit(kernel, t, *args) for t in range(1, T)]
    try:
        kernel(0, *args)
    finally:
        errors = [f.exception() for f in futures]       # waits for every share
    for e in errors:
        if e is not None:
            raise e


def share_rows(T, n, dtype, zero=False):
    """A (T, P) array, P >= n: a row of workspace for each share, each row starting
    on a 2 MiB boundary of its own (the first n numbers zeroed if zero is True).

    Why: with the shares' buffers side by side, one share at times ran 15-35%
    slower than the other on the same work (measured on conv2's forward pass and
    on bare BLAS products), and which one followed the buffer, not the thread.
    Rows 2 MiB apart made the shares even. numpy asks Linux for 2 MiB pages
    ("transparent huge pages") for arrays of 4 MiB and more, which this always
    is, so each share's row then sits in huge pages of its own: fewer address
    translations for the products' strided reads, none shared between cores."""
    if T == 1:                                      # no neighbour to keep apart from
        return (np.zeros if zero else np.empty)((1, max(1, n)), dtype=dtype)
    item = np.dtype(dtype).itemsize
    per_page = _HUGE_PAGE // item
    P = max(1, -(-n // per_page)) * per_page
    raw = np.empty(T * P + per_page, dtype=dtype)
    start = (-raw.ctypes.data % _HUGE_PAGE) // item
    rows = raw[start:start + T * P].reshape(T, P)
    if zero:
        rows[:, :n] = 0
    return rows


_HUGE_PAGE = 2 << 20
