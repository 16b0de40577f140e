"""Device "cuda": the CUDA C kernels of kernels/cuda/*.cu on an NVIDIA GPU (lesson 10).

cupy holds the arrays in GPU memory and compiles each .cu file at first use with NVRTC
(cupy.RawModule, cached on disk by cupy); the glue that turns the backend table into
kernel launches is shared with device "cuda-sim" (minicnn/backends/_cuda_glue.py).

Importing this module proves the device works before anything else uses it: cupy is
there, it sees a GPU, and a one-line kernel compiles with NVRTC, launches and writes
what it should. Where any of that fails the import raises CudaUnavailable (an
ImportError and a UserError) that says which step failed, in cupy's own words, with
the NVRTC, CUDA runtime and driver versions: a mismatched pair (cupy built for CUDA 12
loading NVRTC 13, or a driver older than the runtime) is the usual cause.
"""
import numpy as np

from minicnn.errors import UserError


class CudaUnavailable(UserError, ImportError):
    """Device "cuda" cannot run on this machine (no cupy, no GPU and driver, or a
    toolchain that cannot compile and launch a kernel)."""


_NEEDS = "device 'cuda' needs cupy and an NVIDIA GPU: "
_SIM = "; use device 'cuda-sim' to run the same kernels on the CPU emulator"

try:
    import cupy
except ImportError as exc:
    raise CudaUnavailable(_NEEDS + f"cupy is not installed ({exc}); install it with "
                          "pip install 'minicnn-xray[cuda]', or use device 'cuda-sim' to run the "
                          "same kernels on the CPU emulator") from None


def _version(name, call):
    """'12.9' style text of a CUDA version query, or why it failed."""
    try:
        value = call()
    except Exception as exc:  # no driver, no NVRTC: the reason is the answer
        said = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{name} unknown ({type(exc).__name__}: {said})"
    if isinstance(value, tuple):
        return f"{name} {value[0]}.{value[1]}"
    return f"{name} {value // 1000}.{value % 1000 // 10}" if value else f"{name} none"


def versions():
    """One line: cupy, the CUDA runtime it was built with, NVRTC, the driver."""
    from cupy_backends.cuda.libs import nvrtc
    return ", ".join([f"cupy {cupy.__version__}",
                      _version("CUDA runtime", cupy.cuda.runtime.runtimeGetVersion),
                      _version("NVRTC", nvrtc.getVersion),
                      _version("driver (CUDA)", cupy.cuda.runtime.driverGetVersion)])


def _pair_hint():
    """Advice when NVRTC's major version is not the CUDA runtime's (they must match)."""
    try:
        from cupy_backends.cuda.libs import nvrtc
        nv = nvrtc.getVersion()[0]
        rt = cupy.cuda.runtime.runtimeGetVersion() // 1000
    except Exception:
        return ""
    if nv == rt:
        return ""
    return (f"; NVRTC {nv}.x does not match cupy's CUDA {rt}.x: install the pair, "
            f"pip install 'nvidia-cuda-nvrtc-cu{rt}' (and pip uninstall nvidia-cuda-nvrtc "
            f"where that is NVRTC {nv}), or pip install -e '.[cuda]'")


try:
    _gpus = cupy.cuda.runtime.getDeviceCount() if cupy.cuda.is_available() else 0
except Exception as exc:  # a broken driver or runtime: say what cupy said
    raise CudaUnavailable(_NEEDS + f"cupy could not talk to a GPU ({type(exc).__name__}: "
                          f"{exc}){_SIM}") from None
if not _gpus:
    try:
        cupy.cuda.runtime.getDeviceCount()
        said = "no CUDA device"
    except Exception as exc:
        said = f"{type(exc).__name__}: {exc}"
    raise CudaUnavailable(_NEEDS + f"cupy is installed but sees no CUDA GPU or driver "
                          f"(cupy says: {said}){_SIM}")

# The options cupy's RawModule uses by default, written out so the compile test
# (tests/test_nvrtc.py) can use the very same ones.
NVRTC_OPTIONS = ("-std=c++17",)

# The start-up proof: one thread per element writes 2*i; nothing else runs first.
PROBE_SOURCE = ('extern "C" __global__ void minicnn_probe(float* y, int n) '
                '{ int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) y[i] = 2.0f * i; }')


def prove(n=64):
    """Compile PROBE_SOURCE with NVRTC, launch it, check its output; raise
    CudaUnavailable naming the step that failed, cupy's message and the versions."""
    step = "compile a one-line kernel with NVRTC"
    try:
        kernel = cupy.RawKernel(PROBE_SOURCE, "minicnn_probe", options=NVRTC_OPTIONS)
        kernel.compile()
        step = "launch the one-line kernel"
        y = cupy.full(n, -1.0, dtype=cupy.float32)
        kernel((1,), (n,), (y, np.int32(n)))
        cupy.cuda.Device().synchronize()
        got = y.get()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CudaUnavailable(_NEEDS + f"cupy sees {_gpus} GPU(s) but could not {step} "
                              f"({type(exc).__name__}: {first}); {versions()}{_pair_hint()}"
                              f"{_SIM}") from None
    want = 2.0 * np.arange(n, dtype=np.float32)
    if not np.array_equal(got, want):
        bad = int(np.flatnonzero(got != want)[0])
        raise CudaUnavailable(_NEEDS + f"the one-line kernel ran but wrote y[{bad}] = "
                              f"{float(got[bad])!r}, not {float(want[bad])!r}; {versions()}"
                              f"{_pair_hint()}{_SIM}")


prove()

from minicnn.backends._cuda_glue import CudaKernels  # noqa: E402  (only once cupy works)


def _load(path):
    """Compile kernels/cuda/<family>.cu with NVRTC for this GPU."""
    return cupy.RawModule(code=path.read_text(), options=NVRTC_OPTIONS)


# The backend table (minicnn/backends/table.py): backends.get("cuda") returns this
# object, whose methods are the table's entries (CudaKernels in _cuda_glue.py).
kernels = CudaKernels("cuda", cupy, _load)
xp = kernels.xp
