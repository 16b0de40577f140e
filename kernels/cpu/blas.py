"""BLAS's matrix product, called from inside numba kernels.

    gemm(A, B, C, beta):   C = A @ B + beta * C
        A (M,K), B (K,N), C (M,N): 2-D views whose rows or columns are contiguous
        (a transposed view such as col.T is fine: BLAS reads it in place)

Why: conv.py runs each chunk of images through copy -> product -> copy. Called
from Python, numpy's matmul spreads every product over all cores while the copies
around it run on one, and the cores meet at every product. Called from inside a
numba kernel instead, one kernel per core (a share, run by workers.py), each core
runs whole chunks by itself, copies included, with a single-threaded BLAS (see
single_threaded_blas) on data still in its own cache.

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

import numba
import numpy as np
from numba import njit, types
from numba.extending import overload

from .workers import run_shares

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_SGEMM, _DGEMM = "scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_"
_SET_THREADS = "scipy_openblas_set_num_threads64_"
_GET_THREADS = "scipy_openblas_get_num_threads64_"


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


def _blas_layout(shape, strides, itemsize):
    """(trans flag, leading dimension) for BLAS to read a 2-D array of this shape and
    these strides in place, or None: rows (or columns) must each be contiguous and
    lie one after another, none overlapping (no negative, zero or odd strides)."""
    rows, cols = shape
    s0, s1 = strides
    if rows * cols == 0:
        return _NO_TRANS, max(cols, 1)
    rows_apart = s0 % itemsize == 0 and s0 >= cols * itemsize       # rows one after another
    cols_apart = s1 % itemsize == 0 and s1 >= rows * itemsize
    if (s1 == itemsize or cols == 1) and (rows == 1 or rows_apart):
        return _NO_TRANS, max(s0 // itemsize if rows > 1 else cols, cols, 1)
    if (s0 == itemsize or rows == 1) and (cols == 1 or cols_apart):   # a transposed matrix
        return _TRANS, max(s1 // itemsize if cols > 1 else rows, rows, 1)
    return None


_layout_jit = njit(inline="always")(_blas_layout)


@njit(inline="always")
def _layout(A):
    """_blas_layout of A, or a ValueError."""
    got = _layout_jit(A.shape, A.strides, A.itemsize)
    if got is None:
        raise ValueError("gemm: a matrix needs contiguous, non-overlapping rows or columns")
    return got


def _one_float_dtype(A, B, C):
    """True when A, B and C are all float32 or all float64 (numba: decided while compiling)."""
    return A.dtype == B.dtype == C.dtype and A.dtype in (np.float32, np.float64)


@overload(_one_float_dtype)
def _one_float_dtype_typed(A, B, C):
    same = A.dtype == B.dtype == C.dtype and A.dtype in (types.float32, types.float64)
    return lambda A, B, C: same


@njit(cache=True)
def gemm(A, B, C, beta):
    """C = A @ B + beta*C.  A (M,K), B (K,N), C (M,N) of one float dtype; C's rows contiguous."""
    M, K = A.shape
    N = B.shape[1]
    if B.shape[0] != K or C.shape[0] != M or C.shape[1] != N:
        raise ValueError("gemm: shapes do not fit")
    if not _one_float_dtype(A, B, C):
        raise TypeError("gemm: A, B and C must all be float32 or all float64")
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


def _after_fork_in_child():
    """A fork from inside a block: the child has one thread and no block running."""
    global _single_lock
    _single_lock = threading.Lock()
    if _single["depth"] > 0 and _lib is not None:
        getattr(_lib, _SET_THREADS)(_single["before"])
    _single["depth"] = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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


# ------------------------------------------------------------------ products shared by columns

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
    M, K = A.shape
    N = B.shape[1]
    T = numba.get_num_threads()
    if not AVAILABLE or T < 2 or M * N * K < SHARE_MIN_MACS or A.dtype != B.dtype \
            or A.dtype not in (np.float32, np.float64) \
            or _blas_layout(A.shape, A.strides, A.itemsize) is None \
            or _blas_layout(B.shape, B.strides, B.itemsize) is None:
        return np.matmul(A, B)                      # (and any view BLAS cannot read in place)
    C = np.empty((M, N), dtype=A.dtype)
    with single_threaded_blas():
        run_shares(_columns_share, T, T, A, B, C)
    return C
