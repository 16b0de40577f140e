# %% [markdown]
# # Lesson 06 — Loss and optimisation
#
# **What this lesson teaches**
# - softmax and cross-entropy: from class scores (logits) to probabilities to one
#   number to minimise, and its simple gradient `p − onehot(t)`;
# - why the implementation subtracts the row maximum;
# - three optimisers of `minicnn.optim` on a toy problem: plain SGD, SGD with
#   momentum, and Adam — and what each does on a long narrow valley;
# - learning-rate schedules.
#
# Run it: `python lessons/06_loss_and_optimisation.py [--quick] [--out FOLDER]`.
#
# The kernels: softmax cross-entropy in `kernels/reference.py` (the numpy formula),
# `kernels/cpu/loss.py` (numba, one row per image) and `kernels/cuda/loss.cu`; the
# optimiser steps in `kernels/cpu/optim.py` and `kernels/cuda/optim.cu`, called by
# `minicnn/optim/optimizer.py`. The first code cell prints where each function starts.
# Practise it: exercises 06 (softmax cross-entropy) and 07 (SGD momentum),
# `minicnn grade 06`.

# %%
import numpy as np

import minicnn
from minicnn import functional as F
from minicnn.optim import SGD, Adam, StepLR, CosineAnnealingLR

from minicnn.lesson import setup, save, plt, show_kernels

args, OUT = setup("06_loss_and_optimisation", "Lesson 06: cross-entropy, SGD, momentum, Adam",
                  compiles=True)
show_kernels(("reference.py", "cross_entropy_forward", "cross_entropy_backward", "sgd_step",
              "adam_step"),
             ("cpu/loss.py", "ce_rows", "ce_rows_bwd"),
             ("cuda/loss.cu", "cross_entropy_rows", "cross_entropy_backward"),
             ("cpu/optim.py", "sgd_step", "adam_step"),
             ("cuda/optim.cu", "sgd_step", "adam_step"))

# %% [markdown]
# ## Softmax cross-entropy
#
# A classifier outputs one score per class. Softmax makes them probabilities;
# cross-entropy charges `−log p[true class]`: near 0 for a confident right answer,
# large for a confident wrong one.
#
#     p[k] = exp(z[k]) / Σ_j exp(z[j])        loss = −log p[t]
#     d loss / d z[k] = p[k] − [k = t]
#
# For a batch of N images the loss is the **mean** of the N losses
# (`reduction="mean"`, PyTorch's default), so each image's gradient carries a
# factor 1/N: `(p − onehot) / N`. That keeps the size of a step independent of
# the batch size: twice the images, the same learning rate still fits. With
# `reduction="sum"` the gradient grows with N (the cell after the next shows it).

# %%
logits = np.array([[2.0, 0.5],     # says "normal" fairly sure; truth: normal
                   [0.2, 0.4],     # unsure; truth: pneumonia
                   [3.0, -1.0]],   # says "normal" very sure; truth: pneumonia (a miss!)
                  dtype=np.float64)
target = np.array([0, 1, 1])
p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
by_hand = -np.log(p[np.arange(3), target])
for n in range(3):
    print(f"logits {logits[n]} -> p {np.round(p[n], 3)}, truth {target[n]}: "
          f"loss {by_hand[n]:.3f}")

z = minicnn.tensor(logits, requires_grad=True, dtype=np.float64)
loss = F.cross_entropy(z, minicnn.tensor(target))
loss.backward()
print(f"\nmean by hand {by_hand.mean():.6f}, minicnn {loss.item():.6f}")
onehot = np.eye(2)[target]
print("gradient (p - onehot) / N:\n", np.round((p - onehot) / 3, 4))
print("minicnn's backward:\n", np.round(z.grad.numpy(), 4))

# the same three images twice: the mean's gradient per image halves, the total stays
twice = minicnn.tensor(np.concatenate([logits, logits]), requires_grad=True, dtype=np.float64)
F.cross_entropy(twice, minicnn.tensor(np.concatenate([target, target]))).backward()
summed = minicnn.tensor(np.concatenate([logits, logits]), requires_grad=True, dtype=np.float64)
F.cross_entropy(summed, minicnn.tensor(np.concatenate([target, target])),
                reduction="sum").backward()
print(f"batch of 3 -> 6 (each image twice): the mean's total gradient "
      f"{np.abs(z.grad.numpy()).sum():.4f} -> {np.abs(twice.grad.numpy()).sum():.4f}; "
      f"with reduction='sum' it is {np.abs(summed.grad.numpy()).sum():.4f}")

# %% [markdown]
# With logits like 1000, `exp` overflows. Subtracting each row's maximum first
# changes nothing (numerator and denominator gain the same factor) and keeps every
# `exp` at most 1; minicnn's kernels do exactly that.

# %%
big = np.array([[1000.0, 998.0]])
with np.errstate(over="ignore", invalid="ignore"):
    naive = np.exp(big) / np.exp(big).sum()
print("naive softmax of [1000, 998]:", naive, " minicnn:",
      F.softmax(minicnn.tensor(big, dtype=np.float64)).numpy())

# %% [markdown]
# ## Optimisers on a narrow valley
#
# The toy loss `f(a, b) = 0.5·(a² + 25·b²)` is a long narrow valley: its curvature
# (the second derivative) across the valley, in b, is many times its curvature
# along it, in a — the run below measures the ratio from the engine's own
# gradients. Its contours are ellipses whose length is √(that ratio) times their
# width. Gradient descent follows the steepest direction — mostly across — and
# zig-zags; momentum averages the zig-zag away; Adam scales each coordinate by its
# own gradient size.
#
#     SGD:       p ← p − lr·g
#     momentum:  v ← μ·v + g,   p ← p − lr·v
#     Adam:      m, v running means of g and g²,  p ← p − lr·m̂ / (√v̂ + ε)

# %%
def valley(params):
    a, b = params[0], params[1]
    return 0.5 * (a * a + 25.0 * b * b)


def gradient_at(point):
    t = minicnn.tensor(point, requires_grad=True, dtype=np.float64)
    valley(t).backward()
    return t.grad.numpy()


h = 1e-3                                     # curvature = d(gradient)/d(coordinate)
curvature = [(gradient_at([h * (k == 0), h * (k == 1)])[k]
              - gradient_at([-h * (k == 0), -h * (k == 1)])[k]) / (2 * h) for k in (0, 1)]
ratio = curvature[1] / curvature[0]
print(f"curvature along a: {curvature[0]:.3g}, across (b): {curvature[1]:.3g}: a ratio of "
      f"{ratio:.3g}; the contours are {np.sqrt(ratio):.3g}x longer than wide")
print(f"plain SGD diverges in b once lr > 2 / {curvature[1]:.3g} = {2 / curvature[1]:.3g}")


steps = 30 if args.quick else 100
runs = {}
for name, make in [("SGD lr 0.07", lambda ps: SGD(ps, lr=0.07)),
                   ("SGD + momentum 0.6, lr 0.06", lambda ps: SGD(ps, lr=0.06, momentum=0.6)),
                   ("Adam lr 0.3", lambda ps: Adam(ps, lr=0.3))]:
    params = minicnn.tensor([-4.0, 1.5], requires_grad=True, dtype=np.float64)
    opt = make([params])
    path, losses = [params.numpy().copy()], []
    for _ in range(steps):
        opt.zero_grad()
        loss = valley(params)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        path.append(params.numpy().copy())
    runs[name] = (np.array(path), np.array(losses))
    print(f"{name:28s} loss after {steps} steps: {losses[-1]:.2e}")

# %% [markdown]
# Plain SGD cannot raise its rate above 2 / (the largest curvature), printed above
# (the steep direction would blow up), so the shallow direction, whose curvature
# is that ratio times smaller, crawls. Momentum builds speed along the valley floor and
# wins by orders of magnitude. Adam's steps are about `lr` long in every coordinate,
# whatever the gradient's size: a fast, even start, then it hovers around the
# minimum at that step length unless a schedule (below) shrinks the rate.

# %%

A, B = np.meshgrid(np.linspace(-4.5, 4.5, 200), np.linspace(-2, 2, 120))
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
axes[0].contour(A, B, 0.5 * (A ** 2 + 25 * B ** 2), levels=20, cmap="Greys", linewidths=0.6)
for name, (path, losses) in runs.items():
    axes[0].plot(path[:, 0], path[:, 1], ".-", ms=3, label=name)
    axes[1].semilogy(losses, label=name)
axes[0].set_title("paths on f(a, b) = (a² + 25 b²) / 2")
axes[0].legend(fontsize=8)
axes[1].set_title("loss per step")
axes[1].set_xlabel("step")
axes[1].legend(fontsize=8)
save(fig, OUT, "optimisers.png")

# %% [markdown]
# ## Learning-rate schedules
#
# Large steps early, small steps late: `StepLR` divides the rate by 10 every few
# epochs, `CosineAnnealingLR` glides it down along half a cosine.

# %%
epochs = 30
curves = {}
for name, make in [("StepLR(step 10, gamma 0.1)", lambda o: StepLR(o, step_size=10, gamma=0.1)),
                   ("CosineAnnealingLR(T_max 30)", lambda o: CosineAnnealingLR(o, T_max=epochs))]:
    opt = SGD([minicnn.tensor([0.0], requires_grad=True)], lr=0.1)
    sched = make(opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    curves[name] = lrs
    print(f"{name:28s} lr at epochs 0, 10, 20, 29: "
          + ", ".join(f"{lrs[e]:.4f}" for e in (0, 10, 20, 29)))
fig, ax = plt.subplots(figsize=(6, 3.4))
for name, lrs in curves.items():
    ax.plot(lrs, label=name)
ax.set_xlabel("epoch")
ax.set_ylabel("learning rate")
ax.legend()
save(fig, OUT, "lr_schedules.png")
