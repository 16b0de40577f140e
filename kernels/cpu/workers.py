"""Running conv.py's chunks of images on worker threads, one BLAS thread each.

A convolution by im2col alternates copies (im2col, col2im, layouts: numba loops
on one thread) with matrix products (BLAS, on every core). Run one after the
other, the copies leave all cores but one idle, and each product is a fork and
join of BLAS's threads. Instead, over_chunks gives each core a worker thread of
its own and deals the chunks out to them: a worker copies, multiplies with a
single-threaded BLAS, and copies back, while the other works on its next chunk.
Every core stays busy, and each worker's col buffer stays in its core's cache.

Two things make this work in Python: numba loops compiled with nogil=True and
BLAS (numpy's matmul) both let go of the interpreter lock, so the threads truly
run at once; and threadpoolctl sets BLAS to one thread while the workers run
(otherwise each worker's product would start threads of its own and the cores
would be shared out twice over).

The workers write disjoint images of the output; a sum over the whole batch (the
weight gradient) is kept per worker and added up at the end.
"""
import threading
from concurrent.futures import ThreadPoolExecutor

_state = {}
_lock = threading.Lock()


def worker_count():
    """How many worker threads: numba's thread count (NUMBA_NUM_THREADS, or the cores)."""
    import numba
    return max(1, numba.get_num_threads())


def _pool_and_blas(workers):
    with _lock:
        if _state.get("workers") != workers:
            from threadpoolctl import ThreadpoolController
            if "pool" in _state:
                _state["pool"].shutdown(wait=False)
            _state.update(workers=workers, controller=_state.get("controller") or ThreadpoolController(),
                          pool=ThreadPoolExecutor(workers, thread_name_prefix="minicnn-conv"))
        return _state["pool"], _state["controller"]


def over_chunks(chunks, work, workspace):
    """Call work(n0, m, ws) for every (n0, m) in chunks, spread over worker threads.

    workspace() makes one worker's buffers (each worker gets its own ws); returns
    the list of workspaces used, so sums kept in them can be added up.
    """
    chunks = list(chunks)
    workers = min(worker_count(), len(chunks))
    if workers <= 1 or threading.current_thread().name.startswith("minicnn-conv"):
        ws = workspace()
        for n0, m in chunks:
            work(n0, m, ws)
        return [ws]
    pool, blas = _pool_and_blas(worker_count())
    spaces = [workspace() for _ in range(workers)]

    def run(k):
        for n0, m in chunks[k::workers]:
            work(n0, m, spaces[k])

    with blas.limit(limits=1, user_api="blas"):
        for future in [pool.submit(run, k) for k in range(workers)]:
            future.result()                  # re-raises a worker's exception here
    return spaces
