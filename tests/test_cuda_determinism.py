"""The CUDA kernels give the same bits whatever order the GPU runs threads and blocks
in, work in bounded memory, and split long weight-gradient sums without losing either.

Determinism: every backward of the backend table (and the forwards and optimiser steps
beside them) runs on the emulator ("cuda-sim") in forward order, in reverse order and
in two seeded shuffles of the threads of each block AND of the blocks of the grid; the
results must agree bit for bit. A first test proves the harness can see a difference:
a float atomicAdd into one cell changes bits between shuffles.

Split-K: with the thresholds lowered, small weight gradients are cut into slices of
whole images, and into parts of one image; the result is held to numpy (float64) and
is bitwise the same in every order.

Bounded memory: the convolution works in chunks of images under
CONV_WORKSPACE_BYTES; chunked results equal the unchunked ones bit for bit, and the
peak device memory of AlexNet's conv2 at batch 32 (96 -> 256 channels, 5x5, pad 2, on
27 x 27) is measured through the glue's allocator: it stays under the budget plus the
layer's own outputs. At that size the emulator would take many minutes for the
arithmetic, so that one measurement runs the glue with kernels that only record their
launches (the kernels allocate nothing; every device array comes from the glue); the
same bound is checked with the real emulated kernels on a small layer.
"""
import numpy as np
import pytest

from cuda_cases import assert_close, glue_limits
from draws import few_values, normal

sim = pytest.importorskip("minicnn.backends.cuda_sim",
                          reason="the CUDA emulator needs g++ (device 'cuda-sim')")

from minicnn.backends import _cuda_glue as glue  # noqa: E402
from minicnn.kernels.cuda.emu import load_module  # noqa: E402
from minicnn.kernels import reference as R  # noqa: E402

F64 = np.float64
# (thread and block order, shuffle seed): four runs that must agree bit for bit
RUNS = (("forward", 0), ("shuffle", 1), ("shuffle", 2), ("reverse", 0))
# every kernels/cuda/*.cu file: a kernel added to any of them needs a case below
FAMILIES = tuple(sorted(p.stem for p in glue.KERNEL_DIR.glob("*.cu")))


def _set_order(order, seed):
    for family in FAMILIES:                 # loaded now, so the seed reaches every module
        sim.kernels.module(family)
    sim.set_thread_order(order)
    for module in sim.kernels.loaded_modules():
        module.seed = seed


def _bits(value):
    """Arrays (or tuples of them, None allowed) as raw bytes, to compare bit for bit."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return tuple(_bits(v) for v in value)
    a = np.ascontiguousarray(value)
    return (a.shape, a.dtype.str, a.tobytes())


def in_every_order(fn):
    """fn() in each of RUNS; asserts every run gives the bits of the first; returns it."""
    results = []
    try:
        for order, seed in RUNS:
            _set_order(order, seed)
            results.append(fn())
    finally:
        _set_order("forward", 0)
    first = _bits(results[0])
    for (order, seed), r in zip(RUNS[1:], results[1:]):
        assert _bits(r) == first, f"the bits differ in order {order!r} (seed {seed})"
    return results[0]


# ----------------------------------------------------------------------------- the harness

ORDER_PROBE = r"""
extern "C" __global__ void add_all(const float* v, float* out, int n)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) atomicAdd(out, v[t]);
}
extern "C" __global__ void block_order(int* counter, int* out)
{
    if (threadIdx.x == 0) out[blockIdx.x] = atomicAdd(counter, 1);
}
"""


def test_the_harness_sees_an_order_dependent_sum():
    # float addition is not associative: an atomicAdd of many magnitudes into one cell
    # gives other bits when the threads run in another order
    rng = np.random.default_rng(0)
    v = (rng.standard_normal(64) * 10.0 ** rng.uniform(-4, 4, 64)).astype(np.float32)
    sums, firsts = set(), set()
    for order, seed in RUNS:
        mod = load_module(ORDER_PROBE, order=order, seed=seed)
        out = np.zeros(1, np.float32)
        mod.get_function("add_all")((4,), (16,), (v, out, np.int32(64)))
        sums.add(out.tobytes())
        counter, ticket = np.zeros(1, np.int32), np.full(8, -1, np.int32)
        mod.get_function("block_order")((8,), (4,), (counter, ticket))
        assert sorted(ticket) == list(range(8)), ticket
        firsts.add(tuple(ticket))
    assert len(sums) > 1, "every order summed to the same bits: the orders are not varied"
    assert len(firsts) == len(RUNS), f"the blocks did not run in {len(RUNS)} orders: {firsts}"


# ----------------------------------------------------------------------------- every backward

def test_conv2d_is_deterministic():
    rng = np.random.default_rng(1)
    for stride, padding in (((1, 1), (1, 1)), ((2, 2), (0, 1))):
        x, w, b = normal(rng, 2, 3, 7, 7), normal(rng, 4, 3, 3, 3), normal(rng, 4)
        y = sim.kernels.conv2d_forward(x, w, b, stride, padding)
        gy = normal(rng, *y.shape)
        in_every_order(lambda: sim.kernels.conv2d_forward(x, w, b, stride, padding, relu=True))
        in_every_order(lambda: sim.kernels.conv2d_backward(x, w, gy, stride, padding))
        # one image per chunk, and gW split along K into partials
        with glue_limits(CONV_WORKSPACE_BYTES=1, SPLIT_K_TARGET_BLOCKS=8, SPLIT_K_MIN_SLICE=4):
            assert glue.WeightGrad(sim.kernels, 4, 27, 2, y.shape[2] * y.shape[3]).slices > 1
            in_every_order(lambda: sim.kernels.conv2d_backward(x, w, gy, stride, padding))


def test_max_pool2d_with_overlapping_windows_is_deterministic():
    # 3x3 windows, stride 2: neighbouring windows share a row and a column, and with few
    # distinct values one pixel often wins several windows
    rng = np.random.default_rng(2)
    x = few_values(rng, 2, 3, 9, 9)
    y_ref, idx_ref = R.max_pool2d_forward(x.astype(F64), (3, 3), (2, 2), (1, 1))
    gy = normal(rng, *y_ref.shape)
    gx_ref = R.max_pool2d_backward(gy.astype(F64), idx_ref, x.shape)
    assert np.bincount(idx_ref.reshape(6, -1)[0]).max() > 1, "no pixel wins two windows"
    y, idx = sim.kernels.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1))
    gx = in_every_order(lambda: sim.kernels.max_pool2d_backward(gy, idx, x.shape))
    assert_close(gx, gx_ref, "max_pool2d backward (gather)")
    # indices the backend did not make (no window geometry): the per-plane kernel
    copied = np.array(idx, dtype=np.int64)
    gx2 = in_every_order(lambda: sim.kernels.max_pool2d_backward(gy, copied, x.shape))
    assert_close(gx2, gx_ref, "max_pool2d backward (per plane)")
    in_every_order(lambda: sim.kernels.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1)))


def test_avg_pool2d_is_deterministic():
    rng = np.random.default_rng(3)
    x = normal(rng, 2, 2, 9, 9)
    gy = normal(rng, 2, 2, 4, 4)
    in_every_order(lambda: sim.kernels.avg_pool2d_forward(x, (3, 3), (2, 2), (0, 0)))
    in_every_order(lambda: sim.kernels.avg_pool2d_backward(gy, x.shape, (3, 3), (2, 2), (0, 0)))


def test_linear_and_activations_are_deterministic():
    rng = np.random.default_rng(4)
    x, w, b, gy = normal(rng, 5, 70), normal(rng, 9, 70), normal(rng, 9), normal(rng, 5, 9)
    in_every_order(lambda: sim.kernels.linear_forward(x, w, b))
    in_every_order(lambda: sim.kernels.linear_backward(x, w, gy))
    a = normal(rng, 300)
    for op in ("relu", "sigmoid"):
        y = getattr(sim.kernels, f"{op}_forward")(a)
        in_every_order(lambda: getattr(sim.kernels, f"{op}_backward")(a, y))


def test_losses_are_deterministic():
    rng = np.random.default_rng(5)
    rows, gy = normal(rng, 3, 300) * np.float32(3), normal(rng, 3, 300)  # 300 > 256 threads
    for op in ("softmax", "log_softmax"):
        y = in_every_order(lambda: getattr(sim.kernels, f"{op}_forward")(rows))
        in_every_order(lambda: getattr(sim.kernels, f"{op}_backward")(gy, y))
    logits = normal(rng, 260, 3) * np.float32(3)         # 260 rows: the one-block sums stride
    target = rng.integers(0, 3, size=260)
    weight = rng.uniform(0.2, 2.0, size=3).astype(np.float32)
    for reduction in ("mean", "sum", "none"):
        loss, probs = in_every_order(
            lambda: sim.kernels.cross_entropy_forward(logits, target, weight, reduction))
        gloss = normal(rng, 260) if reduction == "none" else np.array(0.7, np.float32)
        in_every_order(lambda: sim.kernels.cross_entropy_backward(probs, target, weight, reduction,
                                                          gloss))


def test_optimiser_steps_are_deterministic():
    rng = np.random.default_rng(6)
    p0, g = normal(rng, 300), normal(rng, 300)

    def sgd():
        p, buf = p0.copy(), np.zeros(300, np.float32)
        for first in (True, False):
            sim.kernels.sgd_step(p, g, buf, 0.1, 0.9, 0.0, 1e-2, True, first)
        return p, buf

    def adam():
        p, m, v = p0.copy(), np.zeros(300, np.float32), np.zeros(300, np.float32)
        for step in (1, 2):
            sim.kernels.adam_step(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 1e-2, step)
        return p, m, v

    in_every_order(sgd)
    in_every_order(adam)


def test_batch_norm_is_deterministic():
    rng = np.random.default_rng(10)
    x, gy = normal(rng, 4, 3, 70), normal(rng, 4, 3, 70)     # 280 values per channel
    w, b = normal(rng, 3), normal(rng, 3)
    rm0, rv0 = normal(rng, 3), np.abs(normal(rng, 3)) + np.float32(0.5)

    def forward(training):
        rm, rv = rm0.copy(), rv0.copy()
        y, mean, invstd = sim.kernels.batch_norm_forward(x, w, b, rm, rv, training, 0.1, 1e-5)
        return y, mean, invstd, rm, rv

    for training in (True, False):
        _, mean, invstd, _, _ = in_every_order(lambda: forward(training))
        in_every_order(lambda: sim.kernels.batch_norm_backward(gy, x, w, mean, invstd, training))


def test_dropout_is_deterministic():
    rng = np.random.default_rng(11)
    x, gy = normal(rng, 3, 300), normal(rng, 3, 300)
    y, mask = in_every_order(lambda: sim.kernels.dropout_forward(x, 0.3, 1234, 5))
    in_every_order(lambda: sim.kernels.dropout_backward(gy, mask, 0.3))


def test_adaptive_avg_pool2d_is_deterministic():
    rng = np.random.default_rng(12)
    x = normal(rng, 2, 2, 7, 9)                       # bins that overlap: 7 -> 3, 9 -> 4
    in_every_order(lambda: sim.kernels.adaptive_avg_pool2d_forward(x, (3, 4)))
    gy = normal(rng, 2, 2, 3, 4)
    in_every_order(lambda: sim.kernels.adaptive_avg_pool2d_backward(gy, x.shape))


def test_bce_with_logits_is_deterministic():
    rng = np.random.default_rng(13)
    x = normal(rng, 300, 2) * np.float32(3)
    t = rng.uniform(0, 1, size=(300, 2)).astype(np.float32)
    w, pw = rng.uniform(0.2, 2, (300, 2)).astype(np.float32), np.full((300, 2), 3, np.float32)
    for reduction in ("mean", "sum", "none"):
        in_every_order(lambda: sim.kernels.bce_with_logits_forward(x, t, w, pw, reduction))
        gloss = normal(rng, 300, 2) if reduction == "none" else np.array(0.7, np.float32)
        in_every_order(lambda: sim.kernels.bce_with_logits_backward(x, t, w, pw, reduction, gloss,
                                                            (True, True)))


DETERMINISM_TESTS = (test_conv2d_is_deterministic,
                     test_max_pool2d_with_overlapping_windows_is_deterministic,
                     test_avg_pool2d_is_deterministic,
                     test_linear_and_activations_are_deterministic,
                     test_losses_are_deterministic, test_optimiser_steps_are_deterministic,
                     test_batch_norm_is_deterministic, test_dropout_is_deterministic,
                     test_adaptive_avg_pool2d_is_deterministic,
                     test_bce_with_logits_is_deterministic)


def test_every_kernel_is_run_in_every_order(monkeypatch):
    # the tests above, once more in one order, with their launches recorded: every
    # kernel of every kernels/cuda/*.cu file must be among them
    launched = set()
    real = sim.kernels.launch

    def launch(family, name, geometry, *args):
        launched.add((family, name))
        return real(family, name, geometry, *args)

    monkeypatch.setattr(sim.kernels, "launch", launch)
    monkeypatch.setitem(globals(), "RUNS", RUNS[:1])
    for test in DETERMINISM_TESTS:
        test()
    declared = {(f, k) for f in FAMILIES for k in sim.kernels.module(f).kernels}
    assert declared <= launched, f"never run in every order: {sorted(declared - launched)}"


# ----------------------------------------------------------------------------- split-K

@pytest.fixture
def small_split(monkeypatch):
    """Thresholds low enough that tiny weight gradients are split along K."""
    monkeypatch.setattr(glue, "SPLIT_K_TARGET_BLOCKS", 8)
    monkeypatch.setattr(glue, "SPLIT_K_MIN_SLICE", 16)


@pytest.mark.parametrize("n, hw, min_slice, group, parts", [
    (3, 10, 16, 1, 3),      # each image's 100 pixels cut into 3 parts: 9 slices
    (8, 4, 16, 1, 1),       # one image per slice: 8 slices
    (8, 4, 40, 3, 1),       # 3 images per slice, the last slice 2 images
])
def test_split_k_weight_gradient(small_split, monkeypatch, n, hw, min_slice, group, parts):
    monkeypatch.setattr(glue, "SPLIT_K_MIN_SLICE", min_slice)
    rng = np.random.default_rng(7)
    x, w = normal(rng, n, 2, hw, hw), normal(rng, 2, 2, 3, 3)
    gy = normal(rng, n, 2, hw, hw)
    plan = glue.WeightGrad(sim.kernels, 2, 18, n, hw * hw)
    assert (plan.group, plan.parts) == (group, parts), "not the split this case is for"
    assert plan.slices > 1
    _, gw_ref, _ = R.conv2d_backward(x.astype(F64), w.astype(F64), gy.astype(F64), (1, 1),
                                     (1, 1), (False, True, False))
    _, gw, _ = in_every_order(lambda: sim.kernels.conv2d_backward(x, w, gy, (1, 1), (1, 1),
                                                          (False, True, False)))
    assert_close(gw, gw_ref, f"split-K conv weight gradient ({plan.slices} slices)")
    # chunks smaller than a slice add into it (accumulate): the same bits
    monkeypatch.setattr(glue, "CONV_WORKSPACE_BYTES", 1)
    _, gw_chunked, _ = sim.kernels.conv2d_backward(x, w, gy, (1, 1), (1, 1), (False, True, False))
    assert _bits(gw_chunked) == _bits(gw), "chunk by chunk, the split sum changed bits"


def test_split_k_linear_weight_gradient(small_split):
    rng = np.random.default_rng(8)
    x, w, gy = normal(rng, 300, 5), normal(rng, 3, 5), normal(rng, 300, 3)
    assert glue.WeightGrad(sim.kernels, 3, 5, 300, 1).slices > 1
    g_ref = R.linear_backward(x.astype(F64), w.astype(F64), gy.astype(F64))
    grads = in_every_order(lambda: sim.kernels.linear_backward(x, w, gy))
    for name, got, ref in zip(("input", "weight", "bias"), grads, g_ref):
        assert_close(got, ref, f"linear {name} gradient with split-K")


def test_the_first_layer_of_chestxraycnn_gets_enough_blocks():
    # 1 -> 16 channels, 3x3, 64 px, batch 64: gW is 16 x 9, one tile; K = 64*64*64
    plan = glue.WeightGrad(sim.kernels, 16, 9, 64, 64 * 64)
    assert plan.slices >= glue.SPLIT_K_TARGET_BLOCKS
    assert plan.scratch_bytes < 2**20


# ----------------------------------------------------------------------------- bounded memory

def _launch_recorder(monkeypatch):
    calls = []
    real = sim.kernels.launch

    def launch(family, name, geometry, *args):
        calls.append(name)                  # the name only: holding args would hold memory
        return real(family, name, geometry, *args)

    monkeypatch.setattr(sim.kernels, "launch", launch)
    return calls


def test_chunked_convolution_equals_the_unchunked(monkeypatch):
    rng = np.random.default_rng(9)
    x, w, b = normal(rng, 5, 3, 6, 6), normal(rng, 4, 3, 3, 3), normal(rng, 4)
    gy = normal(rng, 5, 4, 6, 6)
    whole = (sim.kernels.conv2d_forward(x, w, b, (1, 1), (1, 1)),
             sim.kernels.conv2d_backward(x, w, gy, (1, 1), (1, 1)))
    per_image = (27 + 4) * 36 * 4                         # (taps + filters) * pixels * 4
    monkeypatch.setattr(glue, "CONV_WORKSPACE_BYTES", 2 * per_image)     # 2 images a chunk
    calls = _launch_recorder(monkeypatch)
    with sim.kernels.measure_memory() as meter:
        chunked = (sim.kernels.conv2d_forward(x, w, b, (1, 1), (1, 1)),
                   sim.kernels.conv2d_backward(x, w, gy, (1, 1), (1, 1)))
    assert calls.count("im2col") == 2 * 3, "not 3 chunks each way"
    assert _bits(chunked) == _bits(whole), "chunking changed the bits"
    outputs = sum(a.nbytes for a in (chunked[0], *chunked[1]))
    assert meter.peak <= 2 * per_image + outputs, (meter.peak, 2 * per_image, outputs)


class _Recorded:
    """Stands in for a compiled .cu file: its kernels record their launches, run nothing."""

    def __init__(self, launches):
        self.launches = launches

    def get_function(self, name):
        # the scalars only: holding the arrays would hold their memory
        return lambda grid, block, args: self.launches.append(
            (name, grid, [a for a in args if isinstance(a, np.integer)]))


def _alexnet_conv2(budget, monkeypatch):
    monkeypatch.setattr(glue, "CONV_WORKSPACE_BYTES", budget)
    launches = []
    k = glue.CudaKernels("cuda-sim", np, lambda path: _Recorded(launches))
    x = np.zeros((32, 96, 27, 27), np.float32)
    w = np.zeros((256, 96, 5, 5), np.float32)
    gy = np.zeros((32, 256, 27, 27), np.float32)
    with k.measure_memory() as fwd:
        y = k.conv2d_forward(x, w, None, (1, 1), (2, 2))
    with k.measure_memory() as bwd:
        grads = k.conv2d_backward(x, w, gy, (1, 1), (2, 2))
    images = sum(int(ints[0]) for name, _, ints in launches if name == "fnl_to_nfl")
    assert images == 32, f"the chunks covered {images} of 32 images"
    return fwd.peak, y.nbytes, bwd.peak, sum(g.nbytes for g in grads)


def test_alexnet_conv2_at_batch_32_stays_within_the_workspace(monkeypatch):
    budget = glue.CONV_WORKSPACE_BYTES
    fwd, y_bytes, bwd, grad_bytes = _alexnet_conv2(budget, monkeypatch)
    mb = 2.0 ** 20
    print(f"AlexNet conv2, batch 32: peak {fwd / mb:.1f} MB forward (output {y_bytes / mb:.1f} "
          f"MB), {bwd / mb:.1f} MB backward (gradients {grad_bytes / mb:.1f} MB); "
          f"workspace budget {budget / mb:.0f} MB")
    assert fwd <= budget + y_bytes
    assert bwd <= budget + grad_bytes
    # the same layer in one piece would not fit: the bound above has teeth
    whole_fwd, _, whole_bwd, _ = _alexnet_conv2(2**40, monkeypatch)
    assert whole_fwd > budget + y_bytes and whole_bwd > budget + grad_bytes
