"""minicnn.interop: models in and out of minicnn (PyTorch, ONNX, safetensors).

    from minicnn import interop
    torch_model = interop.to_torch(model)        # torch.nn.Module, same weights and logits
    model = interop.from_torch(torch_model)      # back to minicnn
    interop.export_onnx(model, "model.onnx", input_shape=(1, 28, 28))
    interop.save_safetensors(model, "model.safetensors")

Interop is a boundary, not a dependency: torch, onnx and safetensors are optional
(pip install "minicnn-xray[interop]"), imported only when one of these is called,
and the training path never imports this package.
"""


def to_torch(model):
    """The equivalent torch.nn.Module (same weights, same logits); see torch_bridge."""
    from .torch_bridge import to_torch as convert  # lazy: torch is optional
    return convert(model)


def from_torch(module):
    """The minicnn model for a torch.nn.Module of supported layers; see torch_bridge."""
    from .torch_bridge import from_torch as convert  # lazy: torch is optional
    return convert(module)


def export_onnx(model, path, input_shape, metadata=None):
    """Write the model as ONNX (opset 17, any batch size); see onnx_export."""
    from .onnx_export import export_onnx as write  # lazy: onnx and torch are optional
    return write(model, path, input_shape, metadata)


def save_safetensors(model, path, metadata=None):
    """Write the model's weights with PyTorch's key names; see safetensors_io."""
    from .safetensors_io import save_safetensors as write  # lazy: safetensors is optional
    return write(model, path, metadata)


def load_safetensors(path):
    """(state_dict, metadata) of a .safetensors file; see safetensors_io."""
    from .safetensors_io import load_safetensors as read  # lazy: safetensors is optional
    return read(path)
