"""minicnn.utils: PyTorch's torch.utils under its own names (data loading: utils.data)."""
from . import data

__all__ = ["data"]
