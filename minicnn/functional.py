"""The network's operations, with PyTorch's signatures.

Each op checks its arguments in words a learner understands, then hands raw
arrays to the backend of the tensors' device (`minicnn.backends`), whose kernels
compute forward and backward. The Function for each op sits right above the
function users call: forward first, its derivative right under it.

Shapes: N batch, C input channels, F filters/output channels, H/W height/width,
K classes.
"""
import math

import numpy as np

from . import backends
from .autograd import Function, is_grad_enabled, same_device
from .kernels.reference import out_size
from .random import generator
from .tensor import Tensor
from .tensor_ops import Pad2d


def _pair(value, name, op):
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]                     # (k,) means (k, k), as PyTorch's _pair
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value), int(value))
    if isinstance(value, (tuple, list)) and len(value) == 2 and \
            all(isinstance(v, (int, np.integer)) for v in value):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")


def _as_tensor(x, op, name="input"):
    if not isinstance(x, Tensor):
        hint = ""
        if type(x).__module__.startswith("torch"):
            hint = "; this is PyTorch's: convert it with minicnn.tensor(t.detach().cpu().numpy())"
        elif hasattr(x, "shape"):
            hint = "; wrap the array with minicnn.tensor(...)"
        raise TypeError(f"{op}: {name} must be a minicnn Tensor, got {type(x).__module__}."
                        f"{type(x).__name__}{hint}")
    return x


def _need_float(x, op, name="input"):
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{op}: {name} must be floating point, got dtype {x.dtype}")


# --- convolution (lesson 01) ------------------------------------------------

class Conv2dFn(Function):
    """conv2d, and with relu=True relu(conv2d) as one op: the kernels apply max(y, 0)
    as they write y, and in backward mask gy as they read it, so the ReLU costs no
    pass of its own. The ReLU's output is all backward needs of it (where y > 0 the
    ReLU passed gy on). pool=True adds a 2x2 stride-2 max-pool to the same op (the
    kernels pool as they write y, and scatter gy as they read it back): the full-size
    map is never written, and backward needs only the pooled output and its indices."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, relu=False, pool=False):
        out = backends.get(ctx.device).conv2d_forward(x, w, b, stride, padding, relu=relu,
                                                      pool=pool)
        y, ctx.pool_idx = out if pool else (out, None)
        saved = (x, w, y) if relu else (x, w)
        ctx.save_for_backward(*saved)
        ctx.conv = (stride, padding, b is not None)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, w, *relu_y = ctx.saved_tensors
        stride, padding, has_bias = ctx.conv
        need = ctx.needs_input_grad
        needs = (need[0], need[1], has_bias and need[2])
        return backends.get(ctx.device).conv2d_backward(
            x, w, gy, stride, padding, needs, relu_y=relu_y[0] if relu_y else None,
            pool_idx=ctx.pool_idx)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation, as PyTorch's conv2d.

    input (N, C, H, W) or unbatched (C, H, W), weight (F, C, KH, KW), bias (F,) or None
    -> (N, F, (H + 2*ph - KH)//sh + 1, (W + 2*pw - KW)//sw + 1) (or without N)
    padding: an int, a pair, "valid" (0) or "same" (output as large as the input; stride
    1; an even kernel pads one more at the bottom/right, as PyTorch). minicnn's kernels
    compute dilation 1 and groups 1 only; other values are refused by name.
    """
    op = "conv2d"
    _unsupported(op, dilation=(_pair(dilation, "dilation", op), (1, 1)), groups=(groups, 1))
    if isinstance(input, Tensor) and input.ndim == 3:
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding).squeeze(0)
    if isinstance(padding, str):
        input, padding = _string_padding(input, weight, stride, padding, op)
    stride, padding = _conv_args(input, weight, bias, stride, padding, op)
    return Conv2dFn.apply(input, weight, bias, stride=stride, padding=padding)


def _unsupported(op, **settings):
    """Refuse, by name, a setting the kernels do not compute: name=(value, the one allowed)."""
    for name, (value, allowed) in settings.items():
        if value != allowed:
            raise ValueError(f"{op}: {name}={value!r} is not supported; minicnn's kernels "
                             f"compute {name}={allowed!r} only")


def _string_padding(input, weight, stride, padding, op):
    """padding="valid" or "same" -> (input, padding pair); "same" with an even kernel pads
    the input itself, one more row/column at the bottom/right, as PyTorch does."""
    if padding == "valid":
        return input, 0
    if padding != "same":
        raise ValueError(f"{op}: padding must be a number, a pair, 'valid' or 'same', got "
                         f"{padding!r}")
    if _pair(stride, "stride", op) != (1, 1):
        raise ValueError(f"{op}: padding='same' needs stride 1 (as in PyTorch), got stride "
                         f"{stride!r}")
    _as_tensor(weight, op, "weight")
    totals = [k - 1 for k in weight.shape[2:]]
    if all(t % 2 == 0 for t in totals):
        return input, (totals[0] // 2, totals[1] // 2)
    (top, left), (bottom, right) = [t // 2 for t in totals], [t - t // 2 for t in totals]
    return pad2d(input, (top, bottom, left, right)), 0


def pad2d(input, pads, value=0.0):
    """input (..., H, W) padded with `value`: pads = (top, bottom, left, right)."""
    _as_tensor(input, "pad")
    if input.ndim < 2 or len(pads) != 4 or min(pads) < 0:
        raise ValueError(f"pad: need an input of 2 or more dims and four non-negative pads, "
                         f"got shape {input.shape} and pads {pads}")
    return Pad2d.apply(input, pads=tuple(int(p) for p in pads), value=value)


def conv2d_relu(input, weight, bias=None, stride=1, padding=0):
    """relu(conv2d(input, weight, bias, stride, padding)), computed as one op (same
    shapes and values as the two; nn.Sequential uses it for a Conv2d then a ReLU)."""
    stride, padding = _conv_args(input, weight, bias, stride, padding, "conv2d")
    return Conv2dFn.apply(input, weight, bias, stride=stride, padding=padding, relu=True)


def conv2d_relu_pool(input, weight, bias=None, stride=1, padding=0):
    """max_pool2d(relu(conv2d(input, weight, bias, stride, padding)), 2), computed as one
    op (same shapes and values as the three; nn.Sequential uses it for a Conv2d, a ReLU
    and a MaxPool2d(2)). -> (N, F, Ho // 2, Wo // 2), Ho, Wo the convolution's output."""
    stride, padding = _conv_args(input, weight, bias, stride, padding, "conv2d")
    ho, wo = (out_size(n, k, s, p) for n, k, s, p in
              zip(input.shape[2:], weight.shape[2:], stride, padding))
    if min(ho, wo) < 2:
        raise ValueError(f"max_pool2d: window 2x2 is larger than the convolution's output "
                         f"{ho}x{wo} (input shape {input.shape}, weight shape {weight.shape})")
    return Conv2dFn.apply(input, weight, bias, stride=stride, padding=padding, relu=True,
                          pool=True)


def _conv_args(input, weight, bias, stride, padding, op):
    """Check conv2d's arguments; returns (stride, padding) as pairs."""
    _as_tensor(input, op)
    _as_tensor(weight, op, "weight")
    stride, padding = _pair(stride, "stride", op), _pair(padding, "padding", op)
    if input.ndim != 4:
        raise ValueError(f"{op}: input must be (N, C, H, W) or (C, H, W), got shape "
                         f"{input.shape}")
    if weight.ndim != 4:
        raise ValueError(f"{op}: weight must be 4-D (F, C, KH, KW), got shape {weight.shape}")
    _need_float(input, op)
    if input.shape[1] != weight.shape[1]:
        raise ValueError(f"{op}: input has {input.shape[1]} channels but weight expects "
                         f"{weight.shape[1]} (input shape {input.shape}, weight shape {weight.shape})")
    if bias is not None:
        _as_tensor(bias, op, "bias")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"{op}: bias must have shape ({weight.shape[0]},) to match weight "
                             f"shape {weight.shape}, got {bias.shape}")
    if min(stride) < 1:
        raise ValueError(f"{op}: stride must be at least 1, got {stride}")
    if min(padding) < 0:
        raise ValueError(f"{op}: padding must be non-negative, got {padding}")
    H, W = input.shape[2:]
    KH, KW = weight.shape[2:]
    if KH > H + 2 * padding[0] or KW > W + 2 * padding[1]:
        raise ValueError(f"{op}: kernel {KH}x{KW} is larger than the padded input "
                         f"{H + 2 * padding[0]}x{W + 2 * padding[1]} (input shape {input.shape}, "
                         f"padding {padding})")
    same_device(op, input, weight, bias)
    if input.dtype != weight.dtype:
        raise TypeError(f"{op}: input is {input.dtype} but weight is {weight.dtype}")
    return stride, padding


# --- pooling (lesson 03) ----------------------------------------------------

def _pool_args(input, kernel_size, stride, padding, op):
    _as_tensor(input, op)
    if input.ndim != 4:
        raise ValueError(f"{op}: input must be (N, C, H, W) or (C, H, W), got shape {input.shape}")
    _need_float(input, op)
    k = _pair(kernel_size, "kernel_size", op)
    s = k if stride is None or stride == () or stride == [] else _pair(stride, "stride", op)
    p = _pair(padding, "padding", op)
    if min(k) < 1 or min(s) < 1:
        raise ValueError(f"{op}: kernel_size and stride must be at least 1, got {k} and {s}")
    if p[0] < 0 or p[1] < 0 or p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{op}: padding {p} must be between 0 and half the kernel size {k}")
    H, W = input.shape[2:]
    if k[0] > H + 2 * p[0] or k[1] > W + 2 * p[1]:
        raise ValueError(f"{op}: window {k[0]}x{k[1]} is larger than the padded input "
                         f"{H + 2 * p[0]}x{W + 2 * p[1]} (input shape {input.shape})")
    return k, s, p


def pool_output_size(size, k, s, p, ceil_mode=False):
    """Output length of a pooling along one axis, PyTorch's rule: floor((size + 2p - k) / s)
    + 1, or with ceil_mode the ceiling, less one if the last window would start in the
    right padding (it must start inside the input or the left padding)."""
    if not ceil_mode:
        return out_size(size, k, s, p)
    out = -(-(size + 2 * p - k) // s) + 1
    return out - 1 if (out - 1) * s >= size + p else out


def _ceil_overhang(input, k, s, p):
    """Rows and columns past the right padding that ceil mode's last windows reach."""
    H, W = input.shape[2:]
    return tuple(max(0, (pool_output_size(n, kk, ss, pp, True) - 1) * ss + kk - (n + 2 * pp))
                 for n, kk, ss, pp in zip((H, W), k, s, p))


def _unbatched(pool):
    """Run a pooling on a (C, H, W) input as a batch of one (PyTorch accepts both)."""
    def run(input, *args, **kwargs):
        if isinstance(input, Tensor) and input.ndim == 3:
            out = pool(input.unsqueeze(0), *args, **kwargs)
            return tuple(o.squeeze(0) for o in out) if isinstance(out, tuple) else out.squeeze(0)
        return pool(input, *args, **kwargs)
    run.__name__, run.__doc__ = pool.__name__, pool.__doc__
    return run


class MaxPool2dFn(Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, padding, indices_out=None):
        y, idx = backends.get(ctx.device).max_pool2d_forward(x, kernel, stride, padding)
        ctx.save_for_backward(idx)
        ctx.x_shape = x.shape
        if indices_out is not None:       # return_indices: hand the argmax out as well
            indices_out.append(idx)
        return y

    @staticmethod
    def backward(ctx, gy):
        (idx,) = ctx.saved_tensors
        return backends.get(ctx.device).max_pool2d_backward(gy, idx, ctx.x_shape)


@_unbatched
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over each window; ties go to the first maximum, as PyTorch.

    input (N, C, H, W) or (C, H, W) -> (N, C, Ho, Wo), Ho = pool_output_size(H, ...)
    (floor mode, or ceil_mode); padding counts as -inf. With return_indices also the
    int64 indices h*W + w of each maximum in its input plane. dilation 1 only.
    """
    op = "max_pool2d"
    _unsupported(op, dilation=(_pair(dilation, "dilation", op), (1, 1)))
    k, s, p = _pool_args(input, kernel_size, stride, padding, op)
    x, (eh, ew) = input, (0, 0)
    if ceil_mode:
        eh, ew = _ceil_overhang(input, k, s, p)
        if eh or ew:      # the overhang as -inf: a max never picks it
            x = pad2d(input, (0, eh, 0, ew), value=-np.inf)
    found = [] if return_indices else None
    y = MaxPool2dFn.apply(x, kernel=k, stride=s, padding=p, indices_out=found)
    if not return_indices:
        return y
    idx = input.xp.asarray(found[0]).astype(np.int64)
    if ew:                # flat indices of the wider plane -> of the input's plane
        wide = input.shape[3] + ew
        idx = (idx // wide) * input.shape[3] + idx % wide
    return y, Tensor._wrap(idx, device=input.device)


class AvgPool2dFn(Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        ctx.pool = (x.shape, kernel, stride, padding)
        return backends.get(ctx.device).avg_pool2d_forward(x, kernel, stride, padding)

    @staticmethod
    def backward(ctx, gy):
        x_shape, kernel, stride, padding = ctx.pool
        return backends.get(ctx.device).avg_pool2d_backward(gy, x_shape, kernel, stride, padding)


@_unbatched
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """Mean over each window, as PyTorch's avg_pool2d.

    input (N, C, H, W) or (C, H, W) -> (N, C, Ho, Wo), Ho = pool_output_size(H, ...).
    The divisor: the window's size (zero padding counted, the default), or with
    count_include_pad=False only the input elements it covers, or divisor_override.
    In ceil mode the part of a last window past the padding is not counted.
    """
    op = "avg_pool2d"
    k, s, p = _pool_args(input, kernel_size, stride, padding, op)
    if divisor_override is not None and (isinstance(divisor_override, bool) or
                                         not isinstance(divisor_override, (int, np.integer))
                                         or divisor_override < 1):
        raise ValueError(f"{op}: divisor_override must be a positive integer, got "
                         f"{divisor_override!r}")
    eh, ew = _ceil_overhang(input, k, s, p) if ceil_mode else (0, 0)
    if not (eh or ew) and count_include_pad and divisor_override is None:
        return AvgPool2dFn.apply(input, kernel=k, stride=s, padding=p)   # the kernel's own rule
    # sum over each window by the kernel (mean * window size), then the divisor PyTorch uses
    x = pad2d(input, (p[0], p[0] + eh, p[1], p[1] + ew))
    window = float(k[0] * k[1])
    sums = AvgPool2dFn.apply(x, kernel=k, stride=s, padding=(0, 0)) * window
    if divisor_override is not None:
        return sums * (1.0 / float(divisor_override))
    H, W = input.shape[2:]
    counted = np.zeros((1, 1, H + 2 * p[0] + eh, W + 2 * p[1] + ew), np.float64)
    if count_include_pad:
        counted[..., :H + 2 * p[0], :W + 2 * p[1]] = 1.0       # the input and its padding
    else:
        counted[..., p[0]:p[0] + H, p[1]:p[1] + W] = 1.0       # the input only
    counts = _window_sums(counted, k, s)
    return sums * Tensor(1.0 / counts, device=input.device, dtype=input.dtype)


def _window_sums(plane, k, s):
    """(1, 1, Ho, Wo) float64: the sum of `plane` (1, 1, H, W) over each k window, stride s."""
    H, W = plane.shape[2:]
    ho, wo = (H - k[0]) // s[0] + 1, (W - k[1]) // s[1] + 1
    out = np.zeros((1, 1, ho, wo))
    for p in range(k[0]):
        for q in range(k[1]):
            out += plane[..., p:p + (ho - 1) * s[0] + 1:s[0], q:q + (wo - 1) * s[1] + 1:s[1]]
    return out


# --- activations (lesson 02) ------------------------------------------------

class ReLUFn(Function):
    @staticmethod
    def forward(ctx, x):
        y = backends.get(ctx.device).relu_forward(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, gy):
        (y,) = ctx.saved_tensors
        return backends.get(ctx.device).relu_backward(gy, y)


def relu(input):
    """max(0, x), elementwise; any shape."""
    _as_tensor(input, "relu")
    _need_float(input, "relu")
    return ReLUFn.apply(input)


class SigmoidFn(Function):
    @staticmethod
    def forward(ctx, x):
        y = backends.get(ctx.device).sigmoid_forward(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, gy):
        (y,) = ctx.saved_tensors
        return backends.get(ctx.device).sigmoid_backward(gy, y)


def sigmoid(input):
    """1 / (1 + exp(-x)), elementwise; any shape."""
    _as_tensor(input, "sigmoid")
    _need_float(input, "sigmoid")
    return SigmoidFn.apply(input)


# --- fully connected (lesson 05) ---------------------------------------------

class LinearFn(Function):
    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return backends.get(ctx.device).linear_forward(x, w, b)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        need = ctx.needs_input_grad
        needs = (need[0], need[1], ctx.has_bias and need[2])
        return backends.get(ctx.device).linear_backward(x, w, gy, needs)


def linear(input, weight, bias=None):
    """y = x W^T + b.   input (*, In), weight (Out, In), bias (Out,) -> (*, Out)"""
    op = "linear"
    _as_tensor(input, op)
    _as_tensor(weight, op, "weight")
    _need_float(input, op)
    if weight.ndim != 2:
        raise ValueError(f"{op}: weight must be 2-D (out_features, in_features), got {weight.shape}")
    if input.ndim == 0:
        raise ValueError(f"{op}: input must be (*, in_features), got a 0-d tensor")
    if input.shape[-1] != weight.shape[1]:
        hint = ""
        if input.ndim > 2 and int(np.prod(input.shape[1:])) == weight.shape[1]:
            hint = (f"; its {weight.shape[1]} features per image are spread over dims 1.. of the "
                    "input: flatten it first, x.flatten(1) or x.view(x.size(0), -1)")
        raise ValueError(f"{op}: input has {input.shape[-1]} features but weight expects "
                         f"{weight.shape[1]} (input shape {input.shape}, weight shape "
                         f"{weight.shape}){hint}")
    if bias is not None:
        _as_tensor(bias, op, "bias")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"{op}: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    same_device(op, input, weight, bias)
    if input.ndim != 2:   # every leading dim is a batch dim, as in PyTorch
        rows = int(np.prod(input.shape[:-1]))
        y = LinearFn.apply(input.reshape((rows, input.shape[-1])), weight, bias)
        return y.reshape(input.shape[:-1] + (weight.shape[0],))
    return LinearFn.apply(input, weight, bias)


# --- softmax and losses (lesson 06) -------------------------------------------

def _rows(input, dim, op):
    """Move `dim` last and view as (R, K) rows; returns the tensor and how to undo it."""
    _as_tensor(input, op)
    _need_float(input, op)
    nd = input.ndim
    if nd == 0:                      # a scalar is one row of one class, as PyTorch
        x, undo = _rows(input.reshape((1,)), dim, op)
        return x, lambda y: undo(y).reshape(())
    if not -nd <= dim < nd:
        raise ValueError(f"{op}: dim {dim} is out of range for a {nd}-D input of shape {input.shape}")
    dim %= nd
    perm = None
    x = input
    if dim != nd - 1:
        perm = tuple(i for i in range(nd) if i != dim) + (dim,)
        x = x.transpose(perm)
    moved_shape = x.shape
    x = x.reshape((int(np.prod(moved_shape[:-1])), moved_shape[-1])) if nd != 2 else x

    def undo(y):
        y = y.reshape(moved_shape) if nd != 2 else y
        return y.transpose(tuple(np.argsort(perm))) if perm is not None else y
    return x, undo


class SoftmaxFn(Function):
    @staticmethod
    def forward(ctx, x):
        y = backends.get(ctx.device).softmax_forward(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, gy):
        (y,) = ctx.saved_tensors
        return backends.get(ctx.device).softmax_backward(gy, y)


def _softmax_dim(input, dim, dtype, op):
    """PyTorch's defaults: dim None means 0 for 0-, 1- and 3-D inputs, else 1; dtype casts
    the input first."""
    _as_tensor(input, op)
    if dtype is not None:
        input = input.astype(np.dtype(dtype))
    if dim is None:
        dim = 0 if input.ndim in (0, 1, 3) else 1
    return input, dim


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """exp(x_k - max) / sum_j exp(x_j - max) along `dim`; same shape as input."""
    input, dim = _softmax_dim(input, dim, dtype, "softmax")
    x, undo = _rows(input, dim, "softmax")
    if x.numel() == 0:
        return undo(x * 1.0)
    return undo(SoftmaxFn.apply(x))


class LogSoftmaxFn(Function):
    @staticmethod
    def forward(ctx, x):
        y = backends.get(ctx.device).log_softmax_forward(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, gy):
        (y,) = ctx.saved_tensors
        return backends.get(ctx.device).log_softmax_backward(gy, y)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """x_k - max - log sum_j exp(x_j - max) along `dim`; same shape as input."""
    input, dim = _softmax_dim(input, dim, dtype, "log_softmax")
    x, undo = _rows(input, dim, "log_softmax")
    if x.numel() == 0:
        return undo(x * 1.0)
    return undo(LogSoftmaxFn.apply(x))


class CrossEntropyFn(Function):
    @staticmethod
    def forward(ctx, logits, target, weight, reduction):
        loss, probs = backends.get(ctx.device).cross_entropy_forward(logits, target, weight, reduction)
        ctx.save_for_backward(probs, target, weight)
        ctx.reduction = reduction
        return loss

    @staticmethod
    def backward(ctx, gloss):
        probs, target, weight = ctx.saved_tensors
        g = backends.get(ctx.device).cross_entropy_backward(probs, target, weight, ctx.reduction, gloss)
        return g, None, None


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy, as PyTorch's: -weight[t] * log softmax(x)[t].

    input (N, K) logits, or (K,) unbatched, or (N, K, d1, ...) with a class per position;
    target: class indices of input's shape without K (int), or class probabilities of
    input's shape (float); weight (K,) per-class weights or None (for class imbalance);
    ignore_index: a target value that adds nothing (and is not counted);
    label_smoothing eps: the target is 1 - eps on the class plus eps / K on every class
    -> () for "mean"/"sum", the target's shape (without K) for "none". With class indices
    "mean" divides by the sum of weight[target] over the counted targets, as PyTorch;
    with probabilities by the number of targets.
    """
    op = "cross_entropy"
    _legacy_reduction(op, size_average, reduce)
    _check_reduction(op, reduction)
    x, t, w, K = _class_scores(input, target, weight, op, True, ignore_index)
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be between 0 and 1, got {label_smoothing!r}")
    probabilities = np.issubdtype(t.dtype, np.floating)
    rows_shape = _rows_shape(input, target)
    if not probabilities and ignore_index == -100 and not label_smoothing and \
            not (t.numpy() == ignore_index).any():      # the fused kernel: one pass, one op
        loss = CrossEntropyFn.apply(x, t, w, reduction=reduction)
        return loss.reshape(rows_shape) if reduction == "none" else loss
    logp = log_softmax(x, dim=1)
    eps = float(label_smoothing)
    if probabilities:
        if eps:
            t = t * (1.0 - eps) + eps / K
        per_class = logp * t if w is None else logp * t * w.reshape((1, K))
        losses = -per_class.sum(axis=1)
        loss = losses.sum() * (1.0 / max(losses.shape[0], 1)) if reduction == "mean" else \
            (losses.sum() if reduction == "sum" else losses)
        return loss.reshape(rows_shape) if reduction == "none" else loss
    loss = _nll(logp, t, w, ignore_index, reduction)
    if not eps:
        return loss.reshape(rows_shape) if reduction == "none" else loss
    keep = (t.numpy() != ignore_index)
    smooth = -(logp if w is None else logp * w.reshape((1, K))).sum(axis=1)
    smooth = smooth * Tensor(keep.astype(np.float32), device=input.device, dtype=input.dtype)
    if reduction == "mean":
        counted = float(keep.sum()) if w is None else \
            float(w.numpy()[t.numpy()[keep]].astype(np.float64).sum())
        smooth = smooth.sum() * (1.0 / counted) if counted else smooth.sum() * float("nan")
    elif reduction == "sum":
        smooth = smooth.sum()
    out = loss * (1.0 - eps) + smooth * (eps / K)
    return out.reshape(rows_shape) if reduction == "none" else out


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """The negative log-likelihood of log-probabilities, as PyTorch's: -weight[t] * input[t].

    input (N, K) log-probabilities (log_softmax's output), (K,), or (N, K, d1, ...);
    target class indices of input's shape without K; weight (K,) or None
    -> () for "mean" (divided by the sum of weight[target] counted) / "sum", the
    target's shape for "none"
    """
    op = "nll_loss"
    _legacy_reduction(op, size_average, reduce)
    _check_reduction(op, reduction)
    x, t, w, _ = _class_scores(input, target, weight, op, False, ignore_index)
    loss = _nll(x, t, w, ignore_index, reduction)
    return loss.reshape(_rows_shape(input, target)) if reduction == "none" else loss


def _nll(logp, t, w, ignore_index, reduction):
    """-w[t_i] * logp[i, t_i] over rows (R, K); a row whose t_i is ignore_index adds 0 and
    is not counted in the mean."""
    labels = t.numpy()
    keep = labels != ignore_index
    safe = np.where(keep, labels, 0)
    scale = keep.astype(np.float64)
    if w is not None:
        scale = scale * w.numpy()[safe].astype(np.float64)
    rows = logp.xp.arange(labels.size)
    picked = logp[rows, logp.xp.asarray(safe)]
    losses = -picked * Tensor(scale, device=logp.device, dtype=logp.dtype)
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    counted = float(scale.sum())
    return total * (1.0 / counted) if counted else total * float("nan")   # 0/0, as PyTorch


def _check_reduction(op, reduction):
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _legacy_reduction(op, size_average, reduce):
    if size_average is not None or reduce is not None:
        raise ValueError(f"{op}: size_average and reduce are deprecated in PyTorch and not "
                         "supported here; use reduction='mean', 'sum' or 'none'")


def _rows_shape(input, target):
    """The shape of a "none" loss: the target's (class indices) or input's without K."""
    if np.issubdtype(target.dtype, np.floating) and tuple(target.shape) == tuple(input.shape):
        return input.shape[:1] + input.shape[2:] if input.ndim > 1 else ()
    return tuple(target.shape)


def _class_scores(input, target, weight, op, allow_probabilities, ignore_index=-100):
    """Check a classification loss's arguments; returns (scores (R, K), target (R,) int64 or
    (R, K) float, weight (K,) or None, K) with the class axis moved last and flattened."""
    _as_tensor(input, op)
    _need_float(input, op)
    if input.ndim == 0:
        raise ValueError(f"{op}: input must be (N, K) scores (or (K,), or (N, K, d1, ...)), "
                         "got a 0-d tensor")
    if not isinstance(target, Tensor):
        target = Tensor(np.asarray(target), device=input.device)
    K = input.shape[1] if input.ndim > 1 else input.shape[0]
    probabilities = np.issubdtype(target.dtype, np.floating)
    index_shape = (input.shape[:1] + input.shape[2:]) if input.ndim > 1 else ()
    if probabilities and (not allow_probabilities or
                          (tuple(target.shape) == tuple(index_shape) != tuple(input.shape))):
        raise TypeError(f"{op}: target must hold integer class indices, got dtype {target.dtype}; "
                        "convert labels with .long()" + ("" if not allow_probabilities else
                        f" (a float target means class probabilities, of the input's shape "
                        f"{tuple(input.shape)})"))
    if target.dtype == np.bool_:
        raise TypeError(f"{op}: target must hold integer class indices or float class "
                        "probabilities, got dtype bool")
    expected = input.shape if probabilities else index_shape
    if tuple(target.shape) != tuple(expected):
        raise ValueError(_target_shape_message(op, input, target, expected, probabilities))
    same_device(op, input, target)
    if weight is not None:
        if not isinstance(weight, Tensor):
            weight = Tensor(np.asarray(weight, dtype=input.dtype), device=input.device)
        if weight.shape != (K,):
            raise ValueError(f"{op}: weight must have one entry per class, shape ({K},), got "
                             f"{weight.shape}")
        weight = weight.detach().astype(input.dtype) if weight.dtype != input.dtype \
            else weight.detach()
        same_device(op, input, weight)
    x = input.unsqueeze(0) if input.ndim == 1 else input
    t = target.unsqueeze(0) if input.ndim == 1 else target
    if x.ndim > 2:         # (N, K, d1, ...) -> (N*d1*..., K)
        x = x.transpose((0,) + tuple(range(2, x.ndim)) + (1,)).reshape((-1, K))
        t = t.transpose((0,) + tuple(range(2, t.ndim)) + (1,)).reshape((-1, K)) \
            if probabilities else t.reshape((-1,))
    if probabilities:     # soft targets stay in the graph: PyTorch differentiates them too
        t = t.astype(input.dtype) if t.dtype != input.dtype else t
        return x, t, weight, K
    labels = t.numpy()
    bad = ((labels < 0) | (labels >= K)) & (labels != ignore_index)
    if bad.any():
        raise ValueError(f"{op}: target holds label {int(labels[bad][0])}, outside the class "
                         f"range [0, {K - 1}] for {K} classes"
                         + (f" (and not ignore_index={ignore_index})" if ignore_index != -100 else ""))
    t = t.long() if t.dtype != np.int64 else t
    return x, t, weight, K


def _target_shape_message(op, input, target, expected, probabilities):
    """The shape error, with the cause a porter from PyTorch most likely has."""
    what = "class probabilities" if probabilities else "class indices"
    msg = (f"{op}: target of shape {tuple(target.shape)} does not fit input of shape "
           f"{tuple(input.shape)}; {what} need shape {tuple(expected)}")
    if input.ndim == 1:
        msg += (f" (an input of shape {tuple(input.shape)} is one sample's "
                f"{input.shape[0]} class scores, unbatched; a batch of N is (N, K))")
    n_in, n_t = (input.shape[0] if input.ndim > 1 else 1), (target.shape[0] if target.ndim else 1)
    if input.ndim == 2 and target.ndim == 1 and n_in != n_t and n_t and n_in:
        big, small = max(n_in, n_t), min(n_in, n_t)
        if big % small == 0 and n_in < n_t:
            msg += (f". The input has {n_in} rows of scores for {n_t} labels: a "
                    f"x.view(-1, n) before the classifier with n {n_t // n_in} times too large "
                    f"folds {n_t // n_in} images into each row (e.g. 64*56*56 where the feature "
                    f"maps are 64*28*28); flatten with x.view(x.size(0), -1), or compute n "
                    f"from the shape after the last pooling")
        elif big % small == 0:
            msg += (f". The input has {n_in} rows of scores for {n_t} labels: a "
                    f"x.view(-1, n) with n {n_in // n_t} times too small splits each image "
                    f"into {n_in // n_t} rows; flatten with x.view(x.size(0), -1)")
    return msg


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """Mean squared error (x - t)^2, as PyTorch's; target broadcast to input's shape.

    -> () for "mean" (over every element) / "sum", the broadcast shape for "none"
    """
    op = "mse_loss"
    _legacy_reduction(op, size_average, reduce)
    _as_tensor(input, op)
    _need_float(input, op)
    if not isinstance(target, Tensor):
        target = Tensor(np.asarray(target), device=input.device, dtype=input.dtype)
    _check_reduction(op, reduction)
    try:
        np.broadcast_shapes(input.shape, target.shape)
    except ValueError:
        raise ValueError(f"{op}: target of shape {target.shape} does not broadcast with input "
                         f"of shape {input.shape}") from None
    diff = input - target
    squared = diff * diff
    if reduction == "none":
        return squared
    return squared.sum() if reduction == "sum" else squared.mean()


# --- regularisation and shape -------------------------------------------------

class DropoutFn(Function):
    """The device draws the mask (Philox4x32-10 from `seed`, see kernels/reference.py)
    and keeps it; backward multiplies by that very mask."""

    @staticmethod
    def forward(ctx, x, p, seed):
        y, mask = backends.get(ctx.device).dropout_forward(x, p, seed)
        ctx.save_for_backward(mask)
        ctx.p = p
        return y

    @staticmethod
    def backward(ctx, gy):
        (mask,) = ctx.saved_tensors
        return backends.get(ctx.device).dropout_backward(gy, mask, ctx.p)


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability p and scale the rest by 1/(1-p) (training only).

    Any shape. The mask is drawn on the tensor's device from a seed that minicnn's
    generator gives (minicnn.manual_seed repeats it), the same on every device.
    """
    op = "dropout"
    _as_tensor(input, op)
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) \
            or not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: p must be between 0 and 1, got {p!r}")
    if inplace:
        raise ValueError(f"{op}: inplace=True is not supported; use the returned tensor "
                         "(inplace=False)")
    _need_float(input, op)
    if not training or p == 0.0:
        return input
    seed = int(generator().integers(0, 2**63))
    return DropoutFn.apply(input, p=float(p), seed=seed)


def flatten(input, start_dim=1, end_dim=-1):
    """Collapse dims start_dim..end_dim into one: (N, C, H, W) -> (N, C*H*W) by default."""
    _as_tensor(input, "flatten")
    return input.flatten(start_dim, end_dim)


class BatchNormFn(Function):
    """Batch norm over (N, C, L) views of the input; the kernels compute the statistics,
    update the running ones in place and normalise (kernels/cpu/norm.py, norm.cu)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps):
        x3 = x.reshape(x.shape[0], x.shape[1], math.prod(x.shape[2:]))   # L = 1 for (N, C)
        y, mean, invstd = backends.get(ctx.device).batch_norm_forward(
            x3, weight, bias, running_mean, running_var, training, momentum, eps)
        ctx.save_for_backward(x3, weight, mean, invstd)
        ctx.bn = (x.shape, training, bias is not None)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, gy):
        x3, weight, mean, invstd = ctx.saved_tensors
        shape, training, has_bias = ctx.bn
        need = ctx.needs_input_grad
        needs = (need[0], weight is not None and need[1], has_bias and need[2])
        gx, gw, gb = backends.get(ctx.device).batch_norm_backward(
            gy.reshape(x3.shape), x3, weight, mean, invstd, training, needs)
        return (None if gx is None else gx.reshape(shape)), gw, gb


def _stat_array(value, name, input, op):
    """A running statistic as the device array to update in place (a Tensor's own data)."""
    if value is None:
        return None
    array = value.array if isinstance(value, Tensor) else value
    if not isinstance(array, input.xp.ndarray):
        raise TypeError(f"{op}: {name} must be a Tensor or a {input.xp.__name__} array on the "
                        f"input's device '{input.device}', got {type(value).__name__}")
    if isinstance(value, Tensor) and value.device != input.device:
        raise RuntimeError(f"{op}: {name} is on device '{value.device}' but input is on "
                           f"'{input.device}'; move it with .to('{input.device}')")
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{op}: {name} must be floating point, got dtype {array.dtype}")
    return array


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Normalise each channel by its batch (training) or running (eval) mean and variance,
    as PyTorch's F.batch_norm.

    input (N, C), (N, C, L) or (N, C, H, W); running_mean, running_var (C,) Tensors or
    arrays of the input's device, or None; updated in place when training:
    running = (1 - momentum) * running + momentum * batch value (variance unbiased);
    weight, bias (C,) Tensors or None -> same shape as input
    """
    op = "batch_norm"
    rm, rv = _batch_norm_args(input, running_mean, running_var, weight, bias, training,
                              momentum, op)
    same_device(op, input, weight, bias)
    return BatchNormFn.apply(input, weight, bias, running_mean=rm, running_var=rv,
                             training=bool(training), momentum=float(momentum), eps=float(eps))


def _batch_norm_args(input, running_mean, running_var, weight, bias, training, momentum, op):
    """Check batch_norm's arguments; returns the running statistics as device arrays."""
    _as_tensor(input, op)
    if input.ndim < 2:
        raise ValueError(f"{op}: input must be (N, C), (N, C, L) or (N, C, H, W), got "
                         f"{input.shape}")
    _need_float(input, op)
    C = input.shape[1]
    rm = _stat_array(running_mean, "running_mean", input, op)
    rv = _stat_array(running_var, "running_var", input, op)
    for name, value in (("running_mean", running_mean), ("running_var", running_var),
                        ("weight", weight), ("bias", bias)):
        if value is not None and tuple(value.shape) != (C,):
            raise ValueError(f"{op}: {name} must have shape ({C},), one entry per channel "
                             f"of input {input.shape}, got {tuple(value.shape)}")
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None:
            _as_tensor(value, op, name)
            if value.dtype != input.dtype:
                raise TypeError(f"{op}: input is {input.dtype} but {name} is {value.dtype}")
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: give both running_mean and running_var, or neither")
    if not training and running_mean is None:
        raise ValueError(f"{op}: evaluation (training=False) needs running_mean and "
                         "running_var")
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: momentum must be a number, got {momentum!r} (BatchNorm "
                        "modules turn momentum=None into a cumulative average themselves)")
    if training and input.numel() // max(C, 1) <= 1:
        raise ValueError(f"{op}: need more than one value per channel when training, "
                         f"got input shape {input.shape}")
    return rm, rv


class BatchNormReluPoolFn(Function):
    """max_pool2d(relu(batch_norm(x)), 2) as one op: the kernels pool as they normalise,
    and scatter the pooled gradient as they read it back, so the full-size normalised map
    is never written (kernels/cpu/norm_pool.py). Backward needs only x, the pooled output
    (where it is positive the ReLU passed the gradient on) and its indices."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps):
        y, idx, mean, invstd = backends.get(ctx.device).batch_norm_relu_pool_forward(
            x, weight, bias, running_mean, running_var, training, momentum, eps)
        ctx.save_for_backward(x, y, weight, mean, invstd)
        ctx.bn = (idx, training, bias is not None)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, y, weight, mean, invstd = ctx.saved_tensors
        idx, training, has_bias = ctx.bn
        need = ctx.needs_input_grad
        needs = (need[0], weight is not None and need[1], has_bias and need[2])
        return backends.get(ctx.device).batch_norm_relu_pool_backward(
            gy, x, y, idx, weight, mean, invstd, training, needs)


def batch_norm_relu_pool(input, running_mean, running_var, weight=None, bias=None,
                         training=False, momentum=0.1, eps=1e-5):
    """max_pool2d(relu(batch_norm(input, ...)), 2), computed as one op (same shapes and
    values as the three; nn.Sequential uses it for a BatchNorm2d, a ReLU and a MaxPool2d(2)).
    input (N, C, H, W), H and W at least 2 -> (N, C, H // 2, W // 2); the rest as batch_norm."""
    op = "batch_norm"
    _as_tensor(input, op)
    if input.ndim != 4:
        raise ValueError(f"{op}: the fused batch norm, ReLU and pool takes (N, C, H, W), got "
                         f"{input.shape}")
    if min(input.shape[2:]) < 2:
        raise ValueError(f"max_pool2d: window 2x2 is larger than the input {input.shape[2]}x"
                         f"{input.shape[3]} (input shape {input.shape})")
    rm, rv = _batch_norm_args(input, running_mean, running_var, weight, bias, training,
                              momentum, op)
    same_device(op, input, weight, bias)
    return BatchNormReluPoolFn.apply(input, weight, bias, running_mean=rm, running_var=rv,
                                     training=bool(training), momentum=float(momentum),
                                     eps=float(eps))


# --- adaptive pooling (lesson 03) ---------------------------------------------

class AdaptiveAvgPool2dFn(Function):
    @staticmethod
    def forward(ctx, x, out_hw):
        ctx.x_shape = x.shape
        return backends.get(ctx.device).adaptive_avg_pool2d_forward(x, out_hw)

    @staticmethod
    def backward(ctx, gy):
        return backends.get(ctx.device).adaptive_avg_pool2d_backward(gy, ctx.x_shape)


def adaptive_avg_pool2d(input, output_size):
    """Average over PyTorch's adaptive bins: output row i covers input rows
    floor(i*H/Ho) .. ceil((i+1)*H/Ho) - 1, columns likewise.

    input (N, C, H, W) or (C, H, W); output_size Ho or (Ho, Wo), an entry None keeping
    the input's size -> (N, C, Ho, Wo) or (C, Ho, Wo)
    """
    op = "adaptive_avg_pool2d"
    _as_tensor(input, op)
    if input.ndim not in (3, 4):
        raise ValueError(f"{op}: input must be (N, C, H, W) or (C, H, W), got shape {input.shape}")
    _need_float(input, op)
    H, W = input.shape[-2:]
    size = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(size) != 2 or not all(s is None or (isinstance(s, (int, np.integer)) and
                                               not isinstance(s, bool)) for s in size):
        raise TypeError(f"{op}: output_size must be an int, None, or a pair of them, got "
                        f"{output_size!r}")
    out_hw = (H if size[0] is None else int(size[0]), W if size[1] is None else int(size[1]))
    if min(out_hw) < 1:
        raise ValueError(f"{op}: output_size must be at least 1, got {output_size!r}")
    if H < 1 or W < 1:
        raise ValueError(f"{op}: input has an empty plane, shape {input.shape}")
    if input.ndim == 3:
        return AdaptiveAvgPool2dFn.apply(input.unsqueeze(0), out_hw=out_hw).squeeze(0)
    return AdaptiveAvgPool2dFn.apply(input, out_hw=out_hw)


# --- binary cross-entropy (lesson 06) -----------------------------------------

class BCEWithLogitsFn(Function):
    @staticmethod
    def forward(ctx, x, t, weight, pos_weight, reduction):
        loss = backends.get(ctx.device).bce_with_logits_forward(x, t, weight, pos_weight, reduction)
        ctx.save_for_backward(x, t, weight, pos_weight)
        ctx.reduction = reduction
        return loss

    @staticmethod
    def backward(ctx, gloss):
        x, t, weight, pos_weight = ctx.saved_tensors
        return backends.get(ctx.device).bce_with_logits_backward(
            x, t, weight, pos_weight, ctx.reduction, gloss, needs=ctx.needs_input_grad[:2])


def _broadcast_constant(value, name, input, op):
    """weight / pos_weight as a C-contiguous array of the input's shape, or None."""
    if value is None:
        return None
    if not isinstance(value, Tensor):
        value = Tensor(value if hasattr(value, "dtype") else np.asarray(value),
                       device=input.device, dtype=input.dtype)
    if value.requires_grad and is_grad_enabled():
        raise ValueError(f"{op}: {name} requires grad, but the loss has no gradient for it "
                         f"(nor has PyTorch's); pass {name}.detach()")
    same_device(op, input, value)
    xp = input.xp
    try:
        full = xp.broadcast_to(value.array.astype(input.dtype, copy=False), input.shape)
    except ValueError:
        raise ValueError(f"{op}: {name} of shape {value.shape} does not broadcast to the input "
                         f"shape {input.shape}") from None
    return xp.ascontiguousarray(full)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """-[pw * t * log sigmoid(x) + (1 - t) * log(1 - sigmoid(x))] * weight, computed from
    the logits x in the stable form max(x, 0) - x*t + log1p(exp(-|x|)) (PyTorch's).

    input (any shape) logits; target the same shape, values in [0, 1];
    weight broadcastable to input (rescales each element); pos_weight broadcastable to
    input, e.g. (classes,) (weight of the positive term, for class imbalance)
    -> () for "mean" (over every element) / "sum", input's shape for "none"
    """
    op = "binary_cross_entropy_with_logits"
    _as_tensor(input, op)
    _need_float(input, op)
    if size_average is not None or reduce is not None:
        raise ValueError(f"{op}: size_average and reduce are deprecated in PyTorch and not "
                         f"supported here; use reduction='mean', 'sum' or 'none'")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not isinstance(target, Tensor):
        target = Tensor(np.asarray(target), device=input.device)
    if not np.issubdtype(target.dtype, np.floating):
        raise TypeError(f"{op}: target must be floating point (0/1 labels as floats), got "
                        f"dtype {target.dtype}; convert it with .float()")
    if target.shape != input.shape:
        raise ValueError(f"{op}: target size {target.shape} must be the same as input size "
                         f"{input.shape}")
    same_device(op, input, target)
    if target.dtype != input.dtype:
        if target.requires_grad:
            raise TypeError(f"{op}: input is {input.dtype} but target is {target.dtype}")
        target = target.astype(input.dtype)
    if input.ndim == 0:     # a single logit: the kernels work on arrays of at least one element
        loss = binary_cross_entropy_with_logits(input.reshape((1,)), target.reshape((1,)),
                                                weight, reduction=reduction,
                                                pos_weight=pos_weight)
        return loss.reshape(()) if reduction == "none" else loss
    w = _broadcast_constant(weight, "weight", input, op)
    pw = _broadcast_constant(pos_weight, "pos_weight", input, op)
    return BCEWithLogitsFn.apply(input, target, weight=w, pos_weight=pw, reduction=reduction)


__all__ = ["conv2d", "conv2d_relu", "conv2d_relu_pool", "batch_norm_relu_pool", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "relu",
           "sigmoid", "linear", "softmax", "log_softmax", "cross_entropy", "nll_loss", "mse_loss",
           "binary_cross_entropy_with_logits", "dropout", "flatten", "batch_norm", "pad2d",
           "pool_output_size", "is_grad_enabled"]
