# %% [markdown]
# # Lesson 04 — Automatic differentiation
#
# **What this lesson teaches**
# - reverse-mode autodiff, built from scratch on single numbers: each operation
#   remembers its inputs and its local derivative; `backward()` visits the graph
#   from the output back and applies the chain rule;
# - the same computation in minicnn (`minicnn/autograd.py`), where the numbers are
#   arrays and each operation is a `Function` with `forward` and `backward`;
# - how to write your own `Function`;
# - the gradient check: compare backward with finite differences, and why the step
#   size matters.
#
# Run it: `python lessons/04_autograd.py [--quick] [--out FOLDER]`.
# Practise it: exercise 03 (conv backward), `minicnn grade 03`.

# %%
import math

import numpy as np

import minicnn
from minicnn import functional as F
from minicnn.autograd import Function

from minicnn.lesson import setup, save, plt

args, OUT = setup("04_autograd", "Lesson 04: autograd from scratch, then minicnn's")

# %% [markdown]
# ## Autograd on scalars, from scratch
#
# A `Value` holds a number, its gradient, the Values it was made from, and a small
# function that passes its gradient to them (the chain rule, one step):
#
#     c = a * b   ->   dL/da += dL/dc * b,    dL/db += dL/dc * a
#     c = a + b   ->   dL/da += dL/dc,        dL/db += dL/dc
#
# `backward()` orders the graph so that every node is handled after all the nodes
# that use it (a topological order), seeds dL/dL = 1, and runs those functions.
# This class exists only for this lesson; minicnn's version, for arrays, is in
# `minicnn/autograd.py`.

# %%
class Value:
    """A scalar that remembers how it was computed."""

    def __init__(self, data, parents=(), op=""):
        self.data, self.grad = float(data), 0.0
        self.parents, self.op = parents, op
        self._backward = lambda: None

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def backward():
            self.grad += out.grad
            other.grad += out.grad
        out._backward = backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def backward():
            self.grad += out.grad * other.data
            other.grad += out.grad * self.data
        out._backward = backward
        return out

    def __sub__(self, other):
        return self + (other * -1.0)

    def relu(self):
        out = Value(max(self.data, 0.0), (self,), "relu")

        def backward():
            self.grad += out.grad * (1.0 if self.data > 0 else 0.0)
        out._backward = backward
        return out

    def exp(self):
        out = Value(math.exp(self.data), (self,), "exp")

        def backward():
            self.grad += out.grad * out.data          # d exp(x)/dx = exp(x)
        out._backward = backward
        return out

    def backward(self):
        order, seen = [], set()

        def visit(v):
            if id(v) not in seen:
                seen.add(id(v))
                for p in v.parents:
                    visit(p)
                order.append(v)
        visit(self)
        self.grad = 1.0
        for v in reversed(order):        # output first, inputs last
            v._backward()


# %% [markdown]
# One neuron with a ReLU and a squared error, `L = (relu(w1·x1 + w2·x2 + b) − t)²`:

# %%
x1, x2, t = Value(2.0), Value(-1.0), Value(1.5)
w1, w2, b = Value(0.8), Value(0.3), Value(0.1)
z = w1 * x1 + w2 * x2 + b
y = z.relu()
err = y - t
L = err * err
L.backward()
print(f"z = {z.data:.2f}, y = {y.data:.2f}, L = {L.data:.4f}")
print(f"by hand: dL/dw1 = 2(y - t) * 1 * x1 = {2 * (y.data - t.data) * x1.data:.4f}")
print(f"Value  : dL/dw1 = {w1.grad:.4f}, dL/dw2 = {w2.grad:.4f}, dL/db = {b.grad:.4f}")

# %% [markdown]
# ## The same, in minicnn
#
# minicnn's `Tensor` does the same bookkeeping with whole arrays. Each operation
# is a `Function` whose `forward` computes the result and whose `backward` turns
# dL/d(output) into dL/d(each input).

# %%
tw = minicnn.tensor([0.8, 0.3], requires_grad=True, dtype=np.float64)
tb = minicnn.tensor(0.1, requires_grad=True, dtype=np.float64)
tx = minicnn.tensor([2.0, -1.0], dtype=np.float64)
ty = F.relu((tw * tx).sum() + tb)
tL = (ty - 1.5) ** 2
tL.backward()
print(f"minicnn: L = {tL.item():.4f}, dL/dw = {tw.grad.numpy()}, dL/db = {tb.grad.item():.4f}")
assert np.allclose(tw.grad.numpy(), [w1.grad, w2.grad]) and math.isclose(tb.grad.item(), b.grad)
print("the scalar Value class and minicnn agree")

# %% [markdown]
# ## Your own Function
#
# To teach minicnn a new operation, subclass `Function` and write both halves.
# Here: `softplus(x) = log(1 + exp(x))`, whose derivative is the sigmoid.

# %%
class Softplus(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.logaddexp(0, x)                      # log(1 + e^x) without overflow

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (1 + np.exp(-x))                 # grad * sigmoid(x)


v = minicnn.tensor([-2.0, 0.0, 3.0], requires_grad=True, dtype=np.float64)
Softplus.apply(v).sum().backward()
print("softplus'(x) from our backward:", np.round(v.grad.numpy(), 4),
      " sigmoid(x):", np.round(1 / (1 + np.exp(-v.numpy())), 4))

# %% [markdown]
# ## The gradient check
#
# A derivative is a limit: `df/dx ≈ (f(x + ε) − f(x − ε)) / 2ε` (central
# differences, error O(ε²)). Perturb one weight of a convolution at a time,
# rerun the forward pass, and compare with what backward says. This is how
# minicnn's tests check every kernel — in float64, because in float32 the
# subtraction `f(x + ε) − f(x − ε)` loses most of its digits.

# %%
rng = np.random.default_rng(0)
x = minicnn.tensor(rng.standard_normal((2, 3, 6, 6)), dtype=np.float64)
w = minicnn.tensor(rng.standard_normal((4, 3, 3, 3)) * 0.3, requires_grad=True, dtype=np.float64)
target = minicnn.tensor(rng.random((2, 4, 6, 6)), dtype=np.float64)


def loss_fn(weights):
    """L(w) = sum((sigmoid(conv2d(x, w)) - target)^2): a scalar, not quadratic in w."""
    return ((F.sigmoid(F.conv2d(x, weights, padding=1)) - target) ** 2).sum()


def loss_of(weights):
    with minicnn.no_grad():
        return loss_fn(minicnn.tensor(weights, dtype=np.float64)).item()


loss_fn(w).backward()
analytic = w.grad.numpy()

checks = 6 if args.quick else 20
worst = 0.0
for _ in range(checks):
    k = tuple(int(rng.integers(0, s)) for s in w.shape)
    eps = 1e-5
    wp, wm = w.numpy().copy(), w.numpy().copy()
    wp[k] += eps
    wm[k] -= eps
    numeric = (loss_of(wp) - loss_of(wm)) / (2 * eps)
    rel = abs(numeric - analytic[k]) / max(abs(numeric), abs(analytic[k]), 1e-12)
    worst = max(worst, rel)
print(f"conv2d weight gradient, {checks} random entries: worst relative error {worst:.1e}")

# %% [markdown]
# How small should ε be? Too large and the O(ε²) truncation error dominates; too
# small and rounding error (about 1e-16 · |f| / ε) does. The plot shows the valley.

# %%
k = (1, 2, 1, 1)
eps_values = np.logspace(-13, -1, 25 if not args.quick else 13)
errors = []
for eps in eps_values:
    wp, wm = w.numpy().copy(), w.numpy().copy()
    wp[k] += eps
    wm[k] -= eps
    numeric = (loss_of(wp) - loss_of(wm)) / (2 * eps)
    errors.append(abs(numeric - analytic[k]) / abs(analytic[k]))
best = eps_values[int(np.argmin(errors))]
print(f"the smallest error, {min(errors):.1e}, comes at eps = {best:.0e}")

fig, ax = plt.subplots(figsize=(6, 3.8))
ax.loglog(eps_values, errors, "o-")
ax.set_xlabel("finite-difference step ε")
ax.set_ylabel("relative error vs backward()")
ax.set_title("gradient check of conv2d in float64")
save(fig, OUT, "gradcheck_eps.png")
