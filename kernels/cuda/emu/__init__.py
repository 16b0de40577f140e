"""The CPU emulator for CUDA C kernels: compile a .cu file with g++ against emu.h and
call its kernels with numpy arrays, the way cupy calls them on a GPU (lesson 10)."""
from minicnn.kernels.cuda.emu.loader import (CompileError, EmulatorError, KernelArgumentError,
                                             Module, load_module, run_sanitized)

__all__ = ["load_module", "Module", "EmulatorError", "CompileError", "KernelArgumentError",
           "run_sanitized"]
