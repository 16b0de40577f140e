"""Device "cuda": the CUDA C kernels of kernels/cuda/*.cu on an NVIDIA GPU (lesson 10).

cupy holds the arrays in GPU memory and compiles each .cu file at first use with NVRTC
(cupy.RawModule, cached on disk by cupy); the glue that turns the backend table into
kernel launches is shared with device "cuda-sim" (minicnn/backends/_cuda_glue.py).
Importing this module without cupy or without a GPU raises ImportError saying so.
"""
from minicnn.errors import UserError


class CudaUnavailable(UserError, ImportError):
    """Device "cuda" cannot run on this machine (no cupy, or no GPU and driver)."""


_NEEDS = "device 'cuda' needs cupy and an NVIDIA GPU: "

try:
    import cupy
except ImportError as exc:
    raise CudaUnavailable(_NEEDS + f"cupy is not installed ({exc}); install it with "
                          "pip install 'minicnn[cuda]', or use device 'cuda-sim' to run the "
                          "same kernels on the CPU emulator") from None

try:
    _gpus = cupy.cuda.runtime.getDeviceCount() if cupy.cuda.is_available() else 0
except Exception as exc:  # a broken driver or runtime: say what cupy said
    raise CudaUnavailable(_NEEDS + f"cupy could not talk to a GPU ({type(exc).__name__}: "
                          f"{exc}); use device 'cuda-sim' to run the same kernels on the CPU "
                          "emulator") from None
if not _gpus:
    raise CudaUnavailable(_NEEDS + "cupy is installed but sees no CUDA GPU or driver; use "
                          "device 'cuda-sim' to run the same kernels on the CPU emulator")

from minicnn.backends._cuda_glue import CudaKernels  # noqa: E402  (only once cupy works)

# The options cupy's RawModule uses by default, written out so the compile test
# (tests/test_nvrtc.py) can use the very same ones.
NVRTC_OPTIONS = ("-std=c++17",)


def _load(path):
    """Compile kernels/cuda/<family>.cu with NVRTC for this GPU."""
    return cupy.RawModule(code=path.read_text(), options=NVRTC_OPTIONS)


xp = cupy
_kernels = CudaKernels("cuda", cupy, _load)
globals().update(_kernels.table())   # conv2d_forward, ..., adam_step: see backends/__init__.py
