"""Linear (fully connected) and Flatten, the classifier end of a CNN (lesson 05).

    Linear:  y[n,o] = sum_i x[n,i] * w[o,i] + b[o]     (N, In) -> (N, Out)
    Flatten: (N, C, H, W) -> (N, C*H*W), rows laid out channel by channel
"""
from .. import functional as F
from .init import add_weight_and_bias, default_init_
from .module import Module


class Linear(Module):
    """weight (out_features, in_features), bias (out_features,) or none."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear: feature counts must be positive, got in_features="
                             f"{in_features}, out_features={out_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        add_weight_and_bias(self, (out_features, in_features), bias)
        self.reset_parameters()

    def reset_parameters(self):
        """Draw fresh weights with PyTorch's default initialisation."""
        default_init_(self.weight, self.bias)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Flatten(Module):
    """Collapse dims start_dim..end_dim into one (by default all but the batch axis)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x):
        return F.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
