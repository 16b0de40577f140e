"""The top-level functions a PyTorch script calls as torch.*, with PyTorch's meaning.

    import minicnn as torch
    _, predicted = torch.max(outputs, 1)       # (values, indices) along dim 1
    batch = torch.cat([a, b]); pair = torch.stack([a, b], dim=1)

Each accepts a Tensor or an array.
"""
import numpy as np

from . import backends
from .tensor import Tensor
from .tensor_ops import Cat, Stack

float32, float64, float16 = np.dtype("float32"), np.dtype("float64"), np.dtype("float16")
int64, int32, uint8 = np.dtype("int64"), np.dtype("int32"), np.dtype("uint8")
long, bool = int64, np.dtype("bool")
float, double = float32, float64


def _tensor(value, op):
    if isinstance(value, Tensor):
        return value
    if type(value).__module__.startswith("torch"):
        raise TypeError(f"{op}: got a torch.Tensor; minicnn takes its own tensors: "
                        "minicnn.tensor(t.detach().cpu().numpy())")
    return Tensor(value)


def max(input, dim=None, keepdim=False):
    """max(t): the largest value; max(t, dim): (values, indices); max(a, b): elementwise."""
    t = _tensor(input, "max")
    if isinstance(dim, Tensor):
        return maximum(t, dim)
    return t.max(dim, keepdim) if dim is not None else t.max()


def min(input, dim=None, keepdim=False):
    t = _tensor(input, "min")
    if isinstance(dim, Tensor):
        return -maximum(-t, -dim)
    return t.min(dim, keepdim) if dim is not None else t.min()


def maximum(a, b):
    """Elementwise max; where a == b the gradient is split, as PyTorch's."""
    a, b = _tensor(a, "maximum"), _tensor(b, "maximum")
    return (a + b + (a - b).abs()) * 0.5


def argmax(input, dim=None, keepdim=False):
    return _tensor(input, "argmax").argmax(dim, keepdim)


def argmin(input, dim=None, keepdim=False):
    return _tensor(input, "argmin").argmin(dim, keepdim)


def _joined(tensors, op):
    tensors = [_tensor(t, op) for t in tensors]
    if not tensors:
        raise ValueError(f"{op}: expected a non-empty list of tensors")
    return tensors


def cat(tensors, dim=0):
    """Join along an existing dim; every other dim must match."""
    tensors = _joined(tensors, "cat")
    nd = tensors[0].ndim
    axis = dim % nd
    for t in tensors[1:]:
        if t.ndim != nd or t.shape[:axis] + t.shape[axis + 1:] != \
                tensors[0].shape[:axis] + tensors[0].shape[axis + 1:]:
            raise ValueError(f"cat: shapes {tensors[0].shape} and {t.shape} differ outside dim "
                             f"{dim}")
    return Cat.apply(*tensors, axis=axis)


def stack(tensors, dim=0):
    """Join same-shape tensors along a new dim."""
    tensors = _joined(tensors, "stack")
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ValueError(f"stack: every tensor needs the same shape, got "
                         f"{sorted({t.shape for t in tensors})}")
    return Stack.apply(*tensors, axis=dim % (tensors[0].ndim + 1))


def from_numpy(array):
    """A tensor holding a copy of `array` (minicnn tensors never share memory with numpy)."""
    return Tensor(np.asarray(array), dtype=np.asarray(array).dtype)


def device(name):
    """The device name minicnn uses ("cpu", "cuda", "cuda-sim"); "cuda:0" means "cuda"."""
    return backends.check_device(str(name))


class cuda:
    """torch.cuda.is_available(), answered by minicnn's own CUDA backend."""

    @staticmethod
    def is_available():
        try:
            backends.get("cuda")
        except ImportError:
            return False
        return True
