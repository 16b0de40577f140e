"""BatchNorm2d: normalise each channel, then scale and shift it (lesson 05).

Training:  xhat = (x - mean_batch) / sqrt(var_batch + eps),  y = weight * xhat + bias
           mean and (biased) variance over N, H, W of each channel; the running
           estimates move towards them:
           running = (1 - momentum) * running + momentum * batch_value
           (the running variance uses the unbiased batch variance, as PyTorch)
Eval:      the same with running_mean and running_var in place of the batch's.

input (N, C, H, W) -> same shape; weight, bias (C,) trained; running_mean,
running_var (C,) and num_batches_tracked () are buffers (saved, not trained).
"""
import numpy as np

from .. import functional as F
from .module import Module, Parameter


class BatchNorm2d(Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True):
        super().__init__()
        self.num_features, self.eps, self.affine = int(num_features), float(eps), bool(affine)
        self.momentum = None if momentum is None else float(momentum)
        if affine:
            self.weight = Parameter(np.ones(num_features, np.float32))
            self.bias = Parameter(np.zeros(num_features, np.float32))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", np.zeros(num_features, np.float32))
        self.register_buffer("running_var", np.ones(num_features, np.float32))
        self.register_buffer("num_batches_tracked", np.zeros((), np.int64))

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d: expected input (N, {self.num_features}, H, W), "
                             f"got shape {x.shape}")
        momentum = self.momentum
        if self.training:
            self.num_batches_tracked[...] += 1
            if momentum is None:  # a plain average of every batch seen so far
                momentum = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=self.training, momentum=momentum, eps=self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"
