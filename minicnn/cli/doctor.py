"""`minicnn doctor`: what this machine has, and which devices work.

Prints the versions of numpy, numba (and its threading layer), cupy; whether a
GPU, NVRTC, nvcc and g++ are there; then tries a tiny conv2d on each device.

`minicnn doctor --gpu` puts a real GPU through everything instead (the cuda-device
tests, a cpu/cuda twin training, the speed targets against cuBLAS and cuDNN,
compute-sanitizer) and prints one page; see minicnn/cli/gpu_check.py.
"""
import argparse
import importlib
import platform
import shutil
import subprocess

import numpy as np

import minicnn
from minicnn import functional as F
from minicnn.cli import gpu_check


def add_arguments(parser):
    parser.add_argument("--no-devices", action="store_true",
                        help="only report versions and tools; do not run a kernel on each device")
    parser.add_argument("--gpu", action="store_true",
                        help=f"the one-command check of a real GPU (under "
                             f"{gpu_check.BUDGET_S} s): every "
                             "cuda-device test, a cpu/cuda twin training, sgemm vs cuBLAS, "
                             "conv2d vs cuDNN and a 224-px training step vs the cpu device "
                             "(with PyTorch), compute-sanitizer where installed; one page")
    parser.add_argument("--no-sanitizer", action="store_true",
                        help="with --gpu: skip the compute-sanitizer runs")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = gpu_check.EXIT_CODES_HELP


def _version(name):
    try:
        return importlib.import_module(name).__version__
    except Exception as exc:  # not installed, or broken install: both are worth showing
        return f"not available ({type(exc).__name__})"


def _numba_threading():
    try:
        import numba  # lazy: a broken numba install is one of the answers, not a crash
        from numba.np.ufunc import parallel  # lazy: as numba

        @numba.njit(parallel=True, cache=False)
        def _touch(n):
            s = 0
            for i in numba.prange(n):
                s += i
            return s
        _touch(4)
        return f"{parallel.threading_layer()} ({numba.config.NUMBA_NUM_THREADS} threads)"
    except Exception as exc:
        return f"unknown ({exc})"


def _cupy_gpu():
    try:
        import cupy  # lazy: cupy is optional
    except Exception:
        return "no (cupy not installed: pip install 'minicnn-xray[cuda]')"
    try:
        if not cupy.cuda.is_available():
            return "no (cupy installed, but no CUDA GPU or driver found)"
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        return f"yes: {name}"
    except Exception as exc:
        return f"no ({exc})"


def _nvrtc():
    tc = gpu_check.toolchain()
    if tc["nvrtc"] is None:
        return "not available (cupy is not installed)"
    if tc["pair_ok"] is False:
        return (f"{tc['nvrtc']}, but cupy is built for CUDA {tc['cuda_runtime']}: the majors "
                "must match (pip install -e '.[cuda]')")
    return tc["nvrtc"]


def _tool(name, flag="--version"):
    path = shutil.which(name)
    if path is None:
        return "not found"
    try:
        out = subprocess.run([path, flag], capture_output=True, text=True, timeout=20).stdout
        lines = [ln for ln in out.strip().splitlines() if ln.strip()]
        return f"{path}: {lines[-1] if lines else 'found'}"
    except Exception as exc:
        return f"{path}: {exc}"


def _try_device(device):
    try:
        x = minicnn.tensor(np.ones((1, 1, 5, 5), np.float32), device=device)
        w = minicnn.tensor(np.ones((1, 1, 3, 3), np.float32), requires_grad=True, device=device)
        y = F.conv2d(x, w, padding=1)
        y.sum().backward()
        value = float(y.numpy()[0, 0, 2, 2])
        if value != 9.0:
            return f"RUNS BUT WRONG: centre of a 3x3 box sum is {value}, expected 9"
        return "works"
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"unavailable: {first}"


def run(args):
    if getattr(args, "gpu", False):
        return gpu_check.run(args)
    rows = [
        ("python", platform.python_version()),
        ("numpy", _version("numpy")),
        ("numba", _version("numba")),
        ("numba threading", _numba_threading()),
        ("cupy", _version("cupy")),
        ("CUDA GPU", _cupy_gpu()),
        ("NVRTC", _nvrtc()),
        ("nvcc", _tool("nvcc")),
        ("g++ (for cuda-sim)", _tool("g++")),
    ]
    if not getattr(args, "no_devices", False):
        for device in ("cpu", "cuda-sim", "cuda"):
            rows.append((f"device {device}", _try_device(device)))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
