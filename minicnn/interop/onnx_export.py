"""A minicnn model as an ONNX graph (opset 17), for onnxruntime and every tool that reads ONNX.

    export_onnx(model, path, input_shape=(C, H, W), metadata={...})

The graph takes "input" (N, C, H, W) float32 with N free (any batch size) and gives
"logits" (N, K). Each minicnn layer becomes one ONNX node with the same maths:

    Conv2d -> Conv          Linear -> Gemm (transB=1)    ReLU -> Relu   Sigmoid -> Sigmoid
    MaxPool2d -> MaxPool    AvgPool2d -> AveragePool (count_include_pad=1)
    AdaptiveAvgPool2d -> GlobalAveragePool, or AveragePool where the bins are equal
    BatchNorm -> BatchNormalization (eval statistics)   Flatten -> Flatten / Reshape
    Dropout -> nothing (an ONNX graph is for inference)

The input normalisation of a checkpoint (mean, std), its classes and threshold go
into the model's metadata, so a user of the .onnx file can prepare images the same way.
"""
import numpy as np

from .. import nn
from ..atomic import atomic_write
from ..functional import pool_output_size
from ..nn import models
from .torch_bridge import InteropError

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as exc:
    raise ImportError(f"ONNX export needs the onnx package: pip install "
                      f"'minicnn-xray[interop]' ({exc})") from None

OPSET = 17


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def leaf_layers(model, path=""):
    """The model's layers in forward order: (path, layer) for every non-container layer."""
    if isinstance(model, models._Classifier):
        yield from leaf_layers(model.features, "features")
        yield from leaf_layers(model.classifier, "classifier")
    elif isinstance(model, nn.Sequential):
        for name, child in model.named_children():
            yield from leaf_layers(child, f"{path}.{name}" if path else name)
    else:
        yield path, model


class _Graph:
    """Nodes and initializers being collected, and the shape flowing through them."""

    def __init__(self, shape):
        self.nodes, self.inits = [], []
        self.shape = tuple(shape)      # (C, H, W) or (F,), without the batch
        self.name = "input"

    def weight(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    def add(self, op, inputs, path, **attrs):
        out = f"{path}:{op}"
        self.nodes.append(helper.make_node(op, [self.name] + list(inputs), [out],
                                           name=path, **attrs))
        self.name = out


def _conv_pads(layer):
    """ONNX pads [top, left, bottom, right] for a Conv2d's padding (a pair or a string)."""
    if layer.padding == "valid":
        return [0, 0, 0, 0]
    if layer.padding == "same":      # the extra row/column of an even kernel at the end
        (kh, kw) = layer.kernel_size
        return [(kh - 1) // 2, (kw - 1) // 2, kh // 2, kw // 2]
    ph, pw = layer.padding
    return [ph, pw, ph, pw]


def _conv(g, layer, path, state):
    (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
    pads = _conv_pads(layer)
    inputs = [g.weight(f"{path}.weight", state[f"{path}.weight"])]
    if layer.bias is not None:
        inputs.append(g.weight(f"{path}.bias", state[f"{path}.bias"]))
    g.add("Conv", inputs, path, kernel_shape=[kh, kw], strides=[sh, sw], pads=pads)
    _, h, w = g.shape
    g.shape = (layer.out_channels, (h + pads[0] + pads[2] - kh) // sh + 1,
               (w + pads[1] + pads[3] - kw) // sw + 1)


def _pool(op, g, layer, path, **extra):
    (kh, kw), (sh, sw), (ph, pw) = (_pair(layer.kernel_size), _pair(layer.stride),
                                    _pair(layer.padding))
    if getattr(layer, "divisor_override", None) is not None:
        raise InteropError(f"export onnx: {path} (AvgPool2d) has divisor_override="
                           f"{layer.divisor_override}, which ONNX's AveragePool cannot express")
    g.add(op, [], path, kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw],
          ceil_mode=int(layer.ceil_mode), **extra)
    c, h, w = g.shape
    g.shape = (c, pool_output_size(h, kh, sh, ph, layer.ceil_mode),
               pool_output_size(w, kw, sw, pw, layer.ceil_mode))


def _adaptive_avg_pool(g, layer, path, state):
    c, h, w = g.shape
    oh, ow = [s if o is None else o for o, s in zip(_pair_or_none(layer.output_size), (h, w))]
    if (oh, ow) == (1, 1):
        g.add("GlobalAveragePool", [], path)
    elif h % oh == 0 and w % ow == 0:    # equal bins: a plain average pool
        g.add("AveragePool", [], path, kernel_shape=[h // oh, w // ow], strides=[h // oh, w // ow])
    else:
        raise InteropError(f"export onnx: {path} averages {h}x{w} maps into {oh}x{ow} bins of "
                           "unequal sizes, which no single ONNX operator computes; use an "
                           "output size that divides the input, or (1, 1)")
    g.shape = (c, oh, ow)


def _pair_or_none(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _linear(g, layer, path, state):
    if len(g.shape) != 1:
        raise InteropError(f"export onnx: {path} (Linear) receives shape {g.shape}; flatten first")
    inputs = [g.weight(f"{path}.weight", state[f"{path}.weight"])]
    if layer.bias is not None:
        inputs.append(g.weight(f"{path}.bias", state[f"{path}.bias"]))
    g.add("Gemm", inputs, path, transB=1)
    g.shape = (layer.out_features,)


def _batch_norm(g, layer, path, state):
    c = layer.num_features
    scale = state.get(f"{path}.weight", np.ones(c, np.float32))
    shift = state.get(f"{path}.bias", np.zeros(c, np.float32))
    inputs = [g.weight(f"{path}.weight", scale), g.weight(f"{path}.bias", shift),
              g.weight(f"{path}.running_mean", state[f"{path}.running_mean"]),
              g.weight(f"{path}.running_var", state[f"{path}.running_var"])]
    g.add("BatchNormalization", inputs, path, epsilon=float(layer.eps))


def _flatten(g, layer, path, state):
    nd = len(g.shape) + 1
    start, end = layer.start_dim % nd, layer.end_dim % nd
    if start == 1 and end == nd - 1:
        g.add("Flatten", [], path, axis=1)
        g.shape = (int(np.prod(g.shape)),)
        return
    raise InteropError(f"export onnx: {path} flattens dims {layer.start_dim}..{layer.end_dim}; "
                       "only Flatten(1, -1), the batch kept, is exported")


_EXPORTERS = {
    nn.Conv2d: _conv,
    nn.Linear: _linear,
    nn.MaxPool2d: lambda g, l, p, s: _pool("MaxPool", g, l, p),
    nn.AvgPool2d: lambda g, l, p, s: _pool("AveragePool", g, l, p,
                                           count_include_pad=int(l.count_include_pad)),
    nn.ReLU: lambda g, l, p, s: g.add("Relu", [], p),
    nn.Sigmoid: lambda g, l, p, s: g.add("Sigmoid", [], p),
    nn.Dropout: lambda g, l, p, s: None,
    nn.Flatten: _flatten,
    nn.BatchNorm2d: _batch_norm,
}
if hasattr(nn, "BatchNorm1d"):
    _EXPORTERS[nn.BatchNorm1d] = _batch_norm
if hasattr(nn, "AdaptiveAvgPool2d"):
    _EXPORTERS[nn.AdaptiveAvgPool2d] = _adaptive_avg_pool


def onnx_model(model, input_shape, metadata=None):
    """The onnx.ModelProto of `model` for inputs (N, *input_shape); checked by onnx.checker."""
    state = {k: np.asarray(v) for k, v in model.state_dict().items()}
    g = _Graph(input_shape)
    for path, layer in leaf_layers(model):
        export = _EXPORTERS.get(type(layer))
        if export is None:
            raise InteropError(f"export onnx: layer {path or 'model'} is a "
                               f"{type(layer).__name__}, which has no ONNX form here")
        export(g, layer, path, state)
    if not g.nodes:
        raise InteropError("export onnx: the model has no layers to export")
    g.nodes[-1].output[0] = "logits"
    graph = helper.make_graph(
        g.nodes, "minicnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", *g.shape])],
        initializer=g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="minicnn")
    proto.ir_version = min(proto.ir_version, 9)   # readable by onnxruntime releases of 2023 on
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model, path, input_shape, metadata=None):
    """Write `model` as an ONNX file at `path`, atomically; returns the ModelProto."""
    proto = onnx_model(model, input_shape, metadata)
    atomic_write(path, lambda f: f.write(proto.SerializeToString()))
    return proto
