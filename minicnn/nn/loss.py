"""Loss modules over minicnn.functional, as PyTorch's (lesson 06).

BCEWithLogitsLoss: binary cross-entropy from logits, for one or more yes/no outputs
(e.g. "pneumonia?" as a single logit): loss(input, target) with target of the input's
shape in [0, 1]; weight and pos_weight broadcast to the input (pos_weight (classes,)
weighs the positive term of each class, for imbalance). See
F.binary_cross_entropy_with_logits.
"""
from .. import functional as F
from .module import Module


class BCEWithLogitsLoss(Module):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean",
                 pos_weight=None):
        super().__init__()
        if size_average is not None or reduce is not None:
            raise ValueError("BCEWithLogitsLoss: size_average and reduce are deprecated in "
                             "PyTorch and not supported here; use reduction='mean', 'sum' or "
                             "'none'")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"BCEWithLogitsLoss: reduction must be 'mean', 'sum' or 'none', "
                             f"got {reduction!r}")
        self.reduction = reduction
        self.register_buffer("weight", None if weight is None else _array(weight))
        self.register_buffer("pos_weight", None if pos_weight is None else _array(pos_weight))

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight,
                                                  reduction=self.reduction,
                                                  pos_weight=self.pos_weight)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


def _array(value):
    """A buffer's array: a Tensor's data (detached), or the array given."""
    return value.detach().data if hasattr(value, "detach") else value
