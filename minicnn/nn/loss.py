"""Loss modules over minicnn.functional, as PyTorch's (lesson 06).

CrossEntropyLoss: softmax cross-entropy of logits (N, K) against class indices (N,)
(or class probabilities); weight (K,), ignore_index, label_smoothing: see
F.cross_entropy. NLLLoss: the same from log-probabilities. MSELoss: mean (x - t)^2.
BCEWithLogitsLoss: binary cross-entropy from logits, for one or more yes/no outputs
(e.g. "pneumonia?" as a single logit): loss(input, target) with target of the input's
shape in [0, 1]; weight and pos_weight broadcast to the input (pos_weight (classes,)
weighs the positive term of each class, for imbalance). See
F.binary_cross_entropy_with_logits.
"""
from .. import functional as F
from .module import Module


class _Loss(Module):
    """What every loss module shares: its reduction, checked once."""

    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        name = type(self).__name__
        if size_average is not None or reduce is not None:
            raise ValueError(f"{name}: size_average and reduce are deprecated in PyTorch and "
                             "not supported here; use reduction='mean', 'sum' or 'none'")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', "
                             f"got {reduction!r}")
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean", label_smoothing=0.0):
        super().__init__(size_average, reduce, reduction)
        self.ignore_index, self.label_smoothing = int(ignore_index), float(label_smoothing)
        self.register_buffer("weight", None if weight is None else _array(weight))

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_Loss):
    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.ignore_index = int(ignore_index)
        self.register_buffer("weight", None if weight is None else _array(weight))

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class MSELoss(_Loss):
    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean",
                 pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", None if weight is None else _array(weight))
        self.register_buffer("pos_weight", None if pos_weight is None else _array(pos_weight))

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight,
                                                  reduction=self.reduction,
                                                  pos_weight=self.pos_weight)


def _array(value):
    """A buffer's array: a Tensor's data (detached), or the array given."""
    return value.detach().array if hasattr(value, "detach") else value
