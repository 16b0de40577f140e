"""minicnn.nn: Module, Parameter, the layers, and the models (in minicnn.nn.models).

    from minicnn import nn
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
"""
from .module import Module, Parameter, StateDictError
from .container import Sequential
from .conv import Conv2d
from .pool import MaxPool2d, AvgPool2d, AdaptiveAvgPool2d
from .linear import Linear, Flatten
from .activation import Identity, LogSoftmax, ReLU, Sigmoid, Softmax
from .dropout import Dropout
from .norm import BatchNorm1d, BatchNorm2d
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss
from . import functional, init

__all__ = ["Module", "Parameter", "StateDictError", "Sequential", "Conv2d", "MaxPool2d",
           "AvgPool2d", "AdaptiveAvgPool2d", "Linear", "Flatten", "ReLU", "Sigmoid", "Dropout",
           "BatchNorm1d", "BatchNorm2d", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss",
           "MSELoss", "Softmax", "LogSoftmax", "Identity", "functional", "init"]
