# %% [markdown]
# # Lesson 03 — Pooling
#
# **What this lesson teaches**
# - max pooling: the largest value of each window, which position won (the argmax),
#   and which one wins a tie (the first, in row-major order, as PyTorch);
# - where the gradient goes: all of it to the winner, none to the rest; overlapping
#   windows add up;
# - average pooling, and how zero padding counts in its divisor;
# - what repeated pooling does to an image.
#
# Run it: `python lessons/03_pooling.py [--quick] [--out FOLDER]` (the first run
# compiles minicnn's numba kernels: 10–20 s, once).
# Practise it: exercise 05 (max-pool backward), `minicnn grade 05`.
#
# The kernels, from plainest to fastest (the cell below prints where each
# function starts, looked up in the installed files):
# - `kernels/reference.py`: the formulas in numpy, the truth the others are tested against;
# - `kernels/cpu/ladder/pool_v1_loops.py`: the formula as straight numba loops;
# - `kernels/cpu/pool.py`: the engine's CPU path (with a special case for 2 × 2);
# - `kernels/cuda/pool.cu`: the CUDA kernels, one thread per output (lesson 10).
#
#     max: y[n,c,i,j] = max  over (p,q) of x[n, c, i·s + p − pad, j·s + q − pad]
#     avg: y[n,c,i,j] = mean over (p,q) of the same window (padding counts as 0)
#     Ho = (H + 2·pad − k) // s + 1

# %%
import numpy as np

import minicnn
from minicnn import functional as F
from minicnn.kernels import reference

from minicnn.lesson import setup, save, medical_image, plt, show_kernels

args, OUT = setup("03_pooling", "Lesson 03: max and average pooling, forward and backward",
                  compiles=True)
show_kernels(("reference.py", "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward"),
             ("cpu/ladder/pool_v1_loops.py", "forward", "backward"),
             ("cpu/pool.py", "max_pool_fwd", "max_pool_bwd", "avg_pool_fwd"),
             ("cuda/pool.cu", "max_pool2d_forward", "max_pool2d_backward"))

# %% [markdown]
# ## Max pooling, and the argmax
#
# A 4 × 4 input, 2 × 2 windows, stride 2: four windows, four outputs. The engine's
# kernel also returns, for each output, the flat index `h·W + w` of the winning input
# (the numpy reference kernel is called directly here to see it).

# %%
x = np.array([[1, 3, 2, 0],
              [5, 3, 1, 1],
              [0, 2, 7, 7],
              [4, 4, 7, 6]], dtype=np.float32)
y, idx = reference.max_pool2d_forward(x[None, None], (2, 2), (2, 2), (0, 0))
print("x =\n", x.astype(int))
print("max pool 2x2 =\n", y[0, 0].astype(int))
print("argmax (flat index h*4 + w) =\n", idx[0, 0])
for i in range(2):
    for j in range(2):
        h, w = divmod(int(idx[0, 0, i, j]), 4)
        print(f"  output ({i},{j}) = {y[0, 0, i, j]:g} came from x[{h},{w}]")
print("The bottom-right window holds 7, 7, 7, 6: three ties. The first in row-major order,"
      " x[2,2], wins.")

# %% [markdown]
# ## The gradient goes to the winner
#
# Each output depends on one input only (the max), with derivative 1. So the gradient
# of an output flows back to its argmax, and the other inputs of the window get 0.
# Ask autograd: set every output's gradient to 1 by summing the outputs.

# %%
xt = minicnn.tensor(x[None, None], requires_grad=True)
F.max_pool2d(xt, 2).sum().backward()
print("dL/dx for L = sum(maxpool(x)) =\n", xt.grad.numpy()[0, 0].astype(int))

x_overlap = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5) % 7
xt = minicnn.tensor(x_overlap, requires_grad=True)
F.max_pool2d(xt, 3, stride=2).sum().backward()
print("\n3x3 windows with stride 2 overlap; x =\n", x_overlap[0, 0].astype(int))
print("dL/dx: an input that wins several windows collects several gradients =\n",
      xt.grad.numpy()[0, 0].astype(int))

# %% [markdown]
# ## Average pooling, and padding
#
# Average pooling shares the gradient equally: each input of a k × k window gets
# 1/k² of it. With padding, the zeros of the border count in the divisor (PyTorch's
# default, `count_include_pad=True`), so a corner window's mean is pulled down.

# %%
ones = minicnn.ones(1, 1, 4, 4, requires_grad=True)
avg = F.avg_pool2d(ones, 3, stride=1, padding=1)
print("avg pool 3x3, padding 1, of an all-ones image =\n", np.round(avg.numpy()[0, 0], 3))
print("corner: 4 real ones and 5 padding zeros -> 4/9 =", round(4 / 9, 3))
avg.sum().backward()
print("dL/dx =\n", np.round(ones.grad.numpy()[0, 0], 3))

# %% [markdown]
# ## Pooling an image, again and again
#
# Each 2 × 2 pooling halves height and width. Max pooling keeps bright details (and
# edges) alive; average pooling blurs. A CNN alternates convolution and pooling, so
# later layers see a wider part of the image with fewer numbers.

# %%
image, what = medical_image()
print(f"image: {what}")
levels = 2 if args.quick else 4
fig, axes = plt.subplots(2, levels + 1, figsize=(2.6 * (levels + 1), 5.4))
for row, (name, pool) in enumerate([("max", F.max_pool2d), ("avg", F.avg_pool2d)]):
    t = minicnn.tensor(image[None, None])
    for level in range(levels + 1):
        ax = axes[row, level]
        ax.imshow(t.numpy()[0, 0], cmap="gray")
        ax.set_title(f"{name} pool x{level}: {t.shape[2]}x{t.shape[3]}", fontsize=9)
        ax.axis("off")
        t = pool(t, 2)
fig.suptitle(what, fontsize=9, color="darkred" if "SYNTHETIC" in what else "black")
save(fig, OUT, "pooling_levels.png")
