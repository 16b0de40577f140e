"""BLAS's matrix product, called from inside numba kernels.

    gemm(A, B, C, beta):   C = A @ B + beta * C
        A (M,K), B (K,N), C (M,N): 2-D views whose rows or columns are contiguous
        (a transposed view such as col.T is fine: BLAS reads it in place)

Why: conv.py runs each chunk of images through copy -> product -> copy. Called
from Python, numpy's matmul spreads every product over all cores while the copies
around it run on one, and the cores meet at every product. Called from a numba
`prange` loop instead, each core runs whole chunks by itself, copies included, with
a single-threaded BLAS (see single_threaded_blas) on data still in its own cache.

How: numpy's wheels ship OpenBLAS (libscipy_openblas64_, 64-bit integers) with
their own names for the CBLAS functions. Loading that library makes its symbols
visible to numba's linker; numba then calls cblas_sgemm / cblas_dgemm like any C
function, and caches the compiled kernels (the symbol is found again by name).
Pointers travel as 64-bit integers (arr.ctypes.data), which is how the C calling
convention passes them anyway. Where numpy has no such library (other builds of
numpy: Accelerate, MKL), AVAILABLE is False and conv.py uses numpy's matmul.
"""
import ctypes
import glob
import os
import threading
from contextlib import contextmanager

import numpy as np
from numba import njit, types

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_SGEMM, _DGEMM = "scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_"
_SET_THREADS, _GET_THREADS = "scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"


def _find_openblas():
    """numpy's own OpenBLAS as a ctypes library, or None."""
    import llvmlite.binding as llvm

    base = os.path.dirname(os.path.dirname(np.__file__))
    for pattern in ("numpy.libs/libscipy_openblas64_*", "numpy/.dylibs/libscipy_openblas64_*"):
        for path in sorted(glob.glob(os.path.join(base, pattern))):
            try:
                lib = ctypes.CDLL(path)
                for name in (_SGEMM, _DGEMM, _SET_THREADS, _GET_THREADS):
                    getattr(lib, name)
                llvm.load_library_permanently(path)
            except (OSError, AttributeError, RuntimeError):
                continue
            return lib
    return None


_lib = None if os.environ.get("MINICNN_NO_BLAS_KERNELS") else _find_openblas()
AVAILABLE = _lib is not None

_i32, _i64 = types.int32, types.int64


def _signature(real):
    # order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc
    return types.void(_i32, _i32, _i32, _i64, _i64, _i64, real, _i64, _i64, _i64, _i64,
                      real, _i64, _i64)


_sgemm = types.ExternalFunction(_SGEMM, _signature(types.float32))
_dgemm = types.ExternalFunction(_DGEMM, _signature(types.float64))


@njit(inline="always")
def _layout(A):
    """(trans flag, leading dimension) BLAS needs to read the 2-D view A in place."""
    rows, cols = A.shape
    s = A.itemsize
    if A.strides[1] == s or cols <= 1 or rows == 0:   # rows contiguous (or nothing to read)
        return _NO_TRANS, max(A.strides[0] // s, cols, 1)
    if A.strides[0] == s or rows == 1:                # columns contiguous: A is a transpose
        return _TRANS, max(A.strides[1] // s, rows, 1)
    raise ValueError("gemm: a matrix needs contiguous rows or columns")


@njit(cache=True)
def gemm(A, B, C, beta):
    """C = A @ B + beta*C.  A (M,K), B (K,N), C (M,N) of one float dtype; C's rows contiguous."""
    M, K = A.shape
    N = B.shape[1]
    if B.shape[0] != K or C.shape[0] != M or C.shape[1] != N:
        raise ValueError("gemm: shapes do not fit")
    if M == 0 or N == 0:
        return
    ta, lda = _layout(A)
    tb, ldb = _layout(B)
    tc, ldc = _layout(C)
    if tc != _NO_TRANS:
        raise ValueError("gemm: C needs contiguous rows")
    if C.itemsize == 4:
        _sgemm(_ROW_MAJOR, ta, tb, M, N, K, np.float32(1.0), A.ctypes.data, lda,
               B.ctypes.data, ldb, np.float32(beta), C.ctypes.data, ldc)
    else:
        _dgemm(_ROW_MAJOR, ta, tb, M, N, K, 1.0, A.ctypes.data, lda,
               B.ctypes.data, ldb, np.float64(beta), C.ctypes.data, ldc)


def threads():
    """The number of threads OpenBLAS runs a product on."""
    return getattr(_lib, _GET_THREADS)()


_single = {"depth": 0, "before": 1}
_single_lock = threading.Lock()


@contextmanager
def single_threaded_blas():
    """OpenBLAS on one thread while the block runs (the shares bring the
    parallelism); the count before the first of overlapping blocks (Python threads
    running minicnn at once) is put back when the last one ends. Costs about a
    microsecond."""
    set_ = getattr(_lib, _SET_THREADS)
    with _single_lock:
        if _single["depth"] == 0:
            _single["before"] = threads()
            set_(1)
        _single["depth"] += 1
    try:
        yield
    finally:
        with _single_lock:
            _single["depth"] -= 1
            if _single["depth"] == 0:
                set_(_single["before"])


# ----------------------------------------------------------------------------- products shared by columns

# below this many multiply-adds (M*N*K) a product runs on the calling thread, as
# OpenBLAS itself does (its threshold): handing work to another thread costs more
SHARE_MIN_MACS = 1 << 18


@njit(nogil=True, cache=True)
def _columns_share(t, T, A, B, C):
    """Share t of C = A @ B: the columns j0 .. j1-1 of C (blocks of 16: whole vectors)."""
    N = C.shape[1]
    step = ((N + T - 1) // T + 15) // 16 * 16
    j0, j1 = min(N, t * step), min(N, (t + 1) * step)
    if j1 > j0:
        gemm(A, B[:, j0:j1], C[:, j0:j1], 0.0)


def matmul(A, B):
    """A @ B for 2-D float32/float64 arrays (views, transposed views fine), as numpy's
    matmul; a large product is cut by columns into one share per thread, each share
    on a single-threaded BLAS (so OpenBLAS's own threads never start: once woken,
    they keep polling for 0.1 s and slow down the convolutions' shares that follow)."""
    import numba

    from .workers import run_shares

    M, K = A.shape
    N = B.shape[1]
    T = numba.get_num_threads()
    if not AVAILABLE or T < 2 or M * N * K < SHARE_MIN_MACS or A.dtype != B.dtype \
            or A.dtype not in (np.float32, np.float64):
        return np.matmul(A, B)
    C = np.empty((M, N), dtype=A.dtype)
    with single_threaded_blas():
        run_shares(_columns_share, T, T, A, B, C)
    return C
