"""Backends: one module per device, each exposing the same table of kernel calls.

A backend works on raw arrays (numpy for "cpu" and "cuda-sim", cupy for "cuda");
it knows nothing of Tensor or autograd. `minicnn.functional` validates shapes and
arguments, then calls these functions. Every array argument is C-contiguous and
float32 (float64 is also accepted by the cpu and reference backends, for gradient
checks). Integer arrays (targets, pooling indices) are int64 on input; a backend
may keep its own index dtype for `idx` since only it reads it back.

The table (N batch, C/F channels, H/W height and width, K classes):

  xp                                   the array module: numpy or cupy
  conv2d_forward(x, w, b, stride, padding, relu=False) -> y
        x (N,C,H,W), w (F,C,KH,KW), b (F,) or None, stride=(sh,sw), padding=(ph,pw)
        y (N,F,Ho,Wo), Ho = (H + 2ph - KH)//sh + 1, Wo likewise; relu=True also
        applies max(y, 0) (conv + bias + ReLU in one call)
  conv2d_backward(x, w, gy, stride, padding, needs=(True, True, True), relu_y=None)
        -> (gx, gw, gb); gy (N,F,Ho,Wo); gx (N,C,H,W), gw (F,C,KH,KW), gb (F,); an
        entry is None where needs[i] is False (needs = (input, weight, bias));
        relu_y, the output of a relu=True forward: gy is taken where relu_y > 0, else 0
  max_pool2d_forward(x, kernel, stride, padding) -> (y, idx)
        x (N,C,H,W), y (N,C,Ho,Wo); padding is -inf; idx holds, per output, the flat
        index h*W + w in its input plane of the first maximum in row-major window
        order (PyTorch's return_indices); floor mode
  max_pool2d_backward(gy, idx, x_shape) -> gx        gx[n,c].flat[idx] += gy
  avg_pool2d_forward(x, kernel, stride, padding) -> y
        mean over the window, zero padding counted in the divisor (PyTorch's
        default count_include_pad=True); floor mode
  avg_pool2d_backward(gy, x_shape, kernel, stride, padding) -> gx
  relu_forward(x) -> y                      any shape
  relu_backward(gy, y) -> gx                gx = gy where y > 0 else 0
  sigmoid_forward(x) -> y                   any shape, stable for large |x|
  sigmoid_backward(gy, y) -> gx             gx = gy * y * (1 - y)
  linear_forward(x, w, b) -> y              x (N,In), w (Out,In), b (Out,) or None; y (N,Out)
  linear_backward(x, w, gy, needs=(True, True, True)) -> (gx, gw, gb)
  softmax_forward(x) -> y                   x (R,K): softmax along the last axis
  softmax_backward(gy, y) -> gx             gx = y * (gy - sum(gy*y, axis=1))
  log_softmax_forward(x) -> y               x (R,K)
  log_softmax_backward(gy, y) -> gx         gx = gy - exp(y) * sum(gy, axis=1)
  cross_entropy_forward(logits, target, weight, reduction) -> (loss, probs)
        logits (N,K), target (N,) int64 in [0,K), weight (K,) or None,
        reduction "mean" | "sum" | "none"; loss () or (N,); probs (N,K) softmax
        "mean" with weights divides by sum_i weight[target_i], as PyTorch
  cross_entropy_backward(probs, target, weight, reduction, gloss) -> glogits
        gloss () or (N,) like loss; glogits (N,K)
  batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps)
        -> (y, mean, invstd); x (N,C,L) (images as (N,C,H*W), vectors as (N,C,1));
        weight, bias, running_mean, running_var (C,) or None; mean, invstd (C,) are
        the statistics used (the batch's when training, else the running ones),
        invstd = 1/sqrt(var + eps). Training updates running_mean/var in place as
        PyTorch: running = (1-momentum)*running + momentum*batch, the variance unbiased
  batch_norm_backward(gy, x, weight, mean, invstd, training, needs=(True, True, True))
        -> (gx, gw, gb); gy, x (N,C,L); gw, gb (C,); None where needs (input, weight,
        bias) says False; training=False: the statistics count as constants
  dropout_forward(x, p, seed, offset=0) -> (y, mask)
        any shape; mask uint8 (1 = kept) drawn on the device by Philox4x32-10 from
        (seed, offset), the same on every device; y = x * mask / (1 - p)
  dropout_backward(gy, mask, p) -> gx       gx = gy * mask / (1 - p), the forward's mask
  adaptive_avg_pool2d_forward(x, out_hw) -> y
        x (N,C,H,W), out_hw (Ho, Wo); bin i covers rows floor(i*H/Ho) ..
        ceil((i+1)*H/Ho) - 1, columns likewise (PyTorch's bins); y (N,C,Ho,Wo)
  adaptive_avg_pool2d_backward(gy, x_shape) -> gx
  bce_with_logits_forward(x, target, weight, pos_weight, reduction) -> loss
        x, target one shape, float; weight, pos_weight that shape or None (the caller
        broadcasts them); loss = w*((1-t)*x + (1+(pw-1)*t)*log(1+exp(-x))), computed
        stably; "none" -> like x, "sum", "mean" (over all elements) -> ()
  bce_with_logits_backward(x, target, weight, pos_weight, reduction, gloss,
        needs=(True, False)) -> (gx, gt)    gloss like loss; gx, gt like x or None
  sgd_step(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first)
        in place, PyTorch's SGD: g' = g + wd*p; buf = g' if first else
        momentum*buf + (1-dampening)*g'; d = g' + momentum*buf if nesterov else buf
        (d = g' when momentum == 0); p -= lr*d
  adam_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step)
        in place, PyTorch's Adam (L2 weight decay added to g, bias-corrected,
        step counted from 1)

Devices: "cpu" (numba kernels), "cuda" (CUDA C through cupy), "cuda-sim" (the
same CUDA C on the CPU emulator). `use_cpu_kernels("reference")` swaps the cpu
device's numba kernels for the plain numpy reference, for teaching and testing.
"""
import importlib

DEVICES = ("cpu", "cuda", "cuda-sim")
# The kernel calls of the table above (all but xp), in its order.
KERNEL_TABLE = (
    "conv2d_forward", "conv2d_backward",
    "max_pool2d_forward", "max_pool2d_backward",
    "avg_pool2d_forward", "avg_pool2d_backward",
    "relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward",
    "linear_forward", "linear_backward",
    "softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward",
    "cross_entropy_forward", "cross_entropy_backward",
    "batch_norm_forward", "batch_norm_backward",
    "dropout_forward", "dropout_backward",
    "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
    "bce_with_logits_forward", "bce_with_logits_backward",
    "sgd_step", "adam_step",
)
_MODULES = {"cpu": "cpu", "cuda": "cuda", "cuda-sim": "cuda_sim", "reference": "reference"}
_loaded = {}
_cpu_kernels = "cpu"


def check_device(device):
    """Return the canonical device name, or raise a clear error."""
    if isinstance(device, str):
        name = device.lower()
        if name == "cuda:0":
            name = "cuda"
        if name in DEVICES:
            return name
    raise ValueError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")


def use_cpu_kernels(kind):
    """Choose what the "cpu" device runs: "numba" (default) or "reference" (plain numpy)."""
    global _cpu_kernels
    if kind not in ("numba", "reference"):
        raise ValueError(f"use_cpu_kernels: expected 'numba' or 'reference', got {kind!r}")
    _cpu_kernels = "cpu" if kind == "numba" else "reference"


def array_module(device):
    """numpy, or cupy for "cuda": the array library that holds a device's data."""
    if check_device(device) == "cuda":
        return get("cuda").xp
    import numpy
    return numpy


def get(device):
    """The backend module for a device, imported on first use."""
    device = check_device(device)
    key = _cpu_kernels if device == "cpu" else _MODULES[device]
    if key not in _loaded:
        _loaded[key] = importlib.import_module(f"minicnn.backends.{key}")
    return _loaded[key]
