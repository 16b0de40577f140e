"""MaxPool2d, AvgPool2d and AdaptiveAvgPool2d: shrink each feature map by summarising
windows (lesson 03).

    max: y[n,c,i,j] = max  over (p,q) of x[n,c, i*s + p - pad, j*s + q - pad]
    avg: y[n,c,i,j] = mean over (p,q) of the same window (zero padding counted)

input (N, C, H, W) -> (N, C, (H + 2pad - k)//s + 1, (W + 2pad - k)//s + 1); the stride
defaults to the kernel size, so windows tile the image without overlap.

    adaptive avg: the output size (Ho, Wo) is chosen and the windows follow, as PyTorch:
    y[n,c,i,j] = mean of x[n,c, floor(i*H/Ho) : ceil((i+1)*H/Ho), floor(j*W/Wo) : ceil((j+1)*W/Wo)]
"""
from .. import functional as F
from .module import Module


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.ceil_mode = bool(ceil_mode)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                + (", ceil_mode=True" if self.ceil_mode else ""))


class MaxPool2d(_Pool2d):
    """Largest value in each window; the gradient flows back to that one position.
    PyTorch's arguments; return_indices=True also gives the argmax (see F.max_pool2d)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.dilation, self.return_indices = dilation, bool(return_indices)

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode, self.return_indices)


class AvgPool2d(_Pool2d):
    """Mean of each window; the gradient is shared equally by the window.
    PyTorch's arguments (count_include_pad, divisor_override: see F.avg_pool2d)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad, self.divisor_override = bool(count_include_pad), divisor_override

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)


class AdaptiveAvgPool2d(Module):
    """Mean over adaptive bins, to a fixed output size whatever the input's size.

    output_size Ho or (Ho, Wo); None keeps that input size. (N, C, H, W) -> (N, C, Ho, Wo).
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"
