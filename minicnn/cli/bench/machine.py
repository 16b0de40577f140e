"""What the benchmark ran on: cores, load, thread counts, and which BLAS numpy uses.

Both engines keep their default thread settings for the machine; this records
them so that a reader can tell what was compared.
"""
import ctypes
import os
import platform
import time

import numba
import numpy as np


def _threads(n):
    return f"{n} thread" + ("" if n == 1 else "s")


def _openblas_runtime():
    """Threads and core type of the OpenBLAS loaded into this process (Linux only)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        info = {"library": os.path.basename(path)}
        for prefix in ("scipy_openblas_", "openblas_"):
            for suffix in ("64_", ""):
                threads = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                core = getattr(lib, f"{prefix}get_corename{suffix}", None)
                if threads is not None:
                    info["threads"] = int(threads())
                if core is not None:
                    core.restype = ctypes.c_char_p
                    info["core"] = core().decode()
                if "threads" in info:
                    return info
    return None


# OpenBLAS core types whose kernels use AVX-512; every other x86 one stops at AVX2 or below
AVX512_CORES = ("skylakex", "cooperlake", "sapphirerapids")


def blas_held_back(coretype, core, flags):
    """A sentence when OPENBLAS_CORETYPE holds numpy's BLAS below the CPU's vector width,
    else None. coretype: the variable's value (None: not set); core: the core type the loaded
    OpenBLAS runs (None: unknown); flags: the CPU's feature flags (/proc/cpuinfo)."""
    if not coretype or core is None or "avx512f" not in flags or core.lower() in AVX512_CORES:
        return None
    return (f"OPENBLAS_CORETYPE={coretype} in the environment holds numpy's BLAS (minicnn's "
            f"matrix products) to its {core} kernels, without the AVX-512 this CPU has; "
            "PyTorch's kernels are not held back. Unset it "
            "(env -u OPENBLAS_CORETYPE minicnn bench) to let OpenBLAS choose")


def _numpy_blas():
    name = "unknown"
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        name = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # numpy < 1.26 has no mode="dicts"
        pass
    runtime = _openblas_runtime() or {}
    if runtime:
        name += f" ({_threads(runtime['threads'])}, core {runtime.get('core', '?')})"
    return name, runtime.get("core")


def _numba_threads():
    # asking numba for its thread count starts its threads: let minicnn's CPU
    # kernels choose how idle threads wait before that (see kernels/cpu/__init__.py).
    # lazy: that choice depends on whether PyTorch's OpenMP is loaded yet (describe()
    # imports torch first); imported earlier, it would set OMP_WAIT_POLICY for PyTorch too
    from minicnn.kernels import cpu  # noqa: F401
    layer = "not started yet"
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run in this process
        pass
    return f"{_threads(numba.get_num_threads())}, layer {layer}"


def _torch_threads():
    try:
        import torch  # lazy: optional dependency
    except ImportError:
        return None
    return (f"{_threads(torch.get_num_threads())} intra-op, "
            f"{_threads(torch.get_num_interop_threads())} inter-op")


# environment variables that change either engine's thread count
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY")


def _cpuinfo(field):
    """The first `field` of /proc/cpuinfo (e.g. "model name", "flags"), or None."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_model():
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def describe():
    """A dict of facts about this machine and both engines' thread settings."""
    try:
        import torch  # lazy: optional dependency
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    blas, core = _numpy_blas()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "load_average_1m": round(load[0], 2) if load else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_blas": blas,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "not set"),
        "blas_held_back": blas_held_back(os.environ.get("OPENBLAS_CORETYPE"), core,
                                         set((_cpuinfo("flags") or "").split())),
        "numba": numba.__version__,
        "numba_threads": _numba_threads(),
        "torch": torch_version,
        "torch_threads": _torch_threads(),
        "thread_settings": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
    }


def header(facts, cfg):
    """The lines printed before any figure: what is compared, on what, and how."""
    torch = (f"PyTorch {facts['torch']} ({facts['torch_threads']})" if facts["torch"]
             else "PyTorch is not installed: minicnn's figures alone, no ratios "
                  "(pip install torch to compare)")
    lines = [
        "minicnn bench: minicnn's CPU backend (numba kernels + numpy's BLAS) beside PyTorch, "
        "same process, same inputs",
        f"machine: {facts['cpu']}, {facts['cores']} cores, load average {facts['load_average_1m']}"
        + (" (busy: other processes share these cores, expect noise)"
           if facts["load_average_1m"] and facts["load_average_1m"] > 0.5 else ""),
        f"minicnn: numpy {facts['numpy']}, BLAS {facts['numpy_blas']}, "
        f"OPENBLAS_CORETYPE {facts['OPENBLAS_CORETYPE']}; numba {facts['numba']} "
        f"({facts['numba_threads']})",
        torch,
    ] + ([f"note: {facts['blas_held_back']}"] if facts.get("blas_held_back") else []) + [
        "threads: " + (", ".join(f"{k}={v}" for k, v in facts["thread_settings"].items())
                       + " set in the environment" if facts["thread_settings"]
                       else "both engines at their own defaults for this machine"),
        f"timing: {cfg['warmup']} warm-up calls, then up to {cfg['reps']} timed repetitions per "
        f"side, A and B alternating, each sample after {cfg.get('settle_s', 0.2):g} s of untimed calls "
        f"of its own engine (the other's idle threads go quiet), median reported (at most "
        f"{cfg['budget_s']:g} s per case)",
        "ratio = minicnn throughput / PyTorch throughput (>1: minicnn faster)",
    ]
    return "\n".join(lines)


def matmul_peak(n=2048, most=4, budget_s=0.5):
    """This machine's single-precision matrix-multiply peak, measured here:
    {"flops": FLOP/s, "n", "products", "seconds"}.

    The best of up to `most` numpy float32 (n, n) @ (n, n) products, on the BLAS threads
    numpy uses (the first one also wakes them), stopping once `budget_s` seconds are spent
    and at least two were run: 2 n^3 FLOPs over the fastest product's time.
    """
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    out = np.empty((n, n), np.float32)
    best, spent, k = float("inf"), 0.0, 0
    while k < most and (k < 2 or spent < budget_s):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        dt = time.perf_counter() - t0
        best, spent, k = min(best, dt), spent + dt, k + 1
    return {"flops": 2.0 * n ** 3 / best, "n": n, "products": k, "seconds": spent}


def peak_line(peak, facts):
    """The header line of the measured peak that the "% peak" columns divide by."""
    return (f"peak: float32 matmul {peak['flops'] / 1e9:.1f} GFLOP/s (best of {peak['products']} "
            f"numpy {peak['n']}x{peak['n']} products on its BLAS threads, {facts['numpy_blas']}); "
            "\"% peak\" = an engine's GFLOP/s over it")
