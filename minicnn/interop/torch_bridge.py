"""minicnn <-> PyTorch: the same network, the same weights, on the other side.

    to_torch(model)    a minicnn model -> the equivalent torch.nn.Module (same logits)
    from_torch(module) a torch.nn.Module built from the layers below -> a minicnn model

Layers that cross (both ways): Sequential, Conv2d, Linear, MaxPool2d, AvgPool2d,
AdaptiveAvgPool2d, ReLU, Sigmoid, BatchNorm1d/2d, Dropout, Flatten, and the shipped
models (ChestXrayCNN, AlexNet: their .features and .classifier). Parameter and buffer
names are PyTorch's on both sides ("features.0.weight", "...running_var"), so a
state_dict moves across unchanged. A layer with no twin, or a setting minicnn's
kernels do not compute (groups, dilation, ceil_mode, ...), is refused by name.

torch is an optional dependency (pip install "minicnn-xray[interop]"); nothing in the
training path imports this module.
"""
from collections import OrderedDict

import numpy as np

from .. import nn
from ..errors import UserError
from ..nn import models

try:
    import torch
except ImportError as exc:  # the boundary says what to install, once
    raise ImportError("minicnn.interop needs PyTorch: pip install 'minicnn-xray[interop]' "
                      f"({exc})") from None

tnn = torch.nn


class InteropError(UserError, ValueError):
    """A model or layer cannot cross between minicnn and PyTorch as it is."""


# --------------------------------------------------------------------------- minicnn -> torch

class TorchClassifier(tnn.Module):
    """A shipped minicnn model on the PyTorch side: forward = classifier(features(x)).

    `minicnn_model` keeps (name, config) so from_torch can rebuild the same class.
    """

    def __init__(self, features, classifier, name, config):
        super().__init__()
        self.features, self.classifier = features, classifier
        self.minicnn_model = (name, dict(config))

    def forward(self, x):
        return self.classifier(self.features(x))


def _pool_args(layer):
    return dict(kernel_size=layer.kernel_size, stride=layer.stride, padding=layer.padding,
                ceil_mode=layer.ceil_mode)


def _batch_norm_to_torch(kind):
    def make(layer):
        return kind(layer.num_features, eps=layer.eps, momentum=layer.momentum,
                    affine=layer.weight is not None)
    return make


_TO_TORCH = {
    nn.Conv2d: lambda l: tnn.Conv2d(l.in_channels, l.out_channels, l.kernel_size,
                                    stride=l.stride, padding=l.padding, bias=l.bias is not None),
    nn.Linear: lambda l: tnn.Linear(l.in_features, l.out_features, bias=l.bias is not None),
    nn.MaxPool2d: lambda l: tnn.MaxPool2d(**_pool_args(l)),
    nn.AvgPool2d: lambda l: tnn.AvgPool2d(**_pool_args(l), count_include_pad=l.count_include_pad,
                                          divisor_override=l.divisor_override),
    nn.ReLU: lambda l: tnn.ReLU(),
    nn.Sigmoid: lambda l: tnn.Sigmoid(),
    nn.Dropout: lambda l: tnn.Dropout(l.p),
    nn.Flatten: lambda l: tnn.Flatten(l.start_dim, l.end_dim),
    nn.BatchNorm2d: _batch_norm_to_torch(tnn.BatchNorm2d),
}
if hasattr(nn, "BatchNorm1d"):
    _TO_TORCH[nn.BatchNorm1d] = _batch_norm_to_torch(tnn.BatchNorm1d)
if hasattr(nn, "AdaptiveAvgPool2d"):
    _TO_TORCH[nn.AdaptiveAvgPool2d] = lambda l: tnn.AdaptiveAvgPool2d(l.output_size)


def _torch_layer(layer, path):
    if isinstance(layer, nn.Sequential):
        return tnn.Sequential(OrderedDict(
            (name, _torch_layer(child, f"{path}.{name}")) for name, child in layer.named_children()))
    if isinstance(layer, models._Classifier):
        return TorchClassifier(_torch_layer(layer.features, "features"),
                               _torch_layer(layer.classifier, "classifier"),
                               layer.name, layer.config())
    make = _TO_TORCH.get(type(layer))
    if make is None:
        raise InteropError(f"to_torch: layer {path or 'model'} is a {type(layer).__name__}, "
                           f"which has no PyTorch twin here; supported: Sequential, "
                           f"ChestXrayCNN, AlexNet, {', '.join(k.__name__ for k in _TO_TORCH)}")
    return make(layer)


def to_torch(model):
    """The equivalent torch.nn.Module (float32, CPU, same train/eval mode, same weights)."""
    module = _torch_layer(model, "")
    state = {k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}
    module.load_state_dict(state, strict=True)
    return module.train(model.training)


# --------------------------------------------------------------------------- torch -> minicnn

def _refuse(path, layer, setting, value, wanted):
    raise InteropError(f"from_torch: {path or 'module'} ({type(layer).__name__}) has "
                       f"{setting}={value!r}; minicnn's kernels compute {setting}={wanted!r} only")


def _require(path, layer, **wanted):
    for setting, want in wanted.items():
        value = getattr(layer, setting)
        if value != want and value != (want, want):
            _refuse(path, layer, setting, value, want)


def _from_conv(layer, path):
    _require(path, layer, groups=1, dilation=1, padding_mode="zeros")
    return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                     stride=layer.stride, padding=layer.padding, bias=layer.bias is not None)


def _from_max_pool(layer, path):
    _require(path, layer, dilation=1, return_indices=False)
    return nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding,
                        ceil_mode=layer.ceil_mode)


def _from_avg_pool(layer, path):
    return nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode,
                        layer.count_include_pad, layer.divisor_override)


def _from_batch_norm(kind_name):
    def make(layer, path):
        _require(path, layer, track_running_stats=True)
        kind = getattr(nn, kind_name, None)
        if kind is None:
            raise InteropError(f"from_torch: {path} is a {type(layer).__name__}; this minicnn "
                               f"has no {kind_name}")
        return kind(layer.num_features, eps=layer.eps, momentum=layer.momentum,
                    affine=layer.affine)
    return make


def _from_adaptive_avg_pool(layer, path):
    if not hasattr(nn, "AdaptiveAvgPool2d"):
        raise InteropError(f"from_torch: {path} is an AdaptiveAvgPool2d; this minicnn has none")
    return nn.AdaptiveAvgPool2d(layer.output_size)


_FROM_TORCH = {
    tnn.Conv2d: _from_conv,
    tnn.Linear: lambda l, p: nn.Linear(l.in_features, l.out_features, bias=l.bias is not None),
    tnn.MaxPool2d: _from_max_pool,
    tnn.AvgPool2d: _from_avg_pool,
    tnn.AdaptiveAvgPool2d: _from_adaptive_avg_pool,
    tnn.ReLU: lambda l, p: nn.ReLU(),
    tnn.Sigmoid: lambda l, p: nn.Sigmoid(),
    tnn.Dropout: lambda l, p: nn.Dropout(l.p),
    tnn.Flatten: lambda l, p: nn.Flatten(l.start_dim, l.end_dim),
    tnn.BatchNorm1d: _from_batch_norm("BatchNorm1d"),
    tnn.BatchNorm2d: _from_batch_norm("BatchNorm2d"),
}


def _minicnn_layer(layer, path):
    if isinstance(layer, TorchClassifier):
        name, config = layer.minicnn_model
        return models.build(name, **config)
    if type(layer) is tnn.Sequential:
        return nn.Sequential(OrderedDict(
            (name, _minicnn_layer(child, f"{path}.{name}" if path else name))
            for name, child in layer.named_children()))
    make = _FROM_TORCH.get(type(layer))
    if make is None:
        raise InteropError(
            f"from_torch: {path or 'module'} is a {type(layer).__name__}, which minicnn cannot "
            f"rebuild (its forward is not known from its layers); supported: Sequential, "
            f"{', '.join(k.__name__ for k in _FROM_TORCH)}, and modules made by to_torch")
    return make(layer, path)


def from_torch(module):
    """The minicnn model for a torch.nn.Module made of the layers above (same weights)."""
    model = _minicnn_layer(module, "")
    state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    own = model.state_dict()
    for key, value in state.items():  # dtypes as minicnn keeps them (float32, int64)
        if key in own:
            state[key] = value.astype(np.asarray(own[key]).dtype, copy=False)
    model.load_state_dict(state, strict=True)
    return model.train(module.training)
