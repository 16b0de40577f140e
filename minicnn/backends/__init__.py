"""Backends: one per device, each implementing the same table of kernel calls.

The table is the class `Backend` in table.py: each op with its shapes, in one place.
`get(device)` returns what implements it: the module cpu.py (numba kernels) or
reference.py (plain numpy) for "cpu", and for "cuda" and "cuda-sim" the CudaKernels
object of cuda.py / cuda_sim.py, whose methods (_cuda_glue.py, _cuda_layers.py) launch
the CUDA C kernels of kernels/cuda/*.cu.

Devices: "cpu" (numba kernels), "cuda" (CUDA C through cupy), "cuda-sim" (the
same CUDA C on the CPU emulator). `use_cpu_kernels("reference")` swaps the cpu
device's numba kernels for the plain numpy reference, for teaching and testing.
"""
import importlib

import numpy

from minicnn.backends.table import KERNEL_TABLE, Backend  # noqa: F401  (the table)

DEVICES = ("cpu", "cuda", "cuda-sim")
_MODULES = {"cpu": "cpu", "cuda": "cuda", "cuda-sim": "cuda_sim", "reference": "reference"}
_loaded = {}
_cpu_kernels = "cpu"


def check_device(device):
    """Return the canonical device name, or raise a clear error."""
    if isinstance(device, str):
        name = device.lower()
        if name == "cuda:0":
            name = "cuda"
        if name in DEVICES:
            return name
    raise ValueError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")


def use_cpu_kernels(kind):
    """Choose what the "cpu" device runs: "numba" (default) or "reference" (plain numpy)."""
    global _cpu_kernels
    if kind not in ("numba", "reference"):
        raise ValueError(f"use_cpu_kernels: expected 'numba' or 'reference', got {kind!r}")
    _cpu_kernels = "cpu" if kind == "numba" else "reference"


def array_module(device):
    """numpy, or cupy for "cuda": the array library that holds a device's data."""
    if check_device(device) == "cuda":
        return get("cuda").xp
    return numpy


def get(device):
    """The Backend of a device (its module imported on first use): the module itself for
    "cpu" (cpu.py or reference.py), the module's CudaKernels object `kernels` for "cuda"
    and "cuda-sim"."""
    device = check_device(device)
    key = _cpu_kernels if device == "cpu" else _MODULES[device]
    if key not in _loaded:
        module = importlib.import_module(f"minicnn.backends.{key}")
        _loaded[key] = module.kernels if key in ("cuda", "cuda_sim") else module
    return _loaded[key]
