"""The CPU kernel ladder (kernels/cpu/ladder): every rung of every op computes the same
function as kernels/reference.py and as PyTorch, forward and backward, on the shapes
test_kernels_cpu.py draws (batch 1, 1 to 3 channels, non-square images and kernels,
strides above and below the kernel, padding, sizes the windows do not divide).

  rung == reference   float32 and float64, the tolerances of test_kernels_cpu.py
  rung == PyTorch     float64 through torch.autograd, on the same inputs
  the steps           each conv rung above v3 takes the path it names (the kernels that
                      ran are recorded), and plan_name says which path a shape takes
  choosing a rung     ladder.use and MINICNN_<OP>_RUNG make the cpu device run it,
                      through autograd (fused ReLU and needs included); a wrong name is
                      a UserError naming the choices

The ladder is the cpu device's own (the CUDA kernels have their own tests), so these
tests run on the cpu device only.
"""
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minicnn
from minicnn import backends
from minicnn import functional as F
from minicnn.backends import reference as REF
from minicnn.errors import UserError
from minicnn.kernels.cpu import conv as conv_kernels
from minicnn.kernels.cpu import ladder
from minicnn.kernels.cpu.ladder import conv_v1_loops
from minicnn.kernels.cpu.workers import run_shares
from minicnn.testing import assert_close

from test_kernels_cpu import TOL, TORCH_TOL, conv_case, pool_case

CASES = settings(max_examples=12, deadline=None)
dtypes = st.sampled_from([np.float32, np.float64])

# besides the drawn cases, every conv rung always meets these: batch 1 with one channel
# and a non-square kernel; a stride above the kernel; padding larger than a 1x1 image;
# a stride-1 batch with channels (the tap path of v5 and v6)
CONV_EDGES = [((1, 1, 5, 7), (2, 1, 3, 2), (1, 1), (1, 0), 1),
              ((3, 2, 9, 4), (4, 2, 2, 3), (3, 2), (2, 1), 2),
              ((2, 3, 1, 1), (3, 3, 4, 4), (1, 1), (2, 2), 3),
              ((3, 3, 8, 6), (4, 3, 3, 3), (1, 1), (1, 1), 4)]
POOL_EDGES = [((1, 1, 5, 7), (3, 2), (2, 3), (1, 1), 5),
              ((2, 3, 8, 8), (2, 2), (2, 2), (0, 0), 6)]


def with_examples(cases, **fixed):
    """hypothesis.example for each case (with the other arguments fixed)."""
    def wrap(test):
        for case in cases:
            test = example(case=case, **fixed)(test)
        return test
    return wrap


def rung_ids(op):
    return [f"{op}-{r.name}-{r.title.replace(' ', '_')}" for r in ladder.rungs(op)]


def each_rung(op):
    return pytest.mark.parametrize("rung", ladder.rungs(op), ids=rung_ids(op))


def T(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def check_grads(got, ref, tol, what):
    for name, g, r in zip(("gx", "gw", "gb"), got, ref):
        assert g.shape == r.shape, f"{what} {name}: shape {g.shape}, expected {r.shape}"
        assert_close(g, r, name=f"{what} {name}", **tol)


# ----------------------------------------------------------------------------- every rung is true

@each_rung("conv2d")
@CASES
@given(case=conv_case(), dtype=dtypes)
@with_examples(CONV_EDGES, dtype=np.float32)
def test_conv_rung_matches_reference(rung, case, dtype):
    xs, ws, stride, padding, seed = case
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in (xs, ws, ws[:1]))
    y = rung.forward(x, w, b, stride, padding)
    y_ref = REF.conv2d_forward(x, w, b, stride, padding)
    assert y.dtype == dtype
    assert_close(y, y_ref, name=f"conv2d {rung.name} y {case[:4]}", **TOL[dtype])
    gy = rng.standard_normal(y.shape).astype(dtype)
    check_grads(rung.backward(x, w, gy, stride, padding),
                REF.conv2d_backward(x, w, gy, stride, padding), TOL[dtype],
                f"conv2d {rung.name} {case[:4]}")


@each_rung("conv2d")
@settings(max_examples=6, deadline=None)
@given(case=conv_case())
@with_examples(CONV_EDGES)
def test_conv_rung_matches_torch(rung, case):
    xs, ws, stride, padding, seed = case
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s) for s in (xs, ws, ws[:1]))
    xt, wt, bt = T(x), T(w), T(b)
    yt = TF.conv2d(xt, wt, bt, stride=stride, padding=padding)
    assert_close(rung.forward(x, w, b, stride, padding), yt.detach().numpy(),
                 name=f"conv2d {rung.name} y", **TORCH_TOL)
    gy = rng.standard_normal(yt.shape)
    yt.backward(torch.from_numpy(gy))
    check_grads(rung.backward(x, w, gy, stride, padding),
                (xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()), TORCH_TOL,
                f"conv2d {rung.name} {case[:4]}")


@each_rung("max_pool2d")
@CASES
@given(case=pool_case(), dtype=dtypes, ties=st.booleans())
@with_examples(POOL_EDGES, dtype=np.float32, ties=True)
def test_pool_rung_matches_reference(rung, case, dtype, ties):
    xs, kernel, stride, padding, seed = case
    rng = np.random.default_rng(seed)
    # ties: few distinct values, so windows hold equal maxima (the first one wins)
    x = (rng.integers(0, 3, xs) if ties else rng.standard_normal(xs)).astype(dtype)
    y, idx = rung.forward(x, kernel, stride, padding)
    y_ref, idx_ref = REF.max_pool2d_forward(x, kernel, stride, padding)
    assert_close(y, y_ref, name=f"max_pool2d {rung.name} y", atol=0, rtol=0)
    np.testing.assert_array_equal(idx, idx_ref, err_msg=f"max_pool2d {rung.name} idx {case[:4]}")
    gy = rng.standard_normal(y.shape).astype(dtype)
    assert_close(rung.backward(gy, idx, xs), REF.max_pool2d_backward(gy, idx_ref, xs),
                 name=f"max_pool2d {rung.name} gx {case[:4]}", **TOL[dtype])


@each_rung("max_pool2d")
@settings(max_examples=6, deadline=None)
@given(case=pool_case())
@with_examples(POOL_EDGES)
def test_pool_rung_matches_torch(rung, case):
    xs, kernel, stride, padding, seed = case
    x = np.random.default_rng(seed).standard_normal(xs)
    xt = T(x)
    yt, it = TF.max_pool2d(xt, kernel, stride, padding, return_indices=True)
    y, idx = rung.forward(x, kernel, stride, padding)
    assert_close(y, yt.detach().numpy(), name=f"max_pool2d {rung.name} y", atol=0, rtol=0)
    np.testing.assert_array_equal(idx, it.numpy())
    gy = np.random.default_rng(seed + 1).standard_normal(y.shape)
    yt.backward(torch.from_numpy(gy))
    assert_close(rung.backward(gy, idx, xs), xt.grad.numpy(), name=f"max_pool2d {rung.name} gx",
                 **TORCH_TOL)


@st.composite
def linear_case(draw):
    return (draw(st.integers(1, 5)), draw(st.integers(1, 9)), draw(st.integers(1, 6)),
            draw(st.integers(0, 2**32 - 1)))


@each_rung("linear")
@CASES
@given(case=linear_case(), dtype=dtypes)
def test_linear_rung_matches_reference_and_torch(rung, case, dtype):
    N, In, Out, seed = case
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((N, In), (Out, In), (Out,)))
    y = rung.forward(x, w, b)
    assert_close(y, REF.linear_forward(x, w, b), name=f"linear {rung.name} y", **TOL[dtype])
    gy = rng.standard_normal(y.shape).astype(dtype)
    check_grads(rung.backward(x, w, gy), REF.linear_backward(x, w, gy), TOL[dtype],
                f"linear {rung.name} {case[:3]}")
    xt, wt, bt = T(x), T(w), T(b)
    yt = TF.linear(xt, wt, bt)
    yt.backward(torch.from_numpy(gy.astype(np.float64)))
    tol = TORCH_TOL if dtype == np.float64 else TOL[dtype]
    assert_close(y, yt.detach().numpy(), name=f"linear {rung.name} y (torch)", **tol)
    check_grads(rung.backward(x, w, gy), (xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()),
                tol, f"linear {rung.name} (torch)")


# ----------------------------------------------------------------------------- each step takes its path

def _ran(rung, x, w, stride, padding):
    """The share kernels a conv rung ran, forward then backward, in 3 shares."""
    ran = []

    def record(kernel, T, *args):
        ran.append(kernel)
        return run_shares(kernel, T, *args)

    with mock.patch.object(conv_kernels, "_share_count", lambda: 3), \
            mock.patch.object(conv_kernels, "run_shares", record):
        y = rung.forward(x, w, np.zeros(w.shape[0], x.dtype), stride, padding)
        rung.backward(x, w, np.ones_like(y), stride, padding)
    return ran


@pytest.mark.skipif(not conv_kernels.blas.AVAILABLE,
                    reason="numpy's BLAS cannot be called from numba here: no shares to run")
def test_conv_steps_take_their_paths():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 9, 8)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    r = {rung.name: rung for rung in ladder.rungs("conv2d")}
    share, share_b = conv_kernels.forward_share, conv_kernels.backward_share
    taps = [conv_kernels.forward_taps, conv_kernels.backward_taps]
    assert _ran(r["v2"], x, w, (1, 1), (1, 1)) == []
    assert _ran(r["v3"], x, w, (1, 1), (1, 1)) == [share, share_b]
    assert _ran(r["v4"], x, w, (1, 1), (1, 1)) == [share, share_b]
    assert _ran(r["v5"], x, w, (1, 1), (1, 1)) == taps
    assert _ran(r["v5"], x, w, (2, 2), (1, 1)) == [share, share_b]    # taps need stride 1
    assert _ran(r["v6"], x, w, (1, 1), (1, 1)) == taps
    # v3 gathers rows, v4 copies wide ones: the plan says which
    steps = [conv_kernels.plan_name(x.shape, w.shape, (1, 1), (1, 1), upto=s)
             for s in ("shares", "wide")]
    assert "gathered rows" in steps[0] and "wide rows" in steps[1], steps


@pytest.mark.parametrize("xs, ws, stride, kernels", [
    ((4, 1, 12, 12), (6, 1, 3, 3), (1, 1), "conv_direct"),
    ((4, 3, 12, 12), (6, 3, 3, 3), (1, 1), "conv_taps"),
    ((4, 3, 12, 12), (6, 3, 3, 3), (2, 1), "conv_chunks"),
    ((1, 3, 12, 12), (6, 3, 3, 3), (1, 1), "numpy matmul")])
def test_plan_name_says_which_path_runs(xs, ws, stride, kernels, monkeypatch):
    monkeypatch.setattr(conv_kernels, "_share_count", lambda: 3)
    name = conv_kernels.plan_name(xs, ws, stride, (1, 1))
    if not conv_kernels.blas.AVAILABLE and kernels in ("conv_taps", "conv_chunks"):
        kernels = "numpy matmul"
    assert kernels in name, name
    ran = []
    direct = mock.patch.object(conv_kernels, "conv3x3_forward",
                               side_effect=lambda *a: ran.append("conv_direct"))
    record = mock.patch.object(conv_kernels, "run_shares",
                               side_effect=lambda k, *a: ran.append(k.__module__))
    with direct, record:
        x = np.zeros(xs, np.float32)
        conv_kernels.conv2d_forward(x, np.zeros(ws, np.float32), None, stride, (1, 1))
    expect = {"conv_direct": ["conv_direct"], "numpy matmul": [],
              "conv_taps": ["minicnn.kernels.cpu.conv_taps"],
              "conv_chunks": ["minicnn.kernels.cpu.conv_chunks"]}[kernels]
    assert ran == expect, (name, ran)


# ----------------------------------------------------------------------------- choosing a rung

def _step(rung_name, relu):
    """A conv -> (ReLU) -> max-pool -> linear graph through autograd on the cpu device,
    every ladder op at `rung_name` (or the top rung): output and gradients."""
    rng = np.random.default_rng(3)
    x = minicnn.tensor(rng.standard_normal((2, 2, 7, 6)).astype(np.float32))
    w = minicnn.tensor(rng.standard_normal((3, 2, 3, 2)).astype(np.float32), requires_grad=True)
    b = minicnn.tensor(rng.standard_normal(3).astype(np.float32), requires_grad=True)
    lw = minicnn.tensor(rng.standard_normal((4, 27)).astype(np.float32), requires_grad=True)
    h = F.conv2d(x, w, b, stride=1, padding=1)
    h = F.max_pool2d(F.relu(h) if relu else h, 2)
    out = F.linear(F.flatten(h), lw)
    (out * out).sum().backward()
    return [a.numpy() for a in (out, w.grad, b.grad, lw.grad)]


@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
def test_use_runs_the_chosen_rung_through_autograd(relu):
    engine = _step(None, relu)
    calls = []
    original = conv_v1_loops.forward
    with mock.patch.object(conv_v1_loops, "forward",
                           side_effect=lambda *a: (calls.append(1), original(*a))[1]):
        with ladder.use("conv2d", "v1"), ladder.use("max_pool2d", "v1"), \
                ladder.use("linear", "v1"):
            assert ladder.chosen("conv2d").name == "v1"
            plain = _step("v1", relu)
    assert calls, "ladder.use('conv2d', 'v1') did not run conv_v1_loops"
    assert ladder.chosen("conv2d") is ladder.top("conv2d")      # put back on the way out
    for name, p, e in zip(("out", "gw", "gb", "linear gw"), plain, engine):
        assert_close(p, e, atol=1e-4, rtol=1e-4, name=name)


def test_environment_chooses_a_rung(monkeypatch):
    be = backends.get("cpu")
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)
    w = np.ones((3, 5), np.float32)
    monkeypatch.setenv("MINICNN_LINEAR_RUNG", "v2")
    assert ladder.chosen("linear").name == "v2"
    calls = []
    v1, v2, v3 = ladder.RUNGS["linear"]
    spy = v2._replace(forward=lambda *a: calls.append(a) or v2.forward(*a))
    with mock.patch.dict(ladder.RUNGS, {"linear": (v1, spy, v3)}):
        y = be.linear_forward(x, w, None)
    assert calls and y.shape == (2, 3)
    with ladder.use("linear", "3"):                 # use() wins over the environment
        assert ladder.chosen("linear").name == "v3"
    monkeypatch.setenv("MINICNN_LINEAR_RUNG", "v9")
    with pytest.raises(UserError, match=r"MINICNN_LINEAR_RUNG: linear has no rung 'v9'.*v1 \(loops\)"):
        be.linear_forward(x, w, None)


def test_upto_names_a_step():
    x, w = np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match="upto must be one of in_turn, shares, wide, taps, direct"):
        conv_kernels.conv2d_forward(x, w, None, (1, 1), (0, 0), upto="fast")


def test_wrong_names_say_what_would_be_right():
    with pytest.raises(UserError, match=r"ladder.use: conv2d has no rung 'v0'; choose one of v1"):
        with ladder.use("conv2d", "v0"):
            pass
    with pytest.raises(UserError, match="no op 'conv3d'.*conv2d, max_pool2d, linear"):
        ladder.rungs("conv3d")


def test_every_rung_says_why_and_where():
    for op in ladder.OPS:
        names = [r.name for r in ladder.rungs(op)]
        assert names == [f"v{k}" for k in range(1, len(names) + 1)], names
        for r in ladder.rungs(op):
            assert r.reason and r.title, (op, r.name)
            path = r.file.replace("kernels/cpu/ladder/", "")
            assert path.startswith({"conv2d": "conv_", "max_pool2d": "pool_",
                                    "linear": "linear_"}[op] + r.name + "_"), r.file
            with open(f"{ladder.__path__[0]}/{path}") as f:
                assert f.read().startswith('"""'), f"{r.file} opens without its docstring"


@pytest.mark.parametrize("needs", [(True, False, False), (False, True, True), (False, False, True)])
def test_a_chosen_rung_returns_only_what_is_needed(needs):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    gy = rng.standard_normal((2, 4, 3, 6)).astype(np.float32)
    full = REF.conv2d_backward(x, w, gy, (2, 1), (1, 1))
    be = backends.get("cpu")
    for name in ("v1", "v2", "v4"):
        with ladder.use("conv2d", name):
            got = be.conv2d_backward(x, w, gy, (2, 1), (1, 1), needs)
        for label, need, g, r in zip(("gx", "gw", "gb"), needs, got, full):
            if need:
                assert_close(g, r, name=f"{name} {label}", **TOL[np.float32])
            else:
                assert g is None, f"{name}: {label} returned although needs says False"
