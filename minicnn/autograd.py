"""Reverse-mode automatic differentiation: Function nodes, the graph, and backward.

Every differentiable operation is a `Function` subclass with two static methods
sitting side by side: `forward(ctx, *arrays)` computes the result from raw
arrays, `backward(ctx, grad)` turns the gradient of the loss with respect to the
output into gradients with respect to each input (lesson 04).

Calling `SomeFunction.apply(a, b, ...)` runs forward on the tensors' arrays and,
when gradients are wanted, records a node linking the output to its inputs.
`Tensor.backward()` walks those nodes in reverse topological order.
"""
import contextlib

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
    """One recorded operation: the Function, its context, and its input tensors."""

    __slots__ = ("fn", "ctx", "inputs")

    def __init__(self, fn, ctx, inputs):
        self.fn = fn
        self.ctx = ctx
        self.inputs = inputs


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
        from .tensor import Tensor
        tensors = [a for a in args if isinstance(a, Tensor)]
        device = _common_device(cls.__name__, tensors)
        ctx = Context()
        ctx.device = device
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        out = cls.forward(ctx, *raw, **kwargs)
        track = _grad_enabled and any(ctx.needs_input_grad)
        result = Tensor._wrap(out, device=device, requires_grad=track)
        if track:
            result._node = Node(cls, ctx, args)
        return result


def _common_device(op, tensors):
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise RuntimeError(
            f"{op.lower()}: tensors are on different devices ({', '.join(sorted(devices))}); "
            "move them with .to(device) first")
    return devices.pop() if devices else "cpu"


def backward(root, grad=None, retain_graph=False):
    """Accumulate d(root)/d(leaf) into every leaf's .grad that requires it."""
    from .tensor import Tensor
    if not root.requires_grad:
        raise RuntimeError("backward: this tensor does not require grad and has no graph; "
                           "create its inputs with requires_grad=True")
    xp = root.xp
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward: output has shape {tuple(root.shape)}, not a scalar; "
                "pass a gradient of the same shape, e.g. y.backward(grad)")
        grad = xp.ones_like(root.data)
    else:
        grad = xp.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=root.data.dtype)
        if tuple(grad.shape) != tuple(root.shape):
            raise ValueError(f"backward: gradient has shape {tuple(grad.shape)} but the "
                             f"output has shape {tuple(root.shape)}")

    order = _topological_order(root)
    grads = {id(root): grad}
    for tensor in order:
        g = grads.pop(id(tensor), None)
        if g is None:
            continue
        node = tensor._node
        if node is None:  # a leaf: keep the gradient
            if tensor.requires_grad:
                if tensor.grad is None:
                    tensor.grad = Tensor._wrap(g.copy(), device=tensor.device)
                else:
                    tensor.grad.data = tensor.grad.data + g
            continue
        if node.ctx.freed:
            node.ctx.saved_tensors  # raises the "graph already used" error
        input_grads = node.fn.backward(node.ctx, g)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for inp, ig in zip(node.inputs, input_grads):
            if ig is None or not isinstance(inp, Tensor) or not inp.requires_grad:
                continue
            if tuple(ig.shape) != tuple(inp.shape):
                raise RuntimeError(f"{node.fn.__name__}.backward returned a gradient of shape "
                                   f"{tuple(ig.shape)} for an input of shape {tuple(inp.shape)}")
            key = id(inp)
            grads[key] = grads[key] + ig if key in grads else ig
        if not retain_graph:
            node.ctx.free()


def _topological_order(root):
    """Tensors from root back to the leaves, each after every tensor that uses it."""
    from .tensor import Tensor
    order, seen = [], set()
    stack = [(root, False)]
    while stack:  # iterative depth-first search: deep nets must not hit the recursion limit
        tensor, expanded = stack.pop()
        if expanded:
            order.append(tensor)
            continue
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        stack.append((tensor, True))
        if tensor._node is not None:
            for inp in tensor._node.inputs:
                if isinstance(inp, Tensor) and inp.requires_grad and id(inp) not in seen:
                    stack.append((inp, False))
    order.reverse()
    return order
