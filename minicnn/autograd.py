"""Reverse-mode automatic differentiation: Function nodes, the graph, and backward.

Every differentiable operation is a `Function` subclass with two static methods
sitting side by side: `forward(ctx, *arrays)` computes the result from raw
arrays, `backward(ctx, grad)` turns the gradient of the loss with respect to the
output into gradients with respect to each input (lesson 04).

Calling `SomeFunction.apply(a, b, ...)` runs forward on the tensors' arrays and,
when gradients are wanted, records a node linking the output to its inputs.
`Tensor.backward()` walks those nodes in reverse topological order.

This module imports nothing of minicnn's, so imports run one way:
autograd -> tensor_ops (the Functions behind Tensor's methods) -> tensor -> functional.
It never names the Tensor class; what it needs of a tensor is four attributes and
one method, which tensor.py's Tensor has:
    t.array          the numpy or cupy array
    t.requires_grad  whether a gradient is wanted
    t._node          the Node that made t, None for a leaf
    t.grad           where backward accumulates a leaf's gradient
    t._wrap(array, device, requires_grad)  a new Tensor around an array
Anything with `_node` is taken for a tensor (`_is_tensor`).
"""
import contextlib

import numpy as np

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Inside this block no graph is recorded (evaluation, optimiser updates)."""
    global _grad_enabled
    previous = _grad_enabled
    _grad_enabled = False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled():
    return _grad_enabled


class Context:
    """What forward leaves for backward: saved arrays and plain attributes."""

    def __init__(self):
        self.saved = ()
        self.freed = False
        self.needs_input_grad = ()

    def save_for_backward(self, *arrays):
        self.saved = arrays

    @property
    def saved_tensors(self):
        if self.freed:
            raise RuntimeError(
                "backward: this graph was already used by an earlier backward() and its "
                "saved values were freed; call backward(retain_graph=True) the first time "
                "to go through it twice")
        return self.saved

    def free(self):
        self.saved = ()
        self.freed = True
        # drop everything else forward stored too (big activations, masks, indices)
        for key in list(self.__dict__):
            if key not in ("saved", "freed", "needs_input_grad"):
                del self.__dict__[key]


class Node:
    """One recorded operation: the Function, its context, and where each input came from.

    `parents[i]` is the Node that made input i, or the leaf Tensor itself (a weight,
    whose .grad backward fills), or None where input i needs no gradient. A Node
    never holds its inputs' arrays: only what forward saved in ctx stays alive,
    so an activation nobody needs for backward is freed as soon as it is used.
    """

    __slots__ = ("fn", "ctx", "parents", "shapes")

    def __init__(self, fn, ctx, args):
        self.fn = fn
        self.ctx = ctx
        self.parents = tuple(
            (a._node if a._node is not None else a)
            if _is_tensor(a) and a.requires_grad else None for a in args)
        self.shapes = tuple(tuple(a.shape) if _is_tensor(a) else None for a in args)


class Function:
    """Base class of differentiable operations; see the module docstring."""

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        tensors = [a for a in args if _is_tensor(a)]
        if not tensors:
            raise TypeError(f"{cls.__name__}.apply: no Tensor among its inputs")
        device = same_device(cls.__name__.lower(), *tensors)
        ctx = Context()
        ctx.device = device
        ctx.needs_input_grad = tuple(_is_tensor(a) and a.requires_grad for a in args)
        raw = [a.array if _is_tensor(a) else a for a in args]
        out = _as_array(cls.forward(ctx, *raw, **kwargs))
        track = _grad_enabled and any(ctx.needs_input_grad)
        result = tensors[0]._wrap(out, device=device, requires_grad=track)
        if track:
            result._node = Node(cls, ctx, args)
        return result


def _is_tensor(a):
    """True for a Tensor (see the module docstring), False for arrays, numbers, None."""
    return hasattr(a, "_node")


def _as_array(a):
    """a as an array, never a numpy scalar.

    numpy arithmetic on 0-d arrays returns scalars (np.float32(2) * 0.5 is an
    np.float32, not an array); backends only take arrays, so every value that
    crosses a Function boundary, forward or backward, passes through here.
    cupy keeps 0-d results as arrays, so only numpy's scalars need the change.
    """
    return np.asarray(a) if isinstance(a, np.generic) else a


def same_device(op, *tensors):
    """The one device all of `tensors` are on (None entries skipped, "cpu" if none), or a
    RuntimeError naming op, every device seen, and the way out. Function.apply checks
    every op with it; functional calls it before any kernel runs, with the op's own name."""
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        raise RuntimeError(
            f"{op}: tensors are on different devices ({', '.join(sorted(devices))}); "
            "move them with .to(device) first")
    return devices.pop() if devices else "cpu"


def backward(root, grad=None, retain_graph=False):
    """Accumulate d(root)/d(leaf) into every leaf's .grad that requires it."""
    if not root.requires_grad:
        raise RuntimeError("backward: this tensor does not require grad and has no graph; "
                           "create its inputs with requires_grad=True")
    xp = root.xp
    if grad is None:
        if root.array.size != 1:
            raise RuntimeError(
                f"backward: output has shape {tuple(root.shape)}, not a scalar; "
                "pass a gradient of the same shape, e.g. y.backward(grad)")
        grad = xp.ones_like(root.array)
    else:
        grad = xp.asarray(grad.array if _is_tensor(grad) else grad, dtype=root.array.dtype)
        if tuple(grad.shape) != tuple(root.shape):
            raise ValueError(f"backward: gradient has shape {tuple(grad.shape)} but the "
                             f"output has shape {tuple(root.shape)}")

    if root._node is None:  # backward on a leaf itself: d(root)/d(root) = 1
        _accumulate(root, grad)
        return
    order = _topological_order(root._node)
    grads = {id(root._node): grad}
    for node in order:
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if node.ctx.freed:
            node.ctx.saved_tensors  # raises the "graph already used" error
        input_grads = node.fn.backward(node.ctx, _as_array(g))
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for parent, shape, ig in zip(node.parents, node.shapes, input_grads):
            if ig is None or parent is None:
                continue
            ig = _as_array(ig)
            if tuple(ig.shape) != shape:
                raise RuntimeError(f"{node.fn.__name__}.backward returned a gradient of shape "
                                   f"{tuple(ig.shape)} for an input of shape {shape}")
            if isinstance(parent, Node):
                key = id(parent)
                grads[key] = _as_array(grads[key] + ig) if key in grads else ig
            else:
                _accumulate(parent, ig)
        if not retain_graph:
            node.ctx.free()


def _accumulate(leaf, g):
    """leaf.grad += g (a fresh copy the first time, so no array is shared)."""
    if leaf.grad is None:
        leaf.grad = leaf._wrap(g.copy(), device=leaf.device)
    else:
        leaf.grad.array = _as_array(leaf.grad.array + g)


def _topological_order(root):
    """Nodes from root back towards the leaves, each after every node that uses it."""
    order, seen = [], set()
    stack = [(root, False)]
    while stack:  # iterative depth-first search: deep nets must not hit the recursion limit
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for parent in node.parents:
            if isinstance(parent, Node) and id(parent) not in seen:
                stack.append((parent, False))
    order.reverse()
    return order
