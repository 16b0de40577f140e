"""The networks: ChestXrayCNN (the classifier this project trains) and AlexNet.

Both split into `.features` (the convolutional part: image -> feature maps, which
Grad-CAM and the feature-map figures read) and `.classifier` (flatten, then fully
connected layers -> class scores), so forward(x) = classifier(features(x)).

`model.config()` gives the constructor arguments as a JSON-able dict, and
`build(model.name, **model.config())` makes the same architecture again, which is
how a saved checkpoint is turned back into a network.
"""
from ..errors import UserError
from ..kernels.reference import out_size
from .activation import ReLU
from .container import Sequential
from .conv import Conv2d
from .dropout import Dropout
from .linear import Flatten, Linear
from .module import Module
from .norm import BatchNorm2d
from .pool import MaxPool2d


class ModelConfigError(UserError, ValueError):
    """A model cannot be built with the arguments given (e.g. an image too small)."""


def _size_pair(image_size, model):
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        return (image_size, image_size)
    if isinstance(image_size, (tuple, list)) and len(image_size) == 2 and \
            all(isinstance(v, int) and not isinstance(v, bool) for v in image_size):
        return (int(image_size[0]), int(image_size[1]))
    raise ModelConfigError(f"{model}: image_size must be an int or (height, width), "
                           f"got {image_size!r}")


def _positive(value, name, model):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ModelConfigError(f"{model}: {name} must be a positive integer, got {value!r}")
    return value


def _check_dropout(p, model):
    if not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ModelConfigError(f"{model}: dropout must be in [0, 1), got {p!r}")
    return float(p)


class _Classifier(Module):
    """Shared by both models: the checked constructor arguments and config(), forward,
    the input check, and the `name` used by build()."""

    name = ""

    def _set_config(self, model, in_channels, num_classes, image_size, dropout):
        """Check the constructor arguments (errors name `model`) and keep them."""
        self.in_channels = _positive(in_channels, "in_channels", model)
        self.num_classes = _positive(num_classes, "num_classes", model)
        self.image_size = _size_pair(image_size, model)
        self.dropout = _check_dropout(dropout, model)

    def config(self):
        return {"in_channels": self.in_channels, "num_classes": self.num_classes,
                "image_size": list(self.image_size), "dropout": self.dropout}

    def _check_input(self, x):
        want = (self.in_channels,) + self.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            got = tuple(x.shape)
            hint = ""
            if x.ndim == 4 and x.shape[1] == self.in_channels:
                hint = f"; build the model with image_size={tuple(x.shape[2:])} for this input"
            elif x.ndim == 4:
                hint = f"; build the model with in_channels={x.shape[1]} for this input"
            raise ValueError(f"{type(self).__name__}: expected input (N, {want[0]}, {want[1]}, "
                             f"{want[2]}), got {got}{hint}")

    def forward(self, x):
        """x (N, in_channels, H, W) -> class scores (logits) (N, num_classes)."""
        self._check_input(x)
        return self.classifier(self.features(x))


class ChestXrayCNN(_Classifier):
    """Three conv-ReLU-maxpool stages (16, 32, 64 filters), then two fully connected layers.

        features:   conv3x3 pad 1 -> ReLU -> maxpool 2, three times (16, 32, 64 channels)
                    (N, C, H, W) -> (N, 64, H', W'), H' = floor(floor(floor(H/2)/2)/2)
        classifier: flatten -> Linear(64*H'*W', 512) -> ReLU -> Dropout(dropout)
                    -> Linear(512, num_classes)
    dropout=0.0 (the default) makes the Dropout layer a no-op, so the network is a
    deterministic function of its weights (handy for comparing with PyTorch).
    """

    name = "chestxray"
    _model = "ChestXrayCNN"

    def __init__(self, in_channels=1, num_classes=2, image_size=28, dropout=0.0):
        super().__init__()
        model = self._model
        self._set_config(model, in_channels, num_classes, image_size, dropout)
        H, W = self.image_size
        if min(H, W) < 8:
            raise ModelConfigError(
                f"{model}: image_size {H}x{W} is too small: three 2x2 max-poolings need at "
                "least 8x8 pixels (each halves the size, rounding down)")
        h, w = H // 2 // 2 // 2, W // 2 // 2 // 2
        layers = []
        for c_in, c_out in ((in_channels, 16), (16, 32), (32, 64)):
            layers += self._stage(c_in, c_out)
        self.features = Sequential(*layers)
        self.flat_features = 64 * h * w
        self.classifier = Sequential(
            Flatten(),
            Linear(self.flat_features, 512), ReLU(), Dropout(self.dropout),
            Linear(512, num_classes),
        )

    @staticmethod
    def _stage(c_in, c_out):
        """One stage of `features`: conv3x3 pad 1 -> ReLU -> maxpool 2."""
        return [Conv2d(c_in, c_out, 3, padding=1), ReLU(), MaxPool2d(2)]


class ChestXrayBN(ChestXrayCNN):
    """ChestXrayCNN with batch norm after each convolution (the default of `minicnn train`).

        features:   conv3x3 pad 1 (no bias) -> BatchNorm2d -> ReLU -> maxpool 2, three times
                    (16, 32, 64 channels): (N, C, H, W) -> (N, 64, H', W'), H' as ChestXrayCNN
        classifier: as ChestXrayCNN's
    The convolutions carry no bias: batch norm subtracts each channel's mean right after,
    which would cancel it, and adds its own shift (beta). Batch norm keeps each layer's
    inputs near zero mean and unit variance while the weights move, so a larger learning
    rate trains stably; in eval mode it uses the running statistics kept during training.
    """

    name = "chestxray_bn"
    _model = "ChestXrayBN"

    @staticmethod
    def _stage(c_in, c_out):
        """One stage of `features`: conv3x3 pad 1 (no bias) -> BatchNorm2d -> ReLU -> maxpool 2."""
        return [Conv2d(c_in, c_out, 3, padding=1, bias=False), BatchNorm2d(c_out), ReLU(),
                MaxPool2d(2)]


class AlexNet(_Classifier):
    """AlexNet (Krizhevsky et al. 2012, single-tower), for 227x227 images.

        features:   conv11x11 stride 4 -> 96,  ReLU, maxpool 3 stride 2
                    conv5x5 pad 2      -> 256, ReLU, maxpool 3 stride 2
                    conv3x3 pad 1      -> 384, ReLU
                    conv3x3 pad 1      -> 384, ReLU
                    conv3x3 pad 1      -> 256, ReLU, maxpool 3 stride 2
                    227x227 -> 55 -> 27 -> 27 -> 13 -> 13 -> 13 -> 13 -> 6: (N, 256, 6, 6)
        classifier: flatten (256*6*6 = 9216) -> Linear 4096, ReLU, Dropout
                    -> Linear 4096, ReLU, Dropout -> Linear num_classes
    """

    name = "alexnet"

    def __init__(self, in_channels=3, num_classes=2, image_size=227, dropout=0.5):
        super().__init__()
        model = "AlexNet"
        self._set_config(model, in_channels, num_classes, image_size, dropout)
        sizes = []
        for n in self.image_size:
            n = out_size(n, 11, 4, 0)
            n = out_size(n, 3, 2, 0)
            n = out_size(n, 5, 1, 2)
            n = out_size(n, 3, 2, 0)
            n = out_size(n, 3, 2, 0)  # the three 3x3 pad-1 convs keep the size
            sizes.append(n)
        if min(sizes) < 1:
            raise ModelConfigError(
                f"{model}: image_size {self.image_size[0]}x{self.image_size[1]} is too small: "
                "the 11x11 stride-4 convolution and three 3x3 stride-2 poolings need at "
                "least 67x67 pixels (227x227 is the usual size)")
        self.features = Sequential(
            Conv2d(in_channels, 96, 11, stride=4), ReLU(), MaxPool2d(3, 2),
            Conv2d(96, 256, 5, padding=2), ReLU(), MaxPool2d(3, 2),
            Conv2d(256, 384, 3, padding=1), ReLU(),
            Conv2d(384, 384, 3, padding=1), ReLU(),
            Conv2d(384, 256, 3, padding=1), ReLU(), MaxPool2d(3, 2),
        )
        self.flat_features = 256 * sizes[0] * sizes[1]
        self.classifier = Sequential(
            Flatten(),
            Linear(self.flat_features, 4096), ReLU(), Dropout(self.dropout),
            Linear(4096, 4096), ReLU(), Dropout(self.dropout),
            Linear(4096, num_classes),
        )


MODELS = {ChestXrayCNN.name: ChestXrayCNN, ChestXrayBN.name: ChestXrayBN, AlexNet.name: AlexNet}


def build(name, **config):
    """A fresh model from its name ("chestxray" | "chestxray_bn" | "alexnet") and its config() dict."""
    key = str(name).lower()
    if key not in MODELS:
        raise ModelConfigError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    try:
        return MODELS[key](**config)
    except TypeError as err:  # an argument the constructor does not take
        raise ModelConfigError(f"build({name!r}): {err}") from None
