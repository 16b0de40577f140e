# %% [markdown]
# # Lesson 01 — Convolution
#
# **What this lesson teaches**
# - the formula a convolutional layer computes, with stride and padding written in;
# - a small worked example, element by element;
# - the same convolution four ways — Python loops, numpy (`minicnn.kernels.reference`),
#   the numba kernel (`minicnn/kernels/cpu/ladder/conv_v1_loops.py`), and the engine's
#   fast path — and how long each takes;
# - im2col: the convolution as one matrix product (exercise 02 asks you to write it);
# - edge filters (Sobel) applied to a real medical image.
#
# Run it: `python lessons/01_convolution.py [--quick] [--out FOLDER]`. The first run
# takes 10–20 s longer while numba compiles its kernels (they are cached on disk, so
# later runs start quickly).
# Practise it: exercises 01 (conv by loops) and 02 (im2col), `minicnn grade 01`.
#
# ## The formula
#
# A convolutional layer slides a small kernel W (KH × KW) over the image X and, at
# every position, multiplies the overlapping numbers and adds them up. With (p, q)
# the kernel's row and column (its "taps"):
#
#     S(i, j) = Σ_p Σ_q  X(i + p, j + q) · W(p, q)
#
# (Deep-learning "convolution" does not flip the kernel: strictly it is
# cross-correlation, and PyTorch and minicnn compute exactly this.)
#
# Two knobs change where the kernel lands:
# - **stride** s: the kernel jumps s pixels between outputs, so `X(i·s + p, j·s + q)`;
# - **padding** pad: a border of pad zeros around X, so the kernel can centre on edge
#   pixels: `X(i·s + p − pad, j·s + q − pad)`, read as 0 outside the image.
#
# The output has size `Ho = (H + 2·pad − KH) // s + 1` (and `Wo` likewise). With C input
# channels and F filters, every filter sums over all channels and adds a bias; n
# numbers the images of a batch:
#
#     y[n, f, i, j] = b[f] + Σ_c Σ_p Σ_q  x[n, c, i·s + p − pad, j·s + q − pad] · w[f, c, p, q]
#
# These are the index letters of every kernel file in minicnn: (n, f, i, j) for an
# output element, (p, q) for the taps.

# %%
import numpy as np

import minicnn
from minicnn import functional as F
from minicnn.kernels import reference
from minicnn.kernels.cpu import conv as engine_conv
from minicnn.kernels.cpu import ladder

from minicnn.lesson import setup, save, best_time, medical_image, plt

args, OUT = setup("01_convolution", "Lesson 01: convolution, by hand, numpy and numba",
                 compiles=True)

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
terms = [f"{X[i + p, j + q]:g}*{Wk[p, q]:g}" for p in range(3) for q in range(3)]
value = sum(X[i + p, j + q] * Wk[p, q] for p in range(3) for q in range(3))
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
# ## Four implementations of the same sum
#
# First, straight from the formula: seven nested loops (n, f, i, j, c, p, q) — four
# here, with numpy doing the inner window sum over (c, p, q).

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
b = np.zeros(shape_w[0], np.float32)
stride, padding = (1, 1), (1, 1)

# the numba kernel: the formula as loops (rung v1 of the kernel ladder)
numba_kernel = ladder.find("conv2d", "v1").forward
# the engine's fast path: which one depends on the shapes (and on this machine's cores)
fast_path = engine_conv.plan_name(shape_x, shape_w, stride, padding)

y_loops = conv2d_loops(x, w, 1, 1)
y_numpy = reference.conv2d_forward(x, w, None, stride, padding)
y_numba = numba_kernel(x, w, b, stride, padding)           # compiles on the first call
y_engine = engine_conv.conv2d_forward(x, w, None, stride, padding)
for name, y in [("numpy (reference)", y_numpy), ("numba kernel (v1)", y_numba),
                ("engine", y_engine)]:
    print(f"{name:18s} largest difference from the loops: {np.abs(y - y_loops).max():.2e}")
print(f"for these shapes the engine runs: {fast_path}")

# %% [markdown]
# All four agree to float32 rounding (about 1e-6). Open
# `minicnn/kernels/cpu/ladder/conv_v1_loops.py`: the numba kernel is the formula
# above as loops, one output element y[n, f, i, j] at a time, the images of the
# batch shared among the cores (`prange` over n). Its backward pass sits right
# under it. Now the clock. numba compiles a kernel the first time it is called (and
# caches it on disk), so we time it after that first call.

# %%
times = {
    "Python loops": best_time(conv2d_loops, x, w, 1, 1, repeat=1),
    "numpy (reference)": best_time(reference.conv2d_forward, x, w, None, stride, padding),
    "numba kernel (v1 loops)": best_time(numba_kernel, x, w, b, stride, padding),
    f"engine: {fast_path}": best_time(engine_conv.conv2d_forward, x, w, None, stride, padding),
}
macs = np.prod(y_numpy.shape) * np.prod(shape_w[1:])
print(f"x {shape_x}, w {shape_w}: {macs / 1e6:.1f} million multiply-adds")
for name, t in times.items():
    print(f"{name:48s} {t * 1e3:9.3f} ms   {times['Python loops'] / t:8.1f}x the loops")

fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(list(times), [t * 1e3 for t in times.values()], color=["#c44", "#48c", "#4a4", "#a6c"])
ax.set_xscale("log")
ax.set_xlabel("milliseconds (log scale)")
ax.set_title(f"conv2d forward, x {shape_x}, w {shape_w}")
save(fig, OUT, "conv_timings.png")

# %% [markdown]
# Python pays for every single multiply-add, so the loops are far behind. The
# numba kernel runs the same loops compiled to machine code. The reference hands
# whole arrays to numpy, one kernel tap at a time. The engine's path (named in the
# last bar, asked from `plan_name`) is the top of a ladder of small steps that
# lesson 12 climbs one at a time, with timings: BLAS, cache-sized chunks, one share
# of the batch per core, fewer copies. Which of them wins depends on the sizes and
# the machine; measure before believing any (`minicnn bench --ladder conv2d`).
#
# ## im2col: the convolution as one matrix product
#
# The engine's fastest tools multiply matrices (BLAS). To use them, copy every
# input pixel each output pixel sees into one matrix, **col**: one row per kernel
# tap (c, p, q), one column per output pixel (i, j):
#
#     col[r, i·Wo + j] = x[c, i·s + p − pad, j·s + q − pad]     (0 in the padding)
#     r = (c·KH + p)·KW + q
#
# Then every filter is a row of `w.reshape(F, C·KH·KW)`, and the whole convolution
# of an image is one product, `y = w.reshape(F, -1) @ col`, reshaped to (F, Ho, Wo).
# A tiny example: one 3 × 3 image, a 2 × 2 kernel, stride 1, no padding, so
# Ho = Wo = 2 and col has 4 rows (taps) and 4 columns (outputs):

# %%
tiny = np.arange(1, 10, dtype=np.float32).reshape(3, 3)
k2 = np.array([[1, 2], [3, 4]], dtype=np.float32)
col = np.empty((4, 4), np.float32)
for p in range(2):
    for q in range(2):
        for i in range(2):
            for j in range(2):
                col[p * 2 + q, i * 2 + j] = tiny[i + p, j + q]
print("image =\n", tiny.astype(int))
print("col (row r = tap (p, q), column = output (i, j)) =\n", col.astype(int))
by_product = (k2.reshape(1, 4) @ col).reshape(2, 2)
by_formula = F.conv2d(as_nchw(tiny), as_nchw(k2)).numpy()[0, 0]
print("w.reshape(1, 4) @ col, reshaped =\n", by_product.astype(int))
print("the convolution (minicnn) =\n", by_formula.astype(int))

# %% [markdown]
# Column (i, j) of col is the 2 × 2 patch under output (i, j), read row by row, and
# the product of the kernel row with it is that output. Each pixel appears in col
# once for every window that covers it: col is about KH·KW times bigger than the image,
# the price of turning the sum into a matrix product. Exercise 02 asks you to write
# im2col for a batch, with channels, stride and padding (`minicnn grade 02`).
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

fig, axes = plt.subplots(1, 4, figsize=(14, 3.6))
for ax, pic, title, cmap in zip(axes, [image, edges[0], edges[1], magnitude],
                                ["input", "Sobel Gx (left-right)", "Sobel Gy (up-down)",
                                 "edge magnitude"], ["gray", "RdBu_r", "RdBu_r", "magma"]):
    # a signed map is drawn centred on 0 (white), so the sign of a response reads as its colour
    top = float(np.abs(pic).max()) or 1.0
    shown = ax.imshow(pic, cmap=cmap, **({"vmin": -top, "vmax": top} if cmap == "RdBu_r" else {}))
    ax.set_title(title)
    ax.axis("off")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
fig.suptitle(what, fontsize=9)
save(fig, OUT, "sobel_edges.png")

# %% [markdown]
# The bright frame around the edge maps is the zero padding at work: the CT is not
# black at its border, so the step from image to padding zeros looks like an edge.
#
# **Try it**: change the padding to 0 and watch the output shrink by two pixels; use
# stride 2 and see the edges at half the resolution.
