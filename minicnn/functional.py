"""The network's operations, with PyTorch's signatures.

Each op checks its arguments in words a learner understands, then hands raw
arrays to the backend of the tensors' device (`minicnn.backends`), whose kernels
compute forward and backward. The Function for each op sits right above the
function users call: forward first, its derivative right under it.

Shapes: N batch, C input channels, F filters/output channels, H/W height/width,
K classes.
"""
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

def dropout(input, p=0.5, training=True):
    """Zero each element with probability p and scale the rest by 1/(1-p) (training only)."""
    _as_tensor(input, "dropout")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be between 0 and 1, got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    keep = (generator().random(input.shape) >= p).astype(input.dtype) / input.dtype.type(1.0 - p)
    mask = Tensor._wrap(input.xp.asarray(keep), device=input.device)
    return input * mask


def flatten(input, start_dim=1, end_dim=-1):
    """Collapse dims start_dim..end_dim into one: (N, C, H, W) -> (N, C*H*W) by default."""
    _as_tensor(input, "flatten")
    return input.flatten(start_dim, end_dim)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Normalise each channel by its batch (training) or running (eval) mean and variance.

    input (N, C, H, W) or (N, C); running_mean/var (C,) arrays updated in place when training;
    weight, bias (C,) Tensors or None -> same shape as input
    """
    _as_tensor(input, "batch_norm")
    if input.ndim not in (2, 4):
        raise ValueError(f"batch_norm: input must be (N, C) or (N, C, H, W), got {input.shape}")
    _need_float(input, "batch_norm")
    C = input.shape[1]
    for name, value in (("running_mean", running_mean), ("running_var", running_var),
                        ("weight", weight), ("bias", bias)):
        if value is not None and tuple(value.shape) != (C,):
            raise ValueError(f"batch_norm: {name} must have shape ({C},), one entry per channel "
                             f"of input {input.shape}, got {tuple(value.shape)}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: evaluation (training=False) needs running_mean and "
                         "running_var")
    axes = (0,) if input.ndim == 2 else (0, 2, 3)
    shape = (1, C) if input.ndim == 2 else (1, C, 1, 1)
    if training:
        count = input.size // C
        if count <= 1:
            raise ValueError(f"batch_norm: need more than one value per channel when training, "
                             f"got input shape {input.shape}")
        mean = input.mean(axis=axes, keepdims=True)
        var = input.var(axis=axes, keepdims=True)
        if running_mean is not None:
            m = mean.data.reshape(C)
            v = var.data.reshape(C) * (count / (count - 1))
            running_mean[...] = (1 - momentum) * running_mean + momentum * m
            running_var[...] = (1 - momentum) * running_var + momentum * v
        xhat = (input - mean) / (var + eps).sqrt()
    else:
        mean = Tensor._wrap(running_mean.reshape(shape), device=input.device)
        var = Tensor._wrap(running_var.reshape(shape), device=input.device)
        xhat = (input - mean) * Tensor._wrap(1.0 / input.xp.sqrt(var.data + eps), device=input.device)
    if weight is not None:
        xhat = xhat * weight.reshape(shape)
    if bias is not None:
        xhat = xhat + bias.reshape(shape)
    return xhat


__all__ = ["conv2d", "conv2d_relu", "max_pool2d", "avg_pool2d", "relu", "sigmoid", "linear", "softmax",
           "log_softmax", "cross_entropy", "dropout", "flatten", "batch_norm", "is_grad_enabled"]
