"""The emulator's GPU arithmetic (load_module(gpu_math=True), MINICNN_EMU_GPU_MATH=1).

A GPU running NVRTC's code with cupy's -ftz=true rounds differently from IEEE on the
CPU in two ways, and the mode reproduces both:
  - subnormal float32 inputs read as zero and subnormal results become zero
    (FTZ/DAZ set in MXCSR during each launch); without the mode they are kept;
  - a*b - c is one fused multiply-add, rounded once (-ffp-contract=fast -mfma):
    with c = fl(a*b) it gives the rounding error of a*b, not 0.
Then the kernels of a few representative ops, compiled in the mode, are held to the
same tolerances as every other device: to the float64 numpy reference through the
shared CUDA cases, and to PyTorch.
"""

import numpy as np
import pytest

from minicnn.kernels.cuda.emu import load_module

from cuda_cases import ATOL, CASES, RTOL, Runner, assert_close
from draws import run_examples

pytest.importorskip("minicnn.backends.cuda_sim", reason="the CUDA emulator needs g++")

SOURCE = r'''
extern "C" __global__ void scale(const float* x, const float* s, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] * s[i];
}
extern "C" __global__ void mul_sub(const float* a, const float* b, const float* c, float* y,
                                   int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a[i] * b[i] - c[i];
}
'''
TINY = np.finfo(np.float32).tiny     # the smallest normal float32


def _launch(module, name, *arrays):
    n = arrays[0].size
    out = np.full(n, np.nan, np.float32)
    module.get_function(name)(((n + 63) // 64,), (64,), (*arrays, out, np.int32(n)))
    return out


def _subnormal(a):
    return (a != 0) & (np.abs(a) < TINY)


@pytest.fixture(scope="module")
def modules():
    return {mode: load_module(SOURCE, gpu_math=mode) for mode in (False, True)}


def test_subnormals_flush_to_zero_only_in_the_mode(modules):
    rng = np.random.default_rng(0)
    # subnormal inputs (DAZ), normal inputs whose product is subnormal (FTZ), normal ones
    x = np.concatenate([rng.uniform(1e-44, 1e-38, 40), rng.uniform(1e-25, 1e-22, 40),
                        rng.uniform(0.5, 2.0, 40)]).astype(np.float32)
    x *= np.where(rng.random(x.size) < 0.5, -1, 1).astype(np.float32)
    s = np.concatenate([rng.uniform(0.5, 1, 40), rng.uniform(1e-18, 1e-16, 40),
                        rng.uniform(0.5, 2, 40)]).astype(np.float32)
    ieee = x * s                                   # numpy: IEEE, subnormals kept
    assert _subnormal(x[:40]).all() and _subnormal(ieee[40:80]).all()

    plain = _launch(modules[False], "scale", x, s)
    np.testing.assert_array_equal(plain, ieee)

    gpu = _launch(modules[True], "scale", x, s)
    flushed = np.where(_subnormal(x), np.float32(0) * s, ieee)    # DAZ: x read as zero
    flushed = np.where(_subnormal(flushed), np.float32(0), flushed)  # FTZ: result zeroed
    np.testing.assert_array_equal(gpu, flushed)
    assert not _subnormal(gpu).any()
    assert (gpu[_subnormal(x)] == 0).all() and (gpu[80:] == ieee[80:]).all()
    # the mode is over when the launch is: numpy's arithmetic keeps its subnormals
    assert _subnormal(np.float32(1e-39) * np.float32(1.0))


def test_multiply_subtract_is_one_fused_rounding_only_in_the_mode(modules):
    rng = np.random.default_rng(1)
    a = rng.uniform(1, 2, 256).astype(np.float32)
    b = rng.uniform(1, 2, 256).astype(np.float32)
    c = a * b                                      # fl(a*b): one float32 rounding
    exact = (a.astype(np.float64) * b.astype(np.float64) - c).astype(np.float32)
    assert (exact != 0).sum() > 200, "the draws should have products that round"

    plain = _launch(modules[False], "mul_sub", a, b, c)
    np.testing.assert_array_equal(plain, np.zeros_like(a))   # rounded product minus itself

    fused = _launch(modules[True], "mul_sub", a, b, c)
    np.testing.assert_array_equal(fused, exact)   # a*b exact in float64: fma, rounded once


# ----------------------------------------- the real kernels in the mode, same tolerances

@pytest.fixture(scope="module")
def gpu_math_backend():
    """The backend table of device "cuda-sim" (a CudaKernels) with every .cu compiled in
    the mode."""
    from minicnn.backends._cuda_glue import CudaKernels
    return CudaKernels("cuda-sim", np, lambda path: load_module(path, gpu_math=True))


def _order_setter(kernels):
    def set_order(order):
        for module in kernels.loaded_modules():
            module.order = order
    return set_order


@pytest.mark.parametrize("name", ["conv2d", "linear", "sigmoid", "softmax", "cross_entropy"])
def test_kernels_in_the_mode_hold_the_reference_tolerance(gpu_math_backend, name):
    run = Runner(gpu_math_backend, ("forward", "shuffle"), _order_setter(gpu_math_backend))
    strategy, check = CASES[name]
    run_examples(strategy, lambda case: check(run, case), 4)
    modules = gpu_math_backend.loaded_modules()
    assert modules and all(m.gpu_math for m in modules)


def test_conv2d_and_linear_in_the_mode_match_pytorch(gpu_math_backend):
    torch = pytest.importorskip("torch")
    B = gpu_math_backend
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    y = B.conv2d_forward(x, w, b, (2, 1), (1, 1))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, (2, 1), (1, 1))
    assert_close(y, ty.detach().numpy(), "conv2d forward (GPU arithmetic)", ATOL, RTOL)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx, gw, gb = B.conv2d_backward(x, w, gy, (2, 1), (1, 1))
    ty.backward(torch.tensor(gy))
    for got, ref, what in ((gx, tx.grad, "input"), (gw, tw.grad, "weight"), (gb, tb.grad, "bias")):
        assert_close(got, ref.numpy(), f"conv2d {what} gradient (GPU arithmetic)", ATOL, RTOL)

    a = rng.standard_normal((5, 37)).astype(np.float32)
    lw = rng.standard_normal((6, 37)).astype(np.float32)
    lb = rng.standard_normal(6).astype(np.float32)
    ref = torch.nn.functional.linear(torch.tensor(a), torch.tensor(lw), torch.tensor(lb))
    assert_close(B.linear_forward(a, lw, lb), ref.numpy(), "linear forward (GPU arithmetic)",
                 ATOL, RTOL)
