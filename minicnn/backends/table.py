"""The backend table: every kernel call a device provides, with its shapes.

`Backend` below is that table. Each device implements every method of it, on raw
arrays (numpy for "cpu" and "cuda-sim", cupy for "cuda"), knowing nothing of Tensor
or autograd:

  "cpu"        minicnn/backends/cpu.py         module of numba kernels (kernels/cpu/)
  reference    minicnn/backends/reference.py   module of numpy formulas (kernels/reference.py)
  "cuda"       minicnn/backends/cuda.py        a CudaKernels object (_cuda_glue.py,
  "cuda-sim"   minicnn/backends/cuda_sim.py      _cuda_layers.py) launching kernels/cuda/*.cu

`minicnn.functional` checks shapes and arguments, then calls these. Every array
argument is C-contiguous and float32 (float64 is also accepted by the cpu and
reference backends, for gradient checks). Integer arrays (targets, pooling indices)
are int64 on input; a backend may keep its own index dtype for `idx` since only it
reads it back. N batch, C/F channels, H/W height and width, K classes.
"""
from typing import Any, Protocol


class Backend(Protocol):
    """What every device provides (a reader greps `def conv2d_forward` to find them all)."""

    xp: Any
    """The array module: numpy or cupy."""

    def conv2d_forward(self, x, w, b, stride, padding, relu=False, pool=False):
        """-> y. x (N,C,H,W), w (F,C,KH,KW), b (F,) or None, stride=(sh,sw), padding=(ph,pw);
        y (N,F,Ho,Wo), Ho = (H + 2ph - KH)//sh + 1, Wo likewise; relu=True also applies
        max(y, 0) (conv + bias + ReLU in one call); pool=True (with relu) -> (yp, idx), the
        2x2 stride-2 max-pool of that, as max_pool2d_forward's (conv + bias + ReLU + pool)."""

    def conv2d_backward(self, x, w, gy, stride, padding, needs=(True, True, True), relu_y=None,
                        pool_idx=None):
        """-> (gx, gw, gb). gy (N,F,Ho,Wo); gx (N,C,H,W), gw (F,C,KH,KW), gb (F,); an entry
        is None where needs[i] is False (needs = (input, weight, bias)); relu_y, the
        output of a relu=True forward: gy is taken where relu_y > 0, else 0; pool_idx, the
        idx of a pool=True forward: gy and relu_y are the pooled ones (N,F,Ho//2,Wo//2),
        and the conv output's gradient is gy at pool_idx where relu_y > 0, else 0."""

    def max_pool2d_forward(self, x, kernel, stride, padding):
        """-> (y, idx). x (N,C,H,W), y (N,C,Ho,Wo); padding is -inf; idx holds, per output,
        the flat index h*W + w in its input plane of the first maximum in row-major
        window order (PyTorch's return_indices); floor mode."""

    def max_pool2d_backward(self, gy, idx, x_shape):
        """-> gx (x_shape). gx[n,c].flat[idx] += gy."""

    def avg_pool2d_forward(self, x, kernel, stride, padding):
        """-> y. The mean over the window, zero padding counted in the divisor (PyTorch's
        default count_include_pad=True); floor mode."""

    def avg_pool2d_backward(self, gy, x_shape, kernel, stride, padding):
        """-> gx (x_shape). Each output's gradient spread evenly over its window."""

    def relu_forward(self, x):
        """-> y, any shape: max(x, 0)."""

    def relu_backward(self, gy, y):
        """-> gx = gy where y > 0 else 0."""

    def sigmoid_forward(self, x):
        """-> y, any shape: 1 / (1 + exp(-x)), stable for large |x|."""

    def sigmoid_backward(self, gy, y):
        """-> gx = gy * y * (1 - y)."""

    def linear_forward(self, x, w, b):
        """-> y (N,Out) = x @ w.T + b. x (N,In), w (Out,In), b (Out,) or None."""

    def linear_backward(self, x, w, gy, needs=(True, True, True)):
        """-> (gx, gw, gb), None where needs (input, weight, bias) says False."""

    def softmax_forward(self, x):
        """-> y. x (R,K): softmax along the last axis."""

    def softmax_backward(self, gy, y):
        """-> gx = y * (gy - sum(gy*y, axis=1))."""

    def log_softmax_forward(self, x):
        """-> y. x (R,K): log of the softmax along the last axis."""

    def log_softmax_backward(self, gy, y):
        """-> gx = gy - exp(y) * sum(gy, axis=1)."""

    def cross_entropy_forward(self, logits, target, weight, reduction):
        """-> (loss, probs). logits (N,K), target (N,) int64 in [0,K), weight (K,) or None,
        reduction "mean" | "sum" | "none"; loss () or (N,); probs (N,K) softmax.
        "mean" with weights divides by sum_i weight[target_i], as PyTorch."""

    def cross_entropy_backward(self, probs, target, weight, reduction, gloss):
        """-> glogits (N,K). gloss () or (N,) like loss."""

    def batch_norm_forward(self, x, weight, bias, running_mean, running_var, training,
                           momentum, eps):
        """-> (y, mean, invstd). x (N,C,L) (images as (N,C,H*W), vectors as (N,C,1));
        weight, bias, running_mean, running_var (C,) or None; mean, invstd (C,) are the
        statistics used (the batch's when training, else the running ones), invstd =
        1/sqrt(var + eps). Training updates running_mean/var in place as PyTorch:
        running = (1-momentum)*running + momentum*batch, the variance unbiased."""

    def batch_norm_backward(self, gy, x, weight, mean, invstd, training,
                            needs=(True, True, True)):
        """-> (gx, gw, gb). gy, x (N,C,L); gw, gb (C,); None where needs (input, weight,
        bias) says False; training=False: the statistics count as constants."""

    def batch_norm_relu_pool_forward(self, x, weight, bias, running_mean, running_var,
                                     training, momentum, eps):
        """-> (y, idx, mean, invstd). x (N,C,H,W): batch_norm_forward, then ReLU, then the
        2x2 stride-2 max-pool, as one call; y, idx (N,C,H//2,W//2) as max_pool2d_forward's
        (idx the flat h*W + w of the window's first maximum); mean, invstd and the running
        statistics as batch_norm_forward's."""

    def batch_norm_relu_pool_backward(self, gy, x, y, idx, weight, mean, invstd, training,
                                      needs=(True, True, True)):
        """-> (gx, gw, gb). gy, y, idx (N,C,H//2,W//2) of the forward; batch norm's output
        gradient is gy at idx where y > 0 and 0 elsewhere, then as batch_norm_backward."""

    def dropout_forward(self, x, p, seed, offset=0):
        """-> (y, mask). Any shape; mask uint8 (1 = kept) drawn on the device by
        Philox4x32-10 from (seed, offset), the same on every device; y = x * mask / (1 - p)."""

    def dropout_backward(self, gy, mask, p):
        """-> gx = gy * mask / (1 - p), with the forward's mask."""

    def adaptive_avg_pool2d_forward(self, x, out_hw):
        """-> y (N,C,Ho,Wo). x (N,C,H,W), out_hw (Ho, Wo); bin i covers rows
        floor(i*H/Ho) .. ceil((i+1)*H/Ho) - 1, columns likewise (PyTorch's bins)."""

    def adaptive_avg_pool2d_backward(self, gy, x_shape):
        """-> gx (x_shape). Each bin's gradient spread evenly over the bin."""

    def bce_with_logits_forward(self, x, target, weight, pos_weight, reduction):
        """-> loss. x, target one shape, float; weight, pos_weight that shape or None (the
        caller broadcasts them); loss = w*((1-t)*x + (1+(pw-1)*t)*log(1+exp(-x))),
        computed stably; "none" -> like x, "sum", "mean" (over all elements) -> ()."""

    def bce_with_logits_backward(self, x, target, weight, pos_weight, reduction, gloss,
                                 needs=(True, False)):
        """-> (gx, gt). gloss like loss; gx, gt like x, or None where needs says False."""

    def sgd_step(self, p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
        """In place, PyTorch's SGD: g' = g + wd*p; buf = g' if first else
        momentum*buf + (1-dampening)*g'; d = g' + momentum*buf if nesterov else buf
        (d = g' when momentum == 0); p -= lr*d."""

    def adam_step(self, p, g, m, v, lr, beta1, beta2, eps, weight_decay, step):
        """In place, PyTorch's Adam (L2 weight decay added to g, bias-corrected, step
        counted from 1)."""


# The kernel calls (every method of Backend), in the order the class lists them.
KERNEL_TABLE = tuple(name for name, value in vars(Backend).items()
                     if callable(value) and not name.startswith("_"))
