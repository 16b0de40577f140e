"""The CPU kernel table, three ways: numba (kernels/cpu) == reference (kernels/reference.py)
== PyTorch, forward and backward, plus gradient checks and the adjoint identity.

  numba == reference    same inputs, float32 and float64, tight tolerances: the two
                        compute the same sums in a different order, nothing more
  reference == PyTorch  float64, forward and gradients (torch.autograd on the same
                        inputs); tolerance a few hundred float64 ulps
  gradient checks       central differences in float64 on the reference, relative
                        error < 1e-6
  adjoint identity      <conv(x), g> == <x, conv^T(g)>: the input gradient of a
                        convolution is its transpose applied to g (and likewise for w)
  optimisers            several sgd_step / adam_step calls against torch.optim

Shapes, strides, paddings and kernels are drawn by hypothesis: batch 1, 1 and 3
channels, non-square everything, windows that do not divide the input, stride
above and below the kernel, exact ties in max pooling.
"""
import contextlib
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import minicnn
from minicnn import backends
from minicnn.backends import cpu as NB
from minicnn.backends import reference as REF
from minicnn.kernels.cpu import conv as conv_kernels
from minicnn.kernels.cpu.workers import run_shares
from minicnn.testing import assert_close, numerical_grad, rel_error

EXAMPLES = settings(max_examples=25, deadline=None)
FEW = settings(max_examples=10, deadline=None)

# numba == reference: same maths, sums in another order
TOL = {np.float32: dict(atol=1e-5, rtol=1e-5), np.float64: dict(atol=1e-12, rtol=1e-11)}
# reference == PyTorch, both in float64
TORCH_TOL = dict(atol=1e-12, rtol=1e-10)

TABLE = ("conv2d_forward", "conv2d_backward", "max_pool2d_forward", "max_pool2d_backward",
         "avg_pool2d_forward", "avg_pool2d_backward", "relu_forward", "relu_backward",
         "sigmoid_forward", "sigmoid_backward", "linear_forward", "linear_backward",
         "softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward",
         "cross_entropy_forward", "cross_entropy_backward", "sgd_step", "adam_step")


def T(a):
    """A float64 torch tensor that needs a gradient, from a numpy array."""
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def close(log, op, side, got, ref, atol, rtol):
    """assert_close, and note the error in the run's equivalence table."""
    log.record(op, side, got, ref, atol, rtol)
    log.count_case(op, side)
    assert_close(got, ref, atol=atol, rtol=rtol, name=f"{op} ({side})")


# ----------------------------------------------------------------------------- strategies

dtypes = st.sampled_from([np.float32, np.float64])


@st.composite
def conv_case(draw):
    """(x shape, w shape, stride, padding, seed): every valid combination, small."""
    N = draw(st.integers(1, 3))
    C = draw(st.sampled_from([1, 2, 3]))
    F = draw(st.integers(1, 4))
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H = draw(st.integers(max(1, KH - 2 * ph), 9))
    W = draw(st.integers(max(1, KW - 2 * pw), 9))
    return (N, C, H, W), (F, C, KH, KW), (sh, sw), (ph, pw), draw(st.integers(0, 2**32 - 1))


@st.composite
def pool_case(draw):
    """(x shape, kernel, stride, padding, seed) with padding <= kernel // 2 (PyTorch's rule)."""
    N, C = draw(st.integers(1, 2)), draw(st.sampled_from([1, 3]))
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, KH // 2)), draw(st.integers(0, KW // 2))
    H = draw(st.integers(max(1, KH - 2 * ph), 9))
    W = draw(st.integers(max(1, KW - 2 * pw), 9))
    return (N, C, H, W), (KH, KW), (sh, sw), (ph, pw), draw(st.integers(0, 2**32 - 1))


# ----------------------------------------------------------------------------- the table

@pytest.mark.parametrize("module", [NB, REF], ids=["cpu", "reference"])
def test_backend_binds_whole_table(module):
    assert module.xp is np
    missing = [name for name in TABLE if not callable(getattr(module, name, None))]
    assert not missing, f"{module.__name__} lacks {missing}"


def test_use_cpu_kernels_switches_the_cpu_device():
    try:
        minicnn.use_cpu_kernels("reference")
        assert backends.get("cpu").conv2d_forward is REF.conv2d_forward
        minicnn.use_cpu_kernels("numba")
        assert backends.get("cpu").conv2d_forward is NB.conv2d_forward
    finally:
        minicnn.use_cpu_kernels("numba")


# ----------------------------------------------------------------------------- convolution

@st.composite
def conv3x3_case(draw):
    """conv_case restricted to the shapes conv_direct.py handles: 3x3, stride 1."""
    N, C, F = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H, W = draw(st.integers(max(1, 3 - 2 * ph), 9)), draw(st.integers(max(1, 3 - 2 * pw), 9))
    return (N, C, H, W), (F, C, 3, 3), (1, 1), (ph, pw), draw(st.integers(0, 2**32 - 1))


# conv.py has three drivers: tap by tap (conv_taps.py, stride 1 from _TAPS_MIN_C
# channels), im2col on shares of the batch (conv_chunks.py), and im2col one chunk
# after another through numpy's matmul (where numpy's BLAS cannot be called from
# numba). Every driver runs the same cases.
CONV_DRIVERS = pytest.mark.parametrize("driver", ["taps", "im2col", "in_turn"])


@contextlib.contextmanager
def conv_driver(driver, N, stride):
    """Run conv.py's kernels down `driver` for a batch of N, in 3 shares whatever the
    machine's core count, and check on the way out that the driver's kernels ran."""
    blas_ok = conv_kernels.blas.AVAILABLE and driver != "in_turn"
    ran = []

    def record(kernel, T, *args):
        ran.append(kernel)
        return run_shares(kernel, T, *args)

    with mock.patch.object(conv_kernels, "_TAPS_MIN_C", 1 if driver == "taps" else 10**9), \
            mock.patch.object(conv_kernels.blas, "AVAILABLE", blas_ok), \
            mock.patch.object(conv_kernels, "_share_count", lambda: 3), \
            mock.patch.object(conv_kernels, "run_shares", record):
        yield
    if driver == "in_turn" or N < 2 or not blas_ok:  # nothing to share out
        assert ran == []
        return
    taps = driver == "taps" and tuple(stride) == (1, 1)
    allowed = {conv_kernels.forward_taps, conv_kernels.backward_taps} if taps else \
        {conv_kernels.forward_share, conv_kernels.backward_share}
    assert ran and set(ran) <= allowed, f"{driver}: ran {ran}"


@EXAMPLES
@given(case=conv_case(), dtype=dtypes, bias=st.booleans())
@CONV_DRIVERS
def test_conv_numba_matches_reference(driver, case, dtype, bias, equivalence_log):
    with conv_driver(driver, N=case[0][0], stride=case[2]):
        check_conv_numba_against_reference(case, dtype, bias, equivalence_log)


@EXAMPLES
@given(case=conv3x3_case(), dtype=dtypes, bias=st.booleans())
@pytest.mark.parametrize("max_c", [0, 3], ids=["im2col", "direct"])
def test_conv3x3_both_paths_match_reference(max_c, case, dtype, bias, equivalence_log):
    # 3x3 stride-1 convolutions take the direct kernels up to _DIRECT_MAX_C input
    # channels, im2col above: run every case down each path
    with mock.patch.object(conv_kernels, "_DIRECT_MAX_C", max_c):
        check_conv_numba_against_reference(case, dtype, bias, equivalence_log)


@EXAMPLES
@given(case=conv_case(), dtype=dtypes)
@pytest.mark.parametrize("path", ["direct", "taps", "im2col", "in_turn"])
def test_conv_fused_relu_matches_reference(path, case, dtype, equivalence_log):
    # relu=True forward and relu_y backward, down every path, against the reference
    xs, ws, stride, padding, seed = case
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in (xs, ws, ws[:1]))
    max_c = 3 if path == "direct" else 0
    with mock.patch.object(conv_kernels, "_DIRECT_MAX_C", max_c), \
            conv_driver("taps" if path == "direct" else path, N=xs[0], stride=stride):
        y = NB.conv2d_forward(x, w, b, stride, padding, relu=True)
        y_ref = REF.conv2d_forward(x, w, b, stride, padding, relu=True)
        close(equivalence_log, "k.conv2d+relu fwd", "numba=ref", y, y_ref, **TOL[dtype])
        gy = rng.standard_normal(y.shape).astype(dtype)
        for needs in ((True, True, True), (False, True, True), (True, False, False),
                      (False, False, True)):
            got = NB.conv2d_backward(x, w, gy, stride, padding, needs, relu_y=y)
            ref = REF.conv2d_backward(x, w, gy, stride, padding, needs, relu_y=y_ref)
            for name, g, r in zip(("gx", "gw", "gb"), got, ref):
                assert (g is None) == (r is None), f"{name} computed against needs {needs}"
                if g is not None:
                    close(equivalence_log, f"k.conv2d+relu {name}", "numba=ref", g, r,
                          **TOL[dtype])


def check_conv_numba_against_reference(case, dtype, bias, equivalence_log):
    xs, ws, stride, padding, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if bias else None
    y = NB.conv2d_forward(x, w, b, stride, padding)
    y_ref = REF.conv2d_forward(x, w, b, stride, padding)
    assert y.dtype == dtype and y_ref.dtype == dtype
    close(equivalence_log, "k.conv2d fwd", "numba=ref", y, y_ref, **TOL[dtype])
    gy = rng.standard_normal(y.shape).astype(dtype)
    got = NB.conv2d_backward(x, w, gy, stride, padding, (True, True, True))
    ref = REF.conv2d_backward(x, w, gy, stride, padding, (True, True, True))
    for name, g, r in zip(("gx", "gw", "gb"), got, ref):
        assert g.dtype == dtype and g.shape == r.shape
        close(equivalence_log, f"k.conv2d {name}", "numba=ref", g, r, **TOL[dtype])


@EXAMPLES
@given(case=conv_case(), bias=st.booleans())
def test_conv_reference_matches_torch(case, bias, equivalence_log):
    xs, ws, stride, padding, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    b = rng.standard_normal(ws[0]) if bias else None
    xt, wt = T(x), T(w)
    bt = T(b) if bias else None
    yt = TF.conv2d(xt, wt, bt, stride=stride, padding=padding)
    y = REF.conv2d_forward(x, w, b, stride, padding)
    close(equivalence_log, "k.conv2d fwd", "ref=torch", y, yt.detach().numpy(), **TORCH_TOL)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(gy))
    gx, gw, gb = REF.conv2d_backward(x, w, gy, stride, padding)
    close(equivalence_log, "k.conv2d gx", "ref=torch", gx, xt.grad.numpy(), **TORCH_TOL)
    close(equivalence_log, "k.conv2d gw", "ref=torch", gw, wt.grad.numpy(), **TORCH_TOL)
    if bias:
        close(equivalence_log, "k.conv2d gb", "ref=torch", gb, bt.grad.numpy(), **TORCH_TOL)


@pytest.mark.parametrize("module", [NB, REF], ids=["cpu", "reference"])
@pytest.mark.parametrize("needs", [(True, False, False), (False, True, False),
                                   (False, False, True), (False, True, True),
                                   (False, False, False)])
def test_conv_backward_computes_only_what_is_needed(module, needs):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    gy = rng.standard_normal((2, 4, 3, 6)).astype(np.float32)
    full = REF.conv2d_backward(x, w, gy, (2, 1), (1, 1))
    got = module.conv2d_backward(x, w, gy, (2, 1), (1, 1), needs)
    for name, need, g, r in zip(("gx", "gw", "gb"), needs, got, full):
        if need:
            assert_close(g, r, name=name, **TOL[np.float32])
        else:
            assert g is None, f"{name} computed although needs says False"


@CONV_DRIVERS
@pytest.mark.parametrize("chunk_bytes", [None, 50_000, 1])
@pytest.mark.parametrize("xs, ws, stride, padding", [
    ((5, 4, 7, 6), (3, 4, 1, 1), (1, 1), (0, 0)),
    ((4, 2, 1, 1), (3, 2, 5, 5), (1, 1), (2, 2)),     # a row of xp only KW-1 wide
    ((3, 2, 2, 3), (4, 2, 1, 1), (1, 1), (2, 2)),     # padding wider than the kernel
    ((7, 5, 6, 6), (6, 5, 3, 3), (1, 1), (1, 1)),     # 7 images: chunks of unequal size
    ((3, 20, 40, 30), (5, 20, 3, 3), (1, 1), (1, 1)),  # taps: GY^T copied, S in 2 blocks
    ((2, 9, 11, 13), (4, 9, 2, 4), (1, 1), (0, 2)),    # taps: GY^T as a view
    ((13, 3, 30, 30), (8, 3, 3, 3), (1, 1), (1, 1)),
    ((13, 3, 30, 30), (8, 3, 3, 3), (2, 2), (1, 1)),
    ((9, 1, 20, 17), (4, 1, 5, 3), (1, 1), (2, 0)),
    ((6, 1, 12, 10), (16, 1, 3, 3), (1, 1), (1, 1))])        # F > C*KH*KW
def test_conv_numba_chunks_match_torch(xs, ws, stride, padding, chunk_bytes, driver,
                                      monkeypatch):
    # the numba kernel takes the batch in chunks of about _CHUNK_BYTES of im2col buffer:
    # a chunk of several images, a chunk per image (1 byte), and the default
    if chunk_bytes is not None:
        monkeypatch.setattr(conv_kernels, "_CHUNK_BYTES", chunk_bytes)
    with conv_driver(driver, N=xs[0], stride=stride):
        check_chunks_against_torch(xs, ws, stride, padding)


@CONV_DRIVERS
def test_conv_of_an_empty_batch(driver):
    x, w = np.ones((0, 3, 8, 8), np.float32), np.ones((4, 3, 3, 3), np.float32)
    with conv_driver(driver, N=0, stride=(1, 1)):
        y = NB.conv2d_forward(x, w, np.ones(4, np.float32), (1, 1), (1, 1))
        gx, gw, gb = NB.conv2d_backward(x, w, np.ones((0, 4, 8, 8), np.float32), (1, 1), (1, 1))
    assert y.shape == (0, 4, 8, 8) and gx.shape == x.shape
    assert not gw.any() and gw.shape == w.shape and not gb.any() and gb.shape == (4,)


def check_chunks_against_torch(xs, ws, stride, padding):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    y = NB.conv2d_forward(x, w, b, stride, padding)
    xt, wt, bt = T(x), T(w), T(b)
    yt = TF.conv2d(xt, wt, bt, stride=stride, padding=padding)
    assert_close(y, yt.detach().numpy(), atol=1e-4, rtol=1e-4, name="y")
    gy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(gy).double())
    gx, gw, gb = NB.conv2d_backward(x, w, gy, stride, padding)
    assert_close(gx, xt.grad.numpy(), atol=1e-4, rtol=1e-4, name="gx")
    assert_close(gw, wt.grad.numpy(), atol=1e-3, rtol=1e-4, name="gw")
    assert_close(gb, bt.grad.numpy(), atol=1e-3, rtol=1e-4, name="gb")


@FEW
@given(case=conv_case())
def test_conv_adjoint_identity(case):
    """<conv(x), g> == <x, gx(g)> and <conv_w(w), g> == <w, gw(g)> (conv is linear in each)."""
    xs, ws, stride, padding, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    for module in (NB, REF):
        y = module.conv2d_forward(x, w, None, stride, padding)
        g = rng.standard_normal(y.shape)
        gx, gw, _ = module.conv2d_backward(x, w, g, stride, padding, (True, True, False))
        lhs = np.sum(y * g)
        scale = np.sum(np.abs(y * g)) + 1e-300   # size of the terms: rounding is relative to it
        assert abs(lhs - np.sum(x * gx)) <= 1e-12 * scale, (module.__name__, lhs, np.sum(x * gx))
        assert abs(lhs - np.sum(w * gw)) <= 1e-12 * scale, (module.__name__, lhs, np.sum(w * gw))


@FEW
@given(case=conv_case())
def test_conv_reference_gradient_check(case):
    xs, ws, stride, padding, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    b = rng.standard_normal(ws[0])
    g = rng.standard_normal(REF.conv2d_forward(x, w, b, stride, padding).shape)
    gx, gw, gb = REF.conv2d_backward(x, w, g, stride, padding)
    loss = lambda: float(np.sum(REF.conv2d_forward(x, w, b, stride, padding) * g))  # noqa: E731
    assert rel_error(gx, numerical_grad(lambda _: loss(), x)) < 1e-6
    assert rel_error(gw, numerical_grad(lambda _: loss(), w)) < 1e-6
    assert rel_error(gb, numerical_grad(lambda _: loss(), b)) < 1e-6


# ----------------------------------------------------------------------------- pooling

def _pool_input(shape, rng, ties):
    if ties:   # small integers: many exact ties inside each window
        return rng.integers(-2, 3, size=shape).astype(np.float64)
    return rng.standard_normal(shape)


@EXAMPLES
@given(case=pool_case(), dtype=dtypes, ties=st.booleans())
def test_max_pool_numba_matches_reference(case, dtype, ties, equivalence_log):
    xs, kernel, stride, padding, seed = case
    rng = np.random.default_rng(seed)
    x = _pool_input(xs, rng, ties).astype(dtype)
    y, idx = NB.max_pool2d_forward(x, kernel, stride, padding)
    y_ref, idx_ref = REF.max_pool2d_forward(x, kernel, stride, padding)
    assert y.dtype == dtype
    np.testing.assert_array_equal(idx, idx_ref)
    close(equivalence_log, "k.max_pool fwd", "numba=ref", y, y_ref, atol=1e-30, rtol=0)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = NB.max_pool2d_backward(gy, idx, xs)
    gx_ref = REF.max_pool2d_backward(gy, idx_ref, xs)
    assert gx.dtype == dtype and gx.shape == xs
    close(equivalence_log, "k.max_pool gx", "numba=ref", gx, gx_ref, **TOL[dtype])


@EXAMPLES
@given(case=pool_case(), ties=st.booleans())
def test_max_pool_reference_matches_torch(case, ties, equivalence_log):
    xs, kernel, stride, padding, seed = case
    rng = np.random.default_rng(seed)
    x = _pool_input(xs, rng, ties)
    xt = T(x)
    yt, it = TF.max_pool2d(xt, kernel, stride, padding, return_indices=True)
    y, idx = REF.max_pool2d_forward(x, kernel, stride, padding)
    np.testing.assert_array_equal(idx, it.numpy(), err_msg="argmax indices differ from PyTorch")
    close(equivalence_log, "k.max_pool fwd", "ref=torch", y, yt.detach().numpy(), atol=1e-30, rtol=0)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(gy))
    gx = REF.max_pool2d_backward(gy, idx, xs)
    close(equivalence_log, "k.max_pool gx", "ref=torch", gx, xt.grad.numpy(), **TORCH_TOL)


def test_max_pool_ties_go_to_the_first_maximum_and_padding_never_wins():
    x = np.array([[[[-5.0, -5.0, -7.0],
                    [-5.0, -9.0, -5.0],
                    [-6.0, -5.0, -5.0]]]], dtype=np.float32)
    for module in (NB, REF):
        y, idx = module.max_pool2d_forward(x, (2, 2), (1, 1), (1, 1))
        yt, it = TF.max_pool2d(torch.from_numpy(x), 2, 1, 1, return_indices=True)
        np.testing.assert_array_equal(idx, it.numpy())
        np.testing.assert_array_equal(y, yt.numpy())
        assert np.isfinite(y).all(), "a padded position (-inf) won a window"


@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 1, 2, 2), (3, 2, 8, 5)])
def test_max_pool_2x2_fast_path_matches_torch(shape):
    # kernel 2, stride 2, no padding has its own numba kernel: ties, odd sizes (floor mode)
    rng = np.random.default_rng(5)
    x = rng.integers(-1, 2, size=shape).astype(np.float32)
    y, idx = NB.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    yt, it = TF.max_pool2d(torch.from_numpy(x), 2, 2, return_indices=True)
    np.testing.assert_array_equal(idx, it.numpy())
    np.testing.assert_array_equal(y, yt.numpy())


@pytest.mark.parametrize("kernel, stride", [((2, 2), (2, 2)), ((3, 2), (1, 2))])
def test_max_pool_nan_propagates_as_in_torch(kernel, stride):
    x = np.arange(2 * 6 * 6, dtype=np.float32).reshape(1, 2, 6, 6)
    x[0, 0, 1, 1] = np.nan
    x[0, 1, 4, 3] = np.nan
    y, idx = NB.max_pool2d_forward(x, kernel, stride, (0, 0))
    yt, it = TF.max_pool2d(torch.from_numpy(x), kernel, stride, return_indices=True)
    np.testing.assert_array_equal(idx, it.numpy())
    np.testing.assert_array_equal(y, yt.numpy())      # NaN == NaN for assert_array_equal


@EXAMPLES
@given(case=pool_case(), dtype=dtypes)
def test_avg_pool_numba_matches_reference(case, dtype, equivalence_log):
    xs, kernel, stride, padding, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(dtype)
    y = NB.avg_pool2d_forward(x, kernel, stride, padding)
    y_ref = REF.avg_pool2d_forward(x, kernel, stride, padding)
    assert y.dtype == dtype and y_ref.dtype == dtype
    close(equivalence_log, "k.avg_pool fwd", "numba=ref", y, y_ref, **TOL[dtype])
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = NB.avg_pool2d_backward(gy, xs, kernel, stride, padding)
    gx_ref = REF.avg_pool2d_backward(gy, xs, kernel, stride, padding)
    assert gx.dtype == dtype and gx.shape == xs
    close(equivalence_log, "k.avg_pool gx", "numba=ref", gx, gx_ref, **TOL[dtype])


@EXAMPLES
@given(case=pool_case())
def test_avg_pool_reference_matches_torch(case, equivalence_log):
    xs, kernel, stride, padding, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs)
    xt = T(x)
    yt = TF.avg_pool2d(xt, kernel, stride, padding, count_include_pad=True)
    y = REF.avg_pool2d_forward(x, kernel, stride, padding)
    close(equivalence_log, "k.avg_pool fwd", "ref=torch", y, yt.detach().numpy(), **TORCH_TOL)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(gy))
    gx = REF.avg_pool2d_backward(gy, xs, kernel, stride, padding)
    close(equivalence_log, "k.avg_pool gx", "ref=torch", gx, xt.grad.numpy(), **TORCH_TOL)


@FEW
@given(case=pool_case())
def test_pool_reference_gradient_check(case):
    xs, kernel, stride, padding, seed = case
    rng = np.random.default_rng(seed)
    # distinct values 0.01 apart: a step of 1e-6 never changes which element is the max
    x = rng.permutation(np.prod(xs)).reshape(xs) * 0.01
    y, idx = REF.max_pool2d_forward(x, kernel, stride, padding)
    g = rng.standard_normal(y.shape)
    num = numerical_grad(lambda a: np.sum(REF.max_pool2d_forward(a, kernel, stride, padding)[0] * g), x)
    assert rel_error(REF.max_pool2d_backward(g, idx, xs), num) < 1e-6
    x = rng.standard_normal(xs)
    ga = rng.standard_normal(REF.avg_pool2d_forward(x, kernel, stride, padding).shape)
    num = numerical_grad(lambda a: np.sum(REF.avg_pool2d_forward(a, kernel, stride, padding) * ga), x)
    assert rel_error(REF.avg_pool2d_backward(ga, xs, kernel, stride, padding), num) < 1e-6


# ----------------------------------------------------------------------------- activations

@pytest.mark.parametrize("size", [1000, 70_000], ids=["one-thread", "prange"])
def test_relu_both_paths_match_reference(size):
    # relu runs a plain loop below PARALLEL_MIN_ELEMENTS elements, prange above
    rng = np.random.default_rng(size)
    x = rng.standard_normal(size).astype(np.float32)
    x[:3] = [0.0, -0.0, np.nan]
    gy = rng.standard_normal(size).astype(np.float32)
    y = NB.relu_forward(x)
    np.testing.assert_array_equal(y, REF.relu_forward(x))
    np.testing.assert_array_equal(NB.relu_backward(gy, y), REF.relu_backward(gy, y))

@EXAMPLES
@given(shape=st.lists(st.integers(1, 5), min_size=0, max_size=4), scale=st.sampled_from([1.0, 50.0, 1e4]),
       dtype=dtypes, seed=st.integers(0, 2**32 - 1))
def test_activations_match_reference_and_torch(shape, scale, dtype, seed, equivalence_log):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    x.reshape(-1)[:1] = 0                           # an exact zero: relu's kink
    gy = rng.standard_normal(shape).astype(dtype)
    for op, fwd, bwd, tf in (("relu", "relu_forward", "relu_backward", torch.relu),
                             ("sigmoid", "sigmoid_forward", "sigmoid_backward", torch.sigmoid)):
        with np.errstate(over="raise", invalid="raise"):
            y_ref = getattr(REF, fwd)(x)
            gx_ref = getattr(REF, bwd)(gy, y_ref)
        y = getattr(NB, fwd)(x)
        gx = getattr(NB, bwd)(gy, y)
        assert y.dtype == dtype and gx.dtype == dtype and y.shape == x.shape
        close(equivalence_log, f"k.{op} fwd", "numba=ref", y, y_ref, **TOL[dtype])
        close(equivalence_log, f"k.{op} gx", "numba=ref", gx, gx_ref, **TOL[dtype])
        xt = T(x)
        yt = tf(xt)
        yt.backward(torch.from_numpy(gy.astype(np.float64)))
        tol = TORCH_TOL if dtype == np.float64 else TOL[dtype]
        close(equivalence_log, f"k.{op} fwd", "ref=torch", y_ref, yt.detach().numpy(), **tol)
        close(equivalence_log, f"k.{op} gx", "ref=torch", gx_ref, xt.grad.numpy(), **tol)


def test_sigmoid_is_stable_for_large_inputs():
    x = np.array([-1e4, -800.0, -100.0, -20.0, 0.0, 20.0, 100.0, 800.0, 1e4], dtype=np.float32)
    # the exact values rounded to float32 (sigmoid(-100) is a float32 subnormal)
    expected = torch.sigmoid(torch.from_numpy(x.astype(np.float64))).numpy().astype(np.float32)
    for module in (NB, REF):
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            y = module.sigmoid_forward(x)
        assert np.isfinite(y).all()
        assert_close(y, expected, atol=0, rtol=1e-6, name=f"{module.__name__} sigmoid")


# ----------------------------------------------------------------------------- linear

@EXAMPLES
@given(n=st.integers(1, 5), fin=st.integers(1, 7), fout=st.integers(1, 6), bias=st.booleans(),
       dtype=dtypes, seed=st.integers(0, 2**32 - 1))
def test_linear_matches_reference_and_torch(n, fin, fout, bias, dtype, seed, equivalence_log):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, fin)).astype(dtype)
    w = rng.standard_normal((fout, fin)).astype(dtype)
    b = rng.standard_normal(fout).astype(dtype) if bias else None
    gy = rng.standard_normal((n, fout)).astype(dtype)
    y, y_ref = NB.linear_forward(x, w, b), REF.linear_forward(x, w, b)
    assert y.dtype == dtype
    close(equivalence_log, "k.linear fwd", "numba=ref", y, y_ref, **TOL[dtype])
    got, ref = NB.linear_backward(x, w, gy), REF.linear_backward(x, w, gy)
    xt, wt = T(x), T(w)
    bt = T(b) if bias else None
    yt = TF.linear(xt, wt, bt)
    yt.backward(torch.from_numpy(gy.astype(np.float64)))
    tol = TORCH_TOL if dtype == np.float64 else TOL[dtype]
    close(equivalence_log, "k.linear fwd", "ref=torch", y_ref, yt.detach().numpy(), **tol)
    torch_grads = (xt.grad, wt.grad, bt.grad if bias else None)
    for name, g, r, tg in zip(("gx", "gw", "gb"), got, ref, torch_grads):
        assert g.dtype == dtype
        close(equivalence_log, f"k.linear {name}", "numba=ref", g, r, **TOL[dtype])
        if tg is not None:
            close(equivalence_log, f"k.linear {name}", "ref=torch", r, tg.numpy(), **tol)
    assert NB.linear_backward(x, w, gy, (False, True, False))[0::2] == (None, None)


# ----------------------------------------------------------------------------- softmax and loss

@EXAMPLES
@given(rows=st.integers(1, 5), k=st.integers(1, 7), scale=st.sampled_from([1.0, 30.0, 1e4]),
       dtype=dtypes, seed=st.integers(0, 2**32 - 1))
def test_softmax_family_matches_reference_and_torch(rows, k, scale, dtype, seed, equivalence_log):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, k)) * scale).astype(dtype)
    gy = rng.standard_normal((rows, k)).astype(dtype)
    for op, fwd, bwd, tf in (("softmax", "softmax_forward", "softmax_backward", torch.softmax),
                             ("log_softmax", "log_softmax_forward", "log_softmax_backward",
                              torch.log_softmax)):
        with np.errstate(over="raise", invalid="raise"):
            y_ref = getattr(REF, fwd)(x)
            gx_ref = getattr(REF, bwd)(gy, y_ref)
        y = getattr(NB, fwd)(x)
        gx = getattr(NB, bwd)(gy, y)
        assert y.dtype == dtype and gx.dtype == dtype
        # log_softmax of logits ~1e4 is itself ~1e4: tolerance relative to that scale
        atol = TOL[dtype]["atol"] * (scale if op == "log_softmax" else 1)
        close(equivalence_log, f"k.{op} fwd", "numba=ref", y, y_ref, atol=atol, rtol=TOL[dtype]["rtol"])
        close(equivalence_log, f"k.{op} gx", "numba=ref", gx, gx_ref, **TOL[dtype])
        if dtype == np.float64:
            xt = T(x)
            yt = tf(xt, dim=1)
            yt.backward(torch.from_numpy(gy))
            close(equivalence_log, f"k.{op} fwd", "ref=torch", y_ref, yt.detach().numpy(),
                  atol=1e-12 * scale, rtol=1e-10)
            close(equivalence_log, f"k.{op} gx", "ref=torch", gx_ref, xt.grad.numpy(), **TORCH_TOL)


@EXAMPLES
@given(n=st.integers(1, 6), k=st.integers(1, 5), weighted=st.booleans(),
       reduction=st.sampled_from(["mean", "sum", "none"]), scale=st.sampled_from([1.0, 30.0, 1e4]),
       dtype=dtypes, seed=st.integers(0, 2**32 - 1))
def test_cross_entropy_matches_reference_and_torch(n, k, weighted, reduction, scale, dtype, seed,
                                                   equivalence_log):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, k)) * scale).astype(dtype)
    target = rng.integers(0, k, size=n).astype(np.int64)
    weight = rng.uniform(0.1, 2.0, size=k).astype(dtype) if weighted else None
    gloss = (rng.standard_normal(n) if reduction == "none" else np.asarray(rng.standard_normal())).astype(dtype)
    with np.errstate(over="raise", invalid="raise"):
        loss_ref, probs_ref = REF.cross_entropy_forward(logits, target, weight, reduction)
        g_ref = REF.cross_entropy_backward(probs_ref, target, weight, reduction, gloss)
    loss, probs = NB.cross_entropy_forward(logits, target, weight, reduction)
    g = NB.cross_entropy_backward(probs, target, weight, reduction, gloss)
    assert loss.shape == ((n,) if reduction == "none" else ())
    assert loss.dtype == dtype and probs.dtype == dtype and g.dtype == dtype
    rtol = TOL[dtype]["rtol"]
    close(equivalence_log, "k.cross_entropy loss", "numba=ref", loss, loss_ref,
          atol=TOL[dtype]["atol"] * scale, rtol=rtol)
    close(equivalence_log, "k.cross_entropy probs", "numba=ref", probs, probs_ref, **TOL[dtype])
    close(equivalence_log, "k.cross_entropy glogits", "numba=ref", g, g_ref, **TOL[dtype])
    xt = T(logits)
    lt = TF.cross_entropy(xt, torch.from_numpy(target),
                          weight=None if weight is None else torch.from_numpy(weight.astype(np.float64)),
                          reduction=reduction)
    lt.backward(torch.from_numpy(gloss.astype(np.float64)))
    tol = dict(atol=1e-12 * scale, rtol=1e-10) if dtype == np.float64 else dict(atol=1e-5 * scale, rtol=1e-5)
    close(equivalence_log, "k.cross_entropy loss", "ref=torch", loss_ref, lt.detach().numpy(), **tol)
    tol = TORCH_TOL if dtype == np.float64 else TOL[dtype]
    close(equivalence_log, "k.cross_entropy glogits", "ref=torch", g_ref, xt.grad.numpy(), **tol)


@FEW
@given(n=st.integers(1, 4), k=st.integers(2, 5), weighted=st.booleans(),
       reduction=st.sampled_from(["mean", "sum", "none"]), seed=st.integers(0, 2**32 - 1))
def test_softmax_and_cross_entropy_reference_gradient_check(n, k, weighted, reduction, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k)) * 3
    g = rng.standard_normal((n, k))
    y = REF.softmax_forward(x)
    num = numerical_grad(lambda a: np.sum(REF.softmax_forward(a) * g), x)
    assert rel_error(REF.softmax_backward(g, y), num) < 1e-6
    y = REF.log_softmax_forward(x)
    num = numerical_grad(lambda a: np.sum(REF.log_softmax_forward(a) * g), x)
    assert rel_error(REF.log_softmax_backward(g, y), num) < 1e-6
    target = rng.integers(0, k, size=n)
    weight = rng.uniform(0.1, 2.0, size=k) if weighted else None
    gloss = rng.standard_normal(n) if reduction == "none" else np.float64(rng.standard_normal())
    _, probs = REF.cross_entropy_forward(x, target, weight, reduction)
    num = numerical_grad(
        lambda a: np.sum(REF.cross_entropy_forward(a, target, weight, reduction)[0] * gloss), x)
    assert rel_error(REF.cross_entropy_backward(probs, target, weight, reduction, gloss), num) < 1e-6


def test_weighted_mean_divides_by_the_targets_weights():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    target = np.array([0, 1, 1])
    weight = np.array([3.0, 0.5])
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -(3.0 * logp[0, 0] + 0.5 * logp[1, 1] + 0.5 * logp[2, 1]) / (3.0 + 0.5 + 0.5)
    for module in (NB, REF):
        loss, _ = module.cross_entropy_forward(logits, target, weight, "mean")
        assert_close(loss, np.float64(expected), atol=1e-15, rtol=1e-14, name=module.__name__)


# ----------------------------------------------------------------------------- optimisers

SGD_SETTINGS = [dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
                dict(momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False),
                dict(momentum=0.9, dampening=0.3, weight_decay=0.01, nesterov=False),
                dict(momentum=0.8, dampening=0.0, weight_decay=0.05, nesterov=True),
                dict(momentum=0.0, dampening=0.0, weight_decay=0.1, nesterov=False)]


# a small parameter (one thread) and one past PARALLEL_MIN_ELEMENTS (prange)
PARAM_SHAPES = pytest.mark.parametrize("shape", [(3, 4, 5), (257, 256)], ids=["small", "large"])


@pytest.mark.parametrize("module", [NB, REF], ids=["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opts", SGD_SETTINGS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
@PARAM_SHAPES
def test_sgd_steps_match_torch(module, dtype, opts, shape, equivalence_log):
    rng = np.random.default_rng(3)
    p = rng.standard_normal(shape).astype(dtype)
    buf = np.zeros_like(p) if opts["momentum"] else None
    pt = torch.nn.Parameter(torch.from_numpy(p.copy()))
    opt = torch.optim.SGD([pt], lr=0.1, **opts)
    tol = dict(atol=1e-6, rtol=1e-6) if dtype == np.float32 else dict(atol=1e-14, rtol=1e-13)
    for step in range(5):
        g = rng.standard_normal(p.shape).astype(dtype)
        module.sgd_step(p, g, buf, 0.1, opts["momentum"], opts["dampening"], opts["weight_decay"],
                        opts["nesterov"], step == 0)
        pt.grad = torch.from_numpy(g.copy())
        opt.step()
        assert p.dtype == dtype
        close(equivalence_log, "k.sgd_step p", "both=torch", p, pt.detach().numpy(), **tol)
        if buf is not None:
            close(equivalence_log, "k.sgd_step buf", "both=torch", buf,
                  opt.state[pt]["momentum_buffer"].numpy(), **tol)


ADAM_SETTINGS = [dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0),
                 dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01),
                 dict(betas=(0.3, 0.5), eps=1e-3, weight_decay=0.0)]


@pytest.mark.parametrize("module", [NB, REF], ids=["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opts", ADAM_SETTINGS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
@PARAM_SHAPES
def test_adam_steps_match_torch(module, dtype, opts, shape, equivalence_log):
    rng = np.random.default_rng(4)
    p = rng.standard_normal(shape).astype(dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    pt = torch.nn.Parameter(torch.from_numpy(p.copy()))
    opt = torch.optim.Adam([pt], lr=0.01, **opts)
    tol = dict(atol=1e-6, rtol=1e-6) if dtype == np.float32 else dict(atol=1e-14, rtol=1e-13)
    for step in range(1, 7):
        g = rng.standard_normal(p.shape).astype(dtype)
        module.adam_step(p, g, m, v, 0.01, opts["betas"][0], opts["betas"][1], opts["eps"],
                         opts["weight_decay"], step)
        pt.grad = torch.from_numpy(g.copy())
        opt.step()
        assert p.dtype == dtype
        close(equivalence_log, "k.adam_step p", "both=torch", p, pt.detach().numpy(), **tol)
        close(equivalence_log, "k.adam_step m", "both=torch", m, opt.state[pt]["exp_avg"].numpy(), **tol)
        close(equivalence_log, "k.adam_step v", "both=torch", v, opt.state[pt]["exp_avg_sq"].numpy(), **tol)


@pytest.mark.parametrize("C", [1, 2], ids=["direct", "im2col"])
def test_conv_backward_takes_gy_in_another_float_dtype(C):
    # gy (and relu_y) are used in x's dtype, on the direct path as on the im2col path
    rng = np.random.default_rng(5)
    x, w = (rng.standard_normal(s).astype(np.float32) for s in ((2, C, 6, 5), (3, C, 3, 3)))
    y = NB.conv2d_forward(x, w, None, (1, 1), (1, 1), relu=True)
    gy = rng.standard_normal(y.shape)                                  # float64
    want = NB.conv2d_backward(x, w, gy.astype(np.float32), (1, 1), (1, 1), relu_y=y)
    got = NB.conv2d_backward(x, w, gy, (1, 1), (1, 1), relu_y=y.astype(np.float64))
    for g, r in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_array_equal(g, r)
