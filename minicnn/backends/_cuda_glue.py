"""The Python half of the CUDA kernels, shared by devices "cuda" and "cuda-sim" (lesson 10).

Every entry of the backend table (minicnn/backends/table.py) becomes a few launches
of the kernels in kernels/cuda/*.cu:

  conv2d_forward     per chunk of images: im2col -> sgemm (W @ cols) -> fnl_to_nfl;
                     then add_bias
  conv2d_backward    per chunk: nfl_to_fnl -> im2col -> sgemm (gW, split along K) ;
                     sgemm (W^T @ gout) -> col2im ; then sum_partials (gW) and bias_grad
  linear_*           sgemm, add_bias, bias_grad
  pooling, activations, softmax, cross-entropy, optimisers: one kernel each (or two)

The convolution works on chunks of images whose workspace (the column matrix and the
product beside it) stays under CONV_WORKSPACE_BYTES, so the memory it needs does not
grow with the batch: AlexNet's conv2 at batch 32 would need a 224 MB column matrix in
one piece. Chunking changes no bits: each output pixel's sum runs over the same taps
in the same order, and the weight gradient, a sum over the batch, is cut into slices
of whole images that depend on the shapes only (see WeightGrad).

Deterministic: no kernel adds into memory another thread also writes (no atomicAdd on
floats); every sum runs in an order fixed by the code, so a result has the same bits
on every run, in whatever order the GPU schedules threads and blocks.

The two devices differ in two things only, handed to CudaKernels:
  xp           cupy (arrays in GPU memory) or numpy (arrays in RAM)
  load_module  path of a .cu file -> a module whose get_function(name) returns a
               kernel called as kernel(grid, block, args): cupy.RawModule compiled by
               NVRTC, or the CPU emulator (minicnn.kernels.cuda.emu), which mimics it.

Rules every launch here follows:
  - arrays are C-contiguous; float32, except pooling indices (int32, this backend's own
    index type) and class targets (int64, C's long long);
  - scalars are np.int32 / np.float32: cupy passes a Python int as a 64-bit long long
    and a Python float as a double, and the kernel would read garbage;
  - grid and block sizes are worked out in one place, "launch geometry" below;
  - no array argument has 2**31 elements or more (the kernels index with int);
  - on "cuda-sim" every fresh output starts as garbage, as on a GPU: NaN in every
    float, 0x7FC00000 in every 32-bit word (poisoned()), so a kernel that forgets to
    write an element fails its test; outputs a kernel adds into are zeroed here;
  - MINICNN_CUDA_SYNC=1 waits for every launch to finish and names the kernel, its
    .cu file, grid and block when one fails (a GPU otherwise reports a failed launch
    at some later call).
"""
import contextlib
import math
import os
import weakref
from pathlib import Path

import numpy as np

import minicnn.kernels.cuda
from minicnn.backends._cuda_launch import (GEMM_THREADS, GEMM_TILE, THREADS, _i32,  # noqa: F401
                                           gemm_tiles, per_element, per_row, single_block)
from minicnn.backends._cuda_layers import LayerKernels  # batch norm, dropout, adaptive pool, BCE
from minicnn.errors import UserError
from minicnn.kernels.cuda.emu.loader import parse_kernels
from minicnn.kernels.reference import out_size

KERNEL_DIR = Path(minicnn.kernels.cuda.__file__).resolve().parent


def kernel_path(family):
    """kernels/cuda/<family>.cu, e.g. kernel_path("gemm")."""
    return KERNEL_DIR / f"{family}.cu"


# The convolution's workspace per chunk of images: column matrix + product (+ the
# weight gradient's partials), in bytes.
CONV_WORKSPACE_BYTES = 64 * 2**20
# A weight-gradient product with fewer 64 x 64 tiles than this many blocks is split
# along K (a GPU with ~130 multiprocessors runs about two such blocks on each) ...
SPLIT_K_TARGET_BLOCKS = 256
# ... into slices of at least this many terms each (enough work to be worth a block).
SPLIT_K_MIN_SLICE = 1024
# Arrays of this many elements or more overflow the kernels' int indices.
MAX_ELEMENTS = 2**31
SYNC_ENV = "MINICNN_CUDA_SYNC"
POISON = 0x7FC00000          # NaN as a float32, 2143289344 as an int32 (emu.h's poison)


class CudaKernelError(RuntimeError):
    """A kernel launch failed (raised under MINICNN_CUDA_SYNC=1, naming the launch)."""


class KernelSizeError(UserError, ValueError):
    """An array too large for the kernels' 32-bit indices."""


def poisoned(shape, dtype=np.float32):
    """A new numpy array whose every 32-bit word is POISON: what "cuda-sim" hands a
    kernel as a fresh output (a GPU's fresh memory holds whatever was there before)."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    words = np.empty(-(-nbytes // 4), np.uint32)
    words.fill(POISON)
    return words.view(np.uint8)[:nbytes].view(dtype).reshape(shape)


class MemoryMeter:
    """Device memory held by the arrays the glue allocates, from allocation until the
    last view of each is gone: `live` and `peak`, in bytes (see CudaKernels.measure_memory).
    Inputs the caller passes in are not counted, copies the glue makes of them are."""

    def __init__(self):
        self.live = 0
        self.peak = 0
        self.allocations = 0

    def add(self, a):
        owner = a
        while getattr(owner, "base", None) is not None and hasattr(owner.base, "nbytes"):
            owner = owner.base            # views keep their owner alive: count the owner
        n = int(owner.nbytes)
        self.live += n
        self.peak = max(self.peak, self.live)
        self.allocations += 1
        weakref.finalize(owner, self._free, n)

    def _free(self, n):
        self.live -= n


def _chunks(n, step, group):
    """(n0, n1) ranges covering 0..n, at most `step` long; each either lies inside one
    group of `group` items or is made of whole groups (the last one may be short)."""
    if step >= group:
        step -= step % group
        for n0 in range(0, n, step):
            yield n0, min(n, n0 + step)
        return
    for g0 in range(0, n, group):
        g1 = min(n, g0 + group)
        for n0 in range(g0, g1, step):
            yield n0, min(g1, n0 + step)


class WeightGrad:
    """A weight gradient gW (m, cols) = sum over `items` (images, or rows for linear) of
    each item's `per` terms: one long sum, split along K when gW alone has too few
    tiles to keep a GPU busy (SPLIT_K_TARGET_BLOCKS).

    The K axis is cut into groups of `group` whole items, each group into `parts`
    slices; slice z's product goes to partials[z], and finish() adds the partials in
    the order z = 0, 1, ... (sum_partials in gemm.cu). The cut depends on the shapes
    only, so products added chunk by chunk (add()) give the same bits as one product."""

    def __init__(self, kernels, m, cols, items, per):
        self.k, self.m, self.cols, self.items, self.per = kernels, m, cols, items, per
        tiles = math.ceil(m / GEMM_TILE) * math.ceil(cols / GEMM_TILE)
        total = items * per
        want = math.ceil(SPLIT_K_TARGET_BLOCKS / max(1, tiles))
        self.group, self.parts = max(1, items), 1
        if want > 1 and total >= 2 * SPLIT_K_MIN_SLICE:
            slice_len = max(SPLIT_K_MIN_SLICE, math.ceil(total / want))
            if slice_len >= per:                      # a slice is whole items
                self.group = min(max(1, items), math.ceil(slice_len / per))
            else:                                     # a slice is part of one item
                self.group = 1
                length = math.ceil(per / math.ceil(per / slice_len))
                self.parts = math.ceil(per / length)
        self.slices = math.ceil(items / self.group) * self.parts
        self.out = kernels._empty((m, cols))
        self.partials = (self.out.reshape(1, m, cols) if self.slices == 1 else
                         kernels._empty((self.slices, m, cols)))
        self.added = False

    @property
    def scratch_bytes(self):
        """Bytes of the partials beside gW itself (0 when K is not split)."""
        return 0 if self.slices == 1 else self.partials.nbytes

    def add(self, a, b, trans_a, trans_b, n0, n1):
        """Add op(a) @ op(b), the terms of items n0..n1 (a range _chunks gives)."""
        g0 = n0 // self.group
        per_item_k = self.per
        if n0 % self.group == 0 and ((n1 - n0) % self.group == 0 or n1 == self.items):
            groups = math.ceil((n1 - n0) / self.group)           # whole groups
            z0, z1 = g0 * self.parts, (g0 + groups) * self.parts
            span, accumulate = self.group * per_item_k, 0
        else:                                                    # inside one group
            assert self.parts == 1 and (n1 - 1) // self.group == g0, (n0, n1, self.group)
            z0, z1 = g0, g0 + 1
            span, accumulate = (n1 - n0) * per_item_k, int(n0 % self.group != 0)
        self.k.matmul(a, b, trans_a, trans_b, out=self.partials[z0:z1],
                      split=(span, self.parts, accumulate))
        self.added = True

    def finish(self):
        """gW (m, cols); zeros when no item was added (an empty batch)."""
        if not self.added:
            self.out.fill(0)
        elif self.slices > 1:
            self.k.launch("gemm", "sum_partials", per_element(self.out.size), self.partials,
                          self.out, *_i32(self.slices, self.out.size))
        return self.out



class CudaKernels(LayerKernels):
    """The backend table (minicnn/backends/table.py, class Backend) over one array module
    and one way of loading .cu files: each method below (and in LayerKernels) is one
    entry, its shapes documented in Backend."""

    def __init__(self, device, xp, load_module):
        self.device = device
        self.xp = xp
        self._load_module = load_module
        self._modules = {}
        self._functions = {}
        self._params = {}             # (family, kernel) -> parameter names, for messages
        self._pool_windows = {}       # id(idx) -> (weak reference to idx, window geometry)
        self.meter = None             # a MemoryMeter while measure_memory() runs

    # -- loading and launching

    def module(self, family):
        """The compiled kernels/cuda/<family>.cu, loaded on first use."""
        if family not in self._modules:
            self._modules[family] = self._load_module(kernel_path(family))
        return self._modules[family]

    def loaded_modules(self):
        return list(self._modules.values())

    def launch(self, family, name, geometry, *args):
        """Run kernel `name` of <family>.cu on (grid, block) = geometry with args."""
        grid, block = geometry
        self._check_sizes(family, name, args)
        if 0 in grid:
            return                      # nothing to compute; CUDA refuses an empty grid
        _i32(*(g * b for g, b in zip(grid, block)))   # every thread index fits in an int
        kernel = self._functions.get((family, name))
        if kernel is None:
            kernel = self._functions[(family, name)] = self.module(family).get_function(name)
        if os.environ.get(SYNC_ENV, "") in ("", "0"):
            kernel(grid, block, args)
            return
        try:                            # MINICNN_CUDA_SYNC=1: wait, and name a failure
            kernel(grid, block, args)
            if self.device == "cuda":
                self.xp.cuda.Device().synchronize()
        except Exception as exc:
            raise CudaKernelError(
                f"{SYNC_ENV}=1: kernel {name} of {kernel_path(family)} failed (grid "
                f"{tuple(grid)}, block {tuple(block)}) on device '{self.device}': "
                f"{type(exc).__name__}: {exc}") from exc

    def param_names(self, family, name):
        """The parameter names of kernel `name`, read from <family>.cu."""
        key = (family, name)
        if key not in self._params:
            kernels, _ = parse_kernels(kernel_path(family).read_text())
            k = kernels.get(name)
            self._params[key] = [p.name for p in k.params] if k else []
        return self._params[key]

    def _check_sizes(self, family, name, args):
        """Refuse, by name, an array argument too large for the kernels' int indices."""
        for i, a in enumerate(args):
            size = getattr(a, "size", 0)
            if getattr(a, "ndim", 0) and size >= MAX_ELEMENTS:
                names = self.param_names(family, name)
                what = f"'{names[i]}'" if i < len(names) else f"{i}"
                raise KernelSizeError(
                    f"kernel {name} ({family}.cu): argument {what} has shape {tuple(a.shape)}, "
                    f"{size} elements, but the kernels index with 32-bit ints (fewer than "
                    f"2**31 = {MAX_ELEMENTS} elements); use a smaller batch or image")

    @contextlib.contextmanager
    def measure_memory(self):
        """with kernels.measure_memory() as meter: ...  -> meter.peak, the most bytes the
        arrays allocated here held at once (see MemoryMeter)."""
        meter, previous = MemoryMeter(), self.meter
        self.meter = meter
        try:
            yield meter
        finally:
            self.meter = previous

    # -- checking and allocating arrays

    def _floats(self, a, op, what):
        """a as a C-contiguous float32 array of this device, or a clear error."""
        self._check(a, op, what)
        out = self.xp.asarray(a, order="C")       # 0-d stays 0-d (ascontiguousarray: 1-d)
        if out is not a:
            self._track(out)                      # a copy: device memory too
        return out

    def _in_place(self, a, op, what):
        """a itself, checked: it is updated in place, so it must already be contiguous."""
        self._check(a, op, what)
        if not a.flags.c_contiguous:
            raise ValueError(f"{op}: {what} must be C-contiguous to be updated in place")
        return a

    def _check(self, a, op, what):
        xp = self.xp
        if not isinstance(a, xp.ndarray):
            raise TypeError(f"{op} on device '{self.device}': {what} must be a "
                            f"{xp.__name__} array, got {type(a).__module__}.{type(a).__name__}")
        if a.dtype != np.float32:
            raise TypeError(f"{op} on device '{self.device}': {what} has dtype {a.dtype}, "
                            f"but the CUDA kernels compute in float32")

    def _targets(self, t, op):
        """Class indices as C-contiguous int64 (the kernels' long long)."""
        if not np.issubdtype(t.dtype, np.integer):
            raise TypeError(f"{op}: target must hold integer class indices, got dtype {t.dtype}")
        out = self.xp.asarray(t, dtype=np.int64, order="C")
        if out is not t:
            self._track(out)
        return out

    def _track(self, a):
        if self.meter is not None:
            self.meter.add(a)

    def _empty(self, shape, dtype=np.float32):
        """A fresh output: garbage on a GPU, so poisoned (NaN) on "cuda-sim"."""
        shape = tuple(int(d) for d in shape)
        if math.prod(shape) >= MAX_ELEMENTS:
            raise KernelSizeError(
                f"an array of shape {shape} ({math.prod(shape)} elements) is too large for "
                f"the kernels' 32-bit indices (fewer than 2**31 = {MAX_ELEMENTS} elements); "
                f"use a smaller batch or image")
        a = poisoned(shape, dtype) if self.device == "cuda-sim" else \
            self.xp.empty(shape, dtype=dtype)
        self._track(a)
        return a

    def _zeros(self, shape, dtype=np.float32):
        """An output a kernel adds into: zeroed here, on every device."""
        a = self._empty(shape, dtype)
        a.fill(0)
        return a

    # -- building blocks shared by several table entries

    def matmul(self, a, b, trans_a=False, trans_b=False, out=None, split=None):
        """op(a) @ op(b) by sgemm; op transposes when its flag is set.

        a (M,K) or (K,M) with trans_a; b (K,N) or (N,K) with trans_b -> (M,N) float32.
        split=(k_span, k_parts, accumulate) with out (S,M,N): slice z of the sum over k
        goes to out[z] (split-K, see gemm.cu; WeightGrad chooses the slices).
        """
        m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
        k2, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
        if k != k2:
            raise ValueError(f"matmul: inner sizes differ ({k} and {k2})")
        if split is None:
            c, slices, split = self._empty((m, n)), 1, (k, 1, 0)
        else:
            c, slices = out, out.shape[0]
        self.launch("gemm", "sgemm", gemm_tiles(m, n, slices), a, b, c,
                    *_i32(m, n, k, trans_a, trans_b, *split))
        return c

    def _add_bias(self, y, b, f, l):
        """y seen as (N, f, l) gets b[f] added, in place."""
        self.launch("gemm", "add_bias", per_element(y.size), y, b, *_i32(f, l, y.size))

    def _bias_grad(self, gy, n, f, l):
        """gb[f] = sum over n and l of gy seen as (n, f, l)."""
        gb = self._empty((f,))
        self.launch("gemm", "bias_grad", per_row(f), gy, gb, *_i32(n, f, l))
        return gb

    def _im2col(self, x, kernel, stride, padding, ho, wo):
        """x (N,C,H,W) -> cols (C*KH*KW, N*Ho*Wo); see conv.cu."""
        n, c, h, w = x.shape
        cols = self._empty((c * kernel[0] * kernel[1], n * ho * wo))
        self.launch("conv", "im2col", per_element(cols.size), x, cols,
                    *_i32(n, c, h, w, *kernel, *stride, *padding, ho, wo))
        return cols

    def _col2im(self, cols, gx, kernel, stride, padding, ho, wo):
        """cols (C*KH*KW, N*Ho*Wo) -> gx (N,C,H,W), every pixel written (the sum of the
        taps that read it); see conv.cu."""
        self.launch("conv", "col2im", per_element(gx.size), cols, gx,
                    *_i32(*gx.shape, *kernel, *stride, *padding, ho, wo))

    def _images_per_chunk(self, per_image_bytes, reserved=0):
        """How many images' workspace fits in CONV_WORKSPACE_BYTES (at least one)."""
        return max(1, (CONV_WORKSPACE_BYTES - reserved) // max(1, per_image_bytes))

    # ----------------------------------------------------------------------------- the table

    def conv2d_forward(self, x, w, b, stride, padding, relu=False, pool=False):
        """x (N,C,H,W), w (F,C,KH,KW), b (F,) or None -> y (N,F,Ho,Wo); relu=True
        also applies max(y, 0) (here by the ReLU kernel, run after the convolution's);
        pool=True then -> (yp, idx) of the 2x2 stride-2 max-pool (the pool kernel's)

        Chunks of images: im2col, the product and the copy out run on as many images
        at a time as fit in CONV_WORKSPACE_BYTES (cols + product)."""
        op = "conv2d"
        x, w = self._floats(x, op, "input"), self._floats(w, op, "weight")
        n, c, h, wd = x.shape
        f, _, kh, kw = w.shape
        ho, wo = out_size(h, kh, stride[0], padding[0]), out_size(wd, kw, stride[1], padding[1])
        taps, pixels = c * kh * kw, ho * wo
        w2 = w.reshape(f, taps)
        y = self._empty((n, f, ho, wo))
        step = self._images_per_chunk((taps + f) * pixels * 4)    # cols + product per image
        for n0 in range(0, n, step):
            n1 = min(n, n0 + step)
            cols = self._im2col(x[n0:n1], (kh, kw), stride, padding, ho, wo)
            out = self.matmul(w2, cols)                               # (F, n*Ho*Wo)
            del cols
            self.launch("conv", "fnl_to_nfl", per_element(out.size), out, y[n0:n1],
                        *_i32(n1 - n0, f, pixels))
            del out
        if b is not None:
            self._add_bias(y, self._floats(b, op, "bias"), f, pixels)
        if relu:                                  # in place: each thread reads, then writes
            self.launch("activation", "relu_forward", per_element(y.size), y, y, *_i32(y.size))
        if pool:
            return CudaKernels.max_pool2d_forward(self, y, (2, 2), (2, 2), (0, 0))
        return y

    def conv2d_backward(self, x, w, gy, stride, padding, needs=(True, True, True), relu_y=None,
                        pool_idx=None):
        """x (N,C,H,W), w (F,C,KH,KW), gy (N,F,Ho,Wo) -> (gx, gw, gb), None where not needed;
        relu_y: the output of a relu=True forward (gy goes back through the ReLU first);
        pool_idx: the idx of a pool=True forward (gy, relu_y pooled: after the ReLU's
        backward, the pool's scatter makes the conv output's gradient)

        Chunks of images as in the forward (gout + cols, then gout + gcols, beside gW's
        partials); gW is a WeightGrad, whose slices the chunks never split."""
        op = "conv2d backward"
        x, w = self._floats(x, op, "input"), self._floats(w, op, "weight")
        gy = self._floats(gy, op, "output gradient")
        if relu_y is not None:   # the kernel itself, not the table entry (which a trace wraps)
            gy = self._elementwise("relu_backward", "relu backward",
                                   (gy, "output gradient"), (relu_y, "output"))
        n, c, h, wd = x.shape
        f, _, kh, kw = w.shape
        if pool_idx is not None:
            full = (n, f, out_size(h, kh, stride[0], padding[0]),
                    out_size(wd, kw, stride[1], padding[1]))
            gy = CudaKernels.max_pool2d_backward(self, gy, pool_idx, full)
        ho, wo = gy.shape[2:]
        taps, pixels = c * kh * kw, ho * wo
        gx = gw = gb = None
        if needs[0] or needs[1]:
            gx = self._empty(x.shape) if needs[0] else None
            wg = WeightGrad(self, f, taps, n, pixels) if needs[1] else None
            # per image: gout, and cols or gcols (one at a time)
            step = self._images_per_chunk((taps + f) * pixels * 4,
                                          reserved=wg.scratch_bytes if wg else 0)
            for n0, n1 in _chunks(n, step, wg.group if wg else 1):
                gout = self._empty((f, (n1 - n0) * pixels))
                self.launch("conv", "nfl_to_fnl", per_element(gout.size), gy[n0:n1], gout,
                            *_i32(n1 - n0, f, pixels))
                if wg is not None:
                    cols = self._im2col(x[n0:n1], (kh, kw), stride, padding, ho, wo)
                    wg.add(gout, cols, False, True, n0, n1)          # gW += gout @ cols^T
                    del cols
                if gx is not None:
                    gcols = self.matmul(w.reshape(f, taps), gout, trans_a=True)
                    self._col2im(gcols, gx[n0:n1], (kh, kw), stride, padding, ho, wo)
                    del gcols
                del gout
            gw = wg.finish().reshape(w.shape) if wg is not None else None
        if needs[2]:
            gb = self._bias_grad(gy, n, f, ho * wo)
        return gx, gw, gb

    def max_pool2d_forward(self, x, kernel, stride, padding):
        """x (N,C,H,W) -> y (N,C,Ho,Wo), idx (N,C,Ho,Wo) int32 (flat h*W + w in the plane)

        The window geometry is remembered for this idx array (until it is freed), so
        that the backward can gather (see pool.cu)."""
        x = self._floats(x, "max_pool2d", "input")
        n, c, h, w = x.shape
        ho = out_size(h, kernel[0], stride[0], padding[0])
        wo = out_size(w, kernel[1], stride[1], padding[1])
        y = self._empty((n, c, ho, wo))
        idx = self._empty((n, c, ho, wo), np.int32)
        self.launch("pool", "max_pool2d_forward", per_element(y.size), x, y, idx,
                    *_i32(n, c, h, w, *kernel, *stride, *padding, ho, wo))
        key = id(idx)
        windows = self._pool_windows
        windows[key] = (weakref.ref(idx, lambda _: windows.pop(key, None)),
                        (tuple(kernel), tuple(stride), tuple(padding), (h, w), (ho, wo)))
        return y, idx

    def _pool_window(self, idx, x_shape, out_shape):
        """(kernel, stride, padding) of the forward that made idx, or None if unknown."""
        entry = self._pool_windows.get(id(idx))
        if entry is None or entry[0]() is not idx:
            return None
        kernel, stride, padding, in_hw, out_hw = entry[1]
        if in_hw != tuple(x_shape[2:]) or out_hw != tuple(out_shape[2:]):
            return None
        return kernel, stride, padding

    def max_pool2d_backward(self, gy, idx, x_shape):
        """gy, idx (N,C,Ho,Wo) -> gx x_shape (N,C,H,W); gx[n,c].flat[idx] += gy

        With the idx of this backend's forward: one thread per input pixel gathers the
        gradients of the windows that picked it. With any other indices (say, copied
        from the host) the windows are unknown: one thread per plane adds them in turn.
        Both in a fixed order: the same bits on every run."""
        gy = self._floats(gy, "max_pool2d backward", "output gradient")
        window = self._pool_window(idx, x_shape, gy.shape)
        idx32 = self.xp.asarray(idx, dtype=np.int32, order="C")
        if idx32 is not idx:
            self._track(idx32)
        n, c, h, w = x_shape
        ho, wo = gy.shape[2:]
        gx = self._empty(x_shape)
        if window is not None:
            kernel, stride, padding = window
            self.launch("pool", "max_pool2d_backward", per_element(gx.size), gy, idx32, gx,
                        *_i32(n, c, h, w, *kernel, *stride, *padding, ho, wo))
        else:
            self.launch("pool", "max_pool2d_backward_planes", per_element(n * c), gy, idx32,
                        gx, *_i32(n, c, h, w, ho, wo))
        return gx

    def avg_pool2d_forward(self, x, kernel, stride, padding):
        """x (N,C,H,W) -> y (N,C,Ho,Wo)"""
        x = self._floats(x, "avg_pool2d", "input")
        n, c, h, w = x.shape
        ho = out_size(h, kernel[0], stride[0], padding[0])
        wo = out_size(w, kernel[1], stride[1], padding[1])
        y = self._empty((n, c, ho, wo))
        self.launch("pool", "avg_pool2d_forward", per_element(y.size), x, y,
                    *_i32(n, c, h, w, *kernel, *stride, *padding, ho, wo))
        return y

    def avg_pool2d_backward(self, gy, x_shape, kernel, stride, padding):
        """gy (N,C,Ho,Wo) -> gx x_shape (N,C,H,W)"""
        gy = self._floats(gy, "avg_pool2d backward", "output gradient")
        ho, wo = gy.shape[2:]
        gx = self._empty(x_shape)
        self.launch("pool", "avg_pool2d_backward", per_element(gx.size), gy, gx,
                    *_i32(*x_shape, *kernel, *stride, *padding, ho, wo))
        return gx

    def _elementwise(self, name, op, *arrays):
        arrays = [self._floats(a, op, what) for a, what in arrays]
        out = self._empty(arrays[0].shape)
        self.launch("activation", name, per_element(out.size), *arrays, out, *_i32(out.size))
        return out

    def relu_forward(self, x):
        """y = max(x, 0), any shape"""
        return self._elementwise("relu_forward", "relu", (x, "input"))

    def relu_backward(self, gy, y):
        """gx = gy where y > 0 else 0"""
        return self._elementwise("relu_backward", "relu backward",
                                 (gy, "output gradient"), (y, "output"))

    def sigmoid_forward(self, x):
        """y = 1 / (1 + exp(-x)), any shape"""
        return self._elementwise("sigmoid_forward", "sigmoid", (x, "input"))

    def sigmoid_backward(self, gy, y):
        """gx = gy * y * (1 - y)"""
        return self._elementwise("sigmoid_backward", "sigmoid backward",
                                 (gy, "output gradient"), (y, "output"))

    def linear_forward(self, x, w, b):
        """x (N,In), w (Out,In), b (Out,) or None -> y (N,Out) = x @ w^T + b"""
        x, w = self._floats(x, "linear", "input"), self._floats(w, "linear", "weight")
        y = self.matmul(x, w, trans_b=True)
        if b is not None:
            self._add_bias(y, self._floats(b, "linear", "bias"), w.shape[0], 1)
        return y

    def linear_backward(self, x, w, gy, needs=(True, True, True)):
        """gy (N,Out) -> gx = gy @ w (N,In), gw = gy^T @ x (Out,In), gb = sum_n gy (Out,)"""
        op = "linear backward"
        x, w = self._floats(x, op, "input"), self._floats(w, op, "weight")
        gy = self._floats(gy, op, "output gradient")
        gx = self.matmul(gy, w) if needs[0] else None
        gw = None
        if needs[1]:                                     # gw = gy^T @ x, a sum over rows
            wg = WeightGrad(self, gy.shape[1], x.shape[1], gy.shape[0], 1)
            if gy.shape[0]:
                wg.add(gy, x, True, False, 0, gy.shape[0])
            gw = wg.finish()
        gb = self._bias_grad(gy, gy.shape[0], gy.shape[1], 1) if needs[2] else None
        return gx, gw, gb

    def _rows(self, name, op, *arrays):
        arrays = [self._floats(a, op, what) for a, what in arrays]
        r, k = arrays[0].shape
        out = self._empty((r, k))
        if k > 0:
            self.launch("loss", name, per_row(r), *arrays, out, *_i32(r, k))
        return out

    def softmax_forward(self, x):
        """x (R,K) -> y (R,K), softmax along the last axis"""
        return self._rows("softmax_forward", "softmax", (x, "input"))

    def softmax_backward(self, gy, y):
        """gx = y * (gy - sum(gy*y, axis=1))"""
        return self._rows("softmax_backward", "softmax backward",
                          (gy, "output gradient"), (y, "output"))

    def log_softmax_forward(self, x):
        """x (R,K) -> y (R,K)"""
        return self._rows("log_softmax_forward", "log_softmax", (x, "input"))

    def log_softmax_backward(self, gy, y):
        """gx = gy - exp(y) * sum(gy, axis=1)"""
        return self._rows("log_softmax_backward", "log_softmax backward",
                          (gy, "output gradient"), (y, "output"))

    def _class_weights(self, weight, k, op):
        if weight is None:
            ones = self._empty((k,))
            ones.fill(1)
            return ones
        return self._floats(weight, op, "weight")

    def cross_entropy_forward(self, logits, target, weight, reduction):
        """logits (N,K), target (N,) int, weight (K,) or None -> (loss () or (N,), probs (N,K))"""
        op = "cross_entropy"
        logits = self._floats(logits, op, "input")
        n, k = logits.shape
        target = self._targets(target, op)
        weight = self._class_weights(weight, k, op)
        probs, losses, wts = self._empty((n, k)), self._empty((n,)), self._empty((n,))
        self.launch("loss", "cross_entropy_rows", per_row(n), logits, target, weight,
                    probs, losses, wts, *_i32(n, k))
        if reduction == "none":
            return losses, probs
        out = self._empty((1,))
        self.launch("loss", "ce_reduce", single_block(), losses, wts, out,
                    *_i32(n, reduction == "mean"))
        return out.reshape(()), probs

    def cross_entropy_backward(self, probs, target, weight, reduction, gloss):
        """probs (N,K), target (N,), gloss () or (N,) -> glogits (N,K)"""
        op = "cross_entropy backward"
        probs = self._floats(probs, op, "probs")
        n, k = probs.shape
        target = self._targets(target, op)
        weight = self._class_weights(weight, k, op)
        gloss = self._floats(gloss, op, "loss gradient").reshape(-1)
        mode = {"none": 0, "sum": 1, "mean": 2}[reduction]
        wsum = self._zeros((1,))                          # ce_weight_sum writes it; else unread
        if mode == 2:
            self.launch("loss", "ce_weight_sum", single_block(), target, weight, wsum,
                        *_i32(n, k))
        g = self._empty((n, k))
        self.launch("loss", "cross_entropy_backward", per_element(n * k), probs, target,
                    weight, gloss, wsum, g, *_i32(n, k, mode))
        return g

    def sgd_step(self, p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
        """In place on p (and buf when momentum != 0); PyTorch's SGD, see optim.cu"""
        op = "sgd_step"
        p, g = self._in_place(p, op, "parameter"), self._floats(g, op, "gradient")
        buf = self._in_place(buf, op, "momentum buffer") if momentum != 0 else p  # unread
        self.launch("optim", "sgd_step", per_element(p.size), p, g, buf, *_i32(p.size),
                    np.float32(lr), np.float32(momentum), np.float32(dampening),
                    np.float32(weight_decay), *_i32(bool(nesterov), bool(first)))

    def adam_step(self, p, g, m, v, lr, beta1, beta2, eps, weight_decay, step):
        """In place on p, m, v; PyTorch's Adam, see optim.cu"""
        op = "adam_step"
        p, g = self._in_place(p, op, "parameter"), self._floats(g, op, "gradient")
        m, v = self._in_place(m, op, "first moment"), self._in_place(v, op, "second moment")
        step_size = lr / (1.0 - beta1 ** step)           # in double precision, on the host
        sqrt_bc2 = math.sqrt(1.0 - beta2 ** step)
        self.launch("optim", "adam_step", per_element(p.size), p, g, m, v, *_i32(p.size),
                    np.float32(step_size), np.float32(beta1), np.float32(beta2),
                    np.float32(eps), np.float32(weight_decay), np.float32(sqrt_bc2))
