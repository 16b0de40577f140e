# %% [markdown]
# # Lesson 10 — CUDA kernels
#
# **What this lesson teaches**
# - how a GPU splits work: a grid of blocks of threads, and the index map that tells
#   each thread which output element it computes;
# - shared-memory tiling, the trick behind fast matrix products (and so behind fast
#   convolutions, which minicnn turns into matrix products with im2col);
# - why `__syncthreads()` matters, shown by leaving it out;
# - how to read one of minicnn's own kernels (`kernels/cuda/pool.cu`) and run it —
#   on the CPU emulator (device "cuda-sim", no GPU needed) and on a real GPU where
#   there is one (device "cuda").
#
# Run it: `python lessons/10_cuda_kernels.py [--quick] [--out FOLDER]`.
# Practise it: exercise 08 (index maps), `minicnn grade 08`.
#
# ## Threads, blocks, grids
#
# A kernel is one function that thousands of threads run at once. Threads come in
# blocks (up to 1024 threads, which can share fast on-chip memory and wait for each
# other); blocks form a grid. Inside the kernel each thread reads built-in variables
# — `blockIdx`, `blockDim`, `threadIdx`, `gridDim` — and works out its element:
#
#     t = blockIdx.x * blockDim.x + threadIdx.x       // my global thread number
#     if (t >= total) return;                          // the last block may overhang
#     (n, c, i, j) = unravel(t, N, C, Ho, Wo)          // t = ((n*C + c)*Ho + i)*Wo + j

# %%
import re
import time
from pathlib import Path

import numpy as np

import minicnn
import minicnn.kernels.cuda
from minicnn import functional as F
from minicnn.kernels import reference
from minicnn.kernels.cuda.emu import load_module

from minicnn.lesson import setup, save, plt

args, OUT = setup("10_cuda_kernels", "Lesson 10: CUDA index maps, tiling, running kernels")
rng = np.random.default_rng(0)

# %%
shape = (2, 3, 5, 5)                         # N, C, Ho, Wo of some output
total, threads = int(np.prod(shape)), 32
blocks = -(-total // threads)                # ceil: enough blocks to cover every element
print(f"{total} elements, {threads} threads per block -> {blocks} blocks, "
      f"{blocks * threads - total} idle threads in the last block")
for b, t in [(0, 0), (0, 1), (0, 31), (1, 0), (4, 21), (4, 22)]:
    g = b * threads + t
    where = "idle (t >= total)" if g >= total else \
        f"element (n, c, i, j) = {tuple(int(v) for v in np.unravel_index(g, shape))}"
    print(f"  blockIdx.x={b} threadIdx.x={t:2d} -> t={g:3d} -> {where}")

# %% [markdown]
# Neighbouring threads take neighbouring elements, so a warp (32 threads that run in
# lockstep) reads 32 neighbouring floats: one wide memory transaction ("coalesced").
#
# ## A matrix product, two ways
#
# `C = A @ B` with A (M × K) and B (K × N). The simplest kernel gives each thread
# one element of C, on a 2-D grid of 2-D blocks: row from the y components, column
# from the x components. Each thread reads a whole row of A and a whole column of B
# from global memory: 2K reads per output.
#
# The tiled kernel lets a block of T × T threads work together: at each step they
# copy a T × T tile of A and one of B into `__shared__` memory (fast, on-chip, one
# element per thread), wait for each other (`__syncthreads()`), and then each thread
# runs T multiply-adds out of shared memory. Global reads drop by up to a factor T
# (exactly T when the sizes are multiples of T; counted below).
# (These two kernels are written here for teaching; minicnn's own, in
# `kernels/cuda/gemm.cu`, goes further: bigger tiles, and several outputs per
# thread — the sizes are read from its #defines below.)

# %%
MATMUL = r"""
extern "C" __global__ void matmul_naive(const float* A, const float* B, float* C,
                                        int M, int N, int K)
{
    int row = blockIdx.y * blockDim.y + threadIdx.y;
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= M || col >= N) return;
    float acc = 0.0f;
    for (int k = 0; k < K; ++k)
        acc += A[row * K + k] * B[k * N + col];      // 2K global reads per output
    C[row * N + col] = acc;
}

#define T 16
extern "C" __global__ void matmul_tiled(const float* A, const float* B, float* C,
                                        int M, int N, int K)
{
    __shared__ float As[T][T];
    __shared__ float Bs[T][T];
    int ty = threadIdx.y, tx = threadIdx.x;
    int row = blockIdx.y * T + ty, col = blockIdx.x * T + tx;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += T) {
        // every thread copies one element of each tile (0 past the edges)
        As[ty][tx] = (row < M && k0 + tx < K) ? A[row * K + k0 + tx] : 0.0f;
        Bs[ty][tx] = (k0 + ty < K && col < N) ? B[(k0 + ty) * N + col] : 0.0f;
        __syncthreads();                  // the tiles are complete before anyone reads
        for (int k = 0; k < T; ++k)
            acc += As[ty][k] * Bs[k][tx];
        __syncthreads();                  // everyone is done before the next copy
    }
    // no early return above: every thread of the block must reach every barrier
    if (row < M && col < N) C[row * N + col] = acc;
}
"""

M, N, K = (40, 36, 50) if args.quick else (128, 128, 128)
A = rng.standard_normal((M, K)).astype(np.float32)
B = rng.standard_normal((K, N)).astype(np.float32)
grid = (-(-N // 16), -(-M // 16))            # blockIdx.x along columns, .y along rows
gemm_cu = (Path(minicnn.kernels.cuda.__file__).parent / "gemm.cu").read_text()
defines = dict(re.findall(r"#define (\w+) (\d+)", gemm_cu))
print(f"kernels/cuda/gemm.cu: {defines['TILE']} x {defines['TILE']} tiles of C per block of "
      f"{defines['THREADS_XY']} x {defines['THREADS_XY']} threads, {defines['PER_THREAD']} x "
      f"{defines['PER_THREAD']} outputs per thread, slabs {defines['TILE_K']} deep")
emu = load_module(MATMUL)                    # compiled with g++ against the emulator
results = {}
for name in ("matmul_naive", "matmul_tiled"):
    C = np.zeros((M, N), np.float32)
    start = time.perf_counter()
    emu.get_function(name)(grid, (16, 16), (A, B, C, np.int32(M), np.int32(N), np.int32(K)))
    results[name] = time.perf_counter() - start
    print(f"{name}: grid {grid} of 16x16 blocks, largest error vs numpy "
          f"{np.abs(C - A @ B).max():.1e}, {results[name] * 1e3:.0f} ms on the emulator")

# %% [markdown]
# How many floats does each kernel read from global memory? Count them: the same
# two kernels with a counter (`atomicAdd`) at every global read, run at this
# lesson's sizes. With M and N multiples of 16, tiling reads 16 times fewer; at
# other sizes the edge blocks still read whole rows of A and columns of B for
# outputs that do not exist, and the factor is smaller. The exact count is
# M·K·⌈N/16⌉ (each block column reads all of A) + K·N·⌈M/16⌉ (each block row all of B).

# %%
COUNTED = MATMUL.replace("int M, int N, int K)", "int M, int N, int K, int* reads)")
for read, counted in [("A[row * K + k] * B[k * N + col]",
                       "(atomicAdd(reads, 2), A[row * K + k] * B[k * N + col])"),
                      ("? A[row * K + k0 + tx] :", "? (atomicAdd(reads, 1), A[row * K + k0 + tx]) :"),
                      ("? B[(k0 + ty) * N + col] :", "? (atomicAdd(reads, 1), B[(k0 + ty) * N + col]) :")]:
    assert COUNTED.count(read) == 1, read
    COUNTED = COUNTED.replace(read, counted)
counting = load_module(COUNTED)
reads = {}
for name in ("matmul_naive", "matmul_tiled"):
    counter, C = np.zeros(1, np.int32), np.zeros((M, N), np.float32)
    counting.get_function(name)(grid, (16, 16), (A, B, C, np.int32(M), np.int32(N), np.int32(K),
                                                  counter))
    assert np.allclose(C, A @ B, atol=1e-3)
    reads[name] = int(counter[0])
formula = M * K * grid[0] + K * N * grid[1]
print(f"global reads at M, N, K = {M}, {N}, {K}: naive {reads['matmul_naive']:,d} floats "
      f"(= 2MNK = {2 * M * N * K:,d}), tiled {reads['matmul_tiled']:,d} "
      f"(= MK·{grid[0]} + KN·{grid[1]} = {formula:,d}): "
      f"{reads['matmul_naive'] / reads['matmul_tiled']:.1f}x fewer")
print("on a GPU a read from global memory costs far more than a multiply-add: "
      "that count is what tiling saves.")
print("(Emulator times say nothing about GPU speed: it runs the threads one by one on the CPU.)")

# %% [markdown]
# ## Forget one barrier
#
# Delete the first `__syncthreads()`. Now a thread may start reading the tile before
# its neighbours have written their parts. On a GPU this is a race — often right,
# sometimes wrong, depending on timing. The emulator makes it fail every time: it
# runs threads in an order you choose and fills shared memory with NaN before each
# block, so a read of an element nobody wrote shows up.

# %%
first_barrier = "__syncthreads();                  // the tiles"
assert MATMUL.count(first_barrier) == 1
broken = load_module(MATMUL.replace(first_barrier, "// (barrier removed)", 1), order="reverse")
C = np.zeros((M, N), np.float32)
broken.get_function("matmul_tiled")(grid, (16, 16), (A, B, C, np.int32(M), np.int32(N), np.int32(K)))
wrong = ~np.isclose(C, A @ B, atol=1e-3)
print(f"without the first barrier: {wrong.mean():.0%} of C is wrong "
      f"({np.isnan(C).mean():.0%} NaN, read from shared memory before anyone wrote it)")

# %% [markdown]
# ## Who computes what: pictures of two index maps
#
# Left: the one-thread-per-element map of `pool.cu` over a 24 × 24 output, 64
# threads per block, coloured by block. Right: minicnn's `gemm.cu` (sizes read from
# its #defines above; today 16 × 16 threads own a 64 × 64 tile of C), where each
# thread computes several elements spread one block-width apart (so that
# neighbouring threads touch neighbouring columns); the elements of thread (0, 0)
# of each block are marked.

# %%
Ho = Wo = 24
owner = (np.arange(Ho * Wo) // 64).reshape(Ho, Wo)
T, S, P = (int(defines[k]) for k in ("TILE", "THREADS_XY", "PER_THREAD"))   # from gemm.cu
tile = np.zeros((2 * T, 2 * T), int)
for by in range(2):
    for bx in range(2):
        tile[by * T:(by + 1) * T, bx * T:(bx + 1) * T] = by * 2 + bx
fig, axes = plt.subplots(1, 2, figsize=(11, 5))
axes[0].imshow(owner, cmap="tab10")
axes[0].set_title("one thread per element:\ncolour = blockIdx.x (64 threads each)", fontsize=10)
axes[1].imshow(tile, cmap="Pastel1")
for by in range(2):
    for bx in range(2):
        ys = [by * T + S * i for i in range(P) for j in range(P)]
        xs = [bx * T + S * j for i in range(P) for j in range(P)]
        axes[1].plot(xs, ys, "k.", ms=4)
axes[1].set_title(f"gemm.cu: a {T}x{T} tile of C per block;\ndots = the {P * P} outputs of "
                  "thread (0, 0)", fontsize=10)
save(fig, OUT, "index_maps.png")

# %% [markdown]
# ## Reading one of minicnn's kernels
#
# Every kernel file opens with the formula it computes and its index map. Here is
# the top of `kernels/cuda/pool.cu` and its max-pooling kernel.

# %%
pool_cu = Path(minicnn.kernels.cuda.__file__).parent / "pool.cu"
source = pool_cu.read_text()
header = source[: source.index("\n\n")]
print(header)
start = source.index('extern "C" __global__ void max_pool2d_forward')
print("\n" + source[start: source.index("\n}\n", start) + 2])

# %% [markdown]
# Launch it ourselves on the emulator, with exactly the index map the header
# describes: one thread per output, 256 threads per block.

# %%
x = rng.standard_normal((2, 3, 12, 12) if args.quick else (8, 16, 32, 32)).astype(np.float32)
Nn, Cc, H, W = x.shape
Ho, Wo = H // 2, W // 2
y = np.zeros((Nn, Cc, Ho, Wo), np.float32)
idx = np.zeros((Nn, Cc, Ho, Wo), np.int32)
outputs = y.size
kernel = load_module(pool_cu).get_function("max_pool2d_forward")
kernel((-(-outputs // 256),), (256,),
       (x, y, idx, *map(np.int32, (Nn, Cc, H, W, 2, 2, 2, 2, 0, 0, Ho, Wo))))
ref_y, ref_idx = reference.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
print(f"pool.cu on the emulator: values match the numpy reference: {np.array_equal(y, ref_y)}, "
      f"argmax indices match: {np.array_equal(idx, ref_idx)}")

# %% [markdown]
# ## The same kernels behind a Tensor: devices "cuda-sim" and "cuda"
#
# `minicnn` runs the whole table of kernels on device "cuda-sim" through the same
# Python glue that drives a real GPU. A layer computed there must agree with the
# "cpu" device (numba kernels) to float32 rounding.

# %%
xw = rng.standard_normal((2, 3, 10, 10) if args.quick else (4, 8, 28, 28)).astype(np.float32)
ww = rng.standard_normal((4, 3, 3, 3) if args.quick else (16, 8, 3, 3)).astype(np.float32)


def conv_relu_pool(device):
    xt = minicnn.tensor(xw, device=device, requires_grad=True)
    wt = minicnn.tensor(ww, device=device, requires_grad=True)
    out = F.max_pool2d(F.relu(F.conv2d(xt, wt, padding=1)), 2)
    out.sum().backward()
    return out.numpy(), wt.grad.numpy()


devices = ["cpu", "cuda-sim"]
try:
    import cupy
    if cupy.cuda.is_available():
        devices.append("cuda")
except ImportError:
    pass
answers = {}
for device in devices:
    conv_relu_pool(device)                   # compile and warm up first
    start = time.perf_counter()
    answers[device] = conv_relu_pool(device)
    print(f"{device:9s} conv -> relu -> maxpool, forward and backward: "
          f"{(time.perf_counter() - start) * 1e3:8.1f} ms")
for device in devices[1:]:
    for what, k in [("output", 0), ("weight gradient", 1)]:
        ref = answers["cpu"][k]
        diff = np.abs(answers[device][k] - ref).max() / np.abs(ref).max()
        print(f"{device} vs cpu: {what} differs by at most {diff:.1e} of its largest value")
if "cuda" not in devices:
    print("no CUDA GPU here (or cupy is not installed): device 'cuda' skipped; "
          "on a machine with one, this cell also runs the kernels on the GPU")
