"""python -m minicnn.kernels.cuda.emu --sanitize -- COMMAND [ARGS...]

Runs COMMAND with AddressSanitizer's runtime preloaded and MINICNN_EMU_SANITIZE=1, so
every load_module() in it compiles its .cu file with -fsanitize=address,undefined and
out-of-bounds accesses are reported with the .cu file and line. For example:

    python -m minicnn.kernels.cuda.emu --sanitize -- python -m pytest tests/test_cuda_kernels.py
"""
import sys

from minicnn.kernels.cuda.emu.loader import _main

sys.exit(_main(sys.argv[1:]))
