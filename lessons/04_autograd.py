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
#   size matters;
# - the backward pass of a convolution, derived: as matrix products
#   (gw = GY·colᵀ, gx = col2im(Wᵀ·GY)) and as sums over the kernel taps, with the
#   lines of minicnn's kernels that compute it, checked against the engine.
#
# Run it: `python lessons/04_autograd.py [--quick] [--out FOLDER]` (the first run
# compiles minicnn's numba kernels: 10–20 s, once).
# Practise it: exercise 03 (conv backward), `minicnn grade 03`.

# %%
import math

import numpy as np

import minicnn
from minicnn import functional as F
from minicnn.autograd import Function

from minicnn.lesson import setup, save, plt, show_kernels

args, OUT = setup("04_autograd", "Lesson 04: autograd from scratch, then minicnn's",
                  compiles=True)

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

# %% [markdown]
# ## The backward pass of a convolution
#
# Exercise 03 asks for conv2d's backward. Here it is derived twice: once as matrix
# products, once as sums over the kernel taps. Both say the same thing.
#
# **As matrices.** im2col (lesson 01, exercise 02) copies, for every output pixel
# (n, i, j), the C·KH·KW input values its kernel window sees into one column:
#
#     col[r, (n, i, j)] = x[n, c, i·s + p − pad, j·s + q − pad],   r = (c·KH + p)·KW + q
#
# so that the convolution is one product, `Y = W · col` with W (F, C·KH·KW) and
# Y (F, N·Ho·Wo), plus the bias. For a product `Y = W · col` the chain rule gives
# (write GY = dL/dY, laid out like Y):
#
#     dL/dW   = GY · colᵀ           (F, N·Ho·Wo) · (N·Ho·Wo, C·KH·KW) = (F, C·KH·KW)
#     dL/dcol = Wᵀ · GY             (C·KH·KW, F) · (F, N·Ho·Wo)
#     dL/db   = GY summed over its columns
#
# Every entry of `col` is a copy of one input pixel, and a pixel copied into k
# columns influences the loss along k paths: its gradient is the sum of the k
# entries of dL/dcol. Putting each entry back onto the pixel it came from, adding,
# is **col2im**: `gx = col2im(Wᵀ · GY)`.
#
# **As sums over taps.** Read the same products entry by entry. Output pixel
# (n, f, i, j) was Σ_c Σ_p Σ_q w[f,c,p,q] · x[n, c, i·s+p−pad, j·s+q−pad]; each term
# sends gy[n,f,i,j] times the other factor back to each factor:
#
#     gw[f,c,p,q] = Σ_n Σ_i Σ_j  gy[n,f,i,j] · x[n, c, i·s+p−pad, j·s+q−pad]
#     gx[n,c,h,v] = Σ_f Σ_p Σ_q  gy[n,f,i,j] · w[f,c,p,q]   over the taps with
#                                h = i·s+p−pad and v = j·s+q−pad (skip if no such i, j)
#     gb[f]       = Σ_n Σ_i Σ_j  gy[n,f,i,j]
#
# The weight gradient is itself a correlation, of the input with gy; the input
# gradient is a "full" correlation of gy with the kernel, flipped — which is why a
# transposed-convolution layer is the backward of a convolution.
#
# Where minicnn computes them (line numbers looked up in the installed files now):
# the tap sums as numba loops (rung v1 of the CPU ladder, lesson 12), the matrix
# form with BLAS (rung v2), the numpy reference every kernel is tested against,
# and the col2im of the CUDA kernels.

# %%
show_kernels(("cpu/ladder/conv_v1_loops.py", "backward",
              "acc += gy[n, f, i // sh, j // sw] * w[f, c, p, q]",
              "acc += gy[n, f, i, j] * x[n, c, h, v]"),
             ("cpu/ladder/conv_v2_im2col.py", "backward", "gw = (GY @ col.T)",
              "gcol = np.ascontiguousarray(w.reshape(F, -1).T) @ GY", "col2im(gcol, 0"),
             ("reference.py", "conv2d_backward"),
             ("cuda/conv.cu", "col2im"))

# %% [markdown]
# Both forms, written out in numpy on a small, deliberately lopsided case (H ≠ W,
# a 2 × 3 kernel, stride 2, padding 1: a transposed index would show), against what
# minicnn's autograd gives through `F.conv2d` (which runs the engine's fastest path).

# %%
N, C, H, W, Fo, KH, KW, s, pad = (2, 3, 7, 6, 4, 2, 3, 2, 1)
x_np = rng.standard_normal((N, C, H, W))
w_np = rng.standard_normal((Fo, C, KH, KW))
b_np = rng.standard_normal(Fo)
Ho, Wo = (H + 2 * pad - KH) // s + 1, (W + 2 * pad - KW) // s + 1
gy_np = rng.standard_normal((N, Fo, Ho, Wo))           # some dL/dy coming from above


def im2col(x):
    """x (N,C,H,W) -> col (C*KH*KW, N*Ho*Wo), column (n, i, j), row (c, p, q)."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    col = np.empty((C, KH, KW, N, Ho, Wo))
    for p in range(KH):
        for q in range(KW):
            col[:, p, q] = xp[:, :, p:p + s * Ho:s, q:q + s * Wo:s].transpose(1, 0, 2, 3)
    return col.reshape(C * KH * KW, N * Ho * Wo)


def col2im(gcol):
    """The adjoint of im2col: add every entry back onto the pixel it was copied from."""
    gcol = gcol.reshape(C, KH, KW, N, Ho, Wo)
    gxp = np.zeros((N, C, H + 2 * pad, W + 2 * pad))
    for p in range(KH):
        for q in range(KW):
            gxp[:, :, p:p + s * Ho:s, q:q + s * Wo:s] += gcol[:, p, q].transpose(1, 0, 2, 3)
    return gxp[:, :, pad:pad + H, pad:pad + W]          # the padding's gradient is dropped


col = im2col(x_np)
GY = gy_np.transpose(1, 0, 2, 3).reshape(Fo, -1)      # (F, N*Ho*Wo), columns (n, i, j)
gw_matrix = (GY @ col.T).reshape(w_np.shape)
gx_matrix = col2im(w_np.reshape(Fo, -1).T @ GY)
gb_matrix = GY.sum(axis=1)

gw_taps, gx_taps = np.zeros_like(w_np), np.zeros_like(x_np)
for n in range(N):
    for f in range(Fo):
        for i in range(Ho):
            for j in range(Wo):
                for p in range(KH):
                    for q in range(KW):
                        h, v = i * s + p - pad, j * s + q - pad
                        if 0 <= h < H and 0 <= v < W:
                            gw_taps[f, :, p, q] += gy_np[n, f, i, j] * x_np[n, :, h, v]
                            gx_taps[n, :, h, v] += gy_np[n, f, i, j] * w_np[f, :, p, q]

xt = minicnn.tensor(x_np, requires_grad=True, dtype=np.float64)
wt = minicnn.tensor(w_np, requires_grad=True, dtype=np.float64)
bt = minicnn.tensor(b_np, requires_grad=True, dtype=np.float64)
yt = F.conv2d(xt, wt, bt, stride=s, padding=pad)
(yt * minicnn.tensor(gy_np, dtype=np.float64)).sum().backward()   # so that dL/dy = gy
print(f"case: x {x_np.shape}, w {w_np.shape}, stride {s}, padding {pad} -> y {yt.shape}")
for name, matrix, taps, engine in [("gx", gx_matrix, gx_taps, xt.grad.numpy()),
                                   ("gw", gw_matrix, gw_taps, wt.grad.numpy()),
                                   ("gb", gb_matrix, gy_np.sum(axis=(0, 2, 3)), bt.grad.numpy())]:
    print(f"{name}: matrix form vs engine {np.abs(matrix - engine).max():.1e}, "
          f"tap sums vs engine {np.abs(taps - engine).max():.1e}")
    assert np.allclose(matrix, engine) and np.allclose(taps, engine), name
print("both derivations agree with the engine; exercise 03 asks you to write one of them")
