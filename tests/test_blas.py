"""blas.gemm, the matrix product numba kernels call: C = A @ B + beta*C against numpy,
for every way a view can lie in memory (rows contiguous, transposed, a slice of a
wider matrix) and for empty and one-element shapes."""
import os

import numpy as np
import pytest

from minicnn.kernels.cpu import blas

pytestmark = pytest.mark.skipif(not blas.AVAILABLE,
                                reason="numpy's BLAS is not callable from numba")


def _view(a, how, rng):
    """a's values laid out as `how` says: 'rows' (C order), 'cols' (a transposed
    copy seen through .T), 'slice' (the left part of a wider matrix)."""
    if how == "rows":
        return a.copy()
    if how == "cols":
        return np.ascontiguousarray(a.T).T
    wide = rng.standard_normal((a.shape[0], a.shape[1] + 3)).astype(a.dtype)
    wide[:, :a.shape[1]] = a
    return wide[:, :a.shape[1]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("a_how", ["rows", "cols", "slice"])
@pytest.mark.parametrize("b_how", ["rows", "cols", "slice"])
@pytest.mark.parametrize("c_how", ["rows", "slice"])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_gemm_matches_numpy(dtype, a_how, b_how, c_how, beta):
    rng = np.random.default_rng(0)
    for M, K, N in [(5, 7, 3), (1, 1, 1), (1, 9, 4), (6, 1, 2), (33, 17, 65)]:
        a, b, c0 = (rng.standard_normal(s).astype(dtype) for s in ((M, K), (K, N), (M, N)))
        A, B, C = _view(a, a_how, rng), _view(b, b_how, rng), _view(c0, c_how, rng)
        blas.gemm(A, B, C, beta)
        want = a.astype(np.float64) @ b + beta * c0
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(C, want, rtol=tol, atol=tol * K)


def test_gemm_empty_shapes():
    rng = np.random.default_rng(1)
    c = rng.standard_normal((3, 4)).astype(np.float32)
    blas.gemm(np.empty((3, 0), np.float32), np.empty((0, 4), np.float32), c, 0.0)
    assert not c.any()                                # K = 0: C = 0*C
    empty = np.empty((0, 4), np.float32)
    blas.gemm(np.empty((0, 2), np.float32), np.ones((2, 4), np.float32), empty, 0.0)


def test_gemm_refuses_what_it_cannot_read():
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    b, c = np.ones((6, 2), np.float32), np.empty((4, 2), np.float32)
    for bad in (a[::2, ::2], a[::-1], np.broadcast_to(a[:1], a.shape)):
        with pytest.raises(ValueError, match="non-overlapping rows or columns"):
            blas.gemm(bad, b[:bad.shape[1]], c[:bad.shape[0]], 0.0)
    with pytest.raises(ValueError, match="shapes do not fit"):
        blas.gemm(a, np.ones((5, 2), np.float32), c, 0.0)
    with pytest.raises(TypeError, match="all be float32 or all float64"):
        blas.gemm(a, b.astype(np.float64), c, 0.0)
    with pytest.raises(TypeError, match="all be float32 or all float64"):
        blas.gemm(a.astype(np.int32), b.astype(np.int32), c.astype(np.int32), 0.0)


def test_matmul_of_views_blas_cannot_read_is_numpys():
    # reversed, broadcast, strided and overlapping views go to numpy's matmul
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 600)).astype(np.float32)
    b = rng.standard_normal((600, 300)).astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(a[0], 300)[:64]      # rows overlap
    for A, B in ((a[::-1], b), (np.broadcast_to(a[:1], a.shape), b), (a[:, ::2], b[::2]),
                 (windows, b[:300]), (a, b[::-1])):
        np.testing.assert_allclose(blas.matmul(A, B), np.matmul(A, B), rtol=1e-4, atol=1e-3)


@pytest.fixture
def two_blas_threads():
    """OpenBLAS on 2 threads for the test (so that "back to before" is not 1 anyway)."""
    before = blas.threads()
    blas._lib.scipy_openblas_set_num_threads64_(2)
    if blas.threads() != 2:
        pytest.skip("OpenBLAS runs on one thread here")
    yield
    blas._lib.scipy_openblas_set_num_threads64_(before)


def test_single_threaded_blas_puts_the_count_back(two_blas_threads):
    before = blas.threads()
    with pytest.raises(RuntimeError):
        with blas.single_threaded_blas():
            assert blas.threads() == 1
            raise RuntimeError("inside")
    assert blas.threads() == before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M, K, N", [(64, 4096, 37), (64, 512, 1000), (3, 5, 7), (200, 300, 17)])
def test_matmul_matches_numpy(dtype, M, K, N, monkeypatch):
    # large products are cut into column shares (3 here, whatever the machine's
    # core count), small ones go to numpy: both agree
    monkeypatch.setattr(blas.numba, "get_num_threads", lambda: 3)
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    for A, B in ((a, b), (np.ascontiguousarray(a.T).T, b), (a, np.ascontiguousarray(b.T).T)):
        got = blas.matmul(A, B)
        assert got.shape == (M, N) and got.dtype == dtype
        np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=tol, atol=tol * np.sqrt(K))



def test_overlapping_single_threaded_blocks_put_the_count_back_once(two_blas_threads):
    before = blas.threads()
    outer = blas.single_threaded_blas()
    outer.__enter__()
    with blas.single_threaded_blas():              # another thread's block, say
        assert blas.threads() == 1
    assert blas.threads() == 1                     # the outer block still runs
    outer.__exit__(None, None, None)
    assert blas.threads() == before


def test_the_blas_kernels_can_be_switched_off():
    import subprocess
    import sys
    env = dict(os.environ, MINICNN_NO_BLAS_KERNELS="1")
    out = subprocess.run([sys.executable, "-c", "from minicnn.kernels.cpu import blas; "
                          "print(blas.AVAILABLE)"], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split()[-1] == "False"
