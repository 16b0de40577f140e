"""Why a fresh 16 MB array can cost milliseconds, and the one setting that avoids it.

A training step makes the same large arrays every time: activations, their
gradients, im2col buffers (16 MB for the first ReLU's output at 64x64, batch 64).
glibc's malloc serves a request that large with a fresh mmap() of the operating
system, and gives it back (munmap) when numpy frees it. The operating system
hands out such memory lazily: the first write to each page traps into the kernel,
which zeroes the page before the program may see it. So every step pays for
page faults and zeroing on every large array, often more than the arithmetic
that fills it (measured here: at 128x128, batch 32, a third of the step, about
4,000 faults and 70 ms of system time per step).

keep_freed_memory() asks malloc to take large blocks from its heap too (no mmap)
and to keep freed memory for the next request rather than return it (no trim).
From the second step on, each step reuses the pages of the one before: no
faults, no zeroing. The price: the process keeps its peak footprint until it
exits, which is what a training loop reaches every step anyway.

It changes the whole process (every library's arrays, PyTorch's too when it is
loaded beside minicnn), it is glibc-only, and a malloc setting made by the user
in the environment (MALLOC_* or GLIBC_TUNABLES=glibc.malloc.*) is kept as it is.
"""
import ctypes
import os
import platform
import sys

M_TRIM_THRESHOLD = -1   # mallopt parameters, from glibc's malloc.h
M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # the largest value mallopt takes (an int)


def keep_freed_memory():
    """Ask glibc's malloc to reuse freed memory instead of returning it. True if done."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name.startswith("MALLOC_") for name in os.environ) or \
            "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False                                 # the user chose
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, _NEVER_TRIM))
