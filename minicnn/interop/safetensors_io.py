"""Weights as safetensors: PyTorch's key names, loadable by torch's load_state_dict.

    save_safetensors(model, path, metadata)   {"features.0.weight": array, ...} + text metadata
    load_safetensors(path) -> (state_dict, metadata)

safetensors holds raw arrays and a JSON header, no code, so reading one never runs
anything (as minicnn's own .npz checkpoints, read with allow_pickle=False).
"""
import numpy as np

from ..atomic import atomic_write

try:
    from safetensors import safe_open
    from safetensors.numpy import load_file, save
except ImportError as exc:
    raise ImportError(f"safetensors export needs the safetensors package: pip install "
                      f"'minicnn-xray[interop]' ({exc})") from None


def save_safetensors(model, path, metadata=None):
    """Write the model's state_dict (parameters and buffers) to `path`, atomically."""
    state = {k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
    blob = save(state, metadata={str(k): str(v) for k, v in (metadata or {}).items()})
    atomic_write(path, lambda f: f.write(blob))
    return state


def load_safetensors(path):
    """The {name: numpy array} of a .safetensors file and its text metadata."""
    with safe_open(path, framework="numpy") as f:
        metadata = f.metadata() or {}
    return load_file(path), metadata
