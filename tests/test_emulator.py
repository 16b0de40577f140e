"""The CPU emulator for CUDA C (kernels/cuda/emu): it must run correct kernels right in
every thread order, and make each deliberately broken kernel in kernels/cuda/broken fail
in the way its opening comment says."""
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minicnn.kernels.cuda.emu import (CompileError, EmulatorError, KernelArgumentError,
                                      load_module)
from minicnn.kernels.cuda.emu import loader

CUDA = Path(loader.__file__).resolve().parent.parent
BROKEN = CUDA / "broken"
ORDERS = ("forward", "reverse", "shuffle")

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the emulator needs g++")


def assert_close(got, ref, what, atol=1e-5, rtol=1e-5):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    err = np.abs(got - ref) - (atol + rtol * np.abs(ref))
    err = np.where(np.isnan(got) != np.isnan(ref), np.inf, np.nan_to_num(err, nan=-1.0))
    worst = np.unravel_index(np.argmax(err), err.shape) if err.size else None
    assert err.size == 0 or err[worst] <= 0, \
        f"{what}: worst element {worst}: got {got[worst]!r}, expected {ref[worst]!r}"


def line_of(path, marker):
    """1-based line number of the first line of `path` that contains `marker`."""
    for n, text in enumerate(Path(path).read_text().splitlines(), 1):
        if marker in text:
            return n
    raise AssertionError(f"{marker!r} not in {path}")


def blocks(n, size):
    return (n + size - 1) // size


SGEMM = r"""
// C = A B, A is M x K, B is K x N; block (bx, by) computes the 16 x 16 tile of C
// at (16 by, 16 bx), thread (tx, ty) its element (16 by + ty, 16 bx + tx).
#define TILE 16
extern "C" __global__ void sgemm(const float* __restrict__ A, const float* __restrict__ B,
                                 float* __restrict__ C, int M, int N, int K) {
    __shared__ float As[TILE][TILE];
    __shared__ float Bs[TILE][TILE];
    int tx = threadIdx.x, ty = threadIdx.y;
    int row = blockIdx.y * TILE + ty, col = blockIdx.x * TILE + tx;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        As[ty][tx] = (row < M && k0 + tx < K) ? A[row * K + k0 + tx] : 0.0f;
        Bs[ty][tx] = (col < N && k0 + ty < K) ? B[(k0 + ty) * N + col] : 0.0f;
        __syncthreads();
        for (int k = 0; k < TILE; ++k) acc += As[ty][k] * Bs[k][tx];
        __syncthreads();
    }
    if (row < M && col < N) C[row * N + col] = acc;
}
"""

ELEMENTWISE = r"""
// y[i] = a x[i] + y[i]; one thread per element
extern "C" __global__ void saxpy(const float* x, float* y, float a, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}
// order[k] = the linear index of the k-th thread to run
extern "C" __global__ void record_order(int* counter, int* order) {
    int t = (blockIdx.x * blockDim.z * blockDim.y + threadIdx.z * blockDim.y + threadIdx.y)
            * blockDim.x + threadIdx.x;
    order[atomicAdd(counter, 1)] = t;
}
// a NULL pointer write, to check a crash becomes an error
extern "C" __global__ void write_to(float* p) { p[threadIdx.x] = 1.0f; }
"""

WARP = r"""
// y[b] = sum of the 32 x[i] of warp b, by shuffles; mask[b] = ballot of x[i] > 0
extern "C" __global__ void warp_sum(const float* x, float* y, unsigned int* mask) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = x[i];
    unsigned int m = __ballot_sync(0xffffffffu, v > 0.0f);
    for (int d = 16; d > 0; d /= 2) v += __shfl_down_sync(0xffffffffu, v, d);
    if ((threadIdx.x & 31) == 0) { y[i / 32] = v; mask[i / 32] = m; }
}
// y[i] = x of the lane (i ^ 1) in the same warp, then everyone syncs on a count
extern "C" __global__ void swap_pairs(const float* x, float* y, int* count) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    y[i] = __shfl_xor_sync(0xffffffffu, x[i], 1);
    int c = __syncthreads_count(x[i] > 0.0f);
    if (threadIdx.x == 0) count[blockIdx.x] = c;
}
// y[0] = sum of x[0..n), n <= 32: lanes past n exit, the others shuffle among themselves
extern "C" __global__ void partial_warp_sum(const float* x, float* y, int n) {
    int i = threadIdx.x;
    if (i >= n) return;
    unsigned int m = __activemask();
    float v = x[i];
    for (int d = 16; d > 0; d /= 2) {
        float o = __shfl_down_sync(m, v, d);
        if (i + d < n) v += o;
    }
    if (i == 0) y[0] = v;
}
"""


@pytest.fixture(scope="module")
def sgemm():
    return load_module(SGEMM)


@pytest.fixture(scope="module")
def elementwise():
    return load_module(ELEMENTWISE)


# ---- correct kernels, right in every order ----------------------------------

def test_tiled_sgemm_128_in_every_order(sgemm):
    rng = np.random.default_rng(0)
    m = n = k = 128
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    f = sgemm.get_function("sgemm")
    assert sgemm.fibers  # it has barriers: threads run as fibers
    for order in ORDERS:
        sgemm.order = order
        c = np.full((m, n), np.nan, np.float32)
        t0 = time.perf_counter()
        f((blocks(n, 16), blocks(m, 16)), (16, 16), (a, b, c, np.int32(m), np.int32(n), np.int32(k)))
        elapsed = time.perf_counter() - t0
        assert_close(c, a.astype(np.float64) @ b, f"sgemm 128^3 ({order})", atol=1e-4, rtol=1e-4)
        assert sgemm.sanitize or elapsed < 5.0, f"sgemm 128^3 ({order}) took {elapsed:.2f} s"


def test_sgemm_ragged_sizes(sgemm):
    rng = np.random.default_rng(1)
    m, n, k = 37, 21, 50  # not multiples of the tile: exercises the bounds checks
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    sgemm.order = "shuffle"
    c = np.full((m, n), np.nan, np.float32)
    sgemm.get_function("sgemm")((blocks(n, 16), blocks(m, 16)), (16, 16),
                                (a, b, c, np.int32(m), np.int32(n), np.int32(k)))
    assert_close(c, a.astype(np.float64) @ b, "sgemm 37x50 @ 50x21", atol=1e-4, rtol=1e-4)


def test_elementwise_million_runs_as_plain_calls(elementwise):
    assert not elementwise.fibers  # no barrier in the file: threads are plain calls
    rng = np.random.default_rng(2)
    n = 1_000_000
    x = rng.standard_normal(n, dtype=np.float32)
    y0 = rng.standard_normal(n, dtype=np.float32)
    f = elementwise.get_function("saxpy")
    for order in ORDERS:
        elementwise.order = order
        y = y0.copy()
        t0 = time.perf_counter()
        f(blocks(n, 256), 256, (x, y, np.float32(0.5), np.int64(n)))
        elapsed = time.perf_counter() - t0
        assert_close(y, np.float32(0.5) * x + y0, f"saxpy ({order})", atol=0, rtol=0)
        assert elementwise.sanitize or elapsed < 5.0, \
            f"saxpy over 1e6 ({order}) took {elapsed:.2f} s"


def test_thread_orders(elementwise):
    """forward runs threads (and blocks) 0, 1, 2...; reverse the other way; shuffle a
    permutation that the seed fixes."""
    f = elementwise.get_function("record_order")
    n = 3 * 2 * 4 * 5  # 3 blocks of (2, 4, 5) threads

    def run(order, seed=0):
        elementwise.order, elementwise.seed = order, seed
        counter, out = np.zeros(1, np.int32), np.full(n, -1, np.int32)
        f(3, (2, 4, 5), (counter, out))
        assert counter[0] == n
        return out

    assert np.array_equal(run("forward"), np.arange(n))
    assert np.array_equal(run("reverse"), np.arange(n)[::-1])
    s1, s2, s3 = run("shuffle", 1), run("shuffle", 1), run("shuffle", 2)
    assert np.array_equal(np.sort(s1), np.arange(n))
    assert np.array_equal(s1, s2), "the same seed must give the same order"
    assert not np.array_equal(s1, s3), "another seed should give another order"
    assert not np.array_equal(s1, np.arange(n))
    elementwise.seed = 0


def test_warp_shuffles_ballot_and_syncthreads_count():
    mod = load_module(WARP)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(256, dtype=np.float32)
    for order in ORDERS:
        mod.order = order
        y, mask = np.zeros(8, np.float32), np.zeros(8, np.uint32)
        mod.get_function("warp_sum")(2, 128, (x, y, mask))
        assert_close(y, x.reshape(8, 32).astype(np.float64).sum(axis=1), f"warp_sum ({order})")
        want = [sum(1 << lane for lane in range(32) if x[32 * w + lane] > 0) for w in range(8)]
        assert mask.tolist() == want, f"ballot ({order})"
        y, count = np.zeros(256, np.float32), np.zeros(2, np.int32)
        mod.get_function("swap_pairs")(2, 128, (x, y, count))
        assert_close(y, x.reshape(-1, 2)[:, ::-1].reshape(-1), f"shfl_xor ({order})", 0, 0)
        assert count.tolist() == [(x[:128] > 0).sum(), (x[128:] > 0).sum()]
        y = np.zeros(1, np.float32)
        mod.get_function("partial_warp_sum")(1, 32, (x, y, np.int32(20)))
        assert_close(y, [x[:20].astype(np.float64).sum()], f"partial warp sum ({order})")


# ---- the broken kernels -------------------------------------------------------

def test_missing_syncthreads_is_wrong_in_some_order_and_fixed_in_all():
    path = BROKEN / "missing_syncthreads.cu"
    rng = np.random.default_rng(4)
    n = 1000
    x = rng.standard_normal(n, dtype=np.float32)
    ref = np.pad(x, (0, 24)).reshape(4, 256).astype(np.float64).sum(axis=1)

    def results(mod):
        out = {}
        for order in ORDERS:
            mod.order = order
            y = np.full(4, np.nan, np.float32)
            mod.get_function("block_sum")(4, 256, (x, y, np.int32(n)))
            out[order] = y
        return out

    def right(y):
        return np.allclose(y, ref, atol=1e-4, rtol=1e-4)

    broken = results(load_module(path))
    assert not all(right(y) for y in broken.values()), \
        f"the missing barrier went unnoticed in every order: {broken}"
    assert not right(broken["forward"])  # as the file's comment says
    src = path.read_text()
    assert "// MISSING: __syncthreads();" in src
    fixed = results(load_module(src.replace("// MISSING: __syncthreads();", "__syncthreads();")))
    for order, y in fixed.items():
        assert_close(y, ref, f"block_sum with the barrier ({order})", atol=1e-4, rtol=1e-4)


def test_uninitialised_shared_memory_reads_nan():
    path = BROKEN / "uninitialised_shared.cu"
    rng = np.random.default_rng(5)
    n = 512
    x = rng.standard_normal(n, dtype=np.float32)
    xp = np.pad(x.astype(np.float64), 1)
    ref = (xp[:-2] + xp[1:-1] + xp[2:]) / 3
    mod = load_module(path)
    for order in ORDERS:
        mod.order = order
        y = np.zeros(n, np.float32)
        mod.get_function("blur3")(blocks(n, 128), 128, (x, y, np.int32(n)))
        edges = np.arange(127, n, 128)  # the last thread of each block reads tile[129]
        assert np.isnan(y[edges]).all(), f"({order}) the unwritten halo did not show as NaN"
        rest = np.setdiff1d(np.arange(n), edges)
        assert_close(y[rest], ref[rest], f"blur3 away from block edges ({order})")
    line = "    // MISSING: if (t == BLOCK - 1) tile[BLOCK + 1] = i + 1 < n ? x[i + 1] : 0.0f;"
    src = path.read_text()
    assert line in src
    fixed = load_module(src.replace(line, line.replace("// MISSING: ", "")))
    y = np.zeros(n, np.float32)
    fixed.get_function("blur3")(blocks(n, 128), 128, (x, y, np.int32(n)))
    assert_close(y, ref, "blur3 with the halo loaded")


def test_barrier_in_divergent_code_names_the_line():
    path = BROKEN / "divergent_barrier.cu"
    mod = load_module(path)
    x = np.arange(100, dtype=np.float32)
    y = np.zeros(100, np.float32)
    with pytest.raises(EmulatorError) as e:
        mod.get_function("reverse_blocks")(2, 64, (x, y, np.int32(100)))
    line = line_of(path, "__syncthreads();")
    msg = str(e.value)
    assert f"divergent_barrier.cu:{line}" in msg, msg
    assert "kernel reverse_blocks, block (1,0,0)" in msg, msg
    assert "reached by 36 of 64 threads" in msg, msg
    # the module is still usable after the error: a full last block passes
    mod.get_function("reverse_blocks")(2, 64, (np.arange(128, dtype=np.float32),
                                              np.zeros(128, np.float32), np.int32(128)))


def test_threads_at_different_barriers_names_both_lines():
    path = BROKEN / "barrier_mismatch.cu"
    mod = load_module(path)
    x = np.ones(64, np.float32)
    with pytest.raises(EmulatorError, match="wait at different barriers") as e:
        mod.get_function("halves")(1, 64, (x, np.zeros(64, np.float32), np.int32(64)))
    lines = [n for n, t in enumerate(path.read_text().splitlines(), 1) if "__syncthreads();" in t]
    assert len(lines) == 2
    for line in lines:
        assert f"barrier_mismatch.cu:{line}" in str(e.value), str(e.value)


def test_wrong_index_map_passes_one_tile_and_fails_against_numpy():
    mod = load_module(BROKEN / "wrong_index_transpose.cu")
    f = mod.get_function("transpose")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((32, 32), dtype=np.float32)
    y = np.zeros((32, 32), np.float32)
    f((1, 1), (32, 32), (x, y, np.int32(32), np.int32(32)))
    assert np.array_equal(y, x.T), "one tile: the bug should hide"
    r, c = 48, 80
    x = rng.standard_normal((r, c), dtype=np.float32)
    for order in ORDERS:
        mod.order = order
        y = np.zeros((c, r), np.float32)
        f((blocks(c, 32), blocks(r, 32)), (32, 32), (x, y, np.int32(r), np.int32(c)))
        with pytest.raises(AssertionError, match="worst element"):
            assert_close(y, x.T, f"transpose 48x80 ({order})", atol=0, rtol=0)


def test_float_passed_as_double_is_an_argument_error():
    mod = load_module(BROKEN / "float_as_double.cu")
    f = mod.get_function("scale")
    x = np.arange(8, dtype=np.float32)
    y = np.zeros(8, np.float32)
    for alpha, got in [(2.0, "a Python float"), (np.float64(2.0), "numpy.float64")]:
        with pytest.raises(KernelArgumentError) as e:
            f(1, 8, (x, y, alpha, np.int32(8)))
        msg = str(e.value)
        assert msg.startswith("kernel scale, parameter 2 (float alpha): expected numpy.float32"), msg
        assert got in msg and "pass np.float32(...)" in msg, msg
    with pytest.raises(KernelArgumentError, match=r"parameter 3 \(int n\).*pass np\.int32"):
        f(1, 8, (x, y, np.float32(2), 8))
    f(1, 8, (x, y, np.float32(2), np.int32(8)))  # the right call
    assert_close(y, 2 * x, "scale", 0, 0)


def test_race_between_blocks_is_not_caught():
    """The emulator's stated limit: blocks run one by one, so a missing atomicAdd between
    blocks gives the right sum here (on a GPU it loses some)."""
    mod = load_module(BROKEN / "race_between_blocks.cu")
    x = np.ones(4096, np.float32)
    for order in ORDERS:
        mod.order = order
        out = np.zeros(1, np.float32)
        mod.get_function("total")(16, 256, (x, out, np.int32(4096)))
        assert out[0] == 4096.0


# ---- argument and launch checks -------------------------------------------------

def test_argument_checks(elementwise):
    f = elementwise.get_function("saxpy")
    x = np.zeros(10, np.float32)
    y = np.zeros(10, np.float32)
    ok = (x, y, np.float32(1), np.int64(10))
    f(1, 32, ok)
    cases = [
        ((x, y, np.float32(1)), r"saxpy takes 4 arguments .* got 3"),
        ((x.astype(np.float64), y, np.float32(1), np.int64(10)),
         r"parameter 0 \(const float\* x\): expected a numpy array of float32 .* float64"),
        ((x, np.zeros((10, 2), np.float32)[:, 0], np.float32(1), np.int64(10)),
         r"parameter 1 \(float\* y\).*not C-contiguous"),
        ((x, [0.0] * 10, np.float32(1), np.int64(10)), r"parameter 1 .*a Python list"),
        ((x, y, np.float32(1), np.int32(10)),
         r"parameter 3 \(long long n\): expected numpy.int64, got numpy.int32"),
        ([x, y, np.float32(1), np.int64(10)], r"args must be a tuple"),
    ]
    for args, pattern in cases:
        with pytest.raises(KernelArgumentError, match=pattern):
            f(1, 32, args)
    with pytest.raises(EmulatorError, match=r"2048 threads per block .* more than 1024"):
        f(1, (64, 32), ok)
    with pytest.raises(EmulatorError, match=r"block.z = 65 is outside 1..64"):
        f(1, (1, 1, 65), ok)
    with pytest.raises(EmulatorError, match="grid must be an int or a tuple"):
        f((1, 1, 1, 1), 32, ok)
    with pytest.raises(EmulatorError, match="dynamic shared memory"):
        f(1, 32, ok, shared_mem=128)
    with pytest.raises(ValueError, match="order must be one of"):
        elementwise.order = "backwards"
    with pytest.raises(EmulatorError, match="no kernel named 'saxpi'"):
        elementwise.get_function("saxpi")


def test_dynamic_shared_memory_is_refused_at_load():
    src = 'extern "C" __global__ void k(float* y) {\n  extern __shared__ float s[];\n  y[0] = s[0];\n}\n'
    with pytest.raises(EmulatorError, match=r":2: dynamic shared memory .*not supported"):
        load_module(src)


def test_compile_error_names_the_cu_line(tmp_path):
    path = tmp_path / "typo.cu"
    path.write_text('extern "C" __global__ void k(float* y) {\n    y[0] = undefined_name;\n}\n')
    with pytest.raises(CompileError, match=r"typo\.cu:2:.*undefined_name"):
        load_module(path)


@pytest.mark.skipif(loader._asan_loaded(), reason="under AddressSanitizer a bad access "
                    "is the sanitizer's report, not an EmulatorError")
def test_invalid_access_is_an_error_not_a_crash(elementwise):
    f = elementwise.get_function("write_to")
    elementwise.order = "forward"
    with pytest.raises(EmulatorError, match=r"write_to, block \(0,0,0\): thread \(0,0,0\): "
                                            r"invalid memory access"):
        f(1, 4, (None,))
    p = np.zeros(4, np.float32)
    f(1, 4, (p,))  # and the module still works
    assert p.tolist() == [1.0] * 4


def test_cache_is_outside_the_source_tree_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("MINICNN_CACHE", str(tmp_path))
    src = 'extern "C" __global__ void one(int* y) { y[threadIdx.x] = 1; }\n'
    load_module(src)
    built = sorted(p.name for p in (tmp_path / "emu").glob("*.so"))
    assert len(built) == 1
    t0 = time.perf_counter()
    mod = load_module(src)
    assert time.perf_counter() - t0 < 0.5, "the second load should come from the cache"
    assert sorted(p.name for p in (tmp_path / "emu").glob("*.so")) == built
    y = np.zeros(3, np.int32)
    mod.get_function("one")(1, 3, (y,))
    assert y.tolist() == [1, 1, 1]


def test_sanitized_module_refuses_to_load_without_the_runtime():
    if loader._asan_loaded():
        pytest.skip("this process already runs under AddressSanitizer")
    with pytest.raises(EmulatorError, match="LD_PRELOAD"):
        load_module(BROKEN / "oob_global_read.cu", sanitize=True)


# ---- the sanitizer run ------------------------------------------------------------

SANITIZED_RUN = """
import numpy as np
from minicnn.kernels.cuda.emu import load_module
mod = load_module({path!r})
assert mod.sanitize
x = np.arange(300, dtype=np.float32)
y = np.zeros(300, np.float32)
mod.get_function({kernel!r})(3, 128, (x, y, np.int32(300)))
print("finished without a report")
"""


@pytest.mark.sanitizer
@pytest.mark.parametrize("name, kernel, marker, kind", [
    ("oob_global_read.cu", "forward_diff", "float d = x[i + 1] - x[i];",
     "AddressSanitizer: heap-buffer-overflow"),
    ("oob_shared_write.cu", "shift_left", "s[t + 1] = i < n ? x[i] : 0.0f;",
     "runtime error: index 128 out of bounds for type 'float [128]'"),
])
def test_sanitizer_reports_out_of_bounds_with_the_cu_line(name, kernel, marker, kind):
    if loader.libasan_path() is None:
        pytest.skip("no libasan.so for g++ (g++ -print-file-name=libasan.so)")
    path = BROKEN / name
    r = loader.run_sanitized(SANITIZED_RUN.format(path=str(path), kernel=kernel), timeout=240)
    report = r.stderr
    assert r.returncode != 0, f"no sanitizer report:\n{r.stdout}\n{report}"
    assert "finished without a report" not in r.stdout
    assert kind in report, report
    assert f"{name}:{line_of(path, marker)}" in report, report


SHARED_THROUGH_POINTER = """\
// a store the compiler cannot bound-check: the pointer comes from elsewhere
__device__ __noinline__ void put(float* p, int k, float v) {
    p[k] = v;
}
extern "C" __global__ void shift_ptr(const float* x, float* y, int n) {
    __shared__ float s[128];
    int t = threadIdx.x, i = blockIdx.x * 128 + t;
    put(s, t + 1, i < n ? x[i] : 0.0f);  // s[128] for the last thread: past the end
    __syncthreads();
    if (i < n) y[i] = s[t];
}
"""


@pytest.mark.sanitizer
def test_sanitizer_sees_shared_memory_red_zones(tmp_path):
    """Through a pointer UBSan cannot see the bound; AddressSanitizer's red zones around
    each __shared__ array (-fsanitize-sections=emushared) still catch the write, and the
    report names the store and the kernel line that called it."""
    if loader.libasan_path() is None:
        pytest.skip("no libasan.so for g++ (g++ -print-file-name=libasan.so)")
    path = tmp_path / "shared_through_pointer.cu"
    path.write_text(SHARED_THROUGH_POINTER)
    r = loader.run_sanitized(SANITIZED_RUN.format(path=str(path), kernel="shift_ptr"),
                             timeout=240)
    assert r.returncode != 0, f"no sanitizer report:\n{r.stdout}\n{r.stderr}"
    assert "AddressSanitizer: global-buffer-overflow" in r.stderr, r.stderr
    assert "WRITE of size 4" in r.stderr, r.stderr
    for marker in ("p[k] = v;", "put(s, t + 1"):
        assert f"shared_through_pointer.cu:{line_of(path, marker)}" in r.stderr, r.stderr
    assert "global variable 's' defined in" in r.stderr, r.stderr
