"""The CUDA C kernels on the CPU emulator (device "cuda-sim") against the numpy reference.

Every entry of the backend table is checked, forward and backward, over settings drawn
by hypothesis, each case in the three thread orders of the emulator (forward, reverse,
shuffled); the checks themselves live in tests/cuda_cases.py, shared with
test_cuda_gpu.py. Also here: the backend exposes exactly the table, the launch sizes
agree with the constants of the .cu files, and mistakes give clear errors.
"""
import inspect
import re

import numpy as np
import pytest

from cuda_cases import CASES, Runner, check_conv2d_layer, run_cases

sim = pytest.importorskip("minicnn.backends.cuda_sim",
                          reason="the CUDA emulator needs g++ (device 'cuda-sim')")

from minicnn import backends  # noqa: E402
from minicnn.backends import reference as ref_backend  # noqa: E402
from minicnn.backends import _cuda_glue as glue  # noqa: E402

ORDERS = ("forward", "reverse", "shuffle")


@pytest.fixture
def run():
    return Runner(sim.kernels, ORDERS, sim.set_thread_order)


@pytest.mark.parametrize("name", list(CASES))
def test_kernel_matches_reference(run, name):
    strategy, check = CASES[name]
    run_cases(strategy, lambda case: check(run, case))


def test_conv2d_first_layer_of_the_model(run):
    check_conv2d_layer(run, seed=0)


def test_backend_exposes_exactly_the_table():
    """backends.Backend (table.py) is the table: every entry documented with its shapes,
    every device providing every entry."""
    table = backends.KERNEL_TABLE
    assert "conv2d_forward" in table and "adam_step" in table and len(table) == len(set(table))
    for name in table:
        doc = getattr(backends.Backend, name).__doc__ or ""
        assert "->" in doc or "in place" in doc.lower(), f"Backend.{name} does not say what it returns"
    for device, impl in (("cpu", backends.get("cpu")), ("reference", ref_backend),
                         ("cuda-sim", backends.get("cuda-sim"))):
        missing = [name for name in table if not callable(getattr(impl, name, None))]
        assert not missing, f"{device} lacks {missing}"
    assert backends.get("cuda-sim") is sim.kernels
    assert sim.kernels.xp is np and sim.xp is np


def _define(family, name):
    text = glue.kernel_path(family).read_text()
    m = re.search(rf"^#define {name} (\d+)", text, flags=re.M)
    assert m, f"{family}.cu defines no {name}"
    return int(m.group(1))


def test_launch_geometry_matches_the_kernel_files():
    assert _define("gemm", "TILE") == glue.GEMM_TILE
    assert _define("gemm", "THREADS_XY") == glue.GEMM_THREADS
    assert _define("gemm", "PER_THREAD") * glue.GEMM_THREADS == glue.GEMM_TILE
    assert _define("gemm", "BLOCK") == glue.THREADS
    assert _define("loss", "BLOCK") == glue.THREADS
    assert glue.THREADS & (glue.THREADS - 1) == 0, "tree reductions need a power of two"


def test_thread_order_is_applied_and_checked():
    try:
        sim.set_thread_order("reverse")
        sim.kernels.relu_forward(np.ones(3, np.float32))
        assert sim.thread_order() == "reverse"
        assert all(m.order == "reverse" for m in sim.kernels.loaded_modules())
    finally:
        sim.set_thread_order("forward")
    with pytest.raises(ValueError, match="thread order"):
        sim.set_thread_order("backwards")


def test_float64_input_is_refused_in_words():
    x = np.zeros((1, 1, 3, 3))
    w = np.zeros((1, 1, 2, 2), np.float32)
    with pytest.raises(TypeError, match=r"conv2d on device 'cuda-sim': input has dtype float64.*float32"):
        sim.kernels.conv2d_forward(x, w, None, (1, 1), (0, 0))


def test_empty_arrays_launch_nothing():
    assert sim.kernels.relu_forward(np.zeros((0, 4), np.float32)).shape == (0, 4)
    assert sim.kernels.softmax_forward(np.zeros((0, 3), np.float32)).shape == (0, 3)


def test_max_pool2d_backward_adds_where_windows_overlap():
    # 3x3 windows, stride 1: the centre pixel 9 wins all four windows of a 4x4 input
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = 9.0
    y, idx = sim.kernels.max_pool2d_forward(x, (3, 3), (1, 1), (0, 0))
    assert np.array_equal(idx.reshape(-1), [5, 5, 5, 5])
    gx = sim.kernels.max_pool2d_backward(np.arange(1, 5, dtype=np.float32).reshape(1, 1, 2, 2), idx,
                                 x.shape)
    assert gx[0, 0, 1, 1] == 10.0 and gx.sum() == 10.0


def test_cross_entropy_bad_target_gives_nan_not_a_wild_read():
    logits = np.zeros((2, 3), np.float32)
    loss, _ = sim.kernels.cross_entropy_forward(logits, np.array([0, 7]), None, "none")
    assert np.isfinite(loss[0]) and np.isnan(loss[1])


# ----------------------------------------------------------------------------- like a real GPU

def test_fresh_outputs_on_cuda_sim_are_garbage_as_on_a_gpu():
    k = sim.kernels
    f, i = k._empty((3, 2)), k._empty((4,), np.int32)
    assert np.isnan(f).all(), "a fresh float output must hold NaN"
    assert (i == glue.POISON).all(), "a fresh int output must hold the poison pattern"
    assert (k._zeros((5,)) == 0).all()
    # a kernel that forgets an element shows it: relu writes only the first n elements
    x = np.ones(10, np.float32)
    out = k._empty((10,))
    k.launch("activation", "relu_forward", glue.per_element(7), x, out, np.int32(7))
    assert (out[:7] == 1).all() and np.isnan(out[7:]).all()


def test_sync_mode_names_the_failing_kernel_file_grid_and_block(monkeypatch):
    x = np.ones(4, np.float32)
    bad = ((1, 1, 1), (64, 32, 1))                   # more threads than a block may have
    monkeypatch.delenv(glue.SYNC_ENV, raising=False)
    with pytest.raises(Exception, match="2048 threads per block"):
        sim.kernels.launch("activation", "relu_forward", bad, x, x.copy(), np.int32(4))
    monkeypatch.setenv(glue.SYNC_ENV, "1")
    with pytest.raises(glue.CudaKernelError) as e:
        sim.kernels.launch("activation", "relu_forward", bad, x, x.copy(), np.int32(4))
    msg = str(e.value)
    for part in ("relu_forward", "activation.cu", "(1, 1, 1)", "(64, 32, 1)",
                 "2048 threads per block"):
        assert part in msg, f"{part!r} missing from: {msg}"
    # and a good launch still runs (and returns) under the synchronous mode
    assert np.array_equal(sim.kernels.relu_forward(np.array([-1.0, 2.0], np.float32)), [0.0, 2.0])


def test_an_array_of_2_31_elements_is_refused_by_name():
    big = np.broadcast_to(np.float32(0), (2**16, 2**15))   # 2**31 elements, no memory
    out = np.zeros(4, np.float32)
    with pytest.raises(glue.KernelSizeError,
                       match=r"kernel relu_forward \(activation\.cu\): argument 'x' has shape "
                             r"\(65536, 32768\), 2147483648 elements"):
        sim.kernels.launch("activation", "relu_forward", glue.per_element(4), big, out,
                            np.int32(4))
    with pytest.raises(glue.KernelSizeError, match=r"shape \(65536, 32768\)"):
        sim.kernels._empty((2**16, 2**15))               # refused before allocating
    just_under = np.broadcast_to(np.float32(0), (2**31 - 1,))
    sim.kernels._check_sizes("activation", "relu_forward", (just_under, out))


def test_every_table_entry_is_written_out_where_a_reader_greps():
    """Each entry is a `def` of the CUDA glue with Backend's parameters, and an import of
    cpu.py and reference.py: nothing filled in at run time."""
    from pathlib import Path
    folder = Path(backends.__file__).parent
    glue_source = (folder / "_cuda_glue.py").read_text() + (folder / "_cuda_layers.py").read_text()
    for entry in backends.KERNEL_TABLE:
        assert f"    def {entry}(self" in glue_source, entry
        want = list(inspect.signature(getattr(backends.Backend, entry)).parameters)
        got = list(inspect.signature(getattr(glue.CudaKernels, entry)).parameters)
        assert got == want, (entry, got, want)
    for name in ("cpu", "reference"):
        source = (folder / f"{name}.py").read_text()
        for entry in backends.KERNEL_TABLE:
            assert re.search(rf"\b{entry},?\n|import .*\b{entry}\b", source), (name, entry)
    for name in ("cuda", "cuda_sim", "cpu", "reference", "_cuda_glue", "_cuda_layers"):
        assert "globals()" not in (folder / f"{name}.py").read_text(), name
