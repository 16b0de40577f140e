"""Start-up cost (numba compiling on a cold cache, loading from a warm one) and the
peak memory of a training step, each measured in a fresh Python process.

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

_STARTUP = ("import time; t0 = time.perf_counter(); from minicnn.bench.child import startup; "
            "startup(t0, {channels}, {size}, {batch})")
_MEMORY = "from minicnn.bench.child import memory; memory({engine!r}, {channels}, {size}, {batch})"


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


class FreshCache:
    """A temporary, empty NUMBA_CACHE_DIR, and the environment that points at it."""

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="minicnn-bench-numba-")
        self.env = dict(os.environ, NUMBA_CACHE_DIR=self.path)
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def startup_times(cache, channels=1, size=28, batch=32, timeout=600):
    """{"cold": child result, "warm": child result}: seconds to import + first step."""
    code = _STARTUP.format(channels=channels, size=size, batch=batch)
    cold = _child(code, cache.env, timeout)
    warm = _child(code, cache.env, timeout)
    return {"cold": cold, "warm": warm, "size": size, "channels": channels, "batch": batch}


def peak_memory(cache, engine, channels, size, batch, timeout=600):
    """Child result of child.memory for engine "minicnn" or "torch"."""
    code = _MEMORY.format(engine=engine, channels=channels, size=size, batch=batch)
    return _child(code, cache.env, timeout)
