# %% [markdown]
# # Lesson 12 — Making it fast
#
# **What this lesson teaches**
# - why the same sum can run a hundred times faster or slower: loop order and cache
#   lines, BLAS, the cores, and copying numbers versus doing arithmetic;
# - the kernel ladder: minicnn's CPU convolution, max-pool and linear layer as
#   numbered versions (`minicnn/kernels/cpu/ladder/`), from the formula as loops
#   (v1) up to what the engine runs, each a small step with its reason;
# - how to judge a kernel against what the machine can do: its measured peak
#   (FLOP/s) and memory bandwidth (bytes/s), on a roofline.
#
# Run it: `python lessons/12_making_it_fast.py [--quick] [--out FOLDER]`. The first
# run takes 10–20 s longer while numba compiles every rung (then they are cached on
# disk). Every number this lesson prints is measured in the run, on your machine:
# they will differ from a classmate's, and some steps may not pay at all at the
# small sizes of `--quick`. The same timings, at full size, come from
# `minicnn bench --ladder conv2d` (also `max_pool2d`, `linear`).
#
# Read first: lesson 01 and `kernels/cpu/ladder/conv_v1_loops.py`, the numba kernel
# that writes the convolution as its formula.

# %%
import inspect

import numba
import numpy as np
from numba import njit

from minicnn.cli.bench import ladder as bench_ladder
from minicnn.kernels.cpu import conv as engine_conv
from minicnn.kernels.cpu import ladder
from minicnn.kernels.cpu.im2col import im2col
from minicnn.lesson import best_time, plt, save, setup

args, OUT = setup("12_making_it_fast", "Lesson 12: making it fast, the CPU kernel ladder",
                 compiles=True)
SIZE, BATCH = (16, 4) if args.quick else (64, 32)
REPS = 2 if args.quick else 3            # timed repetitions of each pass
print(f"ChestXrayCNN's layers at {SIZE}x{SIZE}, batch {BATCH}; numba runs "
      f"{numba.get_num_threads()} threads on this machine")

# %% [markdown]
# ## The ladder
#
# Each op has numbered versions. Each is a complete implementation, tested against
# `kernels/reference.py` and PyTorch on the same shapes (tests/test_ladder.py), and
# each says in one line why it should beat the one below:

# %%
for op in ladder.OPS:
    print(op)
    for rung in ladder.rungs(op):
        print(f"  {rung.name} {rung.title:26s} {rung.file}\n       {rung.reason}")

# %% [markdown]
# The cpu device runs the top rung. To run another one, for study, inside a block
# of your own code: `with minicnn.kernels.cpu.ladder.use("conv2d", "v1"): ...`
# (or set `MINICNN_CONV2D_RUNG=v1` before starting Python).
#
# ## What this machine can do
#
# Two numbers bound every kernel. The **peak**: how many floating-point operations
# per second the cores can do at best; we take the best rate of a large float32
# matrix product by numpy's BLAS, which gets close to it. The **bandwidth**: how
# many bytes per second main memory delivers; we take the best copy of an array too
# big for the caches (read once, written once).

# %%
base = bench_ladder.QUICK if args.quick else bench_ladder.DEFAULTS
peak, bandwidth = machine = bench_ladder.measure_machine(args.quick)
print(f"float32 matmul {base['peak_n']}x{base['peak_n']}: {peak / 1e9:.1f} GFLOP/s "
      "(the peak every table below compares with)")
print(f"copy of {base['copy_mb']} MB: {bandwidth / 1e9:.1f} GB/s (the bandwidth)")
print(f"so a kernel needs at least {peak / bandwidth:.1f} FLOPs per byte it moves "
      f"from memory before arithmetic, not memory, is what limits it")

# %% [markdown]
# ## Loop order and cache lines
#
# Memory is read in **cache lines** of 64 bytes (16 float32s). An array in numpy's
# default (C) order stores each row contiguously, so a loop that walks along a row
# uses all 16 numbers of every line it loads; a loop that walks down a column uses
# one and jumps a whole row ahead. Same sum, same number of additions:

# %%
@njit(cache=True)
def sum_along_rows(a):
    total = 0.0
    for r in range(a.shape[0]):
        for c in range(a.shape[1]):
            total += a[r, c]
    return total


@njit(cache=True)
def sum_down_columns(a):
    total = 0.0
    for c in range(a.shape[1]):
        for r in range(a.shape[0]):
            total += a[r, c]
    return total


side = 2048 if args.quick else 4096
grid = np.random.default_rng(0).standard_normal((side, side), dtype=np.float32)
sum_along_rows(grid), sum_down_columns(grid)            # compile (or load from the cache)
t_rows, t_cols = best_time(sum_along_rows, grid), best_time(sum_down_columns, grid)
print(f"{side}x{side} float32 ({grid.nbytes / 2**20:.0f} MB): along rows {t_rows * 1e3:.1f} ms, "
      f"down columns {t_cols * 1e3:.1f} ms: {t_cols / t_rows:.1f}x "
      f"{'slower' if t_cols > t_rows else 'faster'} for the same additions")

# %% [markdown]
# v1 of the convolution keeps its innermost loop on the kernel's columns q, which
# read neighbouring pixels of one image row: cache-friendly. Its trouble is
# elsewhere: one multiply-add at a time, and every weight and pixel fetched again
# for every output it feeds. Here is all of it (forward):

# %%
print(inspect.getsource(ladder.conv_v1_loops.forward))

# %% [markdown]
# ## Up the convolution ladder
#
# Every rung runs on each of ChestXrayCNN's three convolution layers, is checked
# against the reference (float64), and only then timed, forward and backward.
# "x prev" is the speed-up over the rung below; "%peak" the share of the peak
# measured above.

# %%
conv = bench_ladder.measure("conv2d", SIZE, BATCH, quick=args.quick, reps=REPS, machine=machine)
print(bench_ladder.table(conv))
assert all(r["ok"] for layer in conv["layers"] for r in layer["rungs"]), "a rung failed its check"

# %% [markdown]
# **v1 → v2, BLAS.** im2col copies, for each output pixel, the C·KH·KW input numbers
# it sees into a column of a matrix; then the whole layer is *one* matrix product.
# BLAS (numpy's OpenBLAS) multiplies matrices in blocks sized to the caches, so each
# number fetched is used many times while it is close; it keeps a block of the
# output in vector registers and does 8 or 16 multiply-adds per instruction; and it
# runs on every core. None of that is in v1's loops.
#
# **Copies versus arithmetic.** im2col is pure copying: C·KH·KW numbers written per
# output pixel, for C·KH·KW multiply-adds per pixel per filter. How does the copy
# compare with the product on this machine? Timed apart on the largest layer:

# %%
big = max(bench_ladder.layers("conv2d", SIZE, BATCH), key=lambda L: L.flops["fwd"])
x, w = big.inputs["x"], big.inputs["w"]
N, C, H, W = x.shape
F, _, KH, KW = w.shape
col = np.empty((C * KH * KW, N * H * W), np.float32)
t_copy = best_time(im2col, x, 0, KH, KW, 1, 1, 1, 1, H, W, col)
w2 = w.reshape(F, -1)
product = np.empty((F, col.shape[1]), np.float32)
t_product = best_time(lambda: np.matmul(w2, col, out=product))
print(f"{big.name} ({big.shape}): im2col writes {col.size:,} numbers "
      f"({col.nbytes / 2**20:.2f} MB) in {t_copy * 1e3:.3f} ms = "
      f"{col.nbytes / t_copy / 1e9:.1f} GB/s;\n"
      f"the product does {big.flops['fwd'] / 1e6:,.1f} MFLOP in {t_product * 1e3:.3f} ms = "
      f"{big.flops['fwd'] / t_product / 1e9:.1f} GFLOP/s")
print(f"here the copy costs {t_copy / t_product:.2f}x the arithmetic: "
      + ("worth removing" if t_copy > 0.2 * t_product else "a small share"))

# %% [markdown]
# That ratio is what the next rungs go after.
#
# **v2 → v3, chunks in cache, shared over the cores.** A whole batch's col is
# about C·KH·KW times the input: im2col writes it to main memory and BLAS reads it
# back from there. And while numpy's BLAS spreads the product over the cores, the
# copies around it run on one core while the others wait. v3 cuts the batch into
# chunks of a few images (about 1 MiB of col, still in the core's cache when BLAS
# reads it) and gives each core whole chunks, copies included, with a one-thread
# BLAS called from inside numba: no core waits for another. The two changes pay
# only together: chunks alone, each small product through numpy's multi-threaded
# matmul, wake all of BLAS's threads for every chunk, as the next cell measures.
# With few images, or one core, there is little to share.

# %%
middle = bench_ladder.layers("conv2d", SIZE, BATCH)[1]
a = middle.inputs
alone = best_time(engine_conv.conv2d_forward, a["x"], a["w"], a["b"], a["stride"], a["padding"],
                  False, "in_turn")
shared = best_time(engine_conv.conv2d_forward, a["x"], a["w"], a["b"], a["stride"], a["padding"],
                   False, "shares")
whole = best_time(ladder.find("conv2d", "v2").forward, a["x"], a["w"], a["b"], a["stride"],
                  a["padding"])
print(f"{middle.name} forward: whole batch (v2) {whole * 1e3:.2f} ms, chunks through numpy's "
      f"matmul {alone * 1e3:.2f} ms, chunks shared over the cores (v3) {shared * 1e3:.2f} ms")

# %% [markdown]
# **v3 → v4, wide rows.** With stride 1, computing each output row Wp wide (a few
# thrown-away outputs per row) makes each row of col one contiguous run of the
# padded image: im2col becomes a few memory copies instead of a gather.
#
# **v4 → v5, tap by tap.** Better than a cheap copy is no copy: the input a kernel
# tap (p, q) sees is already a matrix inside the padded image, so one BLAS product
# per tap reads it in place. No im2col, and backward no col2im.
#
# **v5 → v6, the engine.** The first layer has one input channel: a product of 9
# terms per output gives BLAS too little to work with, so the engine runs a
# written-out 3×3 stencil there (`conv_direct.py`; it measured faster when it was
# written — the conv1 rows say whether it is here). The engine picks a path per
# shape, and tells you which:

# %%
for layer in bench_ladder.layers("conv2d", SIZE, BATCH):
    a = layer.inputs
    print(f"{layer.name} {layer.shape:28s} -> "
          f"{engine_conv.plan_name(a['x'].shape, a['w'].shape, a['stride'], a['padding'])}")

print("\nover all three layers, forward + backward, on this machine:")
rows = conv["total"]["rungs"]
for below, rung in zip(rows, rows[1:]):
    t0, t1 = below["fwd_s"] + below["bwd_s"], rung["fwd_s"] + rung["bwd_s"]
    verdict = "faster" if t1 < t0 else \
        "slower here (at these sizes, on this machine, or while it was busy)"
    print(f"  {below['name']} -> {rung['name']} ({rung['title']}): {t0 * 1e3:8.2f} -> "
          f"{t1 * 1e3:8.2f} ms, {t0 / t1:5.2f}x {verdict}")
conv1 = {r["name"]: r for r in conv["layers"][0]["rungs"]}
print(f"conv1 (one input channel), forward: tap by tap (v5) {conv1['v5']['fwd_s'] * 1e3:.3f} ms, "
      f"the engine's stencil (v6) {conv1['v6']['fwd_s'] * 1e3:.3f} ms")
first, last = rows[0], rows[-1]
both = lambda r: r["fwd_s"] + r["bwd_s"]  # noqa: E731
print(f"v1 to the engine: {both(first) / both(last):.0f}x faster, forward + backward")

# %% [markdown]
# ## Pooling and the linear layer
#
# Max-pooling does one comparison per number it reads: no amount of arithmetic
# cleverness helps, its limit is memory, so its table shows GB/s against the
# measured bandwidth. The linear layer is a plain matrix product: BLAS or not is
# the whole story.

# %%
pool = bench_ladder.measure("max_pool2d", SIZE, BATCH, quick=args.quick, reps=REPS,
                            machine=machine)
print(bench_ladder.table(pool))
linear = bench_ladder.measure("linear", SIZE, BATCH, quick=args.quick, reps=REPS, machine=machine)
print(bench_ladder.table(linear))

# %% [markdown]
# ## The figure: bars per rung, and a roofline
#
# Left: each conv rung's time (forward + backward, all layers). Right: the
# **roofline**. A kernel that does I FLOPs per byte it must move (its arithmetic
# intensity) can run at most min(peak, I × bandwidth): the slanted roof is memory,
# the flat one arithmetic. Each point is a rung at the rate it reached (forward
# pass, all layers; for pooling a comparison counts as one operation); the
# distance below the roof is what is left to gain.

# %%
fig, (bars, roof) = plt.subplots(1, 2, figsize=(13, 4.6))
labels = [f"{r['name']} {r['title']}" for r in rows]
totals_ms = [(r["fwd_s"] + r["bwd_s"]) * 1e3 for r in rows]
bars.barh(labels[::-1], totals_ms[::-1], color="#48c")
for k, t in enumerate(totals_ms[::-1]):
    bars.text(t, k, f" {t:.2f} ms", va="center", fontsize=8)
bars.set_xscale("log")
bars.set_xlabel("ms, forward + backward, 3 conv layers (log scale)")
bars.set_title(f"conv2d ladder, ChestXrayCNN {SIZE}x{SIZE}, batch {BATCH}")

intensity = np.logspace(-2, 3, 200)
roof.loglog(intensity, np.minimum(peak, intensity * bandwidth) / 1e9, "k-", lw=1.5)
roof.text(intensity[-1], peak / 1e9, f"peak {peak / 1e9:.0f} GFLOP/s ", ha="right", va="bottom")
roof.text(1e-2, 1e-2 * bandwidth / 1e9, f" {bandwidth / 1e9:.0f} GB/s", va="bottom", rotation=0)
for result, marker in ((conv, "o"), (linear, "s"), (pool, "^")):
    total = result["total"]
    ai = total["flops"]["fwd"] / total["nbytes"]["fwd"]
    for k, r in enumerate(total["rungs"]):
        roof.loglog(ai, total["flops"]["fwd"] / r["fwd_s"] / 1e9, marker,
                    color=plt.cm.viridis(k / max(1, len(total["rungs"]) - 1)),
                    label=f"{result['op']} {r['name']}")
roof.set_xlabel("arithmetic intensity (FLOP per byte moved)")
roof.set_ylabel("GFLOP/s (forward)")
roof.set_title("roofline of this machine, measured in this run")
roof.legend(fontsize=7, ncol=2, loc="lower right")
save(fig, OUT, "ladder.png")

# %% [markdown]
# Where an op sits tells what limits it: left of the corner (the "ridge", at
# peak / bandwidth FLOPs per byte) only memory does; right of it, arithmetic.

# %%
ridge = peak / bandwidth
for result in (conv, linear, pool):
    total = result["total"]
    ai = total["flops"]["fwd"] / total["nbytes"]["fwd"]
    best = max(total["flops"]["fwd"] / r["fwd_s"] for r in total["rungs"])
    roof_here = min(peak, ai * bandwidth)
    print(f"{result['op']:10s} {ai:7.2f} FLOP/byte: "
          f"{'memory' if ai < ridge else 'arithmetic'}-bound here (ridge {ridge:.1f}); "
          f"its best rung reached {best / roof_here * 100:.0f}% of the roof above it")

# %% [markdown]
#
# **Try it**: run `minicnn bench --ladder conv2d` for the full-size table; run a
# training step with `ladder.use("conv2d", "v1")` and time it; change the chunk size
# (`minicnn.kernels.cpu.conv._CHUNK_BYTES`) and watch v3 and v4 move.
