# %% [markdown]
# # Lesson 02 — Activations
#
# **What this lesson teaches**
# - why a network needs a non-linear function between its layers (without one, ten
#   layers are no better than one);
# - ReLU and sigmoid, their derivatives, and where minicnn computes them
#   (`minicnn.functional.relu`, `sigmoid`; kernels in `kernels/reference.py`,
#   `kernels/cpu`, `kernels/cuda/activation.cu`);
# - two classic troubles: vanishing gradients (sigmoid) and dead units (ReLU);
# - why sigmoid must be written with care for large |x|.
#
# Run it: `python lessons/02_activations.py [--quick] [--out FOLDER]`. Its figure of
# a feature map uses pydicom's real CT slice, or a SYNTHETIC X-ray (and says so in
# the title) when pydicom is not installed.
# Practise it: exercise 04 (ReLU backward), `minicnn grade 04`.

# %%
import numpy as np

import minicnn
from minicnn import functional as F, nn

from minicnn.lesson import setup, save, medical_image, plt

args, OUT = setup("02_activations", "Lesson 02: activation functions and their gradients")

# %% [markdown]
# ## Without an activation, layers collapse
#
# A linear layer computes `y = x Wᵀ + b`. Two in a row compute
# `(x W1ᵀ + b1) W2ᵀ + b2 = x (W2 W1)ᵀ + (b1 W2ᵀ + b2)`: one linear layer again.
# Check it numerically with two of minicnn's `nn.Linear` layers.

# %%
minicnn.manual_seed(0)
first, second = nn.Linear(4, 8), nn.Linear(8, 3)
x = minicnn.randn(5, 4)
two_layers = second(first(x)).numpy()
W = second.weight.numpy() @ first.weight.numpy()               # (3, 4)
b = first.bias.numpy() @ second.weight.numpy().T + second.bias.numpy()
one_layer = x.numpy() @ W.T + b
print("two linear layers vs one merged layer, largest difference:",
      f"{np.abs(two_layers - one_layer).max():.1e}")
with_relu = second(F.relu(first(x))).numpy()
print("with a ReLU in between, the difference from the merged layer:",
      f"{np.abs(with_relu - one_layer).max():.2f}  (no single linear layer can do that)")

# %% [markdown]
# ## The functions and their derivatives
#
#     ReLU(x)    = max(0, x)              ReLU'(x)    = 1 if x > 0 else 0
#     sigmoid(x) = 1 / (1 + exp(−x))      sigmoid'(x) = sigmoid(x) · (1 − sigmoid(x))
#
# We do not code the derivatives here: we ask minicnn's autograd. Summing the
# outputs and calling `backward()` puts dy/dx of every element in `x.grad`.

# %%
xs = np.linspace(-6, 6, 241 if not args.quick else 61).astype(np.float32)
curves = {}
for name, fn in [("ReLU", F.relu), ("sigmoid", F.sigmoid)]:
    t = minicnn.tensor(xs, requires_grad=True)
    y = fn(t)
    y.sum().backward()
    curves[name] = (y.numpy(), t.grad.numpy())

s = curves["sigmoid"][0]
print("autograd's sigmoid' matches s(1 - s):",
      np.allclose(curves["sigmoid"][1], s * (1 - s), atol=1e-6))
print("sigmoid' is at most", f"{curves['sigmoid'][1].max():.3f}", "(at x = 0)")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for ax, (name, (y, dy)) in zip(axes, curves.items()):
    ax.plot(xs, y, label=f"{name}(x)")
    ax.plot(xs, dy, "--", label=f"{name}'(x) (autograd)")
    ax.axhline(0, color="gray", lw=0.5)
    ax.axvline(0, color="gray", lw=0.5)
    ax.set_title(name)
    ax.legend()
save(fig, OUT, "activations.png")

# %% [markdown]
# ## Vanishing gradients
#
# Backpropagation multiplies one factor per layer. Going back through
# `h = act(W h_prev + b)`, the gradient is multiplied by act' (elementwise) and
# then by Wᵀ:
#
#     dL/dh_prev = Wᵀ (act'(z) ⊙ dL/dh)
#
# sigmoid' is at most 0.25, so the activations alone shrink the gradient by at
# least 0.25 per layer. The weights can make up part of it: each Wᵀ can stretch a
# vector by at most its largest singular value ‖W‖₂. So through L layers
#
#     |dL/dx| ≤ 0.25^L · ‖W_1‖₂ ··· ‖W_L‖₂ · |dL/dh_L|
#
# (ReLU: the same without the 0.25^L, since ReLU' is 0 or 1). The run below
# measures the ratio |dL/dx| / |dL/dh_L| and prints it beside that bound, for the
# number of layers it actually stacked.

# %%
depth = 6 if args.quick else 12
minicnn.manual_seed(1)
layers = [nn.Linear(32, 32) for _ in range(depth)]
for layer in layers:       # He initialisation: keeps a ReLU signal's size layer after layer
    nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    nn.init.zeros_(layer.bias)
stretch = float(np.prod([np.linalg.norm(layer.weight.numpy(), 2) for layer in layers]))
print(f"{depth} layers; the product of the weights' largest singular values is {stretch:.3g}")
ratios = {}
for name, act, slope in [("sigmoid", F.sigmoid, 0.25), ("ReLU", F.relu, 1.0)]:
    x = minicnn.randn(16, 32, requires_grad=True)
    h = x
    for layer in layers:
        h = act(layer(h))
    h.sum().backward()                      # dL/dh_L = 1 for every element
    ratio = ratios[name] = np.linalg.norm(x.grad.numpy()) / np.sqrt(h.numel())
    print(f"{depth} layers of {name:7s}: |dL/dx| / |dL/dh_L| = {ratio:.2e}; the bound "
          f"{slope:g}^{depth} x {stretch:.3g} = {slope ** depth * stretch:.2e}"
          + (f" ({slope:g}^{depth} alone = {slope ** depth:.1e})" if slope < 1 else ""))
print(f"through the same {depth} weight matrices, the sigmoid stack passes back "
      f"{ratios['ReLU'] / ratios['sigmoid']:.0f}x less gradient than the ReLU stack")

# %% [markdown]
# ## Dead ReLUs
#
# A ReLU unit whose input is negative for every example outputs 0 and gets 0
# gradient: it can never recover. A large negative bias (or a too-large learning
# rate that pushes one there) kills units.

# %%
minicnn.manual_seed(2)
layer = nn.Linear(32, 64)
x = minicnn.randn(256, 32)
for shift in (0.0, -1.0, -3.0):
    pre = layer(x).numpy() + shift
    dead = np.mean((pre <= 0).all(axis=0))
    print(f"bias shifted by {shift:+.0f}: {dead:5.1%} of 64 units are dead on 256 inputs")

# %% [markdown]
# ## Writing sigmoid safely
#
# The textbook has two equal forms, `1 / (1 + exp(−x))` and `exp(x) / (1 + exp(x))`.
# Each breaks on one side: the first computes exp(1000) = inf for x = −1000 (and
# gets 0 only by luck), the second computes inf / inf = nan for x = +1000. minicnn's
# kernels pick, for each x, the form whose exp has a negative argument: it never
# overflows.

# %%
big = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0], dtype=np.float32)
with np.errstate(over="ignore", invalid="ignore"):
    first_form = 1 / (1 + np.exp(-big))
    second_form = np.exp(big) / (1 + np.exp(big))
print("x                  :", big)
print("1 / (1 + exp(-x))  :", first_form, " (exp(1000) overflowed on the way)")
print("exp(x)/(1 + exp(x)):", second_form)
print("minicnn            :", F.sigmoid(minicnn.tensor(big)).numpy())

# %% [markdown]
# ## ReLU on feature maps
#
# After a convolution, ReLU keeps only the positive responses. On the Sobel Gx map
# of lesson 01 that means: only edges where brightness rises from left to right.

# %%
image, what = medical_image()
sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32)[None, None]
gx = F.conv2d(minicnn.tensor(image[None, None]), minicnn.tensor(sobel), padding=1)
rectified = F.relu(gx)
print(f"image: {what}")
print(f"Gx has {np.mean(gx.numpy() < 0):.0%} negative values; ReLU sets them to 0")
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
lim = float(np.abs(gx.numpy()).max())                # a diverging map centred on 0
for ax, pic, title in zip(axes, [image, gx.numpy()[0, 0], rectified.numpy()[0, 0]],
                          ["input", "Sobel Gx (red +, blue −)", "ReLU(Gx)"]):
    shown = ax.imshow(pic, **({"cmap": "gray"} if title == "input" else
                              {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim} if "Gx (" in title
                              else {"cmap": "magma", "vmin": 0, "vmax": lim}))
    if title != "input":
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title)
    ax.axis("off")
fig.suptitle(what, fontsize=9, color="darkred" if "SYNTHETIC" in what else "black")
save(fig, OUT, "relu_feature_map.png")
