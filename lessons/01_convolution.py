# %% [markdown]
# # Lesson 01 — Convolution
#
# **What this lesson teaches**
# - the formula a convolutional layer computes, with stride and padding written in;
# - a small worked example, element by element;
# - the same convolution three ways — Python loops, numpy (`minicnn.kernels.reference`),
#   and the numba kernel (`minicnn.kernels.cpu.conv`) — and how long each takes;
# - edge filters (Sobel) applied to a real medical image.
#
# Run it: `python lessons/01_convolution.py [--quick] [--out FOLDER]`.
# Practise it: exercises 01 (conv by loops) and 02 (im2col), `minicnn grade 01`.
#
# ## The formula
#
# A convolutional layer slides a small kernel W (KH × KW) over the image X and, at
# every position, multiplies the overlapping numbers and adds them up:
#
#     S(i, j) = Σ_m Σ_n  X(i + m, j + n) · W(m, n)
#
# (Deep-learning "convolution" does not flip the kernel: strictly it is
# cross-correlation, and PyTorch and minicnn compute exactly this.)
#
# Two knobs change where the kernel lands:
# - **stride** s: the kernel jumps s pixels between outputs, so `X(i·s + m, j·s + n)`;
# - **padding** p: a border of p zeros around X, so the kernel can centre on edge pixels:
#   `X(i·s + m − p, j·s + n − p)`, read as 0 outside the image.
#
# The output has size `Ho = (H + 2p − KH) // s + 1` (and `Wo` likewise). With C input
# channels and F filters, every filter sums over all channels and adds a bias:
#
#     y[n, f, i, j] = b[f] + Σ_c Σ_m Σ_n  x[n, c, i·s + m − p, j·s + n − p] · w[f, c, m, n]

# %%
import numpy as np

import minicnn
from minicnn import functional as F
from minicnn.kernels import reference
from minicnn.kernels.cpu import conv as numba_conv

from minicnn.lesson import setup, save, best_time, medical_image, plt

args, OUT = setup("01_convolution", "Lesson 01: convolution, by hand, numpy and numba")

# %% [markdown]
# ## A worked example
#
# A 5 × 5 image with a vertical edge, and a 3 × 3 kernel that responds to
# left-to-right changes in brightness.

# %%
X = np.array([[0, 0, 0, 9, 9],
              [0, 0, 0, 9, 9],
              [0, 0, 0, 9, 9],
              [0, 0, 0, 9, 9],
              [0, 0, 0, 9, 9]], dtype=np.float32)
Wk = np.array([[-1, 0, 1],
               [-1, 0, 1],
               [-1, 0, 1]], dtype=np.float32)

print("X =\n", X.astype(int))
print("W =\n", Wk.astype(int))
i, j = 0, 1
terms = [f"{X[i + m, j + n]:g}*{Wk[m, n]:g}" for m in range(3) for n in range(3)]
value = sum(X[i + m, j + n] * Wk[m, n] for m in range(3) for n in range(3))
print(f"\nS({i},{j}) = " + " + ".join(terms) + f" = {value:g}")


def as_nchw(a):
    """(H, W) -> (1, 1, H, W): a batch of one image with one channel."""
    return minicnn.tensor(a[None, None])


for stride, padding in [(1, 0), (1, 1), (2, 1)]:
    S = F.conv2d(as_nchw(X), as_nchw(Wk), stride=stride, padding=padding).numpy()[0, 0]
    Ho = (5 + 2 * padding - 3) // stride + 1
    print(f"\nstride {stride}, padding {padding}: output {S.shape} "
          f"(formula: (5 + 2*{padding} - 3)//{stride} + 1 = {Ho})\n{S.astype(int)}")

# %% [markdown]
# The edge shows up as the large values in the middle columns; flat regions give 0.
# With padding 1 the output keeps the input's size; with stride 2 it halves.
#
# ## Three implementations of the same sum
#
# First, straight from the formula: seven nested loops (n, f, i, j, c, m, n) — four
# here, with numpy doing the inner window sum.

# %%
def conv2d_loops(x, w, stride=1, padding=0):
    """x (N,C,H,W), w (F,C,KH,KW) -> y (N,F,Ho,Wo), one output element at a time."""
    N, C, H, W = x.shape
    Fn, _, KH, KW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    Ho = (H + 2 * padding - KH) // stride + 1
    Wo = (W + 2 * padding - KW) // stride + 1
    y = np.zeros((N, Fn, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for f in range(Fn):
            for i in range(Ho):
                for j in range(Wo):
                    window = xp[n, :, i * stride: i * stride + KH, j * stride: j * stride + KW]
                    y[n, f, i, j] = np.sum(window * w[f])
    return y


rng = np.random.default_rng(0)
shape_x, shape_w = ((2, 3, 24, 24), (8, 3, 3, 3)) if args.quick else ((4, 3, 64, 64), (16, 3, 3, 3))
x = rng.standard_normal(shape_x).astype(np.float32)
w = rng.standard_normal(shape_w).astype(np.float32)
stride, padding = (1, 1), (1, 1)

y_loops = conv2d_loops(x, w, 1, 1)
y_numpy = reference.conv2d_forward(x, w, None, stride, padding)
y_numba = numba_conv.conv2d_forward(x, w, None, stride, padding)
for name, y in [("numpy (reference)", y_numpy), ("numba", y_numba)]:
    print(f"{name:18s} largest difference from the loops: {np.abs(y - y_loops).max():.2e}")

# %% [markdown]
# The three agree to float32 rounding (about 1e-6). Now the clock. numba compiles a
# kernel the first time it is called (and caches it on disk), so we time it after a
# first call.

# %%
times = {
    "Python loops": best_time(conv2d_loops, x, w, 1, 1, repeat=1),
    "numpy (reference)": best_time(reference.conv2d_forward, x, w, None, stride, padding),
    "numba (im2col + BLAS)": best_time(numba_conv.conv2d_forward, x, w, None, stride, padding),
}
macs = np.prod(y_numpy.shape) * np.prod(shape_w[1:])
print(f"x {shape_x}, w {shape_w}: {macs / 1e6:.1f} million multiply-adds")
for name, t in times.items():
    print(f"{name:22s} {t * 1e3:9.2f} ms   {times['Python loops'] / t:7.1f}x the loops")

fig, ax = plt.subplots(figsize=(6, 3))
ax.barh(list(times), [t * 1e3 for t in times.values()], color=["#c44", "#48c", "#4a4"])
ax.set_xscale("log")
ax.set_xlabel("milliseconds (log scale)")
ax.set_title(f"conv2d forward, x {shape_x}, w {shape_w}")
save(fig, OUT, "conv_timings.png")

# %% [markdown]
# The loops lose by two to three orders of magnitude everywhere: Python pays for
# every single multiply-add. Between numpy and numba the ranking depends on the
# sizes and the machine: the reference kernel hands whole arrays to numpy for each
# kernel tap; the numba kernel deals the images out, one share per core, and each
# core builds the im2col matrix of its images and multiplies it by the weights on
# its own (conv.py says why; with more input channels than here it skips im2col
# altogether, conv_taps.py). With only a few small images there is little to
# share. Measure before believing either (`minicnn bench` does it properly, op by op).
#
# ## Edge filters on a medical image
#
# The Sobel kernels are the worked example's kernel with the middle row counted
# twice: Gx responds to left–right changes, Gy (its transpose) to up–down ones.
# Together, `sqrt(Gx² + Gy²)` outlines every edge — bones, organ borders. A trained
# network's first layer often learns filters much like these.

# %%
image, what = medical_image()
print(f"image: {what}")
sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32)
kernels = np.stack([sobel_x, sobel_x.T])[:, None]        # (2, 1, 3, 3): two filters, one channel
edges = F.conv2d(minicnn.tensor(image[None, None]), minicnn.tensor(kernels), padding=1).numpy()[0]
magnitude = np.sqrt(edges[0] ** 2 + edges[1] ** 2)
print(f"Gx in [{edges[0].min():.2f}, {edges[0].max():.2f}], "
      f"edge magnitude up to {magnitude.max():.2f}")

fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
for ax, pic, title, cmap in zip(axes, [image, edges[0], edges[1], magnitude],
                                ["input", "Sobel Gx (left-right)", "Sobel Gy (up-down)",
                                 "edge magnitude"], ["gray", "RdBu_r", "RdBu_r", "magma"]):
    ax.imshow(pic, cmap=cmap)
    ax.set_title(title)
    ax.axis("off")
fig.suptitle(what, fontsize=9)
save(fig, OUT, "sobel_edges.png")

# %% [markdown]
# The bright frame around the edge maps is the zero padding at work: the CT is not
# black at its border, so the step from image to padding zeros looks like an edge.
#
# **Try it**: change the padding to 0 and watch the output shrink by two pixels; use
# stride 2 and see the edges at half the resolution.
