"""One training step of ChestXrayCNN (forward, cross-entropy, backward, SGD with
momentum), in minicnn and in PyTorch, on the same images, labels and weights.

The PyTorch twin is built layer by layer from the minicnn model (same layer
types, same hyper-parameters, same names), its weights copied from minicnn's
state_dict, and its logits checked against minicnn's before anything is timed:
a benchmark of two different networks would mean nothing.
"""
import numpy as np

import minicnn
from minicnn import functional as F
from minicnn.nn.models import ChestXrayCNN
from minicnn.optim import SGD

LR, MOMENTUM = 1e-3, 0.9  # small steps: weights stay sane through many repetitions


def make_batch(batch, channels, size, seed=0):
    """Random images x (batch, channels, size, size) float32 and labels t (batch,) int64."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
    t = rng.integers(0, 2, size=batch).astype(np.int64)
    return x, t


def make_model(channels, size, seed=0, device="cpu"):
    minicnn.manual_seed(seed)
    return ChestXrayCNN(in_channels=channels, num_classes=2, image_size=size).to(device)


def minicnn_step(model, x, t):
    """A function of no arguments that runs one minicnn training step on (x, t).

    x, t: numpy arrays, moved to the model's device once, here.
    """
    opt = SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    xt, tt = minicnn.tensor(x, device=model.device), minicnn.tensor(t, device=model.device)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(xt), tt)
        loss.backward()
        opt.step()
    return step


# --- the PyTorch twin ---------------------------------------------------------------------

def _torch_layer(layer):
    """The torch.nn layer with the same type and settings as a minicnn layer."""
    import torch.nn as tnn  # lazy: optional dependency
    kind = type(layer).__name__
    if kind == "Conv2d":
        return tnn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                          stride=layer.stride, padding=layer.padding, bias=layer.bias is not None)
    if kind in ("MaxPool2d", "AvgPool2d"):
        return getattr(tnn, kind)(layer.kernel_size, layer.stride, layer.padding)
    if kind == "Linear":
        return tnn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    if kind == "BatchNorm2d":
        return tnn.BatchNorm2d(layer.num_features, layer.eps, layer.momentum, layer.affine)
    if kind == "Flatten":
        return tnn.Flatten(layer.start_dim, layer.end_dim)
    if kind == "Dropout":
        return tnn.Dropout(layer.p)
    if kind in ("ReLU", "Sigmoid"):
        return getattr(tnn, kind)()
    raise NotImplementedError(f"bench: no PyTorch twin for layer type {kind}")


def torch_twin(model):
    """A torch.nn.Module computing what `model` (features then classifier) computes."""
    # lazy: optional dependency (minicnn's side runs without it)
    import torch
    import torch.nn as tnn

    class Twin(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = tnn.Sequential(*[_torch_layer(m) for m in model.features])
            self.classifier = tnn.Sequential(*[_torch_layer(m) for m in model.classifier])

        def forward(self, x):
            return self.classifier(self.features(x))

    twin = Twin()
    state = {k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}
    twin.load_state_dict(state, strict=True)
    twin.train(model.training)
    return twin.to("cuda" if model.device == "cuda" else "cpu")


def _torch_device(twin):
    return next(twin.parameters()).device


def check_twin(model, twin, x):
    """Raise if the twin's logits on x differ from minicnn's (float32 tolerance)."""
    import torch  # lazy: optional dependency
    with minicnn.no_grad():
        ours = model(minicnn.tensor(x, device=model.device)).numpy()
    with torch.no_grad():
        theirs = twin(torch.from_numpy(x).to(_torch_device(twin))).cpu().numpy()
    err = np.abs(ours - theirs)
    tol = 1e-4 + 1e-3 * np.abs(theirs)
    if not np.all(err <= tol):
        i = np.unravel_index(np.argmax(err - tol), err.shape)
        raise RuntimeError(f"bench: the PyTorch twin disagrees with minicnn's model at logits{i}: "
                           f"minicnn {ours[i]!r}, PyTorch {theirs[i]!r}; timings would compare "
                           "different networks")


def torch_step(twin, x, t):
    """A function of no arguments that runs one PyTorch training step on (x, t)."""
    import torch  # lazy: optional dependency
    opt = torch.optim.SGD(twin.parameters(), lr=LR, momentum=MOMENTUM)
    device = _torch_device(twin)
    xt, tt = torch.from_numpy(x).to(device), torch.from_numpy(t).to(device)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(twin(xt), tt)
        loss.backward()
        opt.step()
    return step
