"""Sequential: layers applied one after another, output of each the input of the next."""
from collections import OrderedDict

from .. import functional as F
from .activation import ReLU
from .conv import Conv2d
from .module import Module
from .norm import BatchNorm2d
from .pool import MaxPool2d


class Sequential(Module):
    """Sequential(layer0, layer1, ...) or Sequential(OrderedDict(name=layer, ...)).

    forward(x) applies the layers in order; a Conv2d followed by a ReLU runs as one
    fused op (F.conv2d_relu), and with a MaxPool2d(2) after them too (F.conv2d_relu_pool),
    with the same result: fusions() lists where, and print(net) marks them.

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

    def fusions(self):
        """(i, k, op) for each run of k layers, from position i, that runs as the one op
        `op`: a Conv2d then a ReLU as F.conv2d_relu (the same numbers as the two in turn,
        without a pass over the feature map for the ReLU: each such pass reads and writes
        the whole map, several MB a layer), and with a MaxPool2d(2) after them as
        F.conv2d_relu_pool (the full-size map is then never written at all; the numbers
        agree with the three layers' to float32 rounding: the first layer's one-channel
        kernel adds its nine taps in an order of its own); a BatchNorm2d, a ReLU and a
        MaxPool2d(2) as F.batch_norm_relu_pool, likewise. Not when a
        subclass has its own forward, when a hook watches a layer (it must see its own
        layer's output), or for padding given as a word."""
        layers = list(self._modules.values())
        runs, i = [], 0
        while i < len(layers) - 1:
            a, b = layers[i], layers[i + 1]
            pooled = i + 2 < len(layers) and _pool_fuses(layers[i + 2])
            run = None                              # (layers in the run, its op)
            if _norm_fuses(a, b) and pooled:
                run = (3, "F.batch_norm_relu_pool")
            elif _fuses(a, b):
                run = (3, "F.conv2d_relu_pool") if pooled else (2, "F.conv2d_relu")
            if run is None:
                i += 1
                continue
            runs.append((i,) + run)
            i += run[0]
        return runs

    def fused(self):
        """Positions i where a fused run of layers starts (see fusions())."""
        return [i for i, _, _ in self.fusions()]

    def forward(self, x):
        layers = list(self._modules.values())
        runs = {i: (k, op) for i, k, op in self.fusions()}
        i = 0
        while i < len(layers):
            layer = layers[i]
            if i in runs:
                k, op = runs[i]
                x = _FUSED[op](layer, x)            # the run's first layer holds the weights
                i += k
            else:
                x = layer(x)
                i += 1
        return x

    def __repr__(self):
        """As Module's, with each fused run marked, so the printout says what runs."""
        lines = super().__repr__().split("\n")
        names = list(self._modules)
        for i, k, op in self.fusions():
            head = f"  ({names[i]}): "
            others = " and ".join(f"({names[j]})" for j in range(i + 1, i + k))
            for n, line in enumerate(lines):
                if line.startswith(head):
                    lines[n] = line + f"   <- runs with {others} as one op, {op}"
                    break
        return "\n".join(lines)


# each fused op, called with the first layer of its run
_FUSED = {
    "F.conv2d_relu": lambda conv, x: F.conv2d_relu(x, conv.weight, conv.bias, conv.stride,
                                                    conv.padding),
    "F.conv2d_relu_pool": lambda conv, x: F.conv2d_relu_pool(x, conv.weight, conv.bias,
                                                              conv.stride, conv.padding),
    "F.batch_norm_relu_pool": lambda norm, x: norm.relu_pool(x),
}


def _fuses(a, b):
    return (isinstance(a, Conv2d) and type(a).forward is Conv2d.forward
            and isinstance(b, ReLU) and type(b).forward is ReLU.forward
            and isinstance(a.padding, tuple) and not (a.has_hooks or b.has_hooks))


def _norm_fuses(a, b):
    return (isinstance(a, BatchNorm2d) and type(a).forward is BatchNorm2d.forward
            and type(a).relu_pool is BatchNorm2d.relu_pool
            and isinstance(b, ReLU) and type(b).forward is ReLU.forward
            and not (a.has_hooks or b.has_hooks))


def _pool_fuses(p):
    """A plain MaxPool2d(2): 2x2 windows, stride 2, no padding, floor mode, no indices."""
    def two(v, n):
        return v == n or v == (n, n)
    return (isinstance(p, MaxPool2d) and type(p).forward is MaxPool2d.forward
            and two(p.kernel_size, 2) and two(p.stride, 2) and two(p.padding, 0)
            and two(p.dilation, 1) and not p.ceil_mode and not p.return_indices
            and not p.has_hooks)
