"""Sequential: layers applied one after another, output of each the input of the next."""
from collections import OrderedDict

from .. import functional as F
from .activation import ReLU
from .conv import Conv2d
from .module import Module


class Sequential(Module):
    """Sequential(layer0, layer1, ...) or Sequential(OrderedDict(name=layer, ...)).

    forward(x) applies the layers in order; a Conv2d followed by a ReLU runs as one
    fused op (F.conv2d_relu), with the same result: fused() lists where, and print(net)
    marks them.

    Indexable (net[0], net[-1], net[1:3] is a Sequential), iterable, and len() works.
    Children are named "0", "1", ... so parameters read "0.weight", "3.bias".
    """

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], OrderedDict):
            for name, layer in layers[0].items():
                self.add_module(name, layer)
        else:
            for i, layer in enumerate(layers):
                if not isinstance(layer, Module):
                    raise TypeError(f"Sequential: item {i} is a {type(layer).__name__}, "
                                    "not a Module (did you forget the parentheses, e.g. ReLU()?)")
                self.add_module(str(i), layer)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        layers = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(layers[index]))
        if not -len(layers) <= index < len(layers):
            raise IndexError(f"Sequential: index {index} out of range for {len(layers)} layers")
        return layers[index][1]

    def append(self, layer):
        self.add_module(str(len(self)), layer)
        return self

    def fused(self):
        """Positions i where layer i (a Conv2d) and i + 1 (a ReLU) run as one op,
        F.conv2d_relu: the same numbers as the two in turn, without a pass over the
        feature map for the ReLU (each such pass reads and writes the whole map, several
        MB a layer). Not when a subclass has its own forward, when a hook watches either
        layer (it must see its own layer's output), or for padding given as a word."""
        layers = list(self._modules.values())
        return [i for i in range(len(layers) - 1) if _fuses(layers[i], layers[i + 1])]

    def forward(self, x):
        layers = list(self._modules.values())
        fused = set(self.fused())
        i = 0
        while i < len(layers):
            layer = layers[i]
            if i in fused:
                x = F.conv2d_relu(x, layer.weight, layer.bias, layer.stride, layer.padding)
                i += 2
            else:
                x = layer(x)
                i += 1
        return x

    def __repr__(self):
        """As Module's, with each fused pair marked, so the printout says what runs."""
        lines = super().__repr__().split("\n")
        names = list(self._modules)
        for i in self.fused():
            head = f"  ({names[i]}): "
            for k, line in enumerate(lines):
                if line.startswith(head):
                    lines[k] = line + f"   <- runs with ({names[i + 1]}) as one op, F.conv2d_relu"
                    break
        return "\n".join(lines)


def _fuses(a, b):
    return (isinstance(a, Conv2d) and type(a).forward is Conv2d.forward
            and isinstance(b, ReLU) and type(b).forward is ReLU.forward
            and isinstance(a.padding, tuple) and not (a.has_hooks or b.has_hooks))
