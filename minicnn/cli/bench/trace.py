"""Watch the kernel calls a piece of code makes, with their arguments and times.

Every op of minicnn reaches its device through the backend table
(`minicnn.backends`). Wrapping that table's functions for a while tells which
kernels a training step calls, on which shapes (the benchmark takes its per-op
cases from there, so they always match the model), how many FLOPs they do, and
how much of the step's time is spent inside kernels rather than in Python.
"""
import contextlib
import time

from minicnn import backends


class Call:
    """One kernel call: its table name, arguments and wall time in seconds."""
    __slots__ = ("name", "args", "kwargs", "seconds")

    def __init__(self, name, args, kwargs, seconds):
        self.name, self.args, self.kwargs, self.seconds = name, args, kwargs, seconds


@contextlib.contextmanager
def record(device="cpu"):
    """Collect a Call for every backend-table call made inside the block.

    Yields the list the Calls are appended to. Arguments are kept by reference:
    read their shapes, do not keep the list. Times are wall-clock on the host
    (on a GPU they would only count the launches).
    """
    module = backends.get(device)
    calls = []
    originals = {name: getattr(module, name) for name in backends.KERNEL_TABLE
                 if hasattr(module, name)}

    def wrap(name, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            calls.append(Call(name, args, kwargs, time.perf_counter() - t0))
            return out
        return timed

    for name, fn in originals.items():
        setattr(module, name, wrap(name, fn))
    try:
        yield calls
    finally:
        for name, fn in originals.items():
            setattr(module, name, fn)


def needs(call, position):
    """The (input, weight, bias) flags a recorded backward call ran with (all True when
    it passed none); position: the index of `needs` among its positional arguments."""
    needs = call.args[position] if len(call.args) > position else call.kwargs.get("needs")
    return (True, True, True) if needs is None else tuple(bool(n) for n in needs)


def conv_flops(x_shape, w_shape, y_hw):
    """2*N*F*C*KH*KW*Ho*Wo: the multiply-adds of one conv2d forward, times 2."""
    (N, C, _, _), (F, _, KH, KW) = x_shape, w_shape
    return 2 * N * F * C * KH * KW * y_hw[0] * y_hw[1]


def conv_out_hw(x_shape, w_shape, stride, padding):
    return tuple((x_shape[2 + d] + 2 * padding[d] - w_shape[2 + d]) // stride[d] + 1
                 for d in range(2))


def flops(call):
    """FLOPs of a conv2d or linear kernel call (forward or backward); 0 for other ops.

    conv forward: 2*N*F*C*KH*KW*Ho*Wo. Its backward costs that once for the input
    gradient and once for the weight gradient, each only when asked for (the
    first layer's input needs none). linear: 2*N*In*Out, the same way.
    """
    a = call.args
    if call.name == "conv2d_forward":
        x, w, _, stride, padding = a[:5]
        return conv_flops(x.shape, w.shape, conv_out_hw(x.shape, w.shape, stride, padding))
    if call.name == "conv2d_backward":
        # from the conv's own output size: a fused pool's gy is the pooled, smaller one
        x, w, _, stride, padding = a[:5]
        gx, gw, _ = needs(call, 5)
        return (conv_flops(x.shape, w.shape, conv_out_hw(x.shape, w.shape, stride, padding))
                * (int(gx) + int(gw)))
    if call.name == "linear_forward":
        (N, In), (Out, _) = a[0].shape, a[1].shape
        return 2 * N * In * Out
    if call.name == "linear_backward":
        (N, In), (Out, _) = a[0].shape, a[1].shape
        gx, gw, _ = needs(call, 3)
        return 2 * N * In * Out * (int(gx) + int(gw))
    return 0


def fused(call):
    """What a recorded conv2d call runs after the convolution, in the same call:
    "relu+pool" (ReLU, then the 2x2 stride-2 max-pool), "relu", or "" (none; also
    for every other op). A forward says so by relu=/pool=, a backward by the
    relu_y=/pool_idx= it was given."""
    if call.name == "conv2d_forward":
        relu = _arg(call, 5, "relu", False)
        pool = _arg(call, 6, "pool", False)
    elif call.name == "conv2d_backward":
        relu = _arg(call, 6, "relu_y", None) is not None
        pool = _arg(call, 7, "pool_idx", None) is not None
    else:
        return ""
    return "relu+pool" if pool else "relu" if relu else ""


def _arg(call, position, name, default):
    if len(call.args) > position:
        return call.args[position]
    return call.kwargs.get(name, default)


def label(call):
    """The call's table name, with what it fuses: "conv2d_forward+relu+pool"."""
    extra = fused(call)
    return f"{call.name}+{extra}" if extra else call.name


def backward_of(forward, calls):
    """The conv2d_backward call in `calls` that took the gradient of the conv2d_forward
    call `forward` (the same x and w arrays), or None (no backward was recorded)."""
    x, w = forward.args[0], forward.args[1]
    for call in calls:
        if call.name == "conv2d_backward" and call.args[0] is x and call.args[1] is w:
            return call
    return None


def pooled_input_shape(call):
    """(N, F, Ho, Wo): the conv output that a conv2d_forward call with pool=True pools
    (2x2, stride 2) before it returns; None for a call that does not pool."""
    if call.name != "conv2d_forward" or "pool" not in fused(call):
        return None
    x, w, _, stride, padding = call.args[:5]
    return (x.shape[0], w.shape[0]) + conv_out_hw(x.shape, w.shape, stride, padding)
