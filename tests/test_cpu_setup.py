"""The process settings the CPU kernels make on import (kernels/cpu/__init__.py, memory.py),
and the threads that run a job's shares (workers.py)."""
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from minicnn.kernels.cpu import memory
from minicnn.kernels.cpu.workers import run_shares, share_rows

GLIBC = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.parametrize("name, value", [("MALLOC_ARENA_MAX", "2"),
                                         ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1")])
def test_a_malloc_setting_of_the_user_is_kept(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    assert memory.keep_freed_memory() is False


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_large_arrays_reuse_freed_memory_instead_of_faulting_it_in_again():
    # In a fresh process: make and free a 64 MB array, then make another and write
    # every page. Without the setting the second array is a fresh mmap whose pages
    # all fault in (16384 of 4 KiB, or 32 huge pages); with it, none do.
    code = """
import resource, numpy as np
from minicnn.kernels.cpu import memory
import sys
if sys.argv[1] == "keep":
    assert memory.keep_freed_memory()
a = np.ones(16 << 20, np.float32); del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = np.empty(16 << 20, np.float32); b[:] = 1
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}

    def faults(mode):
        # importing minicnn's CPU kernels makes the setting, unless a MALLOC_* variable is set
        env = dict(base, MALLOC_ARENA_MAX="8") if mode == "default" else base
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True,
                             env=env, check=True)
        return int(out.stdout.split()[-1])

    assert faults("keep") < 8 <= faults("default")


def test_run_shares_runs_each_share_once_and_raises_a_shares_error():
    seen = []
    run_shares(lambda t, tag: seen.append((t, tag)), 3, "x")
    assert sorted(seen) == [(0, "x"), (1, "x"), (2, "x")]

    finished = []

    def fail_in_one(t):
        if t == 1:
            raise ValueError("share 1 failed")
        finished.append(t)

    with pytest.raises(ValueError, match="share 1 failed"):
        run_shares(fail_in_one, 3)
    assert sorted(finished) == [0, 2]               # the other shares still ran to the end


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_share_rows_start_each_share_on_a_2_mib_boundary(dtype):
    rows = share_rows(3, 1000, dtype, zero=True)
    assert rows.shape[0] == 3 and rows.shape[1] >= 1000 and rows.dtype == dtype
    assert rows.flags.c_contiguous
    assert all(rows[t].ctypes.data % (2 << 20) == 0 for t in range(3))
    assert not rows[:, :1000].any()
    one = share_rows(1, 10, dtype, zero=True)
    assert one.shape == (1, 10) and not one.any()
