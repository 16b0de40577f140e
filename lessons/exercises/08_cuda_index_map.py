"""Exercise 08 - which thread computes which element? CUDA index maps         (lesson 10)

A CUDA kernel runs as a grid of blocks, each a group of threads. Every thread runs the
same code and finds its own work from four built-in variables: blockIdx (which block),
blockDim (threads per block), threadIdx (which thread in the block) and gridDim.
Read kernels/cuda/pool.cu and kernels/cuda/gemm.cu (installed as minicnn.kernels.cuda)
for the two maps below.

Part A - one thread per element (pool.cu, activation.cu, col2im in conv.cu):

    t = blockIdx.x * blockDim.x + threadIdx.x
    if (t >= N*C*H*W) return;                 // the last block may be partly idle
    (n, c, h, w) = unravel(t, N, C, H, W)      // t = ((n*C + c)*H + h)*W + w

Part B - the tiled matrix product of gemm.cu, C (M x N) = A @ B:
    the block (blockIdx.x, blockIdx.y) owns the 64 x 64 tile of C whose corner is
    (m0, n0) = (64*blockIdx.y, 64*blockIdx.x); its 16 x 16 threads each compute
    4 x 4 outputs spread out by 16:
        thread (threadIdx.x, threadIdx.y) = (tx, ty) computes
        C[m0 + ty + 16*i][n0 + tx + 16*j]   for i, j in 0..3,
    skipping those outside the M x N matrix (the ragged edge tiles).

The grader runs small kernels with these maps on minicnn's CUDA emulator
(device "cuda-sim") and compares, for every thread of the launch, with your answer.

Check your answer:   minicnn grade 08
"""


def thread_element(block_idx, block_dim, thread_idx, shape):
    """Part A. block_idx, block_dim, thread_idx: ints (the .x components);
    shape (N, C, H, W) -> the (n, c, h, w) this thread computes, or None if it is idle."""
    N, C, H, W = shape
    # TODO: the global thread index t, the guard, then unravel t (use // and %).
    raise NotImplementedError("thread_element")


def sgemm_elements(block_idx, thread_idx, M, N):
    """Part B. block_idx (bx, by), thread_idx (tx, ty), C is M x N
    -> the list of (row, col) of C this thread computes (any order; [] if none)."""
    bx, by = block_idx
    tx, ty = thread_idx
    # TODO: the tile corner (m0, n0), then the 4 x 4 spread-out elements inside C.
    raise NotImplementedError("sgemm_elements")
