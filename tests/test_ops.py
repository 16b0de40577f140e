"""Every op of the public API against PyTorch, forward and backward, on every device.

One helper, `check_op`, does the work (in the manner of tinygrad's helper_test_op):
it turns the same numpy inputs into minicnn tensors and torch tensors, runs the op
in both, compares the outputs, sends the same random upstream gradient back through
both, and compares the gradient of every input, shapes included. On a device other
than the cpu, and on the cpu's reference kernels, the same op also runs on the cpu's
numba kernels and the two must agree.

PyTorch runs in float64 on the float32 inputs, so it gives the exact answer to a few
ulps and every difference measured is minicnn's own float32 rounding. The tolerance
is |got - ref| <= ATOL + RTOL * |ref|:
  RTOL = 1e-4 is about 800 float32 ulps (eps = 1.2e-7): room for the rounding of
       sums of up to a few hundred terms done in another order, far below any
       real mistake (a wrong index or a missing term moves values by O(1)).
  ATOL = 1e-5 covers values that come out of cancellation near zero, where the
       relative error means nothing; inputs are O(1), so sums of O(100) terms
       round to a few 1e-6 at worst.
The worst errors per op are printed at the end of the run (tests/conftest.py).

The settings are drawn by hypothesis: odd sizes, strides above 1, padding, kernels
that differ from the stride, pooling windows that do not divide the input,
non-square kernels, batch 1, 1 and 3 channels, exact ties and exact zeros.
MINICNN_EXAMPLES=500 pytest tests/test_ops.py draws more cases per property.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import strategies as st

import minicnn
import minicnn.functional as MF
from minicnn import testing

from draws import examples, few_values, normal, run_examples, seeds
from torch_compare import numba_cpu, on_numba_cpu


ATOL, RTOL = 1e-5, 1e-4
SLOW_DEVICES = ("cuda-sim",)  # the emulator runs each CUDA thread as a fiber: fewer, smaller cases


# ----------------------------------------------------------------------------- the helper

def assert_close(got, ref, what, atol=ATOL, rtol=RTOL):
    """Shapes equal and |got - ref| <= atol + rtol*|ref| everywhere; else name the worst."""
    testing.assert_close(got, ref, atol=atol, rtol=rtol,
                         name=f"{what} (actual: minicnn, expected: PyTorch)")


def _to_numpy(array):
    return array.get() if hasattr(array, "get") and not isinstance(array, np.ndarray) else array


def check_op(name, device, log, fn, inputs, torch_fn=None, needs_grad=None, seed=0,
             atol=ATOL, rtol=RTOL, backend_name=None, grad_slack=None):
    """Run fn on minicnn and PyTorch with the same inputs; compare values and gradients.

    fn(F, *tensors) -> tensor, where F is minicnn.functional or torch.nn.functional
        (torch_fn, when given, is the PyTorch side and fn the minicnn side)
    inputs      numpy arrays; floating ones become float32 minicnn tensors and
                float64 torch tensors
    needs_grad  one bool per input (default: every floating input); those become
                leaves with requires_grad and their gradients are compared
    grad_slack(upstream) -> one extra absolute tolerance per input (an array or 0): for an
                op whose gradient is the small difference of large terms (batch norm),
                the float32 rounding of those terms, which ATOL assumes to be O(1)
    Returns the minicnn output tensor.
    """
    torch_fn = torch_fn or fn
    floating = [np.issubdtype(a.dtype, np.floating) for a in inputs]
    needs_grad = floating if needs_grad is None else needs_grad
    ours = [minicnn.tensor(a.astype(np.float32) if f else a, requires_grad=g, device=device)
            for a, f, g in zip(inputs, floating, needs_grad)]
    theirs = [torch.tensor(a.astype(np.float32).astype(np.float64) if f else a, requires_grad=g)
              for a, f, g in zip(inputs, floating, needs_grad)]
    who = f"{name} on {backend_name or device}"

    out = fn(MF, *ours)
    ref = torch_fn(TF, *theirs)
    assert out.dtype == np.float32, f"{who}: output dtype {out.dtype}, expected float32"
    assert out.device == device, f"{who}: output on {out.device}, inputs on {device}"
    got, want = out.numpy(), ref.detach().numpy()
    log.record(name, backend_name or device, got, want, atol, rtol)
    assert_close(got, want, f"{who}: forward", atol, rtol)

    upstream = np.random.default_rng(seed + 1).standard_normal(out.shape).astype(np.float32)
    cpu = _on_cpu(fn, inputs, floating, needs_grad, upstream) \
        if device != "cpu" or not on_numba_cpu() else None   # also reference vs numba
    if cpu is not None:
        assert_close(got, cpu[0], f"{who}: forward against the cpu", atol, rtol)
    if any(needs_grad):
        assert out.requires_grad, f"{who}: output does not require grad"
        out.backward(upstream)
        ref.backward(torch.tensor(upstream, dtype=torch.float64))
        slack = grad_slack(upstream) if grad_slack else [0.0] * len(inputs)
        for k, (a, b, g) in enumerate(zip(ours, theirs, needs_grad)):
            if not g:
                assert a.grad is None, f"{who}: input {k} got a gradient it did not ask for"
                continue
            assert a.grad is not None, f"{who}: input {k} got no gradient"
            assert a.grad.dtype == np.float32, f"{who}: grad of input {k} is {a.grad.dtype}"
            want_grad = b.grad.numpy() if b.grad is not None else np.zeros(a.shape)
            tol = atol + slack[k]
            log.record(name, backend_name or device, a.grad.numpy(), want_grad, tol, rtol)
            assert_close(a.grad.numpy(), want_grad, f"{who}: gradient of input {k}", tol, rtol)
            assert a.grad.device == device, f"{who}: gradient of input {k} on {a.grad.device}"
            if cpu is not None:   # each side off the exact answer by up to the slack
                assert_close(a.grad.numpy(), cpu[1][k], f"{who}: gradient of input {k} "
                             "against the cpu", atol + 2 * slack[k], rtol)
    log.count_case(name, backend_name or device)
    return out


def _on_cpu(fn, inputs, floating, needs_grad, upstream):
    """fn on the cpu (numba kernels): (output, [gradient of each input or None])."""
    with numba_cpu():
        ours = [minicnn.tensor(a.astype(np.float32) if f else a, requires_grad=g)
                for a, f, g in zip(inputs, floating, needs_grad)]
        out = fn(MF, *ours)
        if any(needs_grad):
            out.backward(upstream)
        return out.numpy(), [a.grad.numpy() if g else None for a, g in zip(ours, needs_grad)]


def run_cases(device, strategy, body, max_examples=20):
    """Run body(case) for cases drawn from strategy; fewer on the slow emulator
    (MINICNN_EXAMPLES overrides max_examples)."""
    max_examples = examples(max_examples)
    n = max(4, max_examples // 2) if device in SLOW_DEVICES else max_examples
    run_examples(strategy, body, n)


@pytest.fixture
def check(backend, backend_name, equivalence_log):
    """check(name, fn, inputs, ...) = check_op bound to this test's device."""
    def bound(name, fn, inputs, **kw):
        return check_op(name, backend, equivalence_log, fn, inputs,
                        backend_name=backend_name, **kw)
    return bound


# ----------------------------------------------------------------------------- input makers
# normal, few_values and seeds come from tests/draws.py

def _small(device):
    return device in SLOW_DEVICES


# ----------------------------------------------------------------------------- convolution

@st.composite
def conv_cases(draw, small=False):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    extra = 4 if small else 8
    h = max(1, kh - 2 * ph) + draw(st.integers(0, extra))
    w = max(1, kw - 2 * pw) + draw(st.integers(0, extra))
    return dict(n=draw(st.sampled_from([1, 2])), c=draw(st.sampled_from([1, 3])),
                f=draw(st.sampled_from([1, 2, 4])), h=h, w=w, k=(kh, kw), stride=(sh, sw),
                padding=(ph, pw), bias=draw(st.booleans()),
                square=draw(st.booleans()), x_grad=draw(st.booleans()), seed=draw(seeds))


def test_conv2d(backend, check):
    def body(c):
        rng = np.random.default_rng(c["seed"])
        x = normal(rng, c["n"], c["c"], c["h"], c["w"])
        w = normal(rng, c["f"], c["c"], *c["k"]) * 0.5
        # ints where PyTorch allows them too: stride=2 as well as stride=(2, 2)
        sh, sw = c["stride"]
        stride = sh if (c["square"] and sh == sw) else c["stride"]
        padding = c["padding"]
        if c["bias"]:
            b = normal(rng, c["f"])
            check("conv2d", lambda F, x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding),
                  [x, w, b], needs_grad=[c["x_grad"], True, True], seed=c["seed"])
        else:
            check("conv2d", lambda F, x, w: F.conv2d(x, w, stride=stride, padding=padding),
                  [x, w], needs_grad=[c["x_grad"], True], seed=c["seed"])
    run_cases(backend, conv_cases(small=_small(backend)), body)


def test_conv2d_relu(backend, check):
    # the fused op against PyTorch's two: relu(conv2d(...)), values and gradients
    def body(c):
        rng = np.random.default_rng(c["seed"])
        x = normal(rng, c["n"], c["c"], c["h"], c["w"])
        w, b = normal(rng, c["f"], c["c"], *c["k"]) * 0.5, normal(rng, c["f"])
        stride, padding = c["stride"], c["padding"]
        check("conv2d_relu",
              lambda F, x, w, b: F.conv2d_relu(x, w, b, stride=stride, padding=padding),
              [x, w, b], needs_grad=[c["x_grad"], True, c["bias"]], seed=c["seed"],
              torch_fn=lambda F, x, w, b: F.relu(F.conv2d(x, w, b, stride=stride,
                                                          padding=padding)))
    run_cases(backend, conv_cases(small=_small(backend)), body)


def test_conv2d_typical_layer(backend, check):
    """A 3x3 'same' convolution of a 28x28 image: the size the model really uses.

    Its weight gradient sums N*Ho*Wo = 1568 products per element, 3.5 times the
    longest sum in the property tests above (2*15*15); float32 rounding of a sum
    grows like sqrt(n), so the absolute tolerance doubles (PyTorch's own float32
    convolution misses 1e-5 on this layer for some inputs). It has its own table row.
    """
    rng = np.random.default_rng(7)
    size = 12 if _small(backend) else 28
    x, w, b = normal(rng, 2, 3, size, size), normal(rng, 8, 3, 3, 3) * 0.3, normal(rng, 8)
    check("conv2d 3x3 same layer", lambda F, x, w, b: F.conv2d(x, w, b, stride=1, padding=1),
          [x, w, b], atol=2 * ATOL)


# ----------------------------------------------------------------------------- pooling

@st.composite
def pool_cases(draw, small=False):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    extra = 4 if small else 8
    h = max(1, kh - 2 * ph) + draw(st.integers(0, extra))
    w = max(1, kw - 2 * pw) + draw(st.integers(0, extra))
    return dict(n=draw(st.sampled_from([1, 2])), c=draw(st.sampled_from([1, 3])), h=h, w=w,
                k=(kh, kw), stride=stride, padding=(ph, pw), ties=draw(st.booleans()),
                seed=draw(seeds))


def _pool_input(c):
    rng = np.random.default_rng(c["seed"])
    make = few_values if c["ties"] else normal
    return make(rng, c["n"], c["c"], c["h"], c["w"])


def test_max_pool2d(backend, check):
    def body(c):
        k, s, p = c["k"], c["stride"], c["padding"]
        check("max_pool2d", lambda F, x: F.max_pool2d(x, k, stride=s, padding=p),
              [_pool_input(c)], seed=c["seed"])
    run_cases(backend, pool_cases(small=_small(backend)), body, max_examples=30)


def test_max_pool2d_all_ties(backend, check):
    """A constant input: every window is one big tie; the first element must win."""
    x = np.full((1, 2, 5, 7), 3.0, dtype=np.float32)
    check("max_pool2d", lambda F, x: F.max_pool2d(x, (2, 3), stride=(1, 2), padding=(1, 1)), [x])
    check("max_pool2d", lambda F, x: F.max_pool2d(x, 2), [x])


def test_avg_pool2d(backend, check):
    def body(c):
        k, s, p = c["k"], c["stride"], c["padding"]
        check("avg_pool2d", lambda F, x: F.avg_pool2d(x, k, stride=s, padding=p),
              [_pool_input(c)], seed=c["seed"])
    run_cases(backend, pool_cases(small=_small(backend)), body)


def test_pooling_int_arguments(backend, check):
    rng = np.random.default_rng(3)
    x = normal(rng, 2, 3, 9, 7)
    check("max_pool2d", lambda F, x: F.max_pool2d(x, 3, 2, 1), [x])
    check("avg_pool2d", lambda F, x: F.avg_pool2d(x, 3, 2, 1), [x])


# ----------------------------------------------------------------------------- activations

@st.composite
def shapes(draw, min_rank=1, max_rank=4, max_side=6):
    rank = draw(st.integers(min_rank, max_rank))
    return tuple(draw(st.integers(1, max_side)) for _ in range(rank))


def test_relu(backend, check):
    def body(case):
        shape, seed = case
        rng = np.random.default_rng(seed)
        x = normal(rng, *shape)
        x[rng.random(shape) < 0.3] = 0.0  # exact zeros: gradient 0 there, as PyTorch
        check("relu", lambda F, x: F.relu(x), [x], seed=seed)
    run_cases(backend, st.tuples(shapes(), seeds), body)


def test_sigmoid(backend, check):
    def body(case):
        shape, seed, scale = case
        rng = np.random.default_rng(seed)
        x = normal(rng, *shape) * scale
        x.flat[: min(4, x.size)] = [100.0, -100.0, 1e4, -1e4][: min(4, x.size)]
        check("sigmoid", lambda F, x: F.sigmoid(x), [x], seed=seed)
    run_cases(backend, st.tuples(shapes(), seeds, st.sampled_from([1.0, 10.0, 50.0])), body)


# ----------------------------------------------------------------------------- linear

def test_linear(backend, check):
    def body(case):
        n, fin, fout, bias, one_d, seed = case
        rng = np.random.default_rng(seed)
        x = normal(rng, fin) if one_d else normal(rng, n, fin)
        w = normal(rng, fout, fin) * 0.5
        if bias:
            check("linear", lambda F, x, w, b: F.linear(x, w, b), [x, w, normal(rng, fout)],
                  seed=seed)
        else:
            check("linear", lambda F, x, w: F.linear(x, w), [x, w], seed=seed)
    run_cases(backend, st.tuples(st.integers(1, 7), st.integers(1, 33), st.integers(1, 9),
                                 st.booleans(), st.booleans(), seeds), body)


# ----------------------------------------------------------------------------- softmax family

@st.composite
def softmax_cases(draw):
    shape = draw(shapes(max_side=5))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    return shape, dim, draw(st.sampled_from([1.0, 5.0, 40.0])), draw(seeds)


def test_softmax(backend, check):
    def body(case):
        shape, dim, scale, seed = case
        x = normal(np.random.default_rng(seed), *shape) * scale
        check("softmax", lambda F, x: F.softmax(x, dim=dim), [x], seed=seed)
    run_cases(backend, softmax_cases(), body)


def test_log_softmax(backend, check):
    def body(case):
        shape, dim, scale, seed = case
        x = normal(np.random.default_rng(seed), *shape) * scale
        check("log_softmax", lambda F, x: F.log_softmax(x, dim=dim), [x], seed=seed)
    run_cases(backend, softmax_cases(), body)


@st.composite
def ce_cases(draw):
    return dict(n=draw(st.integers(1, 9)), k=draw(st.integers(2, 7)),
                reduction=draw(st.sampled_from(["mean", "sum", "none"])),
                weighted=draw(st.booleans()), scale=draw(st.sampled_from([1.0, 4.0, 30.0])),
                seed=draw(seeds))


def test_cross_entropy(backend, check):
    def body(c):
        rng = np.random.default_rng(c["seed"])
        logits = normal(rng, c["n"], c["k"]) * c["scale"]
        target = rng.integers(0, c["k"], size=c["n"]).astype(np.int64)
        red = c["reduction"]
        if c["weighted"]:
            weight = rng.uniform(0.2, 3.0, size=c["k"]).astype(np.float32)
            check("cross_entropy",
                  lambda F, x, t, w: F.cross_entropy(x, t, weight=w, reduction=red),
                  [logits, target, weight], needs_grad=[True, False, False], seed=c["seed"])
        else:
            check("cross_entropy", lambda F, x, t: F.cross_entropy(x, t, reduction=red),
                  [logits, target], seed=c["seed"])
    run_cases(backend, ce_cases(), body, max_examples=30)


def test_cross_entropy_extreme_logits(backend, check):
    """Logits of 1e4 must not overflow: the max is subtracted before exp."""
    logits = np.array([[1e4, -1e4, 0.0], [-50.0, 60.0, 59.0], [0.0, 0.0, 0.0]], np.float32)
    target = np.array([1, 2, 0])
    for red in ("mean", "none"):
        check("cross_entropy", lambda F, x, t: F.cross_entropy(x, t, reduction=red),
              [logits, target])
    check("log_softmax", lambda F, x: F.log_softmax(x, dim=1), [logits])
    check("softmax", lambda F, x: F.softmax(x, dim=0), [logits])


def test_cross_entropy_default_is_mean(backend, check):
    rng = np.random.default_rng(11)
    logits, target = normal(rng, 5, 3), np.array([0, 2, 1, 1, 0])
    check("cross_entropy", lambda F, x, t: F.cross_entropy(x, t), [logits, target])


# ----------------------------------------------------------------------------- shape and batch norm

def test_flatten(backend, check):
    def body(case):
        shape, seed, data = case
        nd = len(shape)
        start = data.draw(st.integers(-nd, nd - 1))
        end = data.draw(st.integers(start % nd, nd - 1))
        x = normal(np.random.default_rng(seed), *shape)
        check("flatten", lambda F, x: torch.flatten(x, start, end) if F is TF
              else MF.flatten(x, start, end), [x], seed=seed)
    run_cases(backend, st.tuples(shapes(min_rank=1), seeds, st.data()), body)


def test_flatten_default_keeps_batch(backend, check):
    x = normal(np.random.default_rng(5), 2, 3, 4, 5)
    out = check("flatten", lambda F, x: torch.flatten(x, 1) if F is TF else MF.flatten(x), [x])
    assert out.shape == (2, 60)


def _device_array(array, device):
    if device == "cuda":
        import cupy
        return cupy.asarray(array)
    return array.copy()


@st.composite
def bn_cases(draw):
    rank = draw(st.sampled_from([2, 4]))
    n = draw(st.integers(2, 4))
    c = draw(st.sampled_from([1, 3]))
    shape = (n, c) if rank == 2 else (n, c, draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    return shape, draw(st.booleans()), draw(st.booleans()), draw(seeds)


K_SLACK = 8   # float32 roundings allowed per term that cancels (bn_grad_slack)


def bn_grad_slack(x, w, gy, eps):
    """Extra tolerance of batch norm's input and weight gradients in training.

    gx = w*invstd * (gy - mean(gy) - xhat * mean(gy*xhat)), means per channel over n and l,
    is the small difference of three terms when a channel has few values: with two it is
    eps/(var + eps) of them. A float32 kernel (PyTorch's too) rounds the mean and invstd it
    builds xhat = x*invstd - mean*invstd from, so xhat is off by ~1e-7 of
    a = (|x| + |mean|) * invstd, not of xhat, and w*invstd reaches 1/sqrt(eps) ~ 300: the
    error is ~1e-7 of the terms' sizes, |gy| + mean|gy| + a * mean(|gy| * a), not of gx.
    The weight's gradient, sum(gy * xhat), is off by the same ~1e-7 of sum(|gy| * a).
    Allowed: K_SLACK roundings of those (u = 2**-24).
    x, gy (N, C, ...) float64; w (C,) or None -> (slack of gx (x.shape), of gw (C,))."""
    n, c = x.shape[:2]
    x3, g3 = x.reshape(n, c, -1), np.abs(gy.reshape(n, c, -1).astype(np.float64))
    mean = x3.mean(axis=(0, 2), keepdims=True)
    invstd = 1 / np.sqrt(x3.var(axis=(0, 2), keepdims=True) + eps)
    a = (np.abs(x3) + np.abs(mean)) * invstd
    scale = (1.0 if w is None else np.abs(w).reshape(1, c, 1)) * invstd
    terms = g3 + g3.mean(axis=(0, 2), keepdims=True) \
        + a * (g3 * a).mean(axis=(0, 2), keepdims=True)
    u = K_SLACK * 2.0 ** -24
    return (u * scale * terms).reshape(x.shape), u * (g3 * a).sum(axis=(0, 2))


def test_batch_norm(backend, check):
    """Training (batch statistics, running stats updated) and eval (running stats)."""
    def body(case):
        shape, training, affine, seed = case
        rng = np.random.default_rng(seed)
        C = shape[1]
        x = normal(rng, *shape) * 2 + 1
        mean0 = normal(rng, C) * 0.1
        var0 = rng.uniform(0.5, 2.0, C).astype(np.float32)
        ours_stats = [_device_array(mean0, backend), _device_array(var0, backend)]
        theirs_stats = [torch.tensor(mean0, dtype=torch.float64),
                        torch.tensor(var0, dtype=torch.float64)]

        calls = []

        def ours(F, x, *wb):  # the first call is the device's; check_op's cpu run gets copies
            stats = [mean0.copy(), var0.copy()] if calls else ours_stats
            calls.append(x.device)
            return F.batch_norm(x, *stats, *wb, training=training, momentum=0.1, eps=1e-5)

        def theirs(F, x, *wb):
            return F.batch_norm(x, *theirs_stats, *wb, training=training, momentum=0.1, eps=1e-5)
        inputs = [x] + ([normal(rng, C) + 1, normal(rng, C)] if affine else [])

        def slack(upstream):  # eval: the statistics are given, nothing cancels
            if not training:
                return [0.0] * len(inputs)
            w = inputs[1].astype(np.float64) if affine else None
            gx, gw = bn_grad_slack(x.astype(np.float64), w, upstream, 1e-5)
            return [gx] + ([gw, 0.0] if affine else [])
        check("batch_norm", ours, inputs, torch_fn=theirs, seed=seed, grad_slack=slack)
        for name, a, b in zip(("running_mean", "running_var"), ours_stats, theirs_stats):
            assert_close(_to_numpy(a), b.numpy(), f"batch_norm: {name} after the step")
    run_cases(backend, bn_cases(), body)


# ----------------------------------------------------------------------------- tensor arithmetic

@st.composite
def broadcast_pair(draw):
    """Two shapes that broadcast: the second drops leading dims and sets some to 1."""
    a = draw(shapes(min_rank=0, max_rank=4, max_side=4))
    drop = draw(st.integers(0, len(a)))
    b = tuple(1 if draw(st.booleans()) else s for s in a[drop:])
    if draw(st.booleans()):
        a, b = b, a
    return a, b


ARITH = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}


@pytest.mark.parametrize("op", list(ARITH))
def test_arithmetic_broadcast(backend, check, op):
    def body(case):
        (sa, sb), seed = case
        rng = np.random.default_rng(seed)
        a = normal(rng, *sa)
        b = normal(rng, *sb)
        if op == "div":  # keep the denominator away from 0
            b = (np.sign(b) + (b == 0)) * rng.uniform(0.5, 2.0, sb).astype(np.float32)
        check(op, lambda F, a, b: ARITH[op](a, b), [a, b], seed=seed)
    run_cases(backend, st.tuples(broadcast_pair(), seeds), body, max_examples=15)


def test_arithmetic_with_numbers(backend, check):
    rng = np.random.default_rng(2)
    x = rng.uniform(0.5, 2.0, (3, 4)).astype(np.float32)
    for name, fn in [("add", lambda F, x: 2.5 + x), ("sub", lambda F, x: 1.5 - x),
                     ("mul", lambda F, x: x * 3.0), ("div", lambda F, x: 1.0 / x),
                     ("div", lambda F, x: x / 4.0), ("neg", lambda F, x: -x),
                     ("sub", lambda F, x: x - np.float32(0.5))]:
        check(name, fn, [x])


@pytest.mark.parametrize("exponent", [2, 3, 0.5, -1, 1.5, 0, -2.5])
def test_pow(backend, check, exponent):
    rng = np.random.default_rng(4)
    integral = float(exponent).is_integer()
    x = normal(rng, 3, 5) if integral else rng.uniform(0.3, 3.0, (3, 5)).astype(np.float32)
    if integral and exponent >= 0:
        x[0, 0] = 0.0  # 0**p: the gradient is finite (0 for p == 0, as PyTorch)
    check("pow", lambda F, x: x ** exponent, [x])


def test_exp_log_sqrt_abs(backend, check):
    rng = np.random.default_rng(6)
    x = normal(rng, 4, 5)
    pos = rng.uniform(0.1, 5.0, (4, 5)).astype(np.float32)
    check("exp", lambda F, x: x.exp(), [x])
    check("log", lambda F, x: x.log(), [pos])
    check("sqrt", lambda F, x: x.sqrt(), [pos])
    check("abs", lambda F, x: x.abs(), [x])


@st.composite
def reduce_cases(draw):
    shape = draw(shapes(min_rank=1, max_rank=4, max_side=5))
    nd = len(shape)
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        axis = None
    elif kind == "int":
        axis = draw(st.integers(-nd, nd - 1))
    else:
        axes = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
        axis = tuple(a - nd if draw(st.booleans()) else a for a in axes)
    return shape, axis, draw(st.booleans()), draw(st.booleans()), draw(seeds)


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_reductions(backend, check, op):
    def body(case):
        shape, axis, keepdims, ties, seed = case
        rng = np.random.default_rng(seed)
        x = few_values(rng, *shape) if ties else normal(rng, *shape)

        def ours(F, x):
            return getattr(x, op)(axis=axis, keepdims=keepdims)

        def theirs(F, x):
            if axis is None:
                y = {"sum": torch.sum, "mean": torch.mean, "max": torch.max}[op](x)
                return y.reshape((1,) * x.ndim) if keepdims else y
            # amax: ties share the gradient evenly, as minicnn's max does
            fn = {"sum": torch.sum, "mean": torch.mean, "max": torch.amax}[op]
            return fn(x, dim=axis, keepdim=keepdims)
        check(op, ours, [x], torch_fn=theirs, seed=seed)
    run_cases(backend, reduce_cases(), body, max_examples=15)


def test_var(backend, check):
    x = normal(np.random.default_rng(8), 3, 4, 5)
    check("var", lambda F, x: x.var(axis=(0, 2), unbiased=False) if F is MF
          else torch.var(x, dim=(0, 2), unbiased=False), [x])
    check("var", lambda F, x: x.var(dim=1, keepdim=True) if F is MF     # PyTorch's default:
          else torch.var(x, dim=1, keepdim=True), [x])                 # unbiased
    check("var", lambda F, x: x.var() + x.var(0, correction=0).sum() if F is MF
          else torch.var(x) + torch.var(x, 0, correction=0).sum(), [x])


@st.composite
def reshape_cases(draw):
    shape = draw(shapes(min_rank=1, max_rank=4, max_side=4))
    size = int(np.prod(shape))
    divisors = [d for d in range(1, size + 1) if size % d == 0]
    a = draw(st.sampled_from(divisors))
    target = draw(st.sampled_from([(size,), (a, size // a), (a, -1), (-1, a, 1), (1, size)]))
    return shape, target, draw(seeds)


def test_reshape(backend, check):
    def body(case):
        shape, target, seed = case
        x = normal(np.random.default_rng(seed), *shape)
        check("reshape", lambda F, x: x.reshape(target), [x], seed=seed)
    run_cases(backend, reshape_cases(), body, max_examples=15)


def test_transpose(backend, check):
    rng = np.random.default_rng(9)
    x2, x3, x4 = normal(rng, 3, 5), normal(rng, 2, 3, 4), normal(rng, 2, 3, 4, 5)
    check("transpose", lambda F, x: x.T, [x2])
    check("transpose", lambda F, x: x.transpose(0, 1), [x2])
    check("transpose", lambda F, x: x.transpose(0, 2), [x3])          # swap two dims
    check("transpose", lambda F, x: x.transpose(-1, 1), [x4])
    check("transpose", lambda F, x: x.transpose((2, 0, 1)) if F is MF
          else x.permute(2, 0, 1), [x3])                               # a full permutation


INDEXES = {
    "int": lambda x: x[1],
    "negative int": lambda x: x[-1, 1:4],
    "step slice": lambda x: x[:, ::2, 1],
    "ellipsis": lambda x: x[..., 2],
    "new axis": lambda x: x[None, 1:3],
    "repeated rows": lambda x: x[[0, 2, 2, 3]],          # gradients of repeats add up
    "pairs": lambda x: x[[0, 1, 3, 3], [4, 0, 2, 2]],
    "boolean mask": lambda x: x[x > 0],
}


@pytest.mark.parametrize("kind", list(INDEXES))
def test_indexing(backend, check, kind):
    x = normal(np.random.default_rng(10), 4, 5, 6)
    check("getitem", lambda F, x: INDEXES[kind](x), [x])


MATMUL_SHAPES = [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
                 ((2, 3, 4), (2, 4, 5)), ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)),
                 ((2, 1, 3, 4), (3, 4, 2)), ((1, 7), (7, 1))]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul(backend, check, sa, sb):
    rng = np.random.default_rng(12)
    check("matmul", lambda F, a, b: a @ b, [normal(rng, *sa), normal(rng, *sb)])


def test_composite_expression(backend, check):
    """Several ops in one graph, one input used three times."""
    rng = np.random.default_rng(13)
    x, w = normal(rng, 4, 6), normal(rng, 6, 3)

    def fn(F, x, w):
        h = (x @ w).exp() * 0.1 + x.sum(axis=1, keepdims=True) / 3
        return F.log_softmax(h - x.mean(), dim=1)
    check("composite", fn, [x, w])


# ----------------------------------------------------------------------------- dropout

@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_statistics_and_scaling(backend, p):
    minicnn.manual_seed(1)
    shape = (40, 25, 20)
    x = np.random.default_rng(0).uniform(0.5, 1.5, shape).astype(np.float32)
    t = minicnn.tensor(x, requires_grad=True, device=backend)
    y = minicnn.functional.dropout(t, p=p, training=True)
    out = y.numpy()
    kept = out != 0
    n = kept.size
    dropped = 1 - kept.mean()
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(dropped - p) < 5 * sigma, \
        f"dropout p={p}: dropped {dropped:.4f} of {n} elements, expected {p} +- {5 * sigma:.4f}"
    testing.assert_close(out[kept], x[kept] / (1 - p), ATOL, RTOL,
                         f"dropout p={p}: kept values scaled by 1/(1-p)")
    # gradient = upstream * mask / (1 - p)
    g = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    y.backward(g)
    testing.assert_close(t.grad.numpy(), g * kept / (1 - p), ATOL, RTOL,
                         f"dropout p={p}: gradient = upstream * mask / (1-p)")


def test_dropout_eval_and_edges(backend):
    x = np.random.default_rng(0).standard_normal((3, 7)).astype(np.float32)
    t = minicnn.tensor(x, requires_grad=True, device=backend)
    y = minicnn.functional.dropout(t, p=0.5, training=False)
    assert np.array_equal(y.numpy(), x), "dropout in eval mode must be the identity"
    y.sum().backward()
    assert np.array_equal(t.grad.numpy(), np.ones_like(x)), "eval-mode dropout: gradient 1"
    assert np.array_equal(minicnn.functional.dropout(t, p=0.0).numpy(), x)
    assert np.array_equal(minicnn.functional.dropout(t, p=1.0).numpy(), np.zeros_like(x))
    # a different mask each call, the same mask after the same seed
    minicnn.manual_seed(3)
    a = minicnn.functional.dropout(t, 0.5).numpy()
    b = minicnn.functional.dropout(t, 0.5).numpy()
    minicnn.manual_seed(3)
    c = minicnn.functional.dropout(t, 0.5).numpy()
    assert not np.array_equal(a != 0, b != 0), "two dropout calls drew the same mask"
    assert np.array_equal(a, c), "manual_seed did not repeat the dropout mask"
