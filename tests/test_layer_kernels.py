"""Batch norm, dropout, adaptive average pooling and binary cross-entropy with logits:
each a kernel three times (kernels/reference.py, kernels/cpu, kernels/cuda), held to
PyTorch forward and backward on every device (`backend`: cpu, cpu-reference, cuda-sim,
cuda where there is a GPU), checked by central differences in float64 on the cpu
kernels, and run inside composite graphs.

Also: the running statistics move as PyTorch's over several steps (Tensors or arrays);
the Philox generator gives Random123's known answers; the dropout mask is the same on
every device for the same (seed, offset), keeps 1 - p of the values within a binomial
bound, and the backward reuses exactly the forward's mask; the CUDA kernels give the
same bits in every thread and block order on the emulator.

Sizes stay tiny: the emulator runs each CUDA thread as a fiber.
"""
import numpy as np
import pytest
import torch

import minicnn
from minicnn import backends, nn
from minicnn import functional as F
from minicnn.errors import UserError  # noqa: F401  (the error type the docs promise)
from minicnn.kernels import reference as R
from minicnn.testing import numerical_grad

from torch_compare import assert_close, compare_graph

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TF = torch.nn.functional
ATOL, RTOL = 2e-5, 2e-4          # float32 kernels against PyTorch in float64


def rand(seed, *shape, low=None, high=None, scale=1.0):
    rng = np.random.default_rng(seed)
    if low is not None:
        return rng.uniform(low, high, shape).astype(np.float32)
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def tt(a, grad=False):
    """A float64 torch tensor of a (the reference runs in float64)."""
    return torch.tensor(np.asarray(a, np.float64), requires_grad=grad)


def mt(a, device, grad=False):
    return minicnn.tensor(a, device=device, requires_grad=grad)


def grad_of(t):
    return t.grad.numpy()


@pytest.fixture
def check(backend, backend_name, equivalence_log):
    def bound(name, fn, inputs, **kw):
        return compare_graph(fn, inputs, backend, name, log=equivalence_log,
                             log_as=backend_name, **kw)
    return bound


def gradcheck(build, arrays, what, atol=1e-7, rtol=1e-5):
    """build(*float64 tensors) -> scalar; every input's autograd gradient against central
    differences (the arrays are tiny, so every element is checked)."""
    arrays = [np.ascontiguousarray(a, np.float64) for a in arrays]
    ts = [minicnn.tensor(a, dtype=np.float64, requires_grad=True) for a in arrays]
    out = build(*ts)
    assert out.dtype == np.float64, f"{what}: computed in {out.dtype}"
    out.backward()
    for k, a in enumerate(arrays):
        def value(x, k=k):
            with minicnn.no_grad():
                args = [minicnn.tensor(x if j == k else b, dtype=np.float64)
                        for j, b in enumerate(arrays)]
                return build(*args).item()
        want = numerical_grad(value, a.copy())
        assert ts[k].grad is not None, f"{what}: input {k} got no gradient"
        assert_close(grad_of(ts[k]), want, atol, rtol, f"{what}: gradient of input {k}")


# ----------------------------------------------------------------------------- Philox

# Random123's known-answer vectors for Philox4x32-10: (counter, key) -> output words
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("case", range(len(PHILOX_KAT)))
def test_philox_gives_the_known_answers(case):
    from minicnn.kernels.cpu.dropout import philox4x32_10 as numba_philox
    counter, key, want = PHILOX_KAT[case]
    got = R.philox4x32_10(counter, key)
    assert tuple(int(w) for w in got) == want, "numpy reference"
    got = numba_philox(*(np.uint64(c) for c in counter), *(np.uint64(k) for k in key))
    assert tuple(int(w) for w in got) == want, "numba kernel"


# ----------------------------------------------------------------------------- batch norm

BN_SHAPES = [(5, 3), (3, 2, 4), (2, 3, 3, 2), (4, 2, 1, 1)]


def _stats(device, kind, C):
    """Running mean and variance as minicnn Tensors or as device arrays, off their defaults."""
    mean, var = rand(31, C) * 0.3, rand(32, C, low=0.5, high=2.0)
    if kind == "tensor":
        return mt(mean, device), mt(var, device), mean, var
    xp = backends.array_module(device)
    return xp.array(mean), xp.array(var), mean, var


def _host(a):
    a = a.array if isinstance(a, minicnn.Tensor) else a
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


@pytest.mark.parametrize("shape", BN_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_batch_norm_training_steps_match_torch(backend, shape):
    """Three training steps: output, the gradients of input, weight and bias, and the
    running statistics (unbiased variance, momentum as torch) after each step."""
    C = shape[1]
    kind = "tensor" if len(shape) != 3 else "array"
    rm, rv, mean0, var0 = _stats(backend, kind, C)
    trm, trv = tt(mean0), tt(var0)
    w, b = rand(33, C, low=0.5, high=1.5), rand(34, C)
    for step in range(3):
        x = rand(40 + step, *shape, scale=2.0) + 1
        gy = rand(50 + step, *shape)
        xm, wm, bm = mt(x, backend, True), mt(w, backend, True), mt(b, backend, True)
        y = F.batch_norm(xm, rm, rv, wm, bm, training=True, momentum=0.2, eps=1e-4)
        y.backward(gy)
        xt, wt, bt = tt(x, True), tt(w, True), tt(b, True)
        ty = TF.batch_norm(xt, trm, trv, wt, bt, training=True, momentum=0.2, eps=1e-4)
        ty.backward(tt(gy))
        what = f"batch_norm {shape} step {step} on {backend}"
        assert y.device == backend and y.shape == shape and y.dtype == np.float32
        assert_close(y.numpy(), ty.detach().numpy(), ATOL, RTOL, f"{what}: output")
        assert_close(grad_of(xm), xt.grad.numpy(), ATOL, RTOL, f"{what}: input gradient")
        assert_close(grad_of(wm), wt.grad.numpy(), ATOL, RTOL, f"{what}: weight gradient")
        assert_close(grad_of(bm), bt.grad.numpy(), ATOL, RTOL, f"{what}: bias gradient")
        assert_close(_host(rm), trm.numpy(), 1e-6, 1e-5, f"{what}: running_mean")
        assert_close(_host(rv), trv.numpy(), 1e-6, 1e-5, f"{what}: running_var")
    if kind == "tensor":
        assert isinstance(rm, minicnn.Tensor) and rm.device == backend


@pytest.mark.parametrize("shape", [(1, 3, 2, 5), (1, 3), (2, 2, 1, 1)],
                         ids=lambda s: "x".join(map(str, s)))
def test_batch_norm_eval_matches_torch(backend, shape):
    """Evaluation uses the running statistics and leaves them alone, N = 1 included; the
    gradients treat them as constants."""
    C = shape[1]
    rm, rv, mean0, var0 = _stats(backend, "tensor", C)
    x, gy = rand(60, *shape), rand(61, *shape)
    w, b = rand(62, C, low=0.5, high=1.5), rand(63, C)
    xm, wm, bm = mt(x, backend, True), mt(w, backend, True), mt(b, backend, True)
    y = F.batch_norm(xm, rm, rv, wm, bm, training=False, eps=1e-3)
    y.backward(gy)
    xt, wt, bt = tt(x, True), tt(w, True), tt(b, True)
    ty = TF.batch_norm(xt, tt(mean0), tt(var0), wt, bt, training=False, eps=1e-3)
    ty.backward(tt(gy))
    what = f"batch_norm eval {shape} on {backend}"
    assert_close(y.numpy(), ty.detach().numpy(), ATOL, RTOL, f"{what}: output")
    for got, want, name in ((xm, xt, "input"), (wm, wt, "weight"), (bm, bt, "bias")):
        assert_close(grad_of(got), want.grad.numpy(), ATOL, RTOL, f"{what}: {name} gradient")
    assert np.array_equal(_host(rm), mean0) and np.array_equal(_host(rv), var0), \
        f"{what}: running statistics changed in eval"


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm_gradcheck_float64(cpu_kernels, training):
    x, c = rand(70, 3, 2, 2, 3).astype(np.float64), rand(71, 3, 2, 2, 3).astype(np.float64)
    w, b = rand(72, 2, low=0.5, high=1.5), rand(73, 2)
    mean, var = np.array([0.2, -0.1]), np.array([0.7, 1.6])

    def build(x, w, b):
        y = F.batch_norm(x, mean.copy(), var.copy(), w, b, training=training, eps=1e-3)
        return (y * minicnn.tensor(c, dtype=np.float64)).sum() + (y * y).mean()
    gradcheck(build, [x, w, b], f"batch_norm {'train' if training else 'eval'} ({cpu_kernels})")


def test_batch_norm_without_weight_or_running_stats(backend):
    x, gy = rand(80, 4, 3, 2, 2), rand(81, 4, 3, 2, 2)
    xm, xt = mt(x, backend, True), tt(x, True)
    y = F.batch_norm(xm, None, None, training=True)
    y.backward(gy)
    ty = TF.batch_norm(xt, None, None, training=True)
    ty.backward(tt(gy))
    assert_close(y.numpy(), ty.detach().numpy(), ATOL, RTOL, f"batch_norm no affine on {backend}")
    assert_close(grad_of(xm), xt.grad.numpy(), ATOL, RTOL, f"batch_norm no affine grad on {backend}")


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("layer", ["BatchNorm1d (N,C)", "BatchNorm1d (N,C,L)", "BatchNorm2d"])
def test_batch_norm_modules_match_torch(backend, layer, momentum):
    """The modules over several steps: buffers, num_batches_tracked, momentum=None's
    cumulative average, then eval mode; and track_running_stats=False as torch."""
    C = 3
    shape = {"BatchNorm1d (N,C)": (6, C), "BatchNorm1d (N,C,L)": (2, C, 4),
             "BatchNorm2d": (2, C, 3, 2)}[layer]
    name = layer.split()[0]
    ours, ref = getattr(nn, name)(C, momentum=momentum), getattr(torch.nn, name)(C, momentum=momentum)
    ref.double()
    ours.to(backend)
    for step in range(3):
        x = rand(90 + step, *shape) * 3 + 1
        xm, xt = mt(x, backend, True), tt(x, True)
        y, ty = ours(xm), ref(xt)
        (y * y).sum().backward()
        (ty * ty).sum().backward()
        what = f"{layer} step {step} on {backend}"
        assert_close(y.numpy(), ty.detach().numpy(), ATOL, RTOL, f"{what}: output")
        assert_close(grad_of(xm), xt.grad.numpy(), 1e-4, RTOL, f"{what}: input gradient")
    for key, value in ref.state_dict().items():
        assert_close(ours.state_dict()[key], value.numpy(), 1e-6, 1e-5, f"{layer} {key}")
    assert int(_host(ours.num_batches_tracked)) == 3
    ours.eval(), ref.eval()
    x = rand(99, *shape)
    assert_close(ours(mt(x, backend)).numpy(), ref(tt(x)).detach().numpy(), ATOL, RTOL,
                 f"{layer} eval on {backend}")
    # no running statistics: the batch's, in eval mode too
    ours2, ref2 = getattr(nn, name)(C, track_running_stats=False), \
        getattr(torch.nn, name)(C, track_running_stats=False).double()
    ours2.to(backend).eval(), ref2.eval()
    assert ours2.running_mean is None and "running_mean" not in ours2.state_dict()
    assert_close(ours2(mt(x, backend)).numpy(), ref2(tt(x)).detach().numpy(), ATOL, RTOL,
                 f"{layer} track_running_stats=False on {backend}")


def test_batch_norm_with_tensor_stats_in_a_graph(backend):
    """Running statistics as Tensors (as PyTorch takes them): updated in place, the same
    Tensor and array, and the graph around the op goes through backward."""
    x = rand(100, 4, 3, 2, 2)
    rm, rv, mean0, var0 = _stats(backend, "tensor", 3)
    data_before = rm.array
    xm = mt(x, backend, True)
    y = F.batch_norm(xm * 2 + 1, rm, rv, training=True, momentum=0.3)
    (y.sum(axis=1).var(unbiased=False) * 0.5 + xm.sum()).backward()
    trm, trv = tt(mean0), tt(var0)
    xt = tt(x, True)
    ty = TF.batch_norm(xt * 2 + 1, trm, trv, training=True, momentum=0.3)
    (ty.sum(dim=1).var(unbiased=False) * 0.5 + xt.sum()).backward()
    assert rm.array is data_before, "the running mean's array was replaced, not updated"
    assert_close(grad_of(xm), xt.grad.numpy(), 1e-4, RTOL, f"graph gradient on {backend}")
    assert_close(_host(rm), trm.numpy(), 1e-6, 1e-5, "running_mean")
    assert_close(_host(rv), trv.numpy(), 1e-6, 1e-5, "running_var")


def test_batch_norm_errors():
    x = minicnn.zeros(2, 3, 4, 4)
    with pytest.raises(TypeError, match="momentum"):
        F.batch_norm(x, np.zeros(3, np.float32), np.ones(3, np.float32), training=True,
                     momentum=None)
    with pytest.raises(ValueError, match="running_mean and running_var, or neither"):
        F.batch_norm(x, np.zeros(3, np.float32), None, training=True)
    with pytest.raises(TypeError, match="running_var must be a Tensor or a numpy array"):
        F.batch_norm(x, np.zeros(3, np.float32), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="more than one value per channel"):
        F.batch_norm(minicnn.zeros(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected input \(N, 3, H, W\)"):
        nn.BatchNorm2d(3)(minicnn.zeros(2, 3))
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected input \(N, 3\) or"):
        nn.BatchNorm1d(3)(minicnn.zeros(2, 4))


# ----------------------------------------------------------------------------- dropout

@pytest.mark.parametrize("size", [1, 7, 30])
def test_dropout_mask_is_the_same_on_every_device(backend, size):
    """The backend draws the mask itself; for one (seed, offset) every device draws the
    reference's (numpy Philox) mask, and y = x * mask / (1 - p) exactly."""
    be = backends.get(backend)
    x = be.xp.asarray(rand(110, size, 2) + 3)
    for seed, offset in ((0, 0), (12345, 0), (2**40 + 17, 3), (2**63 + 5, 2**33)):
        y, mask = be.dropout_forward(x, 0.35, seed, offset)
        want = R.dropout_mask(x.size, 0.35, seed, offset).reshape(x.shape)
        assert mask.dtype == np.uint8 and mask.shape == x.shape
        assert np.array_equal(_host(mask), want), f"mask on {backend}, seed {seed}, offset {offset}"
        scale = np.float32(1 / (1 - 0.35))
        assert np.array_equal(_host(y), _host(x) * want * scale), f"values on {backend}"
    masks = {R.dropout_mask(4000, 0.5, s, o).tobytes() for s, o in ((1, 0), (2, 0), (1, 1))}
    assert len(masks) == 3, "another seed or offset must give another mask"


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keeps_one_minus_p(backend, p):
    """The kept share lies within 5 binomial standard deviations of 1 - p, and the kept
    values are x / (1 - p)."""
    n = 4000 if backend == "cuda-sim" else 200_000
    minicnn.manual_seed(11)
    x = minicnn.ones(n, device=backend)
    y = F.dropout(x, p).numpy()
    kept = y != 0
    assert abs(kept.mean() - (1 - p)) <= 5 * np.sqrt(p * (1 - p) / n), \
        f"kept {kept.mean():.4f} of {n}, expected {1 - p} on {backend}"
    assert np.all(y[kept] == np.float32(1 / (1 - p)))


def test_dropout_backward_reuses_the_forward_mask(backend):
    """The gradient is the upstream gradient times the forward's mask and scale, exactly,
    even when other masks are drawn between forward and backward; PyTorch applying the
    same mask gives the same gradients through a graph."""
    x, c = rand(120, 6, 9) + 2, rand(121, 6, 9)
    minicnn.manual_seed(5)
    xm = mt(x, backend, True)
    y = F.dropout(xm, 0.4)
    for _ in range(3):
        F.dropout(mt(x, backend), 0.4)          # other draws in between
    (y * mt(c, backend)).sum().backward()
    mask = (y.numpy() != 0)
    assert 0 < mask.sum() < mask.size
    scale = np.float32(1 / (1 - 0.4))
    assert np.array_equal(grad_of(xm), (c * mask * scale).astype(np.float32)), backend
    xt = tt(x, True)
    ty = xt * torch.tensor(mask.astype(np.float64)) / (1 - 0.4)
    (ty * tt(c)).sum().backward()
    assert_close(grad_of(xm), xt.grad.numpy(), 1e-6, 1e-6, "dropout gradient against torch")


def test_dropout_seeded_repeats_and_draws_anew(backend):
    x = mt(np.ones((8, 9), np.float32), backend)
    minicnn.manual_seed(3)
    a, b = F.dropout(x, 0.5).numpy(), F.dropout(x, 0.5).numpy()
    minicnn.manual_seed(3)
    assert np.array_equal(F.dropout(x, 0.5).numpy(), a), "the same seed, another mask"
    assert not np.array_equal(a, b), "two calls drew the same mask"


def test_dropout_edges_and_errors(backend):
    x = mt(rand(130, 4, 5), backend, True)
    assert F.dropout(x, 0.3, training=False) is x
    assert F.dropout(x, 0.0) is x
    y = F.dropout(x, 1.0)
    assert np.array_equal(y.numpy(), np.zeros((4, 5), np.float32))
    y.sum().backward()
    assert np.array_equal(grad_of(x), np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, -0.1)
    with pytest.raises(ValueError, match="inplace=True"):
        F.dropout(x, 0.5, inplace=True)
    with pytest.raises(ValueError, match="inplace=True"):
        nn.Dropout(0.5, inplace=True)


# ----------------------------------------------------------------------------- adaptive average pooling

POOL_CASES = [((1, 1, 1, 1), 1), ((2, 3, 5, 7), (3, 2)), ((1, 2, 4, 6), (4, None)),
              ((1, 1, 6, 6), 4), ((1, 2, 3, 8), (5, 3)), ((2, 5, 3), (2, 2)),
              ((1, 1, 7, 5), (1, 1))]


@pytest.mark.parametrize("case", range(len(POOL_CASES)),
                         ids=[f"{'x'.join(map(str, s))}->{o}" for s, o in POOL_CASES])
def test_adaptive_avg_pool2d_matches_torch(backend, case):
    """PyTorch's bins: H not divisible by the output (overlapping bins), outputs larger
    than the input, 1x1, None entries, a 3-D input."""
    shape, out = POOL_CASES[case]
    x = rand(140 + case, *shape)
    xm, xt = mt(x, backend, True), tt(x, True)
    y, ty = F.adaptive_avg_pool2d(xm, out), TF.adaptive_avg_pool2d(xt, out)
    gy = rand(150 + case, *ty.shape)
    y.backward(gy)
    ty.backward(tt(gy))
    what = f"adaptive_avg_pool2d {shape} -> {out} on {backend}"
    assert y.shape == tuple(ty.shape), f"{what}: shape {y.shape}, torch {tuple(ty.shape)}"
    assert_close(y.numpy(), ty.detach().numpy(), 1e-6, 1e-5, f"{what}: output")
    assert_close(grad_of(xm), xt.grad.numpy(), 1e-6, 1e-5, f"{what}: gradient")


def test_adaptive_avg_pool2d_gradcheck_float64(cpu_kernels):
    c = rand(160, 2, 1, 3, 2).astype(np.float64)
    gradcheck(lambda x: (F.adaptive_avg_pool2d(x, (3, 2)) * minicnn.tensor(c, dtype=np.float64)
                         ).sum(), [rand(161, 2, 1, 5, 7)], f"adaptive_avg_pool2d ({cpu_kernels})")


def test_adaptive_avg_pool2d_module_and_errors(backend):
    x = rand(170, 1, 2, 5, 5)
    got = nn.AdaptiveAvgPool2d((2, None))(mt(x, backend)).numpy()
    want = torch.nn.AdaptiveAvgPool2d((2, None))(tt(x)).numpy()
    assert_close(got, want, 1e-6, 1e-5, f"nn.AdaptiveAvgPool2d on {backend}")
    with pytest.raises(ValueError, match="output_size must be at least 1"):
        F.adaptive_avg_pool2d(mt(x, backend), 0)
    with pytest.raises(TypeError, match="output_size must be an int, None, or a pair"):
        F.adaptive_avg_pool2d(mt(x, backend), (2, 2, 2))
    with pytest.raises(ValueError, match=r"input must be \(N, C, H, W\) or \(C, H, W\)"):
        F.adaptive_avg_pool2d(mt(rand(1, 5, 5), backend), 2)


# ----------------------------------------------------------------------------- binary cross-entropy with logits

N, K = 4, 3
LOGITS = rand(180, N, K, scale=4.0)
LOGITS[0, 0], LOGITS[1, 1], LOGITS[2, 2] = 60.0, -60.0, 0.0       # the stable form's reason
TARGET = rand(181, N, K, low=0, high=1)
TARGET[0, 1], TARGET[1, 0] = 0.0, 1.0
BCE_CASES = {
    "plain": {},
    "weight (K,)": {"weight": rand(182, K, low=0.5, high=2)},
    "weight (N,1)": {"weight": rand(183, N, 1, low=0.5, high=2)},
    "weight full": {"weight": rand(184, N, K, low=0.5, high=2)},
    "pos_weight (K,)": {"pos_weight": rand(185, K, low=0.3, high=3)},
    "both": {"weight": rand(186, N, 1, low=0.5, high=2), "pos_weight": rand(187, K, low=0.3, high=3)},
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", list(BCE_CASES))
def test_bce_with_logits_matches_torch(backend, case, reduction):
    """Loss and the gradients of input and target, weight and pos_weight broadcast as
    PyTorch broadcasts them, logits of +-60 included."""
    extra = BCE_CASES[case]
    xm, tm = mt(LOGITS, backend, True), mt(TARGET, backend, True)
    kw = {k: mt(v, backend) for k, v in extra.items()}
    loss = F.binary_cross_entropy_with_logits(xm, tm, reduction=reduction, **kw)
    xt, tgt = tt(LOGITS, True), tt(TARGET, True)
    tloss = TF.binary_cross_entropy_with_logits(xt, tgt, reduction=reduction,
                                                **{k: tt(v) for k, v in extra.items()})
    up = rand(188, *tloss.shape)
    if reduction == "none":
        loss.backward(up)
        (tloss * tt(up)).sum().backward()
    else:
        loss.backward()
        tloss.backward()
    what = f"bce_with_logits {case} {reduction} on {backend}"
    assert loss.shape == tuple(tloss.shape) and loss.dtype == np.float32
    assert_close(loss.numpy(), tloss.detach().numpy(), ATOL, RTOL, f"{what}: loss")
    assert_close(grad_of(xm), xt.grad.numpy(), 1e-6, RTOL, f"{what}: input gradient")
    assert_close(grad_of(tm), tgt.grad.numpy(), ATOL, RTOL, f"{what}: target gradient")


@pytest.mark.parametrize("case", ["plain", "both"])
def test_bce_with_logits_gradcheck_float64(cpu_kernels, case):
    kw = {k: minicnn.tensor(v, dtype=np.float64) for k, v in BCE_CASES[case].items()}
    x = (LOGITS / 8).astype(np.float64)
    gradcheck(lambda x, t: F.binary_cross_entropy_with_logits(x, t, **kw) * 3.0, [x, TARGET],
              f"bce_with_logits {case} ({cpu_kernels})")


def test_bce_with_logits_module_and_errors(backend):
    pw = rand(190, K, low=0.5, high=2)
    ours = nn.BCEWithLogitsLoss(pos_weight=mt(pw, backend), reduction="sum")
    ref = torch.nn.BCEWithLogitsLoss(pos_weight=tt(pw), reduction="sum")
    assert_close(ours(mt(LOGITS, backend), mt(TARGET, backend)).numpy(),
                 ref(tt(LOGITS), tt(TARGET)).detach().numpy(), ATOL, RTOL, "BCEWithLogitsLoss")
    x = mt(LOGITS, backend, True)
    bce = F.binary_cross_entropy_with_logits
    with pytest.raises(ValueError, match=r"target size \(4, 2\) must be the same as input size"):
        bce(x, mt(TARGET[:, :2], backend))
    with pytest.raises(TypeError, match="target must be floating point"):
        bce(x, mt(TARGET.astype(np.int64), backend))
    with pytest.raises(ValueError, match="reduction must be"):
        bce(x, mt(TARGET, backend), reduction="avg")
    with pytest.raises(ValueError, match="size_average and reduce"):
        bce(x, mt(TARGET, backend), size_average=True)
    with pytest.raises(ValueError, match=r"pos_weight of shape \(2,\) does not broadcast"):
        bce(x, mt(TARGET, backend), pos_weight=mt(pw[:2], backend))
    with pytest.raises(ValueError, match="weight requires grad"):
        bce(x, mt(TARGET, backend), weight=mt(pw, backend, True))


# ----------------------------------------------------------------------------- composite graphs

def test_bce_in_a_graph(check):
    check("bce*0.5 + x.sum()", lambda L, x, pw: (
        L.F.binary_cross_entropy_with_logits(x, L.const(TARGET), pos_weight=pw) * 0.5
        + x.sum()), [LOGITS, rand(191, K, low=0.5, high=2)], needs_grad=[True, False])


def test_conv_adaptive_pool_linear_bce_in_a_graph(check):
    check("conv relu adaptive_pool linear bce", lambda L, x, w, fw: (
        L.F.binary_cross_entropy_with_logits(
            L.F.linear(L.F.adaptive_avg_pool2d(L.F.relu(L.F.conv2d(x, w, padding=1)),
                                               (3, 2)).flatten(1), fw),
            L.const(np.float32([[1.0], [0.0]])), reduction="sum") ** 2),
        [rand(192, 2, 1, 5, 7), rand(193, 2, 1, 3, 3), rand(194, 1, 12) * 0.5])


def test_batch_norm_dropout_bce_in_a_graph(check):
    """batch_norm (running statistics compared too), dropout (PyTorch applies minicnn's
    mask) and a loss, with arithmetic between them."""
    def fn(L, x, w, b):
        h = L.F.batch_norm(x, L.stats(np.zeros(3)), L.stats(np.ones(3)), w, b, training=True)
        h = L.dropout(L.F.sigmoid(h), 0.3)
        return L.F.binary_cross_entropy_with_logits(h.mean(axis=1) * 2 - 1,
                                                    L.const(np.float32([1, 0, 1, 1, 0])))
    check("batch_norm dropout bce", fn, [rand(195, 5, 3), rand(196, 3, low=0.5, high=1.5),
                                          rand(197, 3)])


# ----------------------------------------------------------------------------- determinism on the emulator

RUNS = (("forward", 0), ("shuffle", 1), ("reverse", 0))


def test_cuda_layer_kernels_give_the_same_bits_in_every_order():
    """Each new kernel's forward and backward on the emulator in forward, shuffled and
    reverse thread and block order: the same bits (batch norm's sums run in one block
    per channel in a fixed tree order, the pooling backward gathers)."""
    sim = pytest.importorskip("minicnn.backends.cuda_sim",
                              reason="the CUDA emulator needs g++ (device 'cuda-sim')")
    x, gy = rand(200, 3, 2, 37), rand(201, 3, 2, 37)
    w, b = rand(202, 2), rand(203, 2)
    xi, gp = rand(204, 1, 2, 7, 5), rand(205, 1, 2, 3, 2)
    t = rand(206, 3, 2, 37, low=0, high=1)

    def everything():
        rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
        y, mean, invstd = sim.kernels.batch_norm_forward(x, w, b, rm, rv, True, 0.1, 1e-5)
        grads = sim.kernels.batch_norm_backward(gy, x, w, mean, invstd, True)
        d, mask = sim.kernels.dropout_forward(x, 0.5, 99, 1)
        pool = sim.kernels.adaptive_avg_pool2d_forward(xi, (3, 2))
        return (y, mean, invstd, rm, rv, *grads, d, mask, sim.kernels.dropout_backward(gy, mask, 0.5),
                pool, sim.kernels.adaptive_avg_pool2d_backward(gp, xi.shape),
                sim.kernels.bce_with_logits_forward(x, t, None, None, "mean"),
                *sim.kernels.bce_with_logits_backward(x, t, None, None, "mean", np.asarray(1, np.float32),
                                              (True, True)))

    results = []
    try:
        for order, seed in RUNS:
            sim.set_thread_order(order)
            for family in ("norm", "dropout", "adaptive_pool", "loss"):
                sim.kernels.module(family).seed = seed
            results.append([np.ascontiguousarray(r).tobytes() for r in everything()])
    finally:
        sim.set_thread_order("forward")
    for (order, _), r in zip(RUNS[1:], results[1:]):
        assert r == results[0], f"bits differ in thread order {order!r}"
