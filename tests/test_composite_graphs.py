"""Composite graphs through backward on every device: arithmetic on a loss, reductions,
indexing, reshapes and comparisons between the functional ops.

The per-op tests (test_ops.py) send one op's output straight back; a real graph
puts tensor arithmetic between the ops, and on the CUDA path that arithmetic once
made numpy scalars out of 0-d arrays, which the kernels refuse ((loss * 0.5).backward()
raised a TypeError on cuda-sim). Here each graph is one lambda fn(L, *inputs) that
runs unchanged in minicnn and in PyTorch (tests/torch_compare.py: Lib, compare_graph);
the device's output and every input's gradient are held to the cpu result and to
PyTorch (float64), values, shapes, dtypes and devices.

  test_arithmetic_on_a_loss       what a training script does to a loss, on ten losses
  test_zero_dim_*                 0-d tensors into relu and sigmoid keep shape ()
  test_tensor_ops_between_...     hand-written graphs mixing tensor ops and F ops
  test_every_tensor_op_after_...  every functional op followed by every kind of tensor op

Sizes stay tiny: the emulator runs each CUDA thread as a fiber.
"""
import inspect

import numpy as np
import pytest

import minicnn
from minicnn.xray import train

from torch_compare import compare_graph

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rand(seed, *shape, low=None, high=None):
    rng = np.random.default_rng(seed)
    if low is not None:
        return rng.uniform(low, high, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def labels(seed, n, k):
    return np.random.default_rng(seed).integers(0, k, n).astype(np.int64)


@pytest.fixture
def check(backend, backend_name, equivalence_log):
    def bound(name, fn, inputs, **kw):
        return compare_graph(fn, inputs, backend, name, log=equivalence_log,
                             log_as=backend_name, **kw)
    return bound


# --------------------------------------------------------------------------- losses, then arithmetic

# Each builds a scalar (0-d) from a few inputs through one or more functional ops.
N, K = 3, 4
LOGITS, TARGET = rand(1, N, K), labels(2, N, K)
IMAGES = rand(3, 2, 2, 5, 5)
KERNEL = rand(4, 3, 2, 3, 3) * 0.5

LOSSES = {
    "cross_entropy": (lambda L, x, t: L.F.cross_entropy(x, t), [LOGITS, TARGET]),
    "cross_entropy weight": (
        lambda L, x, t: L.F.cross_entropy(x, t, weight=L.const(np.float32([0.5, 2.0, 1.0, 1.5]))),
        [LOGITS, TARGET]),
    "cross_entropy sum": (lambda L, x, t: L.F.cross_entropy(x, t, reduction="sum"),
                          [LOGITS, TARGET]),
    "cross_entropy none, mean": (
        lambda L, x, t: L.F.cross_entropy(x, t, reduction="none").mean(), [LOGITS, TARGET]),
    "nll of log_softmax": (   # fancy indexing picks each row's target
        lambda L, x, t: -L.F.log_softmax(x, dim=1)[np.arange(N), t].mean(), [LOGITS, TARGET]),
    "softmax max": (lambda L, x: L.max(L.F.softmax(x, dim=0)), [LOGITS]),
    "sigmoid sum": (lambda L, x: L.F.sigmoid(x).sum(), [LOGITS]),
    "relu mean": (lambda L, x: L.F.relu(x).mean(), [LOGITS]),
    "conv relu max_pool linear cross_entropy": (
        lambda L, x, w, fw, t: L.F.cross_entropy(
            L.F.linear(L.F.max_pool2d(L.F.relu(L.F.conv2d(x, w, padding=1)), 2).flatten(1), fw),
            t),
        [IMAGES, KERNEL, rand(5, 2, 12) * 0.3, labels(6, 2, 2)]),
    "avg_pool var": (lambda L, x: L.F.avg_pool2d(x, 2, stride=1).var(unbiased=False), [IMAGES]),
    "cross_entropy label_smoothing weight": (
        lambda L, x, t: L.F.cross_entropy(x, t, weight=L.const(np.float32([0.5, 2.0, 1.0, 1.5])),
                                          label_smoothing=0.2), [LOGITS, TARGET]),
    "cross_entropy ignore_index": (
        lambda L, x, t: L.F.cross_entropy(x, t, ignore_index=-100),
        [LOGITS, np.array([1, -100, 3], np.int64)]),
    "cross_entropy probabilities": (
        lambda L, x, p: L.F.cross_entropy(x, p), [LOGITS, rand(31, N, K, low=0.0, high=1.0) / 2],
        dict(needs_grad=[True, False])),
    "nll_loss of log_softmax": (
        lambda L, x, t: L.F.nll_loss(L.F.log_softmax(x, dim=1), t,
                                     weight=L.const(np.float32([1.0, 0.5, 2.0, 1.0]))),
        [LOGITS, TARGET]),
    "mse_loss": (lambda L, x, y: L.F.mse_loss(L.F.sigmoid(x), y), [LOGITS, rand(32, N, K)]),
    "binary_cross_entropy_with_logits pos_weight": (
        lambda L, x, y: L.F.binary_cross_entropy_with_logits(
            x, y, pos_weight=L.const(np.float32([1.0, 3.0, 0.5, 2.0]))),
        [LOGITS, (rand(33, N, K) > 0).astype(np.float32)], dict(needs_grad=[True, False])),
    "adaptive_avg_pool2d": (lambda L, x: (L.F.adaptive_avg_pool2d(x, (2, 3)) ** 2).mean(),
                            [IMAGES]),
    "conv2d padding same, max_pool2d ceil_mode": (
        lambda L, x, w: L.F.max_pool2d(L.F.conv2d(x, w, padding="same"), 2, ceil_mode=True).sum(),
        [rand(34, 2, 2, 5, 5), rand(35, 3, 2, 3, 3) * 0.5]),
}

# What a training script does to a loss; the first six failed on cuda-sim before.
ON_A_LOSS = {
    "loss * 0.5": lambda loss: loss * 0.5,
    "loss + loss": lambda loss: loss + loss,
    "loss / 3": lambda loss: loss / 3,
    "-loss": lambda loss: -loss,
    "1 - loss": lambda loss: 1 - loss,
    "loss ** 2": lambda loss: loss ** 2,
}
MORE_ON_A_LOSS = {
    "0.5 * loss": lambda loss: 0.5 * loss,
    "2 + loss": lambda loss: 2 + loss,
    "loss - 1": lambda loss: loss - 1,
    "1 / loss": lambda loss: 1 / loss,
    "loss * loss": lambda loss: loss * loss,
    "loss ** 0.5": lambda loss: loss ** 0.5,
    "sqrt exp log abs": lambda loss: (loss.abs().sqrt() + loss.exp()).log(),
    "reshape(1) index": lambda loss: loss.reshape(1)[0] * 2,
    "sum of a 0-d": lambda loss: loss.sum() + loss.mean(),
}


@pytest.mark.parametrize("arith", list(ON_A_LOSS))
@pytest.mark.parametrize("loss", list(LOSSES))
def test_arithmetic_on_a_loss(check, loss, arith):
    make, inputs, *kw = LOSSES[loss]
    out = check(f"{arith} of {loss}", lambda L, *xs: ON_A_LOSS[arith](make(L, *xs)), inputs,
                **(kw[0] if kw else {}))
    assert out.shape == ()


@pytest.mark.parametrize("arith", list(MORE_ON_A_LOSS))
def test_more_arithmetic_on_a_cross_entropy(check, arith):
    make, inputs = LOSSES["cross_entropy"][:2]
    out = check(arith, lambda L, *xs: MORE_ON_A_LOSS[arith](make(L, *xs)), inputs)
    assert out.shape == ()


def test_a_loss_with_tensors_on_both_sides(check):
    """0-d leaves on the left and the right of a loss: each gets its gradient."""
    x, t = LOSSES["cross_entropy"][1]
    s, u = np.float32(1.7), np.float32(-0.4)

    def fn(L, x, t, s, u):
        loss = L.F.cross_entropy(x, t)
        return s * loss + loss / s - u * loss ** 2 + (u - loss) * s
    check("0-d tensors with a loss", fn, [x, t, s, u])


def test_a_loss_through_astype(check):
    """float64 arithmetic on a float32 loss: the gradient comes back as float32."""
    x, t = LOSSES["cross_entropy"][1]
    check("astype float64", lambda L, x, t: L.astype(L.F.cross_entropy(x, t), "float64") * 0.5,
          [x, t], dtype=np.float64)


def test_two_losses_summed(check):
    """A weighted sum of two losses over shared logits, as multi-task training does."""
    x, t = LOSSES["cross_entropy"][1]
    check("two losses", lambda L, x, t: 0.7 * L.F.cross_entropy(x, t)
          + 0.3 * L.F.cross_entropy(x * 2, t, reduction="sum") / N, [x, t])


def test_label_smoothing_loss_matches_torch(check):
    """train.classification_loss with label smoothing is PyTorch's label_smoothing; it is a
    composite graph on a loss (what `minicnn train --label-smoothing` runs)."""
    x, t = LOSSES["cross_entropy"][1]

    def fn(L, x, t):
        if L.kind == "minicnn":
            return train.classification_loss(x, t, label_smoothing=0.1)
        return L.F.cross_entropy(x, t, label_smoothing=0.1)
    check("label smoothing", fn, [x, t])
    if "label_smoothing" in inspect.signature(minicnn.functional.cross_entropy).parameters:
        check("cross_entropy label_smoothing",
              lambda L, x, t: L.F.cross_entropy(x, t, label_smoothing=0.1) * 0.5, [x, t])


# --------------------------------------------------------------------------- 0-d inputs

@pytest.mark.parametrize("value", [-0.5, 0.0, 1.25])
@pytest.mark.parametrize("op", ["relu", "sigmoid"])
def test_zero_dim_input_to_an_activation(check, op, value):
    out = check(f"{op} of a 0-d", lambda L, x: getattr(L.F, op)(x), [np.float32(value)])
    assert out.shape == ()


@pytest.mark.parametrize("op", ["relu", "sigmoid"])
def test_zero_dim_from_arithmetic_into_an_activation(check, op):
    """A 0-d made by numpy arithmetic (a scalar on the host) is still a 0-d array."""
    x = rand(7, 5)
    out = check(f"{op} of a reduction", lambda L, x: getattr(L.F, op)(x.sum() * 0.5 - 1) * 3,
                [x])
    assert out.shape == ()


# --------------------------------------------------------------------------- tensor ops between F ops

X2 = rand(8, 3, 5)           # (N, K) rows
W = rand(9, 4, 5) * 0.5      # linear weight (out, in)
B = rand(10, 4)

GRAPHS = {
    # Python numbers on either side of a functional op's output
    "number arithmetic": (lambda L, x: (2 - L.F.sigmoid(x)) * 3 + 1 / (L.F.sigmoid(x) + 1)
                          - L.F.relu(x) / 4 + 0.5 * -L.F.relu(-x), [X2]),
    "pow": (lambda L, x: L.F.sigmoid(x) ** 3 + L.F.sigmoid(x) ** -1 + L.F.sigmoid(x) ** 0.5, [X2]),
    # tensors on both sides, broadcasting
    "broadcast (K,) and (N,1)": (lambda L, x, b, c: L.F.relu(x) * b + c / L.F.sigmoid(x)
                                 - b * c, [X2, rand(11, 5), rand(12, 3, 1, low=0.5, high=2)]),
    "broadcast bias after linear": (lambda L, x, w, b: L.F.linear(x, w) + b[None, :], [X2, W, B]),
    # matmul on both sides of functional ops
    "matmul": (lambda L, x, w: L.F.softmax(L.F.relu(x) @ w.T, dim=1) @ w, [X2, W]),
    "matmul vector": (lambda L, x, v: L.F.sigmoid(x @ v), [X2, rand(13, 5)]),
    # reductions with axis and keepdims
    "sum mean keepdims": (lambda L, x: L.F.softmax(x, dim=1) - x.mean(axis=1, keepdims=True)
                          + x.sum(axis=0), [X2]),
    "var axis": (lambda L, x: L.F.relu(x).var(axis=0, keepdims=False, unbiased=False)
                 + x.var(axis=1, keepdims=True, unbiased=False).sum(), [X2]),
    "max axis": (lambda L, x: L.max(L.F.log_softmax(x, dim=1), axis=1)
                 + L.max(x, axis=(0, 1), keepdims=True), [X2]),
    "conv reductions": (lambda L, x, w: L.F.conv2d(x, w, padding=1).sum(axis=(2, 3))
                        * L.F.conv2d(x, w).mean(axis=1).mean(), [IMAGES, KERNEL]),
    # indexing
    "int and slice": (lambda L, x: L.F.sigmoid(x)[1] * L.F.relu(x)[-1, ::2].sum(), [X2]),
    "fancy": (lambda L, x: L.F.log_softmax(x, dim=1)[[0, 2, 2], [1, 4, 4]], [X2]),
    "conv slices": (lambda L, x, w: L.F.conv2d(x, w, padding=1)[:, 1:, ::2, 1], [IMAGES, KERNEL]),
    "boolean mask": (lambda L, x: L.F.sigmoid(x)[x > 0.2] * 2, [X2]),
    # comparisons feeding a mask
    "mask from a comparison": (lambda L, x: L.F.relu(x) * (x > 0.1).float()
                               + L.F.sigmoid(x) * (x <= 0.1).float(), [X2]),
    "mask from another tensor": (lambda L, x, y: L.F.softmax(x, dim=1) * (y >= x).float(),
                                 [X2, rand(14, 3, 5)], dict(needs_grad=[True, False])),
    # reshape / view / transpose / flatten between functional ops
    "reshape view": (lambda L, x, w: L.F.linear(L.F.relu(x).reshape(5, 3).view(3, 5), w), [X2, W]),
    "transpose then softmax": (lambda L, x: L.F.softmax(x.transpose(0, 1), dim=1).T * x, [X2]),
    "conv flatten linear": (lambda L, x, w, fw: L.F.linear(
        L.F.avg_pool2d(L.F.conv2d(x, w, stride=2, padding=1), 2, stride=1).flatten(1), fw),
        [IMAGES, KERNEL, rand(15, 4, 12) * 0.3]),
    "pool transpose": (lambda L, x: L.F.max_pool2d(x.transpose(0, 1), 2, stride=2, padding=1)
                       .transpose(2, 3), [IMAGES]),
    # exp, log, abs, sqrt
    "exp log abs sqrt": (lambda L, x: L.F.softmax(x, dim=1).log() + (-L.F.relu(x)).exp()
                         + L.F.linear(x, L.const(W)).abs().sqrt().sum(axis=1, keepdims=True),
                         [X2]),
    # astype in the middle of a graph
    "astype": (lambda L, x: L.astype(L.astype(L.F.sigmoid(x), "float64") * 2, "float32"), [X2]),
    # PyTorch's spellings: dim/keepdim, permute, unsqueeze/squeeze, clone, max/min(dim)
    "dim keepdim permute unsqueeze squeeze clone": (
        lambda L, x: (L.F.softmax(x, dim=1).sum(dim=1, keepdim=True) * x.mean(dim=0))
        .permute(1, 0).unsqueeze(0).squeeze(0).clone() * 2, [X2]),
    "max and min with indices": (lambda L, x: L.F.log_softmax(x, dim=1).max(dim=1).values * 2
                                 + L.F.sigmoid(x).min(0)[0].sum()
                                 + x[np.arange(3), x.max(1)[1]], [X2]),
}


@pytest.mark.parametrize("graph", list(GRAPHS))
def test_tensor_ops_between_functional_ops(check, graph):
    fn, inputs, *kw = GRAPHS[graph]
    check(graph, fn, inputs, **(kw[0] if kw else {}))


def test_shared_inputs_and_a_diamond(check):
    """One input feeds four branches; their gradients add up on every device."""
    def fn(L, x, w):
        h = L.F.linear(x, w)
        return (L.F.relu(h) * L.F.sigmoid(h)).sum() + L.F.log_softmax(h, dim=1)[:, 0].mean() \
            + L.F.softmax(h, dim=0).max() - (h * h).mean()
    check("diamond", fn, [X2, W])


# --------------------------------------------------------------------------- batch norm and dropout

@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("rank", [2, 4])
def test_batch_norm_in_a_graph(check, training, rank):
    """batch_norm between tensor ops; the running statistics move as PyTorch moves them."""
    x = rand(16, 4, 3, 2, 3) if rank == 4 else rand(16, 4, 3)
    mean0, var0 = rand(17, 3) * 0.3, rand(18, 3, low=0.5, high=2.0)

    def fn(L, x, w, b):
        y = L.F.batch_norm(x * 2 + 1, L.stats(mean0), L.stats(var0), w, b, training=training,
                           momentum=0.2, eps=1e-4)
        return (L.F.relu(y) ** 2).mean() + y.sum(axis=1).var(unbiased=False)
    check(f"batch_norm {rank}-D", fn, [x, rand(19, 3, low=0.5, high=1.5), rand(20, 3)])


def test_dropout_in_a_graph(check):
    """dropout between ops: PyTorch applies the mask minicnn drew, and the cpu run, seeded
    alike, draws the same one."""
    x = rand(21, 6, 8)
    check("dropout", lambda L, x, w: L.F.cross_entropy(
        L.F.linear(L.dropout(L.F.sigmoid(x), 0.4), w) * 0.5, L.const(labels(22, 6, 3))) ** 2,
        [x, rand(23, 3, 8)])


# --------------------------------------------------------------------------- every op after every op

# Every functional op (a head: small inputs -> a 2-D or 4-D tensor) followed by every kind of
# tensor operation (a tail: works on any such tensor). Heads take their inputs as leaves.
X4 = rand(24, 2, 2, 5, 5)
BN_MEAN, BN_VAR = rand(25, 2) * 0.2, rand(26, 2, low=0.5, high=1.5)

HEADS = {
    "conv2d": (lambda L, x, w, b: L.F.conv2d(x, w, b, stride=1, padding=1),
               [X4, KERNEL, rand(27, 3)]),
    "max_pool2d": (lambda L, x: L.F.max_pool2d(x, 2, stride=1), [X4]),
    "avg_pool2d": (lambda L, x: L.F.avg_pool2d(x, 3, stride=2, padding=1), [X4]),
    "relu": (lambda L, x: L.F.relu(x), [X4]),
    "sigmoid": (lambda L, x: L.F.sigmoid(x), [X2]),
    "linear": (lambda L, x, w, b: L.F.linear(x, w, b), [X2, W, B]),
    "softmax": (lambda L, x: L.F.softmax(x, dim=1), [X2]),
    "log_softmax": (lambda L, x: L.F.log_softmax(x, dim=1), [X4]),
    "cross_entropy none": (lambda L, x, t: L.F.cross_entropy(x, t, reduction="none")[:, None] * x,
                           [X2, labels(28, 3, 5)]),
    "dropout": (lambda L, x: L.dropout(x, 0.3), [X2]),
    "batch_norm": (lambda L, x, w, b: L.F.batch_norm(x, L.stats(BN_MEAN), L.stats(BN_VAR), w, b,
                                                     training=True),
                   [X4, rand(29, 2, low=0.5, high=1.5), rand(30, 2)]),
    "adaptive_avg_pool2d": (lambda L, x: L.F.adaptive_avg_pool2d(x, (3, 2)), [X4]),
    "mse_loss none": (lambda L, x, y: L.F.mse_loss(x, y, reduction="none"), [X2, rand(36, 3, 5)]),
    "binary_cross_entropy_with_logits none": (
        lambda L, x, y: L.F.binary_cross_entropy_with_logits(x, y, reduction="none"),
        [X2, (rand(37, 3, 5) > 0).astype(np.float32)], dict(needs_grad=[True, False])),
}


def _ramp(n):
    return np.linspace(0.5, 1.5, n).astype(np.float32)


TAILS = {
    "numbers": lambda L, y: (2 - y) * 3 + y / 4 - 1 / (y.abs() + 1) + -y ** 2,
    "tensors, broadcast": lambda L, y: y * L.const(_ramp(y.shape[-1])) - L.const(_ramp(y.shape[-1]))
    / (y * y + 1) + y[:1] * y,
    "matmul": lambda L, y: y.reshape(y.shape[0], -1) @ L.const(
        _ramp(int(np.prod(y.shape[1:])) * 3).reshape(-1, 3)),
    "reductions": lambda L, y: y.sum(axis=1, keepdims=True) * y.mean(axis=-1, keepdims=True)
    + L.max(y, axis=0) + y.var(axis=0, keepdims=True, unbiased=False) + y.sum() / 7,
    "indexing": lambda L, y: y[0].sum() + y[:, ::2].mean() * y[-1, 1:].sum()
    + y[[1, 0, 1]].sum() + (y[y > 0.1] * 2).sum(),
    "reshape transpose flatten": lambda L, y: y.flatten(1).transpose(0, 1).reshape(-1)
    .view(y.shape) * L.const(_ramp(y.shape[-1])),
    "comparison mask": lambda L, y: y * (y > 0.1).float() + (y <= 0.1).float() * 0.5 * y,
    "exp log abs sqrt": lambda L, y: (y.abs() + 1).log() + (-y.abs()).exp() + (y * y + 0.1).sqrt(),
    "astype": lambda L, y: L.astype(L.astype(y, "float64") * 2 - 1, "float32"),
}


@pytest.mark.parametrize("tail", list(TAILS))
@pytest.mark.parametrize("head", list(HEADS))
def test_every_tensor_op_after_every_functional_op(check, head, tail):
    make, inputs, *kw = HEADS[head]
    check(f"{tail} after {head}", lambda L, *xs: TAILS[tail](L, make(L, *xs)), inputs,
          **(kw[0] if kw else {}))
