"""Per-op cases at the shapes ChestXrayCNN's layers really see.

The shapes are not written down here: one minicnn training step runs under
`trace.record`, and every conv2d, max-pool, linear and cross-entropy call it
makes becomes a case, with its own arguments. Each case has a minicnn side
(the backend's kernel calls on numpy arrays) and, when PyTorch is installed, a
PyTorch side (the ATen ops its autograd itself calls for that layer, on the
same memory), so that neither side pays for an autograd graph.
"""
import numpy as np

from .. import backends
from . import step as stepmod
from . import trace

ALL = (True, True, True)


class Case:
    """One op to time: name, layer, shape text, FLOPs, images per call, and the two sides."""

    def __init__(self, op, layer, shape, flops, images, ours, theirs):
        self.op, self.layer, self.shape, self.flops, self.images = op, layer, shape, flops, images
        self.ours, self.theirs = ours, theirs


def _shape(a):
    return "x".join(str(d) for d in a.shape)


def _torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


def _conv_cases(k, call, be, torch, rng):
    x, w, b, stride, padding = call.args[:5]
    hw = trace.conv_out_hw(x.shape, w.shape, stride, padding)
    gy = rng.standard_normal((x.shape[0], w.shape[0]) + hw, dtype=np.float32)
    fl = trace.conv_flops(x.shape, w.shape, hw)
    text = f"x {_shape(x)} w {_shape(w)} s{stride[0]} p{padding[0]}"
    fwd = lambda: be.conv2d_forward(x, w, b, stride, padding)
    bwd = lambda: be.conv2d_backward(x, w, gy, stride, padding, ALL)
    tfwd = tbwd = None
    if torch is not None:
        tx, tw, tgy = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(gy)
        tb = None if b is None else torch.from_numpy(b)
        conv_bwd = torch.ops.aten.convolution_backward
        tfwd = lambda: torch.nn.functional.conv2d(tx, tw, tb, stride, padding)
        tbwd = lambda: conv_bwd(tgy, tx, tw, [w.shape[0]], list(stride), list(padding), [1, 1],
                                False, [0, 0], 1, [True, True, b is not None])
    return [Case("conv2d forward", f"conv{k}", text, fl, x.shape[0], fwd, tfwd),
            Case("conv2d backward", f"conv{k}", text, 2 * fl, x.shape[0], bwd, tbwd)]


def _pool_case(k, call, be, torch, rng):
    x, kernel, stride, padding = call.args[:4]
    kernel, stride, padding = (tuple(v) if isinstance(v, (tuple, list)) else (v, v)
                               for v in (kernel, stride, padding))
    y, _ = be.max_pool2d_forward(x, kernel, stride, padding)
    gy = rng.standard_normal(y.shape, dtype=np.float32)

    def ours():
        _, idx = be.max_pool2d_forward(x, kernel, stride, padding)
        be.max_pool2d_backward(gy, idx, x.shape)
    theirs = None
    if torch is not None:
        tx, tgy = torch.from_numpy(x), torch.from_numpy(gy)
        aten = torch.ops.aten

        def theirs():
            _, idx = aten.max_pool2d_with_indices(tx, kernel, stride, padding)
            aten.max_pool2d_with_indices_backward(tgy, tx, kernel, stride, padding, [1, 1],
                                                  False, idx)
    return Case("max_pool2d fwd+bwd", f"pool{k}", f"x {_shape(x)} k{kernel[0]} s{stride[0]}",
                0, x.shape[0], ours, theirs)


def _linear_case(k, call, be, torch, rng):
    x, w, b = call.args[:3]
    gy = rng.standard_normal((x.shape[0], w.shape[0]), dtype=np.float32)
    fl = 2 * x.shape[0] * w.shape[0] * w.shape[1]

    def ours():
        be.linear_forward(x, w, b)
        be.linear_backward(x, w, gy, ALL)
    theirs = None
    if torch is not None:
        tx, tw, tgy = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(gy)
        tb = None if b is None else torch.from_numpy(b)

        def theirs():  # what autograd runs for linear: addmm forward, two mm and a sum back
            torch.nn.functional.linear(tx, tw, tb)
            tgy.mm(tw)
            tgy.t().mm(tx)
            tgy.sum(0)
    return Case("linear fwd+bwd", f"fc{k}", f"x {_shape(x)} w {_shape(w)}", 3 * fl,
                x.shape[0], ours, theirs)


def _cross_entropy_case(call, be, torch):
    logits, target, weight, reduction = call.args[:4]
    gloss = np.ones((), dtype=logits.dtype)

    def ours():
        _, probs = be.cross_entropy_forward(logits, target, weight, reduction)
        be.cross_entropy_backward(probs, target, weight, reduction, gloss)
    theirs = None
    if torch is not None:
        tl, tt, tg = torch.from_numpy(logits), torch.from_numpy(target), torch.from_numpy(gloss)
        aten = torch.ops.aten

        def theirs():  # cross_entropy = log_softmax + nll_loss, forward and backward
            lsm = aten._log_softmax(tl, 1, False)
            _, total = aten.nll_loss_forward(lsm, tt, None, 1, -100)
            g = aten.nll_loss_backward(tg, lsm, tt, None, 1, -100, total)
            aten._log_softmax_backward_data(g, lsm, 1, tl.dtype)
    return Case("cross_entropy fwd+bwd", "loss", f"logits {_shape(logits)}", 0,
                logits.shape[0], ours, theirs)


def cases(channels, size, batch, seed=0):
    """The op cases of one ChestXrayCNN training step at (batch, channels, size, size)."""
    model = stepmod.make_model(channels, size, seed)
    x, t = stepmod.make_batch(batch, channels, size, seed)
    run_step = stepmod.minicnn_step(model, x, t)
    with trace.record("cpu") as calls:
        run_step()
    be, torch, rng = backends.get("cpu"), _torch(), np.random.default_rng(seed + 1)
    out, counts = [], {}
    for call in calls:
        kind = call.name
        if kind not in ("conv2d_forward", "max_pool2d_forward", "linear_forward",
                        "cross_entropy_forward"):
            continue
        counts[kind] = k = counts.get(kind, 0) + 1
        if kind == "conv2d_forward":
            out += _conv_cases(k, call, be, torch, rng)
        elif kind == "max_pool2d_forward":
            out.append(_pool_case(k, call, be, torch, rng))
        elif kind == "linear_forward":
            out.append(_linear_case(k, call, be, torch, rng))
        else:
            out.append(_cross_entropy_case(call, be, torch))
    return out
