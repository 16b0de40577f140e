"""Run the shares of a job at once, one thread per share (conv_chunks.py's kernels).

    run_shares(kernel, T, *args)  calls kernel(t, *args) for t = 0 .. T-1 at once:
                                  share 0 on the calling thread, the others on a
                                  pool of T-1 threads kept for the next job

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
from concurrent.futures import ThreadPoolExecutor

_pool = None
_pool_pid = None


def _workers(n):
    """A pool of at least n threads (a new one after a fork: threads are not copied)."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid() or _pool._max_workers < n:
        _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="minicnn")
        _pool_pid = os.getpid()
    return _pool


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
