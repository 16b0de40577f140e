"""Conv2d: a bank of learned filters slid over the image (lesson 01).

    y[n,f,i,j] = b[f] + sum_c sum_p sum_q x[n,c, i*sh + p - ph, j*sw + q - pw] * w[f,c,p,q]

input (N, C, H, W) -> output (N, F, (H + 2ph - KH)//sh + 1, (W + 2pw - KW)//sw + 1)
"""
import numpy as np

from .. import functional as F
from .init import add_weight_and_bias, default_init_
from .module import Module


def _pair(value, name):
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if isinstance(value, (int, np.integer)):
        return (int(value), int(value))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (int(value[0]), int(value[1]))
    raise TypeError(f"Conv2d: {name} must be an int or a pair of ints, got {value!r}")


class Conv2d(Module):
    """weight (out_channels, in_channels, KH, KW), bias (out_channels,) or none."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros"):
        super().__init__()
        for name, value, allowed in (("dilation", _pair(dilation, "dilation"), (1, 1)),
                                     ("groups", groups, 1), ("padding_mode", padding_mode, "zeros")):
            if value != allowed:
                raise ValueError(f"Conv2d: {name}={value!r} is not supported; minicnn's kernels "
                                 f"compute {name}={allowed!r} only")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"Conv2d: channel counts must be positive, got in_channels="
                             f"{in_channels}, out_channels={out_channels}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = padding if padding in ("same", "valid") else _pair(padding, "padding")
        add_weight_and_bias(self, (out_channels, in_channels) + self.kernel_size, bias)
        self.reset_parameters()

    def reset_parameters(self):
        """Draw fresh weights with PyTorch's default initialisation."""
        default_init_(self.weight, self.bias)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding!r}"
        if self.bias is None:
            s += ", bias=False"
        return s
