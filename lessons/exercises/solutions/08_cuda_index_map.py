"""Exercise 08 - CUDA index maps: reference solution.                          (lesson 10)

    A: t = blockIdx.x * blockDim.x + threadIdx.x -> unravel(t, N, C, H, W), None if t >= total
    B: thread (tx, ty) of block (bx, by) -> C[64*by + ty + 16*i][64*bx + tx + 16*j], i, j < 4
"""


def thread_element(block_idx, block_dim, thread_idx, shape):
    """Part A -> (n, c, h, w) or None"""
    N, C, H, W = shape
    t = block_idx * block_dim + thread_idx
    if t >= N * C * H * W:
        return None
    w = t % W
    h = (t // W) % H
    c = (t // (W * H)) % C
    n = t // (W * H * C)
    return (n, c, h, w)


def sgemm_elements(block_idx, thread_idx, M, N):
    """Part B -> [(row, col), ...]"""
    bx, by = block_idx
    tx, ty = thread_idx
    m0, n0 = 64 * by, 64 * bx
    return [(m0 + ty + 16 * i, n0 + tx + 16 * j)
            for i in range(4) for j in range(4)
            if m0 + ty + 16 * i < M and n0 + tx + 16 * j < N]
