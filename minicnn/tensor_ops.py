"""Elementwise, reduction and shape operations of Tensor, each with its derivative.

These work on any device through the array module `xp` (numpy or cupy) of the
input arrays; the network's own maths (convolution, pooling, losses) lives in
`functional`, which calls the backend kernels. Lesson 04 walks through these.
"""
import numpy as np

from . import backends
from .autograd import Function


def _xp(array):
    return np if isinstance(array, np.ndarray) or np.isscalar(array) else __import__("cupy")


def _contiguous(a):
    """a as a C-contiguous array; 0-d stays 0-d (ascontiguousarray would make it 1-d)."""
    return _xp(a).asarray(a, order="C")


def unbroadcast(grad, shape):
    """Sum grad over the axes numpy broadcasting stretched, so it matches `shape`."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return a + b

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return unbroadcast(g, sa), unbroadcast(g, sb)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return a - b

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return unbroadcast(g, sa), unbroadcast(-g, sb)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return unbroadcast(g * b, a.shape), unbroadcast(g * a, b.shape)


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return unbroadcast(g / b, a.shape), unbroadcast(-g * a / (b * b), b.shape)


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Pow(Function):
    """y = a ** p for a constant exponent p."""

    @staticmethod
    def forward(ctx, a, exponent):
        ctx.save_for_backward(a)
        ctx.exponent = exponent
        return a ** a.dtype.type(exponent)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        p = a.dtype.type(ctx.exponent)
        if p == 0:  # d(a**0)/da = 0 everywhere, also at a = 0 where 0 * a**-1 would be nan
            return _xp(a).zeros_like(a)
        return g * p * a ** (p - 1)


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        y = _xp(a).exp(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return _xp(a).log(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g / a


class Abs(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return _xp(a).abs(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * _xp(a).sign(a)


class MatMul(Function):
    """(..., n, k) @ (..., k, m) -> (..., n, m); 1-D operands as numpy treats them."""

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: operands need at least one dimension, got shapes "
                             f"{tuple(a.shape)} and {tuple(b.shape)}; use * to scale")
        k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if a.shape[-1] != k_b:
            raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not line "
                             f"up: {a.shape[-1]} columns on the left, {k_b} rows on the right")
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        xp = _xp(a)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g  # put back the axes a 1-D operand dropped: m (last) first, then n
        if b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        ga = g2 @ xp.swapaxes(b2, -1, -2)
        gb = xp.swapaxes(a2, -1, -2) @ g2
        ga = unbroadcast(ga, a2.shape).reshape(a.shape)
        gb = unbroadcast(gb, b2.shape).reshape(b.shape)
        return ga, gb


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis, keepdims):
        ctx.shape, ctx.axis, ctx.keepdims = a.shape, axis, keepdims
        return a.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        xp = _xp(g)
        if ctx.axis is not None and not ctx.keepdims:
            axes = sorted(a % len(ctx.shape) for a in ctx.axis)
            for a in axes:
                g = xp.expand_dims(g, a)
        return xp.broadcast_to(g, ctx.shape).copy()


class Max(Function):
    """Maximum over axes; the gradient goes to the (first) largest element."""

    @staticmethod
    def forward(ctx, a, axis, keepdims):
        y = a.max(axis=axis, keepdims=True)
        ctx.save_for_backward(a, y)
        ctx.axis, ctx.keepdims = axis, keepdims
        return y if keepdims else (y.reshape(()) if axis is None else y.squeeze(axis=axis))

    @staticmethod
    def backward(ctx, g):
        a, y = ctx.saved_tensors
        xp = _xp(a)
        mask = (a == y)
        # ties: split evenly, as the subgradient PyTorch's max(dim=None) uses
        mask = mask / mask.sum(axis=ctx.axis, keepdims=True)
        return mask.astype(a.dtype) * g.reshape(y.shape)


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot view shape {tuple(a.shape)} ({a.size} elements) "
                             f"as {tuple(shape)}") from None

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape)


class Transpose(Function):
    @staticmethod
    def forward(ctx, a, axes):
        ctx.axes = axes
        return _contiguous(a.transpose(axes))

    @staticmethod
    def backward(ctx, g):
        if ctx.axes is None:
            return _contiguous(g.transpose())
        return _contiguous(g.transpose(np.argsort(ctx.axes)))


class GetItem(Function):
    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.dtype, ctx.index = a.shape, a.dtype, index
        return _contiguous(a[index])

    @staticmethod
    def backward(ctx, g):
        xp = _xp(g)
        out = xp.zeros(ctx.shape, dtype=ctx.dtype)
        xp.add.at(out, ctx.index, g) if xp is np else out.scatter_add(ctx.index, g)
        return out


class Cast(Function):
    @staticmethod
    def forward(ctx, a, dtype):
        ctx.dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.dtype)


class ToDevice(Function):
    """Move a non-leaf tensor between devices; its gradient moves back."""

    @staticmethod
    def forward(ctx, a, device):
        ctx.source = "cuda" if not isinstance(a, np.ndarray) else "host"
        return backends.get(device).xp.asarray(a) if device == "cuda" else \
            (a.get() if ctx.source == "cuda" else a.copy())

    @staticmethod
    def backward(ctx, g):
        if ctx.source == "cuda":
            return backends.get("cuda").xp.asarray(g)
        return g.get() if not isinstance(g, np.ndarray) else g.copy()


class Cat(Function):
    """Join tensors along an existing axis; each gets back its own slice of the gradient."""

    @staticmethod
    def forward(ctx, *arrays, axis):
        ctx.axis, ctx.sizes = axis, [a.shape[axis] for a in arrays]
        return _xp(arrays[0]).concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        ends = np.cumsum(ctx.sizes)[:-1]
        return tuple(_contiguous(part) for part in _xp(g).split(g, ends, axis=ctx.axis))


class Stack(Function):
    """Join same-shape tensors along a new axis; each gets back its slice of the gradient."""

    @staticmethod
    def forward(ctx, *arrays, axis):
        ctx.axis = axis
        return _xp(arrays[0]).stack(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        xp = _xp(g)
        return tuple(_contiguous(xp.take(g, i, axis=ctx.axis)) for i in range(g.shape[ctx.axis]))


class Pad2d(Function):
    """Pad the last two axes with a constant (top, bottom, left, right); the gradient is the
    middle part of g (the padding has no inputs behind it)."""

    @staticmethod
    def forward(ctx, a, pads, value):
        top, bottom, left, right = pads
        ctx.pads, ctx.shape = pads, a.shape
        widths = [(0, 0)] * (a.ndim - 2) + [(top, bottom), (left, right)]
        return _xp(a).pad(a, widths, constant_values=a.dtype.type(value))

    @staticmethod
    def backward(ctx, g):
        top, _, left, _ = ctx.pads
        h, w = ctx.shape[-2:]
        return _contiguous(g[..., top:top + h, left:left + w])
