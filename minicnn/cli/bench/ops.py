"""Per-op cases at the shapes ChestXrayCNN's layers really see.

The shapes are not written down here: one minicnn training step runs under
`trace.record`, and every conv2d, max-pool, linear and cross-entropy call it
makes becomes a case, with its own arguments. A conv2d call that fuses ReLU and
the 2x2 max-pool (ChestXrayCNN's Conv2d -> ReLU -> MaxPool2d, one call) becomes
"conv2d+relu+pool forward" and "... backward": minicnn's one fused call against
the three ops PyTorch's autograd runs for those layers. Each case has a minicnn side
(the backend's kernel calls, on the device's arrays) and, when PyTorch is
installed for that device, a PyTorch side (the ATen ops its autograd itself
calls for that layer, on the same memory), so that neither side pays for an
autograd graph.

Memory-bound ops (pooling, the loss) carry a byte count instead of FLOPs: each
array they read or write, counted once.
"""
import numpy as np

from minicnn import backends
from . import step as stepmod
from . import trace

ALL = (True, True, True)


class Case:
    """One op to time: name, layer, shape text, FLOPs or bytes moved, images per call,
    and the two sides (functions of no arguments; `theirs` None without PyTorch)."""

    def __init__(self, op, layer, shape, flops, images, ours, theirs, nbytes=0):
        self.op, self.layer, self.shape, self.flops, self.images = op, layer, shape, flops, images
        self.ours, self.theirs, self.nbytes = ours, theirs, nbytes


def _shape(a):
    return "x".join(str(d) for d in a.shape)


class Sides:
    """What the cases of one device share: the backend, its array module, and PyTorch
    (None when it is missing or cannot use this device) with a zero-copy converter."""

    def __init__(self, device, seed):
        self.be = backends.get(device)
        self.xp = self.be.xp
        self.rng = np.random.default_rng(seed)
        self.torch, self.as_torch = torch_for(device)

    def randn(self, shape):
        return self.xp.asarray(self.rng.standard_normal(shape, dtype=np.float32))


def torch_for(device):
    """(torch, array -> torch tensor sharing its memory), or (None, None)."""
    try:
        import torch  # lazy: optional dependency
    except ImportError:
        return None, None
    if device == "cpu":
        return torch, torch.from_numpy
    if device == "cuda" and torch.cuda.is_available():
        return torch, torch.from_dlpack
    return None, None


def _conv_cases(k, call, backward, sd):
    """The forward and backward cases of one traced conv2d_forward call, with what it
    fuses (relu=True: + ReLU; pool=True: + ReLU + 2x2 max-pool, gy the pooled gradient).
    backward: its traced conv2d_backward call (None: none recorded), whose `needs` both
    sides follow, so neither computes an input gradient the step did not ask for."""
    be, torch, T = sd.be, sd.torch, sd.as_torch
    x, w, b, stride, padding = call.args[:5]
    extra = trace.fused(call)
    relu, pool = extra != "", extra == "relu+pool"
    hw = trace.conv_out_hw(x.shape, w.shape, stride, padding)
    needs = ALL if backward is None else trace.needs(backward, 5)
    needs = (needs[0], needs[1], needs[2] and b is not None)
    fl = trace.conv_flops(x.shape, w.shape, hw)
    text = f"x {_shape(x)} w {_shape(w)} s{stride[0]} p{padding[0]}"
    kw = {"relu": True, "pool": True} if pool else {"relu": True} if relu else {}
    y = be.conv2d_forward(x, w, b, stride, padding, **kw)      # what the backward is given
    y, idx = y if pool else (y, None)
    gy = sd.randn(y.shape)
    back = {"relu_y": y} if relu else {}
    if pool:
        back["pool_idx"] = idx
    fwd = lambda: be.conv2d_forward(x, w, b, stride, padding, **kw)
    bwd = lambda: be.conv2d_backward(x, w, gy, stride, padding, needs, **back)
    tfwd = tbwd = None
    if torch is not None:
        tfwd, tbwd = _torch_conv(torch, T, x, w, b, gy, stride, padding, relu, pool, needs)
    name = "conv2d" + (f"+{extra}" if extra else "")
    return [Case(f"{name} forward", f"conv{k}", text, fl, x.shape[0], fwd, tfwd),
            Case(f"{name} backward", f"conv{k}", text, fl * (int(needs[0]) + int(needs[1])),
                 x.shape[0], bwd, tbwd)]


def _torch_conv(torch, T, x, w, b, gy, stride, padding, relu, pool, needs):
    """(forward, backward) of what PyTorch's autograd runs for conv2d [-> relu [->
    max_pool2d(2)]]: forward conv2d, relu, max_pool2d_with_indices; backward
    max_pool2d_with_indices_backward, threshold_backward (relu's), convolution_backward
    with output_mask = needs. gy: the gradient of the last op's output."""
    aten = torch.ops.aten
    tx, tw, tgy = T(x), T(w), T(gy)
    tb = None if b is None else T(b)
    win = ([2, 2], [2, 2], [0, 0])

    def forward():
        y = torch.nn.functional.conv2d(tx, tw, tb, stride, padding)
        if relu:
            y = torch.relu(y)
        return aten.max_pool2d_with_indices(y, *win) if pool else y
    # what autograd saves for the backward: the relu output and the pool's indices
    ty = torch.relu(torch.nn.functional.conv2d(tx, tw, tb, stride, padding)) if relu else None
    tidx = aten.max_pool2d_with_indices(ty, *win)[1] if pool else None

    def backward():
        g = tgy
        if pool:
            g = aten.max_pool2d_with_indices_backward(g, ty, *win, [1, 1], False, tidx)
        if relu:
            g = aten.threshold_backward(g, ty, 0)
        return aten.convolution_backward(g, tx, tw, [w.shape[0]], list(stride), list(padding),
                                         [1, 1], False, [0, 0], 1, list(needs))
    return forward, backward


def _pool_case(k, call, sd):
    be, torch, T = sd.be, sd.torch, sd.as_torch
    x, kernel, stride, padding = call.args[:4]
    kernel, stride, padding = (tuple(v) if isinstance(v, (tuple, list)) else (v, v)
                               for v in (kernel, stride, padding))
    y, _ = be.max_pool2d_forward(x, kernel, stride, padding)
    gy = sd.randn(y.shape)

    def ours():
        _, idx = be.max_pool2d_forward(x, kernel, stride, padding)
        be.max_pool2d_backward(gy, idx, x.shape)
    theirs = None
    if torch is not None:
        tx, tgy = T(x), T(gy)
        aten = torch.ops.aten

        def theirs():
            _, idx = aten.max_pool2d_with_indices(tx, kernel, stride, padding)
            aten.max_pool2d_with_indices_backward(tgy, tx, kernel, stride, padding, [1, 1],
                                                  False, idx)
    # forward reads x, writes y and idx; backward reads gy and idx, writes gx
    nbytes = 2 * x.nbytes + 2 * y.nbytes + 2 * y.size * 4
    return Case("max_pool2d fwd+bwd", f"pool{k}", f"x {_shape(x)} k{kernel[0]} s{stride[0]}",
                0, x.shape[0], ours, theirs, nbytes)


def _linear_case(k, call, sd):
    be, torch, T = sd.be, sd.torch, sd.as_torch
    x, w, b = call.args[:3]
    gy = sd.randn((x.shape[0], w.shape[0]))
    fl = 2 * x.shape[0] * w.shape[0] * w.shape[1]

    def ours():
        be.linear_forward(x, w, b)
        be.linear_backward(x, w, gy, ALL)
    theirs = None
    if torch is not None:
        tx, tw, tgy = T(x), T(w), T(gy)
        tb = None if b is None else T(b)

        def theirs():  # what autograd runs for linear: addmm forward, two mm and a sum back
            torch.nn.functional.linear(tx, tw, tb)
            tgy.mm(tw)
            tgy.t().mm(tx)
            tgy.sum(0)
    return Case("linear fwd+bwd", f"fc{k}", f"x {_shape(x)} w {_shape(w)}", 3 * fl,
                x.shape[0], ours, theirs)


def _cross_entropy_case(call, sd):
    be, torch, T = sd.be, sd.torch, sd.as_torch
    logits, target, weight, reduction = call.args[:4]
    gloss = sd.xp.ones((), dtype=logits.dtype)

    def ours():
        _, probs = be.cross_entropy_forward(logits, target, weight, reduction)
        be.cross_entropy_backward(probs, target, weight, reduction, gloss)
    theirs = None
    if torch is not None:
        tl, tt, tg = T(logits), T(target), T(gloss)
        aten = torch.ops.aten

        def theirs():  # cross_entropy = log_softmax + nll_loss, forward and backward
            lsm = aten._log_softmax(tl, 1, False)
            _, total = aten.nll_loss_forward(lsm, tt, None, 1, -100)
            g = aten.nll_loss_backward(tg, lsm, tt, None, 1, -100, total)
            aten._log_softmax_backward_data(g, lsm, 1, tl.dtype)
    # logits in, probs out and back in, glogits out, targets read twice
    nbytes = 4 * logits.nbytes + 2 * target.nbytes
    return Case("cross_entropy fwd+bwd", "loss", f"logits {_shape(logits)}", 0,
                logits.shape[0], ours, theirs, nbytes)


def cases(channels, size, batch, seed=0, device="cpu"):
    """The op cases of one ChestXrayCNN training step at (batch, channels, size, size)."""
    model = stepmod.make_model(channels, size, seed, device)
    x, t = stepmod.make_batch(batch, channels, size, seed)
    run_step = stepmod.minicnn_step(model, x, t)
    with trace.record(device) as calls:
        run_step()
    return cases_of(calls, seed, device)


def cases_of(calls, seed=0, device="cpu"):
    """The op cases of the kernel calls of a training step recorded by trace.record:
    each conv2d forward (with its backward), max-pool, linear and cross-entropy call."""
    sd = Sides(device, seed + 1)
    out, counts = [], {}
    for call in calls:
        kind = call.name
        if kind not in ("conv2d_forward", "max_pool2d_forward", "linear_forward",
                        "cross_entropy_forward"):
            continue
        counts[kind] = k = counts.get(kind, 0) + 1
        if kind == "conv2d_forward":
            out += _conv_cases(k, call, trace.backward_of(call, calls), sd)
        elif kind == "max_pool2d_forward":
            out.append(_pool_case(k, call, sd))
        elif kind == "linear_forward":
            out.append(_linear_case(k, call, sd))
        else:
            out.append(_cross_entropy_case(call, sd))
    return out
