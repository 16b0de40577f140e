"""Tensor: an array (numpy or cupy) with a gradient and a place in the graph.

A Tensor holds `.array` (its numpy or cupy array), `.grad` (a Tensor, filled by
backward), `.requires_grad`, and `.device` ("cpu", "cuda" or "cuda-sim"). As in
PyTorch, `.array` is the same values as a Tensor cut from the graph (sharing memory). Arithmetic builds
the graph through the Functions in `tensor_ops`.
"""
import numpy as np

from . import autograd, backends
from .random import generator
from .tensor_ops import (Abs, Add, Cast, Div, Exp, GetItem, Log, MatMul, Max, Mul, Neg, Pow,
                         Reshape, Sub, Sum, ToDevice, Transpose)


def _default_dtype(array):
    if array.dtype == np.bool_:
        return array.dtype
    if np.issubdtype(array.dtype, np.integer):
        return np.dtype(np.int64)
    return np.dtype(np.float32)


class Tensor:
    __slots__ = ("array", "grad", "requires_grad", "device", "_node", "__weakref__")
    __array_priority__ = 1000  # numpy scalars/arrays on the left defer to Tensor's operators

    def __init__(self, data, requires_grad=False, device="cpu", dtype=None):
        device = backends.check_device(device)
        if isinstance(data, Tensor):
            data = data.array
        xp = backends.array_module(device)
        host = data if (device == "cuda" and type(data).__module__.startswith("cupy")) \
            else np.asarray(data)
        if dtype is None:
            dtype = _default_dtype(host) if isinstance(host, np.ndarray) else host.dtype
        # a fresh C-contiguous copy, as torch.tensor: later changes to `data` (or
        # in-place optimiser steps on this tensor) must not reach the other one
        array = xp.array(host, dtype=dtype, order="C")
        if requires_grad and not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"tensor: only floating-point tensors can require grad, "
                            f"got dtype {array.dtype}")
        self.array = array
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.device = device
        self._node = None

    @staticmethod
    def _wrap(array, device="cpu", requires_grad=False):
        """Wrap an array that is already on `device`, without a copy (always a plain
        Tensor, also when called on a Parameter: autograd makes results with it)."""
        t = Tensor.__new__(Tensor)
        t.array = autograd._as_array(array)   # numpy scalars (argmax, a == b of 0-d) as 0-d
        t.grad = None
        t.requires_grad = requires_grad
        t.device = device
        t._node = None
        return t

    @property
    def data(self):
        """The values as a Tensor cut from the graph, sharing this one's memory (PyTorch's
        t.data); t.array is the numpy or cupy array itself."""
        return Tensor._wrap(self.array, device=self.device)

    @data.setter
    def data(self, value):
        """t.data = other: this tensor now holds other's values (a Tensor or an array)."""
        self.array = value.array if isinstance(value, Tensor) else self.xp.asarray(value)

    # --- basic facts -------------------------------------------------------
    @property
    def shape(self):
        return tuple(self.array.shape)

    @property
    def dtype(self):
        return self.array.dtype

    @property
    def ndim(self):
        return self.array.ndim

    def size(self, dim=None):
        """The shape (PyTorch's t.size()), or the length of one dim: t.size(0) is the batch.
        (The element count is t.numel().)"""
        if dim is None:
            return self.shape
        if not -self.ndim <= dim < max(self.ndim, 1):
            raise IndexError(f"size: dim {dim} is out of range for shape {self.shape}")
        return self.shape[dim]

    @property
    def xp(self):
        return backends.array_module(self.device)

    @property
    def is_leaf(self):
        return self._node is None

    def numel(self):
        return int(self.array.size)

    def __len__(self):
        return self.shape[0]

    def __bool__(self):
        # as PyTorch: `if t == 0:` must not be silently True for a whole tensor
        if self.array.size != 1:
            raise ValueError(f"the truth value of a tensor with {self.array.size} elements "
                             f"(shape {self.shape}) is ambiguous; test t.numpy().all() or "
                             "t.numpy().any() instead")
        return bool(self.item())

    def __repr__(self):
        extra = ", requires_grad=True" if self.requires_grad else ""
        dev = "" if self.device == "cpu" else f", device='{self.device}'"
        return f"tensor({np.array2string(self.numpy(), precision=4)}{dev}{extra})"

    # --- moving data -------------------------------------------------------
    def numpy(self):
        """The values as a numpy array (copied from the GPU where needed)."""
        data = self.array
        return data.get() if hasattr(data, "get") and not isinstance(data, np.ndarray) else data

    def item(self):
        if self.array.size != 1:
            raise ValueError(f"item: tensor has {self.array.size} elements, not one "
                             f"(shape {self.shape})")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __float__(self):  # float(loss), as PyTorch
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __array__(self, dtype=None, copy=None):
        """np.asarray(t): the values (not an object array of tensors)."""
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)

    def to(self, device):
        """This tensor on another device (or, given a dtype, as that dtype); a leaf stays a
        leaf that keeps requires_grad."""
        if not isinstance(device, str):
            try:
                return self.astype(np.dtype(device))
            except TypeError:
                pass
        device = backends.check_device(device)
        if device == self.device:
            return self
        host = self.numpy()
        array = backends.array_module(device).asarray(host) if device == "cuda" else host.copy()
        out = Tensor._wrap(array, device=device)
        if self.requires_grad:
            if self.is_leaf:
                out.requires_grad = True
            else:
                moved = ToDevice.apply(self, device=device)
                moved.device = device
                return moved
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def detach(self):
        """The same values, cut from the graph."""
        return Tensor._wrap(self.array, device=self.device)

    def requires_grad_(self, flag=True):
        if flag and not np.issubdtype(self.dtype, np.floating):
            raise TypeError(f"requires_grad_: dtype {self.dtype} cannot require grad")
        self.requires_grad = bool(flag)
        return self

    def zero_grad(self):
        self.grad = None

    def astype(self, dtype):
        return Cast.apply(self, dtype=np.dtype(dtype))

    def float(self):
        return self.astype(np.float32)

    def double(self):
        return self.astype(np.float64)

    def long(self):
        return Tensor._wrap(self.array.astype(np.int64), device=self.device)

    # --- autograd ----------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        autograd.backward(self, grad, retain_graph=retain_graph)

    # --- arithmetic (the Functions live in tensor_ops) -----------------------
    def _lift(self, other):
        if isinstance(other, Tensor):
            return other
        # a float tensor keeps its dtype (x * 0.5 stays float32); an integer or bool
        # tensor must not truncate a float (mask.mean() is not 0)
        dtype = self.dtype if np.issubdtype(self.dtype, np.floating) \
            else _default_dtype(np.asarray(other))
        return Tensor._wrap(self.xp.asarray(other, dtype=dtype), device=self.device)

    def __add__(self, other):
        return Add.apply(self, self._lift(other))

    def __radd__(self, other):
        return self._lift(other).__add__(self)

    def __sub__(self, other):
        return Sub.apply(self, self._lift(other))

    def __rsub__(self, other):
        return self._lift(other).__sub__(self)

    def __mul__(self, other):
        return Mul.apply(self, self._lift(other))

    def __rmul__(self, other):
        return self._lift(other).__mul__(self)

    def __truediv__(self, other):
        return Div.apply(self, self._lift(other))

    def __rtruediv__(self, other):
        return self._lift(other).__truediv__(self)

    def __neg__(self):
        return Neg.apply(self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            raise TypeError("pow: the exponent must be a Python number")
        return Pow.apply(self, exponent=float(exponent))

    def __matmul__(self, other):
        return MatMul.apply(self, self._lift(other))

    def __rmatmul__(self, other):
        return self._lift(other).__matmul__(self)

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.array
        elif isinstance(index, tuple):
            index = tuple(i.array if isinstance(i, Tensor) else i for i in index)
        return GetItem.apply(self, index=index)

    def exp(self):
        return Exp.apply(self)

    def log(self):
        return Log.apply(self)

    def sqrt(self):
        return self ** 0.5

    def abs(self):
        return Abs.apply(self)

    # Reductions take PyTorch's dim=/keepdim= or numpy's axis=/keepdims=, the same thing.
    def sum(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        axes, keep = _reduction(dim, keepdim, axis, keepdims)
        return Sum.apply(self, axis=axes, keepdims=keep)

    def mean(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        axes, keep = _reduction(dim, keepdim, axis, keepdims)
        count = self.numel() if axes is None else int(np.prod([self.shape[a] for a in axes]))
        return self.sum(axis=axes, keepdims=keep) * (1.0 / count)

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
            keepdims=None):
        """The variance, as PyTorch's: sum (x - mean)^2 / (count - correction), with
        correction 1 (unbiased) by default; unbiased=False or correction=0 divide by count."""
        axes, keep = _reduction(dim, keepdim, axis, keepdims)
        if unbiased is not None and correction is not None:
            raise TypeError("var: give unbiased or correction, not both")
        c = (1 if unbiased or unbiased is None else 0) if correction is None else correction
        count = self.numel() if axes is None else int(np.prod([self.shape[a] for a in axes]))
        centred = self - self.mean(axis=axes, keepdims=True)
        total = (centred * centred).sum(axis=axes, keepdims=keep)
        return total * (1.0 / (count - c)) if count > c else total * float("nan")

    def max(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """max() or max(axis=a): the largest values (ties share the gradient). max(dim),
        PyTorch's form: (values, indices) along dim, the first maximum, which alone gets
        the gradient."""
        axes, keep = _reduction(dim, keepdim, axis, keepdims)
        if dim is None:
            return Max.apply(self, axis=axes, keepdims=keep)
        return self._pick(self.argmax(dim), dim, keep)

    def min(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """As max, for the smallest values (and their first index)."""
        axes, keep = _reduction(dim, keepdim, axis, keepdims)
        if dim is None:
            return -((-self).max(axis=axes, keepdims=keep))
        return self._pick(self.argmin(dim), dim, keep)

    def _pick(self, indices, dim, keepdim):
        """(values, indices): the entries at `indices` along dim, as a differentiable gather."""
        if isinstance(dim, (tuple, list)):
            raise TypeError(f"max/min with indices: dim must be one int, got {dim}")
        dim = dim % self.ndim
        grid = list(self.xp.indices(indices.shape, sparse=True))
        grid.insert(dim, indices.array)
        values = self[tuple(grid)]
        if keepdim:
            values, indices = values.unsqueeze(dim), indices.unsqueeze(dim)
        return MaxResult(values, indices)

    def argmax(self, dim=None, keepdim=False, *, axis=None):
        """Index of the first largest value (of the flattened tensor when dim is None)."""
        dim = axis if dim is None else dim
        out = Tensor._wrap(self.xp.argmax(self.array, axis=dim), device=self.device)
        if keepdim:
            out = out.reshape((1,) * self.ndim) if dim is None else out.unsqueeze(dim)
        return out

    def argmin(self, dim=None, keepdim=False):
        return (-self).argmax(dim, keepdim)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape.apply(self, shape=shape)

    view = reshape

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])  # one sequence: a full permutation, as numpy
        elif len(axes) == 2:  # two dims to swap, as PyTorch's transpose(dim0, dim1)
            perm = list(range(self.ndim))
            perm[axes[0]], perm[axes[1]] = perm[axes[1]], perm[axes[0]]
            axes = tuple(perm)
        return Transpose.apply(self, axes=axes or None)

    def permute(self, *dims):
        """The axes in the order `dims` (a full permutation), as PyTorch's permute."""
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        if sorted(d % self.ndim for d in dims) != list(range(self.ndim)):
            raise ValueError(f"permute: {dims} is not an ordering of the {self.ndim} dims of "
                             f"shape {self.shape}")
        return self.transpose(tuple(d % self.ndim for d in dims))

    def unsqueeze(self, dim):
        """A new axis of size 1 at `dim` (dim may be -1 for the end)."""
        dim = dim % (self.ndim + 1)
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim=None):
        """Drop axes of size 1 (only `dim`, when given; an axis of another size stays)."""
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        dims = {d % max(self.ndim, 1) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if not (i in dims and n == 1)))

    def clone(self):
        """A copy that stays in the graph (the gradient flows back to this tensor)."""
        return self * 1.0 if np.issubdtype(self.dtype, np.floating) else \
            Tensor._wrap(self.array.copy(), device=self.device)

    def contiguous(self):
        return self        # every minicnn tensor is C-contiguous

    def dim(self):
        """The number of dimensions (PyTorch's t.dim(); also t.ndim)."""
        return self.ndim

    @property
    def T(self):
        return self.transpose()

    def flatten(self, start_dim=0, end_dim=-1):
        nd = self.ndim
        start, end = start_dim % nd, end_dim % nd
        shape = self.shape[:start] + (int(np.prod(self.shape[start:end + 1])),) + self.shape[end + 1:]
        return self.reshape(shape)

    # comparisons give plain (non-differentiable) tensors
    def _compare(self, other, op):
        other = other.array if isinstance(other, Tensor) else other
        return Tensor._wrap(op(self.array, other), device=self.device)

    def __eq__(self, other):
        return self._compare(other, lambda a, b: a == b)

    def __ne__(self, other):
        return self._compare(other, lambda a, b: a != b)

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    # logical ops on masks (bool or integer tensors), as PyTorch's & | ^ ~; no gradient
    def _logical(self, other, op, name):
        other_data = other.array if isinstance(other, Tensor) else other
        for d in (self.array, other_data):
            kind = getattr(d, "dtype", np.asarray(d).dtype)
            if np.issubdtype(kind, np.floating):
                raise TypeError(f"{name}: needs bool or integer tensors (masks), got dtype "
                                f"{kind}; compare first, e.g. (x > 0) {name} (y > 0)")
        return Tensor._wrap(op(self.array, other_data), device=self.device)

    def __and__(self, other):
        return self._logical(other, lambda a, b: a & b, "&")

    def __or__(self, other):
        return self._logical(other, lambda a, b: a | b, "|")

    def __xor__(self, other):
        return self._logical(other, lambda a, b: a ^ b, "^")

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    def __invert__(self):
        return self._logical(True, lambda a, _: ~a, "~")

    __hash__ = object.__hash__


class MaxResult(tuple):
    """(values, indices), as PyTorch's max(dim) returns: unpack it, or use .values / .indices."""

    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))

    @property
    def values(self):
        return self[0]

    @property
    def indices(self):
        return self[1]


def _reduction(dim, keepdim, axis, keepdims):
    """(axes tuple or None, keepdims) from PyTorch's or numpy's spelling, refusing both."""
    if dim is not None and axis is not None:
        raise TypeError("give dim (PyTorch's name) or axis (numpy's), not both")
    return _axes(axis if dim is None else dim), bool(keepdim if keepdims is None else keepdims)


def _axes(axis):
    if axis is None:
        return None
    if isinstance(axis, (list, tuple)):
        return tuple(int(a) for a in axis)
    return (int(axis),)


def tensor(data, requires_grad=False, device="cpu", dtype=None):
    """Make a Tensor. Floating data becomes float32 and integers int64, unless dtype says."""
    return Tensor(data, requires_grad=requires_grad, device=device, dtype=dtype)


def zeros(*shape, requires_grad=False, device="cpu", dtype=np.float32):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Tensor(np.zeros(shape, dtype=dtype), requires_grad=requires_grad, device=device)


def ones(*shape, requires_grad=False, device="cpu", dtype=np.float32):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Tensor(np.ones(shape, dtype=dtype), requires_grad=requires_grad, device=device)


def randn(*shape, requires_grad=False, device="cpu"):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    data = generator().standard_normal(shape).astype(np.float32)
    return Tensor(data, requires_grad=requires_grad, device=device)
