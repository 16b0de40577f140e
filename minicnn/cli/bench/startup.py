"""Start-up cost (numba compiling on a cold cache, loading from a warm one) and the
peak memory of a training step, each measured in a fresh Python process
(see child.py for what runs there).

Cold start: NUMBA_CACHE_DIR points at a new empty folder, so every kernel is
compiled; the child times `import minicnn` up to the end of its first training
step. Warm start: the same command again, now with that folder filled.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

_STARTUP = ("import time; t0 = time.perf_counter(); from minicnn.cli.bench.child import startup; "
            "startup(t0, {channels}, {size}, {batch})")
_MEMORY = "from minicnn.cli.bench.child import memory; memory({engine!r}, {channels}, {size}, {batch})"


def _child(code, env, timeout):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"child process failed (exit {proc.returncode}): {tail[0]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall
    return result


def startup_times(channels=1, size=28, batch=32, timeout=600):
    """{"cold": child result, "warm": child result}: seconds to import + first step.

    Both children get NUMBA_CACHE_DIR = one new temporary folder, removed after.
    """
    code = _STARTUP.format(channels=channels, size=size, batch=batch)
    folder = tempfile.mkdtemp(prefix="minicnn-bench-numba-")
    try:
        env = dict(os.environ, NUMBA_CACHE_DIR=folder)
        cold = _child(code, env, timeout)
        warm = _child(code, env, timeout)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"cold": cold, "warm": warm, "size": size, "channels": channels, "batch": batch}


def peak_memory(engine, channels, size, batch, timeout=600):
    """Child result of child.memory for engine "minicnn" or "torch".

    The child uses numba's usual cache (filled by this process's own runs), and
    its warm-up happens before the peak is reset, so compiling never counts.
    """
    code = _MEMORY.format(engine=engine, channels=channels, size=size, batch=batch)
    return _child(code, dict(os.environ), timeout)
