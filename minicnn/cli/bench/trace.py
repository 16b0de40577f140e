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


def _needs(call, position):
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
        x, w, gy = a[:3]
        gx, gw, _ = _needs(call, 5)
        return conv_flops(x.shape, w.shape, gy.shape[2:]) * (int(gx) + int(gw))
    if call.name == "linear_forward":
        (N, In), (Out, _) = a[0].shape, a[1].shape
        return 2 * N * In * Out
    if call.name == "linear_backward":
        (N, In), (Out, _) = a[0].shape, a[1].shape
        gx, gw, _ = _needs(call, 3)
        return 2 * N * In * Out * (int(gx) + int(gw))
    return 0
