"""Weight initialisation, as PyTorch's defaults (lessons 02 and 05).

Conv2d and Linear start from kaiming_uniform_(a=sqrt(5)): each weight is drawn from
U(-b, b) with
    b = gain * sqrt(3 / fan_in),   gain = sqrt(2 / (1 + a^2)) = sqrt(1/3)
which comes to b = 1 / sqrt(fan_in). The bias is drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
fan_in is the number of inputs one output sums over: in_features for Linear,
in_channels * KH * KW for Conv2d. Keeping the bound ~ 1/sqrt(fan_in) keeps the
outputs' variance from growing or shrinking layer after layer.

Every draw comes from minicnn.random.generator(), so manual_seed(s) repeats them.
The functions fill a Parameter in place (on its device) and return it;
add_weight_and_bias creates a layer's two Parameters (zeros) for it to fill.
"""
import math

import numpy as np

from ..random import generator
from .module import Parameter


def fan_in_and_fan_out(shape):
    """(fan_in, fan_out) of a weight of shape (Out, In) or (F, C, KH, KW)."""
    if len(shape) < 2:
        raise ValueError(f"init: fan in/out needs a weight with at least 2 dimensions, got {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fill(param, values):
    values = values.astype(param.dtype, copy=False)
    if isinstance(param.array, np.ndarray):
        param.array[...] = values
    else:
        param.array[...] = param.xp.asarray(values)
    return param


def uniform_(param, a=0.0, b=1.0):
    """Fill with draws from U(a, b) (PyTorch's names for the ends)."""
    # float32 draws: ten times faster than float64 for AlexNet's 58 million weights
    u = generator().random(size=param.shape, dtype=np.float32)
    u *= np.float32(b - a)  # in place: no temporaries for AlexNet's 37M-weight layer
    u += np.float32(a)
    return _fill(param, u)


def normal_(param, mean=0.0, std=1.0):
    """Fill with draws from N(mean, std^2)."""
    z = generator().standard_normal(size=param.shape, dtype=np.float32)
    z *= np.float32(std)
    z += np.float32(mean)
    return _fill(param, z)


def constant_(param, value):
    return _fill(param, np.full(param.shape, value))


def zeros_(param):
    return constant_(param, 0.0)


def ones_(param):
    return constant_(param, 1.0)


_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d", "sigmoid")


def calculate_gain(nonlinearity, param=None):
    """The factor that keeps variance steady through a nonlinearity (PyTorch's table)."""
    if nonlinearity in _LINEAR:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}; choose one of "
                     f"{', '.join(_LINEAR + ('tanh', 'relu', 'leaky_relu', 'selu'))}")


def _fan(shape, mode):
    fan_in, fan_out = fan_in_and_fan_out(shape)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return fan_in if mode == "fan_in" else fan_out


def kaiming_uniform_(param, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """U(-b, b), b = gain * sqrt(3 / fan): He initialisation, uniform version."""
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(param.shape, mode))
    return uniform_(param, -bound, bound)


def kaiming_normal_(param, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """N(0, std^2), std = gain / sqrt(fan): He initialisation, normal version."""
    return normal_(param, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(_fan(param.shape, mode)))


def xavier_uniform_(param, gain=1.0):
    """U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)): Glorot initialisation."""
    fan_in, fan_out = fan_in_and_fan_out(param.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(param, -bound, bound)


def xavier_normal_(param, gain=1.0):
    """N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)): Glorot, normal version."""
    fan_in, fan_out = fan_in_and_fan_out(param.shape)
    return normal_(param, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def default_init_(weight, bias=None):
    """PyTorch's default for Conv2d and Linear: the weight, then the bias, drawn in that order."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = fan_in_and_fan_out(weight.shape)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, -bound, bound)


def add_weight_and_bias(module, weight_shape, bias=True):
    """Give a Conv2d or Linear its float32 zero Parameters, to be initialised after:
    module.weight of weight_shape (Out, ...) and module.bias (Out,), or a bias
    registered as None when bias is False."""
    module.weight = Parameter(np.zeros(weight_shape, np.float32))
    if bias:
        module.bias = Parameter(np.zeros(weight_shape[0], np.float32))
    else:
        module.register_parameter("bias", None)
