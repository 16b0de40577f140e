"""Load a CUDA C file on the CPU: compile it with g++ against emu.h, call its kernels.

    mod = load_module("kernels/cuda/activation.cu", order="forward", seed=0)
    f = mod.get_function("relu_forward")
    f((math.ceil(n / 256), 1, 1), (256, 1, 1), (x, y, np.int32(n)))
    mod.order = "reverse"            # the thread order of later launches

The call has the shape of cupy's RawModule(code=...).get_function(name)(grid, block,
args, shared_mem=0), so one piece of glue drives both. Arrays are numpy arrays.

What the loader adds to the compiler:
  - it reads every `extern "C" __global__ void NAME(PARAMS)` signature and checks each
    launch against it: the number of arguments, numpy arrays of the exact dtype
    (float* <- float32, int* <- int32, long long* <- int64), C-contiguous, and numpy
    scalars of the exact type (float <- np.float32, int <- np.int32, long long <- np.int64).
    cupy turns a Python float into a double and a Python int into a long long without a
    word, and the kernel then reads garbage; here the same mistake is an error;
  - the compiled library is cached by content hash in $MINICNN_CACHE/emu (default
    ~/.cache/minicnn/emu), outside the source tree;
  - sanitize=True compiles with AddressSanitizer and UBSan. Their runtime must be the
    first library of the process, so a sanitized module only loads in a Python started
    with LD_PRELOAD=libasan.so: use run_sanitized(code) or
        python -m minicnn.kernels.cuda.emu --sanitize -- python -m pytest tests/...
    which runs a command that way with MINICNN_EMU_SANITIZE=1 (every load_module call
    that does not say otherwise compiles sanitized).
  - gpu_math=True (or MINICNN_EMU_GPU_MATH=1) compiles with -ffp-contract=fast -mfma
    and runs each launch with subnormals flushed to zero: the GPU's arithmetic, as
    NVRTC (fused multiply-add by default) with cupy's -ftz=true computes, so the
    tests' tolerances can be held to it as well as to plain IEEE rounding.

Shapes: none of their own; each kernel's signature says what it takes.
"""
import ctypes
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HEADER = HERE / "emu.h"
ORDERS = ("forward", "reverse", "shuffle")
MAX_THREADS_PER_BLOCK = 1024
_GRID_LIMITS = (2**31 - 1, 65535, 65535)
_BLOCK_LIMITS = (1024, 1024, 64)

# Bump when the generated wrapper changes shape, so old cached libraries are not used.
_WRAPPER_VERSION = "1"
_FLAGS = ["-x", "c++", "-std=c++17", "-fPIC", "-shared", "-fvisibility=hidden",
          "-fno-strict-aliasing", "-ffp-contract=off", "-fstack-clash-protection"]
_OPT_FLAGS = ["-O2"]
_SANITIZE_FLAGS = ["-O1", "-g", "-fsanitize=address,undefined", "-fsanitize-sections=emushared",
                   "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
# The GPU's arithmetic (gpu_math=True, or MINICNN_EMU_GPU_MATH=1): a*b+c contracted into
# one fused multiply-add, as NVRTC does by default, and subnormals flushed to zero in
# every launch (FTZ/DAZ, set by emu.h), as cupy's -ftz=true does. x86-64 with FMA only.
GPU_MATH_ENV = "MINICNN_EMU_GPU_MATH"
_GPU_MATH_FLAGS = ["-ffp-contract=fast", "-mfma", "-DEMU_GPU_MATH=1"]
# Calls that make threads wait for one another: a file with none of them runs its
# threads as plain calls, one after another (much faster than fibers).
_BARRIER_RE = re.compile(r"\b(__syncthreads\w*|__syncwarp|__shfl\w*_sync|__ballot_sync|"
                         r"__any_sync|__all_sync|__activemask)\b")


class EmulatorError(RuntimeError):
    """A kernel failed on the emulator: bad launch, barrier misuse, invalid access."""


class CompileError(EmulatorError):
    """g++ could not compile the .cu file."""


class KernelArgumentError(EmulatorError, TypeError):
    """An argument does not match the kernel's parameter type."""


# C type (qualifiers removed) -> numpy dtype of an argument or of a pointed-to array.
_C_TYPES = {
    "float": np.float32, "double": np.float64,
    "int": np.int32, "signed int": np.int32, "signed": np.int32, "int32_t": np.int32,
    "unsigned int": np.uint32, "unsigned": np.uint32, "uint32_t": np.uint32,
    "long long": np.int64, "long long int": np.int64, "signed long long": np.int64,
    "long": np.int64, "long int": np.int64, "int64_t": np.int64, "ptrdiff_t": np.int64,
    "unsigned long long": np.uint64, "unsigned long long int": np.uint64,
    "unsigned long": np.uint64, "uint64_t": np.uint64, "size_t": np.uint64,
    "short": np.int16, "int16_t": np.int16, "unsigned short": np.uint16, "uint16_t": np.uint16,
    "char": np.int8, "signed char": np.int8, "int8_t": np.int8,
    "unsigned char": np.uint8, "uint8_t": np.uint8, "bool": np.bool_,
}
_CTYPES_OF = {
    np.float32: ctypes.c_float, np.float64: ctypes.c_double,
    np.int8: ctypes.c_int8, np.int16: ctypes.c_int16, np.int32: ctypes.c_int32,
    np.int64: ctypes.c_int64, np.uint8: ctypes.c_uint8, np.uint16: ctypes.c_uint16,
    np.uint32: ctypes.c_uint32, np.uint64: ctypes.c_uint64, np.bool_: ctypes.c_bool,
}
# The vector types a pointer may point at: arrays of their element type.
_VECTOR_TYPES = {"float2": (np.float32, 2), "float4": (np.float32, 4),
                 "int2": (np.int32, 2), "int4": (np.int32, 4), "double2": (np.float64, 2)}
_QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict", "restrict"}


class Param:
    """One kernel parameter: `decl` as written, its C base type, pointer or not."""

    def __init__(self, index, decl, line):
        self.index = index
        self.decl = " ".join(decl.split())
        self.line = line
        text = self.decl
        self.pointer = text.count("*") + text.count("[")
        words = re.findall(r"[A-Za-z_]\w*", text.split("[")[0].replace("*", " * "))
        words = [w for w in words if w not in _QUALIFIERS]
        # the last word is the name, unless the words are a type by themselves (no name)
        named = len(words) > 1 and " ".join(words) not in _C_TYPES
        self.name = words[-1] if named else ""
        self.ctype = " ".join(words[:-1] if named else words)
        if self.ctype.startswith("signed ") and self.ctype[7:] in _C_TYPES:
            self.ctype = self.ctype[7:]
        self.dtype = _C_TYPES.get(self.ctype)
        self.vector = _VECTOR_TYPES.get(self.ctype) if self.pointer == 1 else None
        if self.vector:
            self.dtype = self.vector[0]
        self.supported = self.dtype is not None and self.pointer <= 1
        self.size = 8 if self.pointer else (np.dtype(self.dtype).itemsize if self.dtype else None)

    def __repr__(self):
        return f"Param({self.index}, {self.decl!r})"


class Kernel:
    """An extern "C" kernel: its name, its Params, the line it is declared on."""

    def __init__(self, name, params, line):
        self.name, self.params, self.line = name, params, line


# ---- reading the source ----------------------------------------------------

def _strip_comments(src):
    """The source with comments and string contents blanked, newlines kept."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i)); i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in src[i:j])); i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"' and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            out.append(src[i:j + 1]); i = j + 1
        else:
            out.append(c); i += 1
    return "".join(out)


_KERNEL_RE = re.compile(
    r'(extern\s+"C"\s+)?((?:static\s+|inline\s+)*)__global__\s+'
    r'(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+'
    r'(?:__launch_bounds__\s*\([^)]*\)\s*)?([A-Za-z_]\w*)\s*\(([^)]*)\)')


def _extern_c_spans(text):
    """Character spans of `extern "C" { ... }` blocks."""
    spans = []
    for m in re.finditer(r'extern\s+"C"\s*\{', text):
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        spans.append((m.end(), j))
    return spans


def parse_kernels(src):
    """{name: Kernel} for every extern "C" __global__ kernel; also the non-extern names."""
    text = _strip_comments(src)
    spans = _extern_c_spans(text)
    kernels, mangled = {}, []
    for m in _KERNEL_RE.finditer(text):
        name, plist = m.group(3), m.group(4)
        line = text.count("\n", 0, m.start(3)) + 1
        extern_c = bool(m.group(1)) or any(a <= m.start() < b for a, b in spans)
        if not extern_c:
            mangled.append(name)
            continue
        decls = [d for d in plist.split(",")]
        if len(decls) == 1 and decls[0].strip() in ("", "void"):
            decls = []
        params = [Param(i, d, line) for i, d in enumerate(decls)]
        kernels[name] = Kernel(name, params, line)
    return kernels, mangled


def _dynamic_shared(src):
    text = _strip_comments(src)
    m = re.search(r"\bextern\s+__shared__\b", text)
    return None if m is None else text.count("\n", 0, m.start()) + 1


def _local_includes(src, directory, seen=None):
    """Texts of the files a source #includes with quotes, found next to it, recursively."""
    seen = set() if seen is None else seen
    texts = []
    for name in re.findall(r'^\s*#\s*include\s*"([^"]+)"', src, flags=re.M):
        p = (Path(directory) / name).resolve()
        if p in seen or not p.is_file():
            continue
        seen.add(p)
        t = p.read_text()
        texts.append(t)
        texts.extend(_local_includes(t, p.parent, seen))
    return texts


# ---- compiling --------------------------------------------------------------

def cache_dir():
    """Where compiled kernels are kept: $MINICNN_CACHE/emu, else ~/.cache/minicnn/emu
    (or a temporary folder when neither can be written)."""
    root = os.environ.get("MINICNN_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "minicnn"
    for d in (base / "emu", Path(tempfile.gettempdir()) / f"minicnn-emu-{os.getuid()}"):
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                return d
        except OSError:
            pass
    raise EmulatorError(f"no writable cache folder for compiled kernels (tried {base / 'emu'})")


_gxx_version = None


def _compiler():
    global _gxx_version
    cxx = os.environ.get("CXX", "g++")
    if _gxx_version is None:
        try:
            _gxx_version = subprocess.run([cxx, "--version"], capture_output=True, text=True,
                                          check=True).stdout
        except (OSError, subprocess.CalledProcessError) as e:
            raise CompileError(f"the CUDA emulator needs a C++ compiler ({cxx}): {e}") from None
    return cxx, _gxx_version


def _wrapper(src, label, kernels):
    """The C++ translation unit: header, the .cu text under its own name, launchers."""
    quoted = label.replace("\\", "\\\\").replace('"', '\\"')
    lines = ['#include "emu.h"', f'#line 1 "{quoted}"', src, "",
             '#line 1 "<emulator launchers>"',
             'EMU_EXPORT const char* emu_error() { return emu_rt::R.err; }']
    for k in kernels:
        lines.append(
            f'EMU_EXPORT int emu_launch_{k}(const unsigned* g, const unsigned* b, void** a, '
            f'int order, unsigned long long seed, int fibers) {{\n'
            f'    return emu_rt::launch("{k}", g, b, a, order, seed, fibers,\n'
            f'        [](void** args) {{ emu_rt::call(&{k}, args); }});\n}}\n'
            f'EMU_EXPORT int emu_params_{k}(int* sizes) {{ '
            f'return emu_rt::param_sizes(&{k}, sizes); }}')
    return "\n".join(lines) + "\n"


def _compile(cpp, include_dir, sanitize, includes=(), gpu_math=False):
    """Compile the wrapper into a shared library in the cache; return its path. The key
    covers everything that can change the result: sources, header, flags, compiler."""
    cxx, version = _compiler()
    flags = _FLAGS + (_SANITIZE_FLAGS if sanitize else _OPT_FLAGS)
    if gpu_math:
        flags = [f for f in flags if f != "-ffp-contract=off"] + _GPU_MATH_FLAGS
    key = hashlib.sha256("\0".join([_WRAPPER_VERSION, cpp, *includes, HEADER.read_text(),
                                    " ".join(flags), str(include_dir), version]).encode())
    key = key.hexdigest()[:24]
    out = cache_dir() / f"{key}{'-asan' if sanitize else ''}.so"
    if out.exists():
        return out
    # Unique names while building, then atomic renames: parallel test workers may
    # compile the same file at the same time.
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=key, suffix=".tmp.cpp")
    with os.fdopen(fd, "w") as f:
        f.write(cpp)
    tmp_so = tmp[:-4] + ".so"
    try:
        inc = ["-I", str(include_dir)] if include_dir is not None else []
        cmd = [cxx, *flags, "-I", str(HERE), *inc, tmp, "-o", tmp_so]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise CompileError("g++ could not compile the kernel file:\n" + r.stderr.strip())
        os.replace(tmp, out.with_suffix(".cpp"))  # kept next to the library, for reading
        os.replace(tmp_so, out)
    finally:
        for t in (tmp, tmp_so):
            if os.path.exists(t):
                os.unlink(t)
    return out


def _asan_loaded():
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def libasan_path():
    """Path of g++'s AddressSanitizer runtime, or None."""
    cxx = os.environ.get("CXX", "g++")
    try:
        p = subprocess.run([cxx, "-print-file-name=libasan.so"], capture_output=True,
                           text=True).stdout.strip()
    except OSError:
        return None
    return p if p and os.path.isabs(p) and os.path.exists(p) else None


def sanitized_env(env=None):
    """Environment for a process that can load sanitized modules (they are the default)."""
    lib = libasan_path()
    if lib is None:
        raise EmulatorError("no libasan.so found (g++ -print-file-name=libasan.so)")
    env = dict(os.environ if env is None else env)
    env["LD_PRELOAD"] = (lib + " " + env.get("LD_PRELOAD", "")).strip()
    # Python itself "leaks" at exit; fibers confuse stack-use-after-return checks.
    env["ASAN_OPTIONS"] = "detect_leaks=0:detect_stack_use_after_return=0:" + \
        env.get("ASAN_OPTIONS", "")
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:" + env.get("UBSAN_OPTIONS", "")
    env["MINICNN_EMU_SANITIZE"] = "1"
    return env


def run_sanitized(code, timeout=300, cwd=None):
    """Run Python `code` (a string, or the path of a .py script) in a new process that
    can load sanitized modules. Returns subprocess.CompletedProcess (text stdout and
    stderr); a sanitizer report lands on stderr and the exit status is non-zero."""
    if isinstance(code, os.PathLike) or (code.endswith(".py") and "\n" not in code
                                          and os.path.isfile(code)):
        cmd = [sys.executable, str(code)]
    else:
        cmd = [sys.executable, "-c", code]
    return subprocess.run(cmd, env=sanitized_env(), capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


# ---- calling ----------------------------------------------------------------

# One launch at a time in the whole process: the fault handlers are process-wide.
_launch_lock = threading.Lock()
_libraries = {}


def _dim3(v, what, kernel):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (v,)
    if not isinstance(v, (tuple, list)) or not 1 <= len(v) <= 3 or \
            not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in v):
        raise EmulatorError(f"kernel {kernel}: {what} must be an int or a tuple of 1 to 3 ints, "
                            f"got {v!r}")
    v = tuple(int(x) for x in v) + (1,) * (3 - len(v))
    limits = _GRID_LIMITS if what == "grid" else _BLOCK_LIMITS
    for x, lim, axis in zip(v, limits, "xyz"):
        if not 1 <= x <= lim:
            raise EmulatorError(f"kernel {kernel}: {what}.{axis} = {x} is outside 1..{lim}")
    return v


def _type_name(a):
    if isinstance(a, np.ndarray):
        return f"a {a.dtype} array of shape {a.shape}"
    if isinstance(a, np.generic):
        return f"numpy.{type(a).__name__}"
    t = type(a)
    return f"a Python {t.__name__}" if t.__module__ == "builtins" else \
        f"{t.__module__}.{t.__qualname__}"


class Function:
    """One kernel of a module; call it like a cupy RawKernel."""

    def __init__(self, module, kernel, launch):
        self.module = module
        self.name = kernel.name
        self.params = kernel.params
        self._launch = launch

    def _where(self, p):
        return f"kernel {self.name}, parameter {p.index} ({p.decl})"

    def _pack(self, args):
        if not isinstance(args, tuple):
            raise KernelArgumentError(f"kernel {self.name}: args must be a tuple, "
                                      f"got {_type_name(args)}")
        if len(args) != len(self.params):
            sig = ", ".join(p.decl for p in self.params)
            raise KernelArgumentError(f"kernel {self.name} takes {len(self.params)} arguments "
                                      f"({sig}), got {len(args)}")
        keep = []
        for p, a in zip(self.params, args):
            if not p.supported:
                raise KernelArgumentError(f"{self._where(p)}: the emulator cannot pass a "
                                          f"'{p.ctype}{'*' * p.pointer}' parameter")
            if p.pointer:
                keep.append(ctypes.c_void_p(self._pointer(p, a)))
                continue
            want = p.dtype
            if type(a) is not want:
                hint = ""
                if isinstance(a, (float, np.floating)) and want in (np.float32, np.float64):
                    hint = " (cupy would silently pass a double)" if want is np.float32 else ""
                elif isinstance(a, (int, np.integer)) and want is not np.int64:
                    hint = " (cupy would silently pass a 64-bit long long)" \
                        if isinstance(a, int) or a.dtype.itemsize == 8 else ""
                raise KernelArgumentError(
                    f"{self._where(p)}: expected numpy.{np.dtype(want).name}, got "
                    f"{_type_name(a)}; pass np.{np.dtype(want).name}(...){hint}")
            keep.append(_CTYPES_OF[want](a.item()))
        argv = (ctypes.c_void_p * max(1, len(keep)))(*[ctypes.addressof(k) for k in keep])
        return argv, keep

    def _pointer(self, p, a):
        if a is None:
            return None
        want = np.dtype(p.dtype)
        star = f"{p.ctype}*"
        if not isinstance(a, np.ndarray):
            more = " (the emulator runs on numpy arrays)" if "cupy" in type(a).__module__ else ""
            raise KernelArgumentError(f"{self._where(p)}: expected a numpy array of {want} for "
                                      f"{star}, got {_type_name(a)}{more}")
        if a.dtype != want:
            raise KernelArgumentError(f"{self._where(p)}: expected a numpy array of {want} for "
                                      f"{star}, got {_type_name(a)}; convert it with "
                                      f".astype(np.{want.name})")
        if not a.flags.c_contiguous:
            raise KernelArgumentError(f"{self._where(p)}: the array (shape {a.shape}) is not "
                                      f"C-contiguous; pass np.ascontiguousarray(...)")
        if p.vector:
            n = p.vector[1]
            if a.size % n or a.ctypes.data % (n * want.itemsize):
                raise KernelArgumentError(f"{self._where(p)}: a {p.ctype} array needs a size "
                                          f"that is a multiple of {n} and aligned memory")
        return a.ctypes.data

    def __call__(self, grid, block, args, shared_mem=0):
        g = _dim3(grid, "grid", self.name)
        b = _dim3(block, "block", self.name)
        nthreads = b[0] * b[1] * b[2]
        if nthreads > MAX_THREADS_PER_BLOCK:
            raise EmulatorError(f"kernel {self.name}: {nthreads} threads per block "
                                f"{tuple(b)} is more than {MAX_THREADS_PER_BLOCK}")
        if shared_mem:
            raise EmulatorError(f"kernel {self.name}: shared_mem={shared_mem}: dynamic shared "
                                f"memory (extern __shared__) is not supported by the emulator; "
                                f"size __shared__ arrays with constants")
        argv, keep = self._pack(args)
        m = self.module
        gc = (ctypes.c_uint * 3)(*g)
        bc = (ctypes.c_uint * 3)(*b)
        with _launch_lock:
            rc = self._launch(gc, bc, argv, ORDERS.index(m.order), m.seed & (2**64 - 1),
                              int(m.fibers))
            if rc:
                raise EmulatorError(m._lib.emu_error().decode(errors="replace"))
        del keep


class Module:
    """A compiled .cu file. `order` ("forward", "reverse", "shuffle") and `seed` apply
    to the launches that follow; `kernels` lists the extern "C" kernel names."""

    def __init__(self, lib, path, kernels, mangled, fibers, order, seed, sanitize):
        self._lib = lib
        self.path = path
        self._kernels = kernels
        self._mangled = mangled
        self.fibers = fibers
        self.sanitize = sanitize
        self.seed = seed
        self.order = order
        self._functions = {}

    @property
    def order(self):
        return self._order

    @order.setter
    def order(self, value):
        if value not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {value!r}")
        self._order = value

    @property
    def kernels(self):
        return tuple(self._kernels)

    def get_function(self, name):
        if name in self._functions:
            return self._functions[name]
        k = self._kernels.get(name)
        if k is None:
            why = " (it is not declared extern \"C\", so its name is mangled)" \
                if name in self._mangled else ""
            raise EmulatorError(f"{self.path}: no kernel named {name!r}{why}; "
                                f"extern \"C\" kernels: {', '.join(self._kernels) or 'none'}")
        launch = getattr(self._lib, f"emu_launch_{name}")
        launch.restype = ctypes.c_int
        launch.argtypes = [ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint),
                           ctypes.c_void_p, ctypes.c_int, ctypes.c_ulonglong, ctypes.c_int]
        f = Function(self, k, launch)
        self._functions[name] = f
        return f

    def __repr__(self):
        return f"<emulated CUDA module {self.path} order={self.order!r}>"


def _check_params(lib, kernels, label):
    """The C++ compiler's view of each signature must match the parser's."""
    for k in kernels.values():
        f = getattr(lib, f"emu_params_{k.name}")
        f.restype = ctypes.c_int
        sizes = (ctypes.c_int * 256)()
        n = f(sizes)
        if n != len(k.params) or any(p.size is not None and p.size != sizes[i]
                                     for i, p in enumerate(k.params)):
            raise EmulatorError(f"{label}: could not read the signature of kernel {k.name} "
                                f"(line {k.line}): the parser saw {len(k.params)} parameters "
                                f"{[p.decl for p in k.params]}, the compiler {n} of sizes "
                                f"{list(sizes[:n])}")


def load_module(path_or_source, order="forward", seed=0, sanitize=None, gpu_math=None):
    """Compile a CUDA C file (a path) or CUDA C text for the CPU and return a Module.

    order: "forward" | "reverse" | "shuffle", the order threads (and blocks) run in;
    seed: the shuffle's seed; sanitize: compile with AddressSanitizer + UBSan (None:
    when the environment variable MINICNN_EMU_SANITIZE is 1). A sanitized module only
    loads in a process started under LD_PRELOAD of libasan (see run_sanitized).
    gpu_math: the GPU's arithmetic, fused multiply-adds and subnormals flushed to zero
    (None: when MINICNN_EMU_GPU_MATH is 1); module.gpu_math says which it got."""
    if sanitize is None:
        sanitize = os.environ.get("MINICNN_EMU_SANITIZE", "") not in ("", "0")
    if gpu_math is None:
        gpu_math = os.environ.get(GPU_MATH_ENV, "") not in ("", "0")
    if gpu_math:
        _check_gpu_math()
    is_path = isinstance(path_or_source, os.PathLike) or (
        isinstance(path_or_source, str) and "\n" not in path_or_source
        and (path_or_source.endswith((".cu", ".cuh")) or os.path.isfile(path_or_source)))
    if is_path:
        path = Path(path_or_source).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no CUDA file at {path}")
        src = path.read_text()
        label, include_dir = str(path), path.parent
    else:
        src = str(path_or_source)
        label = "<cuda source>"
        include_dir = Path.cwd() if re.search(r"^\s*#\s*include", src, flags=re.M) else None
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    line = _dynamic_shared(src)
    if line is not None:
        raise EmulatorError(f"{label}:{line}: dynamic shared memory (extern __shared__) is "
                            f"not supported by the emulator; size __shared__ arrays with "
                            f"constants")
    kernels, mangled = parse_kernels(src)
    includes = _local_includes(src, include_dir) if include_dir is not None else []
    fibers = any(_BARRIER_RE.search(_strip_comments(t)) for t in [src, *includes])
    cpp = _wrapper(src, label, kernels)
    if sanitize and not _asan_loaded():
        raise EmulatorError(
            "a sanitized module needs the AddressSanitizer runtime loaded first: run Python "
            "with LD_PRELOAD=$(g++ -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0, "
            "e.g. python -m minicnn.kernels.cuda.emu --sanitize -- python script.py, "
            "or use minicnn.kernels.cuda.emu.run_sanitized(code)")
    so = _compile(cpp, include_dir, sanitize, includes, gpu_math)
    lib = _libraries.get(so)
    if lib is None:
        lib = ctypes.CDLL(str(so))
        lib.emu_error.restype = ctypes.c_char_p
        _check_params(lib, kernels, label)
        _libraries[so] = lib
    module = Module(lib, label, kernels, mangled, fibers, order, seed, sanitize)
    module.gpu_math = bool(gpu_math)
    return module


def _check_gpu_math():
    """GPU arithmetic needs x86-64's MXCSR (FTZ/DAZ) and FMA instructions."""
    import platform
    machine = platform.machine().lower()
    try:
        with open("/proc/cpuinfo") as f:
            fma = " fma" in f.read()
    except OSError:
        fma = True       # no /proc: let the compiler and the CPU say
    if machine not in ("x86_64", "amd64") or not fma:
        raise EmulatorError(f"{GPU_MATH_ENV}=1 (the GPU's arithmetic: fused multiply-add, "
                            f"subnormals flushed) needs an x86-64 CPU with FMA; this one is "
                            f"{machine}{'' if fma else ' without FMA'}; unset {GPU_MATH_ENV}")


def _main(argv):
    """python -m minicnn.kernels.cuda.emu --sanitize -- COMMAND...: run COMMAND where
    load_module compiles sanitized and sanitized modules load."""
    if len(argv) < 3 or argv[0] != "--sanitize" or argv[1] != "--":
        print("usage: python -m minicnn.kernels.cuda.emu --sanitize -- COMMAND [ARGS...]",
              file=sys.stderr)
        return 2
    os.execvpe(argv[2], argv[2:], sanitized_env())
