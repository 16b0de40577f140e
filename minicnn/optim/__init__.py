"""minicnn.optim: optimisers and learning-rate schedules, under PyTorch's names (lesson 06).

    import minicnn.optim as optim
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sched = optim.lr_scheduler.StepLR(opt, step_size=5)

optimizer.py holds the update rules (SGD, Adam, AdamW), lr_scheduler.py the schedules.
"""
from . import lr_scheduler
from .lr_scheduler import CosineAnnealingLR, LRScheduler, OneCycleLR, ReduceLROnPlateau, StepLR
from .optimizer import SGD, Adam, AdamW, Optimizer, OptimizerStateError

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "OptimizerStateError", "lr_scheduler",
           "LRScheduler", "StepLR", "CosineAnnealingLR", "OneCycleLR", "ReduceLROnPlateau"]
