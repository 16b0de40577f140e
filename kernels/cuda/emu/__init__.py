"""The CPU emulator for CUDA C kernels: compile a .cu file with g++ against emu.h and
call its kernels with numpy arrays, the way cupy calls them on a GPU (lesson 10).

MINICNN_EMU_GPU_MATH=1 (GPU_MATH_ENV) gives every module the GPU's arithmetic: fused
multiply-adds and subnormals flushed to zero, as NVRTC with -ftz=true computes; e.g.
    MINICNN_EMU_GPU_MATH=1 python -m pytest tests/test_cuda_kernels.py
"""
from minicnn.kernels.cuda.emu.loader import (GPU_MATH_ENV, CompileError, EmulatorError,
                                             KernelArgumentError, Module, load_module,
                                             run_sanitized)

__all__ = ["load_module", "Module", "EmulatorError", "CompileError", "KernelArgumentError",
           "run_sanitized", "GPU_MATH_ENV"]
