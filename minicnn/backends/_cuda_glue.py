"""The Python half of the CUDA kernels, shared by devices "cuda" and "cuda-sim" (lesson 10).

Every entry of the backend table (minicnn/backends/__init__.py) becomes a few launches
of the kernels in kernels/cuda/*.cu:

  conv2d_forward     im2col -> sgemm (W @ cols) -> fnl_to_nfl -> add_bias
  conv2d_backward    nfl_to_fnl -> sgemm (gW) ; sgemm (W^T @ gout) -> col2im ; bias_grad
  linear_*           sgemm, add_bias, bias_grad
  pooling, activations, softmax, cross-entropy, optimisers: one kernel each (or two)

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
  - grid and block sizes are worked out in one place, "launch geometry" below.
"""
import math
from pathlib import Path

import numpy as np

import minicnn.kernels.cuda
from minicnn.backends import KERNEL_TABLE

KERNEL_DIR = Path(minicnn.kernels.cuda.__file__).resolve().parent


def kernel_path(family):
    """kernels/cuda/<family>.cu, e.g. kernel_path("gemm")."""
    return KERNEL_DIR / f"{family}.cu"


# ----------------------------------------------------------------------------- launch geometry
# The block sizes below must match the constants of the .cu files (tests check it):
THREADS = 256        # threads per block of the 1-D kernels; BLOCK in gemm.cu and loss.cu,
                     # the size of their shared arrays for block reductions
GEMM_TILE = 64       # TILE in gemm.cu: each block computes a 64 x 64 tile of C
GEMM_THREADS = 16    # THREADS_XY in gemm.cu: a 16 x 16 block, 4 x 4 outputs per thread


def per_element(n):
    """One thread per element of an n-element array: ceil(n / THREADS) blocks."""
    return (math.ceil(n / THREADS), 1, 1), (THREADS, 1, 1)


def per_row(rows):
    """One block per row; its threads stride along the row."""
    return (rows, 1, 1), (THREADS, 1, 1)


def single_block():
    """One block whose threads stride over everything (a final reduction)."""
    return (1, 1, 1), (THREADS, 1, 1)


def gemm_tiles(m, n):
    """One block per 64 x 64 tile of the m x n result; blockIdx.x runs along n."""
    return ((math.ceil(n / GEMM_TILE), math.ceil(m / GEMM_TILE), 1),
            (GEMM_THREADS, GEMM_THREADS, 1))


# ----------------------------------------------------------------------------- argument helpers

def _i32(*values):
    """Python ints -> np.int32, refusing what an int index in the kernels cannot hold."""
    out = []
    for v in values:
        v = int(v)
        if not -2**31 <= v < 2**31:
            raise ValueError(f"{v} is too large for the 32-bit indices of the CUDA kernels; "
                             f"use a smaller batch")
        out.append(np.int32(v))
    return tuple(out)


def _out_size(size, k, s, pad):
    return (size + 2 * pad - k) // s + 1


class CudaKernels:
    """The backend table over one array module and one way of loading .cu files."""

    def __init__(self, device, xp, load_module):
        self.device = device
        self.xp = xp
        self._load_module = load_module
        self._modules = {}
        self._functions = {}

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
        if 0 in grid:
            return                      # nothing to compute; CUDA refuses an empty grid
        _i32(*(g * b for g, b in zip(grid, block)))   # every thread index fits in an int
        kernel = self._functions.get((family, name))
        if kernel is None:
            kernel = self._functions[(family, name)] = self.module(family).get_function(name)
        kernel(grid, block, args)

    # -- checking and allocating arrays

    def _floats(self, a, op, what):
        """a as a C-contiguous float32 array of this device, or a clear error."""
        self._check(a, op, what)
        return self.xp.asarray(a, order="C")      # 0-d stays 0-d (ascontiguousarray: 1-d)

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
        return self.xp.asarray(t, dtype=np.int64, order="C")

    def _empty(self, shape, dtype=np.float32):
        return self.xp.empty(shape, dtype=dtype)

    # -- building blocks shared by several table entries

    def matmul(self, a, b, trans_a=False, trans_b=False):
        """op(a) @ op(b) by sgemm; op transposes when its flag is set.

        a (M,K) or (K,M) with trans_a; b (K,N) or (N,K) with trans_b -> (M,N) float32
        """
        m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
        k2, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
        if k != k2:
            raise ValueError(f"matmul: inner sizes differ ({k} and {k2})")
        c = self._empty((m, n))
        self.launch("gemm", "sgemm", gemm_tiles(m, n), a, b, c,
                    *_i32(m, n, k, trans_a, trans_b))
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

    def _col2im(self, cols, x_shape, kernel, stride, padding, ho, wo):
        """cols (C*KH*KW, N*Ho*Wo) -> gx x_shape, adding every tap's share; see conv.cu."""
        gx = self._empty(x_shape)
        self.launch("conv", "col2im", per_element(gx.size), cols, gx,
                    *_i32(*x_shape, *kernel, *stride, *padding, ho, wo))
        return gx

    # ----------------------------------------------------------------------------- the table

    def conv2d_forward(self, x, w, b, stride, padding, relu=False):
        """x (N,C,H,W), w (F,C,KH,KW), b (F,) or None -> y (N,F,Ho,Wo); relu=True
        also applies max(y, 0) (here by the ReLU kernel, run after the convolution's)"""
        op = "conv2d"
        x, w = self._floats(x, op, "input"), self._floats(w, op, "weight")
        n, c, h, wd = x.shape
        f, _, kh, kw = w.shape
        ho, wo = _out_size(h, kh, stride[0], padding[0]), _out_size(wd, kw, stride[1], padding[1])
        cols = self._im2col(x, (kh, kw), stride, padding, ho, wo)
        out = self.matmul(w.reshape(f, c * kh * kw), cols)             # (F, N*Ho*Wo)
        y = self._empty((n, f, ho, wo))
        self.launch("conv", "fnl_to_nfl", per_element(y.size), out, y, *_i32(n, f, ho * wo))
        if b is not None:
            self._add_bias(y, self._floats(b, op, "bias"), f, ho * wo)
        return self.relu_forward(y) if relu else y

    def conv2d_backward(self, x, w, gy, stride, padding, needs=(True, True, True), relu_y=None):
        """x (N,C,H,W), w (F,C,KH,KW), gy (N,F,Ho,Wo) -> (gx, gw, gb), None where not needed;
        relu_y: the output of a relu=True forward (gy goes back through the ReLU first)"""
        op = "conv2d backward"
        x, w = self._floats(x, op, "input"), self._floats(w, op, "weight")
        gy = self._floats(gy, op, "output gradient")
        if relu_y is not None:
            gy = self.relu_backward(gy, relu_y)
        n, c, h, wd = x.shape
        f, _, kh, kw = w.shape
        ho, wo = gy.shape[2:]
        gx = gw = gb = None
        if needs[0] or needs[1]:
            gout = self._empty((f, n * ho * wo))
            self.launch("conv", "nfl_to_fnl", per_element(gy.size), gy, gout,
                        *_i32(n, f, ho * wo))
            if needs[1]:
                cols = self._im2col(x, (kh, kw), stride, padding, ho, wo)
                gw = self.matmul(gout, cols, trans_b=True).reshape(w.shape)
            if needs[0]:
                gcols = self.matmul(w.reshape(f, c * kh * kw), gout, trans_a=True)
                gx = self._col2im(gcols, x.shape, (kh, kw), stride, padding, ho, wo)
        if needs[2]:
            gb = self._bias_grad(gy, n, f, ho * wo)
        return gx, gw, gb

    def max_pool2d_forward(self, x, kernel, stride, padding):
        """x (N,C,H,W) -> y (N,C,Ho,Wo), idx (N,C,Ho,Wo) int32 (flat h*W + w in the plane)"""
        x = self._floats(x, "max_pool2d", "input")
        n, c, h, w = x.shape
        ho = _out_size(h, kernel[0], stride[0], padding[0])
        wo = _out_size(w, kernel[1], stride[1], padding[1])
        y = self._empty((n, c, ho, wo))
        idx = self._empty((n, c, ho, wo), np.int32)
        self.launch("pool", "max_pool2d_forward", per_element(y.size), x, y, idx,
                    *_i32(n, c, h, w, *kernel, *stride, *padding, ho, wo))
        return y, idx

    def max_pool2d_backward(self, gy, idx, x_shape):
        """gy, idx (N,C,Ho,Wo) -> gx x_shape (N,C,H,W); gx[n,c].flat[idx] += gy"""
        gy = self._floats(gy, "max_pool2d backward", "output gradient")
        idx = self.xp.asarray(idx, dtype=np.int32, order="C")
        n, c, h, w = x_shape
        ho, wo = gy.shape[2:]
        gx = self.xp.zeros(x_shape, dtype=np.float32)     # the kernel adds into it
        self.launch("pool", "max_pool2d_backward", per_element(gy.size), gy, idx, gx,
                    *_i32(n, c, h, w, ho, wo))
        return gx

    def avg_pool2d_forward(self, x, kernel, stride, padding):
        """x (N,C,H,W) -> y (N,C,Ho,Wo)"""
        x = self._floats(x, "avg_pool2d", "input")
        n, c, h, w = x.shape
        ho = _out_size(h, kernel[0], stride[0], padding[0])
        wo = _out_size(w, kernel[1], stride[1], padding[1])
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
        gw = self.matmul(gy, x, trans_a=True) if needs[1] else None
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
            return self.xp.ones((k,), dtype=np.float32)
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
        wsum = self.xp.zeros((1,), dtype=np.float32)
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

    def table(self):
        """{name: bound method} for every entry of the backend table."""
        return {name: getattr(self, name) for name in KERNEL_TABLE}
