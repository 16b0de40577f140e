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
from .autograd import Function, is_grad_enabled
from .tensor import Tensor
from .random import generator


def _pair(value, name, op):
    if isinstance(value, (int, np.integer)):
        return (int(value), int(value))
    if isinstance(value, (tuple, list)) and len(value) == 2 and \
            all(isinstance(v, (int, np.integer)) for v in value):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")


def _as_tensor(x, op, name="input"):
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} must be a minicnn Tensor, got {type(x).__name__}")
    return x


def _need_float(x, op, name="input"):
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{op}: {name} must be floating point, got dtype {x.dtype}")


def _backend(op, *tensors):
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        raise RuntimeError(f"{op}: tensors are on different devices "
                           f"({', '.join(sorted(devices))}); move them with .to(device) first")
    return backends.get(devices.pop())


def _out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


# --- convolution (lesson 01) ------------------------------------------------

class Conv2dFn(Function):
    """conv2d, and with relu=True relu(conv2d) as one op: the kernels apply max(y, 0)
    as they write y, and in backward mask gy as they read it, so the ReLU costs no
    pass of its own. The ReLU's output is all backward needs of it (where y > 0 the
    ReLU passed gy on)."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, relu=False):
        y = backends.get(ctx.device).conv2d_forward(x, w, b, stride, padding, relu=relu)
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
            x, w, gy, stride, padding, needs, relu_y=relu_y[0] if relu_y else None)


def conv2d(input, weight, bias=None, stride=1, padding=0):
    """2-D cross-correlation, as PyTorch's conv2d.

    input (N, C, H, W), weight (F, C, KH, KW), bias (F,) or None
    -> (N, F, (H + 2*ph - KH)//sh + 1, (W + 2*pw - KW)//sw + 1)
    """
    stride, padding = _conv_args(input, weight, bias, stride, padding, "conv2d")
    return Conv2dFn.apply(input, weight, bias, stride=stride, padding=padding)


def conv2d_relu(input, weight, bias=None, stride=1, padding=0):
    """relu(conv2d(input, weight, bias, stride, padding)), computed as one op (same
    shapes and values as the two; nn.Sequential uses it for a Conv2d then a ReLU)."""
    stride, padding = _conv_args(input, weight, bias, stride, padding, "conv2d")
    return Conv2dFn.apply(input, weight, bias, stride=stride, padding=padding, relu=True)


def _conv_args(input, weight, bias, stride, padding, op):
    """Check conv2d's arguments; returns (stride, padding) as pairs."""
    _as_tensor(input, op)
    _as_tensor(weight, op, "weight")
    stride, padding = _pair(stride, "stride", op), _pair(padding, "padding", op)
    if input.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {input.shape}"
                         + (" — add a batch axis with x.reshape(1, *x.shape)" if input.ndim == 3 else ""))
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
    _backend(op, input, weight, bias)
    if input.dtype != weight.dtype:
        raise TypeError(f"{op}: input is {input.dtype} but weight is {weight.dtype}")
    return stride, padding


# --- pooling (lesson 03) ----------------------------------------------------

def _pool_args(input, kernel_size, stride, padding, op):
    _as_tensor(input, op)
    if input.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {input.shape}")
    _need_float(input, op)
    k = _pair(kernel_size, "kernel_size", op)
    s = k if stride is None or stride == () else _pair(stride, "stride", op)
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


class MaxPool2dFn(Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        y, idx = backends.get(ctx.device).max_pool2d_forward(x, kernel, stride, padding)
        ctx.save_for_backward(idx)
        ctx.x_shape = x.shape
        return y

    @staticmethod
    def backward(ctx, gy):
        (idx,) = ctx.saved_tensors
        return backends.get(ctx.device).max_pool2d_backward(gy, idx, ctx.x_shape)


def max_pool2d(input, kernel_size, stride=None, padding=0):
    """Max over each window; floor mode; ties go to the first maximum, as PyTorch.

    input (N, C, H, W) -> (N, C, (H + 2p - k)//s + 1, (W + 2p - k)//s + 1)
    """
    k, s, p = _pool_args(input, kernel_size, stride, padding, "max_pool2d")
    return MaxPool2dFn.apply(input, kernel=k, stride=s, padding=p)


class AvgPool2dFn(Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        ctx.pool = (x.shape, kernel, stride, padding)
        return backends.get(ctx.device).avg_pool2d_forward(x, kernel, stride, padding)

    @staticmethod
    def backward(ctx, gy):
        x_shape, kernel, stride, padding = ctx.pool
        return backends.get(ctx.device).avg_pool2d_backward(gy, x_shape, kernel, stride, padding)


def avg_pool2d(input, kernel_size, stride=None, padding=0):
    """Mean over each window (zero padding counted), floor mode.

    input (N, C, H, W) -> (N, C, Ho, Wo)
    """
    k, s, p = _pool_args(input, kernel_size, stride, padding, "avg_pool2d")
    return AvgPool2dFn.apply(input, kernel=k, stride=s, padding=p)


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
    """y = x W^T + b.   input (N, In) or (In,), weight (Out, In), bias (Out,) -> (N, Out)"""
    op = "linear"
    _as_tensor(input, op)
    _as_tensor(weight, op, "weight")
    _need_float(input, op)
    if weight.ndim != 2:
        raise ValueError(f"{op}: weight must be 2-D (out_features, in_features), got {weight.shape}")
    if input.ndim not in (1, 2):
        raise ValueError(f"{op}: input must be (N, in_features) or (in_features,), got shape "
                         f"{input.shape}" + (" — flatten it first" if input.ndim > 2 else ""))
    if input.shape[-1] != weight.shape[1]:
        raise ValueError(f"{op}: input has {input.shape[-1]} features but weight expects "
                         f"{weight.shape[1]} (input shape {input.shape}, weight shape {weight.shape})")
    if bias is not None:
        _as_tensor(bias, op, "bias")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"{op}: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    _backend(op, input, weight, bias)
    if input.ndim == 1:
        return LinearFn.apply(input.reshape((1, -1)), weight, bias).reshape((weight.shape[0],))
    return LinearFn.apply(input, weight, bias)


# --- softmax and losses (lesson 06) -------------------------------------------

def _rows(input, dim, op):
    """Move `dim` last and view as (R, K) rows; returns the tensor and how to undo it."""
    _as_tensor(input, op)
    _need_float(input, op)
    nd = input.ndim
    if nd == 0:
        raise ValueError(f"{op}: input must have at least one dimension")
    if not -nd <= dim < nd:
        raise ValueError(f"{op}: dim {dim} is out of range for a {nd}-D input of shape {input.shape}")
    dim %= nd
    perm = None
    x = input
    if dim != nd - 1:
        perm = tuple(i for i in range(nd) if i != dim) + (dim,)
        x = x.transpose(perm)
    moved_shape = x.shape
    x = x.reshape((-1, moved_shape[-1])) if nd != 2 else x

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


def softmax(input, dim=-1):
    """exp(x_k - max) / sum_j exp(x_j - max) along `dim`; same shape as input."""
    x, undo = _rows(input, dim, "softmax")
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


def log_softmax(input, dim=-1):
    """x_k - max - log sum_j exp(x_j - max) along `dim`; same shape as input."""
    x, undo = _rows(input, dim, "log_softmax")
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


def cross_entropy(input, target, weight=None, reduction="mean"):
    """Softmax cross-entropy, as PyTorch's: -weight[t] * log softmax(x)[t].

    input (N, K) logits; target (N,) integer class indices in [0, K);
    weight (K,) per-class weights or None (for class imbalance)
    -> () for "mean"/"sum", (N,) for "none". "mean" divides by sum_i weight[target_i].
    """
    op = "cross_entropy"
    _as_tensor(input, op)
    _need_float(input, op)
    if input.ndim != 2:
        raise ValueError(f"{op}: input must be (N, num_classes) logits, got shape {input.shape}")
    if not isinstance(target, Tensor):
        target = Tensor(np.asarray(target), device=input.device)
    if np.issubdtype(target.dtype, np.floating) or target.dtype == np.bool_:
        raise TypeError(f"{op}: target must hold integer class indices, got dtype {target.dtype}; "
                        "convert labels with .long() (they are class numbers, not probabilities)")
    if target.shape != (input.shape[0],):
        raise ValueError(f"{op}: target must have shape ({input.shape[0]},) to match input "
                         f"{input.shape}, got {target.shape}")
    K = input.shape[1]
    t = target.numpy()
    if t.size and (t.min() < 0 or t.max() >= K):
        bad = int(t[(t < 0) | (t >= K)][0])
        raise ValueError(f"{op}: target holds label {bad}, outside the class range [0, {K - 1}] "
                         f"for {K} classes")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if weight is not None:
        if not isinstance(weight, Tensor):
            weight = Tensor(np.asarray(weight, dtype=input.dtype), device=input.device)
        if weight.shape != (K,):
            raise ValueError(f"{op}: weight must have one entry per class, shape ({K},), got {weight.shape}")
        weight = weight.detach().astype(input.dtype) if weight.dtype != input.dtype else weight.detach()
    _backend(op, input, target, weight)
    target = target.long() if target.dtype != np.int64 else target
    return CrossEntropyFn.apply(input, target, weight, reduction=reduction)


def nll_from_log_probs(log_probs, target):
    """Mean of -log_probs[i, target_i]: the loss written out by hand, for lessons.

    log_probs (N, K), target (N,) int -> ()
    """
    n = log_probs.shape[0]
    picked = log_probs[np.arange(n), target.numpy() if isinstance(target, Tensor) else target]
    return -picked.mean()


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
    array = value.data if isinstance(value, Tensor) else value
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
    if training and input.size // max(C, 1) <= 1:
        raise ValueError(f"{op}: need more than one value per channel when training, "
                         f"got input shape {input.shape}")
    _backend(op, input, weight, bias)
    return BatchNormFn.apply(input, weight, bias, running_mean=rm, running_var=rv,
                             training=bool(training), momentum=float(momentum), eps=float(eps))


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
    _backend(op, input, value)
    xp = input.xp
    try:
        full = xp.broadcast_to(value.data.astype(input.dtype, copy=False), input.shape)
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
    _backend(op, input, target)
    if target.dtype != input.dtype:
        if target.requires_grad:
            raise TypeError(f"{op}: input is {input.dtype} but target is {target.dtype}")
        target = target.astype(input.dtype)
    w = _broadcast_constant(weight, "weight", input, op)
    pw = _broadcast_constant(pos_weight, "pos_weight", input, op)
    return BCEWithLogitsFn.apply(input, target, weight=w, pos_weight=pw, reduction=reduction)


__all__ = ["conv2d", "conv2d_relu", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "relu",
           "sigmoid", "linear", "softmax", "log_softmax", "cross_entropy",
           "binary_cross_entropy_with_logits", "dropout", "flatten", "batch_norm",
           "is_grad_enabled"]
