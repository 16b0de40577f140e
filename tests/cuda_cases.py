"""The CUDA kernel checks, shared by test_cuda_kernels.py (device "cuda-sim", the CPU
emulator) and test_cuda_gpu.py (device "cuda", a real GPU).

Each check draws its settings with hypothesis (odd sizes, strides above 1, padding,
kernels that differ from the stride, windows that do not divide the input, batch 1,
1 and 3 channels, ties), runs the backend table entry on float32 inputs, and compares
with the plain numpy reference (kernels/reference.py) run in float64 on the same
inputs, so every difference measured is the kernels' own float32 rounding. On the
emulator every case runs three times, with the threads of each block (and the blocks)
in forward, reverse and shuffled order: a kernel that is right does not depend on it.

Tolerance |got - ref| <= ATOL + RTOL*|ref|, as in test_ops.py: RTOL = 1e-4 is about
800 float32 ulps, room for sums of a few hundred terms added in another order; ATOL =
1e-5 covers results near zero that come out of cancellation. A wrong index or a
missing term moves values by O(1).
"""
import contextlib

import numpy as np
from hypothesis import strategies as st

from minicnn.backends import _cuda_glue as glue
from minicnn.kernels import reference as R

from draws import examples, few_values, normal, run_examples, seeds

ATOL, RTOL = 1e-5, 1e-4
F64 = np.float64


def assert_close(got, ref, what, atol=ATOL, rtol=RTOL):
    """Shapes equal and |got - ref| <= atol + rtol*|ref| everywhere; else name the worst."""
    got = np.asarray(got, dtype=F64)
    ref = np.asarray(ref, dtype=F64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, the reference gives {ref.shape}"
    if got.size == 0:
        return
    both_nan = np.isnan(got) & np.isnan(ref)
    same_inf = np.isinf(ref) & (got == ref)
    err = np.where(both_nan | same_inf, 0.0, np.abs(got - ref))
    err = np.where(np.isnan(err), np.inf, err)
    ratio = err / (atol + rtol * np.abs(ref))
    bad = int((ratio > 1).sum())
    if bad:
        i = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        raise AssertionError(
            f"{what}: {bad} of {got.size} elements differ; worst at index {tuple(map(int, i))}: "
            f"kernel {got[i]!r}, reference {ref[i]!r} (|diff| {err[i]:.3e} > "
            f"{atol:g} + {rtol:g}*|ref| = {atol + rtol * abs(ref[i]):.3e})")


class Runner:
    """One device's backend module, the way to move arrays there and back, and the
    thread orders to run every case in."""

    def __init__(self, backend, orders, set_order=None):
        self.B = backend
        self.xp = backend.xp
        self._orders = orders
        self._set_order = set_order

    def dev(self, a):
        return self.xp.asarray(a)

    def host(self, a):
        return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)

    def orders(self):
        """Yield each thread order in turn, with the emulator set to it."""
        try:
            for order in self._orders:
                if self._set_order:
                    self._set_order(order)
                yield order
        finally:
            if self._set_order:
                self._set_order(self._orders[0])


@contextlib.contextmanager
def glue_limits(**values):
    """Set constants of the CUDA glue (CONV_WORKSPACE_BYTES, SPLIT_K_...) for a while."""
    old = {k: getattr(glue, k) for k in values}
    try:
        for k, v in values.items():
            setattr(glue, k, v)
        yield
    finally:
        for k, v in old.items():
            setattr(glue, k, v)


def run_cases(strategy, body, max_examples=20):
    """body(case) for cases drawn from strategy (MINICNN_EXAMPLES overrides the count)."""
    run_examples(strategy, body, examples(max_examples))


def check_grads(run, what, grads, grads_ref, needs, order):
    """The (input, weight, bias) gradients of a backward call: None where not needed,
    else close to the reference."""
    for name, got, ref, need in zip(("input", "weight", "bias"), grads, grads_ref, needs):
        if not need:
            assert got is None, f"{what}: {name} gradient was not asked for"
            continue
        assert_close(run.host(got), ref, f"{what}: {name} gradient [{order}]")


def check_forward_backward(run, c, op, x, gy, finite=False):
    """An op whose backward reads its output: op_forward(x) -> y, op_backward(gy, y) -> gx,
    both against the reference; finite=True also demands a finite y."""
    y_ref = getattr(R, f"{op}_forward")(x.astype(F64))
    gx_ref = getattr(R, f"{op}_backward")(gy.astype(F64), y_ref)
    for order in run.orders():
        y = getattr(run.B, f"{op}_forward")(run.dev(x))
        got = run.host(y)
        if finite:
            assert np.isfinite(got).all(), f"{op} forward {c} [{order}]: not finite"
        assert_close(got, y_ref, f"{op} forward {c} [{order}]")
        gx = getattr(run.B, f"{op}_backward")(run.dev(gy), y)
        assert_close(run.host(gx), gx_ref, f"{op} backward {c} [{order}]")


# ----------------------------------------------------------------------------- matrix product

@st.composite
def gemm_cases(draw):
    edge = st.sampled_from([1, 2, 15, 16, 17, 63, 64, 65, 130])   # around the 64 and 16 tiles
    return dict(m=draw(edge), n=draw(edge), k=draw(edge), ta=draw(st.booleans()),
                tb=draw(st.booleans()), seed=draw(seeds))


def check_sgemm(run, c):
    rng = np.random.default_rng(c["seed"])
    a = normal(rng, *((c["k"], c["m"]) if c["ta"] else (c["m"], c["k"])))
    b = normal(rng, *((c["n"], c["k"]) if c["tb"] else (c["k"], c["n"])))
    ref = (a.T if c["ta"] else a).astype(F64) @ (b.T if c["tb"] else b).astype(F64)
    for order in run.orders():
        got = run.B.matmul(run.dev(a), run.dev(b), trans_a=c["ta"], trans_b=c["tb"])
        assert_close(run.host(got), ref, f"sgemm {c} [{order}]")


# ----------------------------------------------------------------------------- convolution

@st.composite
def conv_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = max(1, kh - 2 * ph) + draw(st.integers(0, 5))
    w = max(1, kw - 2 * pw) + draw(st.integers(0, 5))
    needs = draw(st.tuples(st.booleans(), st.booleans(), st.booleans()))
    # limits: the glue's defaults, or one image per chunk, or small sums split along K
    limits = draw(st.sampled_from([{}, {"CONV_WORKSPACE_BYTES": 1},
                                   {"SPLIT_K_TARGET_BLOCKS": 8, "SPLIT_K_MIN_SLICE": 4},
                                   {"CONV_WORKSPACE_BYTES": 1, "SPLIT_K_TARGET_BLOCKS": 8,
                                    "SPLIT_K_MIN_SLICE": 12}]))
    return dict(n=draw(st.sampled_from([1, 2, 3])), c=draw(st.sampled_from([1, 3])),
                f=draw(st.sampled_from([1, 2, 4])), h=h, w=w, k=(kh, kw), stride=(sh, sw),
                padding=(ph, pw), bias=draw(st.booleans()), needs=needs, limits=limits,
                seed=draw(seeds))


def check_conv2d(run, c):
    rng = np.random.default_rng(c["seed"])
    x = normal(rng, c["n"], c["c"], c["h"], c["w"])
    w = normal(rng, c["f"], c["c"], *c["k"])
    b = normal(rng, c["f"]) if c["bias"] else None
    f64 = (lambda a: None if a is None else a.astype(F64))
    y_ref = R.conv2d_forward(f64(x), f64(w), f64(b), c["stride"], c["padding"])
    gy = normal(rng, *y_ref.shape)
    needs = c["needs"] if c["bias"] else (c["needs"][0], c["needs"][1], False)
    grads_ref = R.conv2d_backward(f64(x), f64(w), f64(gy), c["stride"], c["padding"], needs)
    with glue_limits(**c["limits"]):
        for order in run.orders():
            y = run.B.conv2d_forward(run.dev(x), run.dev(w),
                                     None if b is None else run.dev(b), c["stride"],
                                     c["padding"])
            assert_close(run.host(y), y_ref, f"conv2d forward {c} [{order}]")
            grads = run.B.conv2d_backward(run.dev(x), run.dev(w), run.dev(gy), c["stride"],
                                          c["padding"], needs)
            check_grads(run, f"conv2d backward {c}", grads, grads_ref, needs, order)


def check_conv2d_layer(run, seed):
    """A first layer of the chest X-ray model: 1 -> 16 channels on 28 x 28, batch 3
    (several GEMM tiles along the pixels)."""
    rng = np.random.default_rng(seed)
    x, w, b = normal(rng, 3, 1, 28, 28), normal(rng, 16, 1, 3, 3), normal(rng, 16)
    y_ref = R.conv2d_forward(x.astype(F64), w.astype(F64), b.astype(F64), (1, 1), (1, 1))
    gy = normal(rng, *y_ref.shape)
    g_ref = R.conv2d_backward(x.astype(F64), w.astype(F64), gy.astype(F64), (1, 1), (1, 1))
    for order in run.orders():
        y = run.B.conv2d_forward(run.dev(x), run.dev(w), run.dev(b), (1, 1), (1, 1))
        assert_close(run.host(y), y_ref, f"conv2d 1->16 on 28x28 forward [{order}]")
        grads = run.B.conv2d_backward(run.dev(x), run.dev(w), run.dev(gy), (1, 1), (1, 1))
        for name, got, ref in zip(("input", "weight", "bias"), grads, g_ref):
            assert_close(run.host(got), ref, f"conv2d 1->16 on 28x28: {name} gradient [{order}]")


# ----------------------------------------------------------------------------- pooling

@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = max(1, kh - 2 * ph) + draw(st.integers(0, 6))
    w = max(1, kw - 2 * pw) + draw(st.integers(0, 6))
    return dict(n=draw(st.sampled_from([1, 2])), c=draw(st.sampled_from([1, 3])), h=h, w=w,
                k=(kh, kw), stride=(sh, sw), padding=(ph, pw), ties=draw(st.booleans()),
                seed=draw(seeds))


def check_max_pool2d(run, c):
    rng = np.random.default_rng(c["seed"])
    make = few_values if c["ties"] else normal
    x = make(rng, c["n"], c["c"], c["h"], c["w"])
    y_ref, idx_ref = R.max_pool2d_forward(x.astype(F64), c["k"], c["stride"], c["padding"])
    gy = normal(rng, *y_ref.shape)
    gx_ref = R.max_pool2d_backward(gy.astype(F64), idx_ref, x.shape)
    for order in run.orders():
        y, idx_dev = run.B.max_pool2d_forward(run.dev(x), c["k"], c["stride"], c["padding"])
        assert_close(run.host(y), y_ref, f"max_pool2d forward {c} [{order}]")
        idx = run.host(idx_dev)
        assert idx.shape == idx_ref.shape and np.array_equal(idx, idx_ref), (
            f"max_pool2d {c} [{order}]: indices differ at "
            f"{np.argwhere(idx != idx_ref)[:3].tolist()}: kernel "
            f"{idx[idx != idx_ref][:3].tolist()}, reference {idx_ref[idx != idx_ref][:3].tolist()}")
        # the forward's own indices (the gather knows their windows), and a copy of
        # them made on the host (windows unknown: one thread per plane)
        gx = run.B.max_pool2d_backward(run.dev(gy), idx_dev, x.shape)
        assert_close(run.host(gx), gx_ref, f"max_pool2d backward {c} [{order}]")
        gx = run.B.max_pool2d_backward(run.dev(gy), run.dev(idx.astype(np.int64)), x.shape)
        assert_close(run.host(gx), gx_ref, f"max_pool2d backward, copied indices {c} [{order}]")


def check_avg_pool2d(run, c):
    rng = np.random.default_rng(c["seed"])
    x = normal(rng, c["n"], c["c"], c["h"], c["w"])
    y_ref = R.avg_pool2d_forward(x.astype(F64), c["k"], c["stride"], c["padding"])
    gy = normal(rng, *y_ref.shape)
    gx_ref = R.avg_pool2d_backward(gy.astype(F64), x.shape, c["k"], c["stride"], c["padding"])
    for order in run.orders():
        y = run.B.avg_pool2d_forward(run.dev(x), c["k"], c["stride"], c["padding"])
        assert_close(run.host(y), y_ref, f"avg_pool2d forward {c} [{order}]")
        gx = run.B.avg_pool2d_backward(run.dev(gy), x.shape, c["k"], c["stride"], c["padding"])
        assert_close(run.host(gx), gx_ref, f"avg_pool2d backward {c} [{order}]")


# ----------------------------------------------------------------------------- activations

@st.composite
def elementwise_cases(draw):
    rank = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 7)) for _ in range(rank))
    if draw(st.booleans()):
        shape = (draw(st.integers(257, 1100)),)       # several blocks, a ragged last one
    return dict(shape=shape, scale=draw(st.sampled_from([1.0, 50.0])), seed=draw(seeds))


def _activation_input(c):
    rng = np.random.default_rng(c["seed"])
    x = normal(rng, *c["shape"]) * np.float32(c["scale"])
    x.flat[::5] = 0.0                                   # exact zeros: relu's kink
    return rng, x


def check_relu(run, c):
    rng, x = _activation_input(c)
    check_forward_backward(run, c, "relu", x, normal(rng, *x.shape))


def check_sigmoid(run, c):
    rng, x = _activation_input(c)
    check_forward_backward(run, c, "sigmoid", x, normal(rng, *x.shape), finite=True)


# ----------------------------------------------------------------------------- linear

@st.composite
def linear_cases(draw):
    return dict(n=draw(st.integers(1, 5)), i=draw(st.integers(1, 70)), o=draw(st.integers(1, 70)),
                bias=draw(st.booleans()),
                needs=draw(st.tuples(st.booleans(), st.booleans(), st.booleans())),
                limits=draw(st.sampled_from([{}, {"SPLIT_K_TARGET_BLOCKS": 8,
                                                  "SPLIT_K_MIN_SLICE": 1}])),
                seed=draw(seeds))


def check_linear(run, c):
    rng = np.random.default_rng(c["seed"])
    x, w = normal(rng, c["n"], c["i"]), normal(rng, c["o"], c["i"])
    b = normal(rng, c["o"]) if c["bias"] else None
    y_ref = R.linear_forward(x.astype(F64), w.astype(F64), None if b is None else b.astype(F64))
    gy = normal(rng, c["n"], c["o"])
    needs = c["needs"]
    g_ref = R.linear_backward(x.astype(F64), w.astype(F64), gy.astype(F64), needs)
    with glue_limits(**c["limits"]):
        for order in run.orders():
            y = run.B.linear_forward(run.dev(x), run.dev(w), None if b is None else run.dev(b))
            assert_close(run.host(y), y_ref, f"linear forward {c} [{order}]")
            grads = run.B.linear_backward(run.dev(x), run.dev(w), run.dev(gy), needs)
            check_grads(run, f"linear backward {c}", grads, g_ref, needs, order)


# ----------------------------------------------------------------------------- softmax and loss

@st.composite
def row_cases(draw):
    return dict(r=draw(st.integers(1, 5)),
                k=draw(st.sampled_from([1, 2, 3, 7, 255, 256, 257, 600])),
                scale=draw(st.sampled_from([1.0, 30.0])),
                shift=draw(st.sampled_from([0.0, 1000.0, -1000.0])), seed=draw(seeds))


def _rows_input(c):
    rng = np.random.default_rng(c["seed"])
    x = normal(rng, c["r"], c["k"]) * np.float32(c["scale"]) + np.float32(c["shift"])
    return x, normal(rng, c["r"], c["k"])


def check_softmax(run, c):
    x, gy = _rows_input(c)
    check_forward_backward(run, c, "softmax", x, gy)


def check_log_softmax(run, c):
    x, gy = _rows_input(c)
    check_forward_backward(run, c, "log_softmax", x, gy)


@st.composite
def cross_entropy_cases(draw):
    return dict(n=draw(st.sampled_from([1, 2, 5, 300])), k=draw(st.sampled_from([1, 2, 3, 10])),
                weighted=draw(st.booleans()),
                reduction=draw(st.sampled_from(["mean", "sum", "none"])), seed=draw(seeds))


def check_cross_entropy(run, c):
    rng = np.random.default_rng(c["seed"])
    n, k = c["n"], c["k"]
    logits = normal(rng, n, k) * np.float32(3)
    target = rng.integers(0, k, size=n).astype(np.int64)
    weight = rng.uniform(0.2, 2.0, size=k).astype(np.float32) if c["weighted"] else None
    w64 = None if weight is None else weight.astype(F64)
    loss_ref, probs_ref = R.cross_entropy_forward(logits.astype(F64), target, w64, c["reduction"])
    gloss = normal(rng, n) if c["reduction"] == "none" else np.array(rng.standard_normal(),
                                                                     dtype=np.float32)
    g_ref = R.cross_entropy_backward(probs_ref, target, w64, c["reduction"], gloss.astype(F64))
    for order in run.orders():
        loss, probs = run.B.cross_entropy_forward(run.dev(logits), run.dev(target),
                                                  None if weight is None else run.dev(weight),
                                                  c["reduction"])
        assert_close(run.host(loss), loss_ref, f"cross_entropy loss {c} [{order}]")
        assert_close(run.host(probs), probs_ref, f"cross_entropy probs {c} [{order}]")
        g = run.B.cross_entropy_backward(probs, run.dev(target),
                                         None if weight is None else run.dev(weight),
                                         c["reduction"], run.dev(gloss))
        assert_close(run.host(g), g_ref, f"cross_entropy backward {c} [{order}]")


# ----------------------------------------------------------------------------- optimisers

@st.composite
def sgd_cases(draw):
    momentum = draw(st.sampled_from([0.0, 0.9]))
    return dict(size=draw(st.sampled_from([1, 7, 300])), lr=draw(st.sampled_from([0.1, 0.01])),
                momentum=momentum, dampening=draw(st.sampled_from([0.0, 0.3])),
                weight_decay=draw(st.sampled_from([0.0, 1e-2])),
                nesterov=draw(st.booleans()), seed=draw(seeds))


def check_sgd(run, c):
    rng = np.random.default_rng(c["seed"])
    p0 = normal(rng, c["size"])
    grads = [normal(rng, c["size"]) for _ in range(3)]
    args = (c["lr"], c["momentum"], c["dampening"], c["weight_decay"], c["nesterov"])
    for order in run.orders():
        p_ref, buf_ref = p0.astype(F64), np.zeros(c["size"])
        p, buf = run.dev(p0.copy()), run.dev(np.zeros(c["size"], np.float32))
        for step, g in enumerate(grads):
            R.sgd_step(p_ref, g.astype(F64), buf_ref, *args, step == 0)
            run.B.sgd_step(p, run.dev(g), buf, *args, step == 0)
            assert_close(run.host(p), p_ref, f"sgd step {step + 1} {c}: parameter [{order}]")
            if c["momentum"]:
                assert_close(run.host(buf), buf_ref, f"sgd step {step + 1} {c}: buffer [{order}]")


@st.composite
def adam_cases(draw):
    return dict(size=draw(st.sampled_from([1, 7, 300])), lr=draw(st.sampled_from([1e-3, 0.1])),
                betas=draw(st.sampled_from([(0.9, 0.999), (0.5, 0.9)])),
                eps=draw(st.sampled_from([1e-8, 1e-3])),
                weight_decay=draw(st.sampled_from([0.0, 1e-2])), seed=draw(seeds))


def check_adam(run, c):
    rng = np.random.default_rng(c["seed"])
    p0 = normal(rng, c["size"])
    grads = [normal(rng, c["size"]) for _ in range(3)]
    args = (c["lr"], *c["betas"], c["eps"], c["weight_decay"])
    for order in run.orders():
        p_ref, m_ref, v_ref = p0.astype(F64), np.zeros(c["size"]), np.zeros(c["size"])
        p = run.dev(p0.copy())
        m, v = run.dev(np.zeros(c["size"], np.float32)), run.dev(np.zeros(c["size"], np.float32))
        for step, g in enumerate(grads, start=1):
            R.adam_step(p_ref, g.astype(F64), m_ref, v_ref, *args, step)
            run.B.adam_step(p, run.dev(g), m, v, *args, step)
            for name, got, ref in (("parameter", p, p_ref), ("m", m, m_ref), ("v", v, v_ref)):
                assert_close(run.host(got), ref, f"adam step {step} {c}: {name} [{order}]")


# name -> (strategy, check): every test file runs each of these
CASES = {
    "sgemm": (gemm_cases(), check_sgemm),
    "conv2d": (conv_cases(), check_conv2d),
    "max_pool2d": (pool_cases(), check_max_pool2d),
    "avg_pool2d": (pool_cases(), check_avg_pool2d),
    "relu": (elementwise_cases(), check_relu),
    "sigmoid": (elementwise_cases(), check_sigmoid),
    "linear": (linear_cases(), check_linear),
    "softmax": (row_cases(), check_softmax),
    "log_softmax": (row_cases(), check_log_softmax),
    "cross_entropy": (cross_entropy_cases(), check_cross_entropy),
    "sgd": (sgd_cases(), check_sgd),
    "adam": (adam_cases(), check_adam),
}
