"""BatchNorm1d and BatchNorm2d: normalise each channel, then scale and shift it (lesson 05).

Training:  xhat = (x - mean_batch) / sqrt(var_batch + eps),  y = weight * xhat + bias
           mean and (biased) variance over every axis but the channel's; the running
           estimates move towards them:
           running = (1 - momentum) * running + momentum * batch_value
           (the running variance uses the unbiased batch variance, as PyTorch);
           momentum=None: a plain average of every batch so far (momentum 1/k at batch k)
Eval:      the same with running_mean and running_var in place of the batch's.
One kernel does each step on every device (kernels/cpu/norm.py, kernels/cuda/norm.cu).

BatchNorm1d: input (N, C) or (N, C, L); BatchNorm2d: input (N, C, H, W); same shape out.
weight, bias (C,) trained; running_mean, running_var (C,) and num_batches_tracked ()
are buffers (saved, not trained). track_running_stats=False keeps no buffers and
always normalises with the batch's statistics, as PyTorch.
"""
import numpy as np

from .. import functional as F
from .module import Module, Parameter


class _BatchNorm(Module):
    _ranks, _shape_text = (), ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) \
                or num_features < 1:
            raise ValueError(f"{type(self).__name__}: num_features must be a positive int, "
                             f"got {num_features!r}")
        if momentum is not None and not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"{type(self).__name__}: momentum must be between 0 and 1 or None, "
                             f"got {momentum!r}")
        self.num_features, self.eps, self.affine = int(num_features), float(eps), bool(affine)
        self.momentum = None if momentum is None else float(momentum)
        self.track_running_stats = bool(track_running_stats)
        if affine:
            self.weight = Parameter(np.ones(num_features, np.float32))
            self.bias = Parameter(np.zeros(num_features, np.float32))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, np.float32))
            self.register_buffer("running_var", np.ones(num_features, np.float32))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def forward(self, x):
        use_batch, momentum = self._step(x)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=use_batch, momentum=momentum, eps=self.eps)

    def _step(self, x):
        """Check x; count the batch; -> (normalise by the batch's statistics?, momentum)."""
        name = type(self).__name__
        if x.ndim not in self._ranks or x.shape[1] != self.num_features:
            raise ValueError(f"{name}: expected input {self._shape_text.format(self.num_features)}"
                             f", got shape {x.shape}")
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked[...] += 1
            if self.momentum is None:  # a plain average of every batch seen so far
                momentum = 1.0 / float(self.num_batches_tracked)
        # without running statistics the batch's are used in eval mode too (PyTorch)
        return self.training or self.running_mean is None, momentum

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm of (N, C) features or (N, C, L) sequences, per channel C."""
    _ranks, _shape_text = (2, 3), "(N, {0}) or (N, {0}, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm of (N, C, H, W) feature maps, per channel C."""
    _ranks, _shape_text = (4,), "(N, {0}, H, W)"

    def relu_pool(self, x):
        """max_pool2d(relu(self(x)), 2) as one op, F.batch_norm_relu_pool (nn.Sequential
        calls it for this layer, a ReLU and a MaxPool2d(2)): the same statistics, running
        updates and numbers as the three layers in turn."""
        use_batch, momentum = self._step(x)
        return F.batch_norm_relu_pool(x, self.running_mean, self.running_var, self.weight,
                                      self.bias, training=use_batch, momentum=momentum,
                                      eps=self.eps)
