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
# Practise it: exercises 06 (softmax cross-entropy) and 07 (SGD momentum),
# `minicnn grade 06`.

# %%
import numpy as np

import minicnn
from minicnn import functional as F
from minicnn.optim import SGD, Adam, StepLR, CosineAnnealingLR

from minicnn.lesson import setup, save, plt

args, OUT = setup("06_loss_and_optimisation", "Lesson 06: cross-entropy, SGD, momentum, Adam")

# %% [markdown]
# ## Softmax cross-entropy
#
# A classifier outputs one score per class. Softmax makes them probabilities;
# cross-entropy charges `−log p[true class]`: near 0 for a confident right answer,
# large for a confident wrong one.
#
#     p[k] = exp(z[k]) / Σ_j exp(z[j])        loss = −log p[t]
#     d loss / d z[k] = p[k] − [k = t]

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
# The toy loss `f(a, b) = 0.5·(a² + 25·b²)` is a valley 5× steeper across than
# along. Gradient descent follows the steepest direction — mostly across — and
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
# Plain SGD cannot raise its rate above 2/25 (the steep direction would blow up), so
# the shallow direction crawls. Momentum builds speed along the valley floor and
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
