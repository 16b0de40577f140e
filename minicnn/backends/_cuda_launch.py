"""Launch geometry and scalar arguments of the CUDA kernels (devices "cuda" and "cuda-sim").

Grid and block sizes are worked out here, in one place, for _cuda_glue.py and
_cuda_layers.py; scalars go to the kernels as np.int32 (cupy would pass a Python int
as a 64-bit long long, which the kernel would misread).
"""
import math

import numpy as np

# ----------------------------------------------------------------------------- launch geometry
# The block sizes below must match the constants of the .cu files (tests check it):
THREADS = 256        # threads per block of the 1-D kernels; BLOCK in gemm.cu and loss.cu,
                     # the size of their shared arrays for block reductions
GEMM_TILE = 64       # TILE in gemm.cu: each block computes a 64 x 64 tile of C
GEMM_THREADS = 16    # THREADS_XY in gemm.cu: a 16 x 16 block, 4 x 4 outputs per thread


def per_element(n):
    """One thread per element of an n-element array: ceil(n / THREADS) blocks."""
    return (math.ceil(n / THREADS), 1, 1), (THREADS, 1, 1)


def per_row(rows):
    """One block per row; its threads stride along the row."""
    return (rows, 1, 1), (THREADS, 1, 1)


def single_block():
    """One block whose threads stride over everything (a final reduction)."""
    return (1, 1, 1), (THREADS, 1, 1)


def gemm_tiles(m, n, slices=1):
    """One block per 64 x 64 tile of the m x n result and per slice of K; blockIdx.x
    runs along n, blockIdx.z over the slices."""
    return ((math.ceil(n / GEMM_TILE), math.ceil(m / GEMM_TILE), slices),
            (GEMM_THREADS, GEMM_THREADS, 1))


# ----------------------------------------------------------------------------- argument helpers

def _i32(*values):
    """Python ints -> np.int32, refusing what an int index in the kernels cannot hold."""
    out = []
    for v in values:
        v = int(v)
        if not -2**31 <= v < 2**31:
            raise ValueError(f"{v} is too large for the 32-bit indices of the CUDA kernels; "
                             f"use a smaller batch")
        out.append(np.int32(v))
    return tuple(out)
