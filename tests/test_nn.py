"""minicnn.nn: layers, Module bookkeeping, initialisation and the models, against PyTorch.

The models are compared with torch.nn networks of the same structure: same parameter
names, shapes and counts; weights copied from torch give the same outputs and gradients.
Every layer runs on every device (`backend`, tests/conftest.py) against PyTorch and
against the same layer on the cpu; AlexNet at 227 px runs on the cpu only (an emulated
step would take minutes).
"""
import copy
import json

import numpy as np
import pytest
import torch

import minicnn
from minicnn import nn
from minicnn.nn import models
from minicnn.nn.init import fan_in_and_fan_out

from torch_compare import assert_close, on_numba_cpu


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def t2n(t):
    return t.detach().numpy()


def on_cpu_too(make_layer, x, backend, upstream=None):
    """Output and input/parameter gradients of make_layer() on the cpu (numba kernels),
    for comparing a layer run on `backend`: (y, x.grad, {name: grad})."""
    from torch_compare import numba_cpu
    with numba_cpu():
        layer = make_layer()
        xt = minicnn.tensor(x, requires_grad=True)
        y = layer(xt)
        y.backward(np.ones(y.shape, np.float32) if upstream is None else upstream)
        return y.numpy(), xt.grad.numpy(), {n: p.grad.numpy() for n, p in layer.named_parameters()}


def check_on_device(layer, ref, x, backend, what):
    """layer on backend against torch's ref and against a copy of it on the cpu:
    forward, sum().backward() gradients of the input and of every parameter."""
    state = {k: v.copy() for k, v in layer.state_dict().items()}
    layer.to(backend)
    xt = minicnn.tensor(x, requires_grad=True, device=backend)
    tx = torch.tensor(x, requires_grad=True)
    y, ty = layer(xt), ref(tx)
    assert y.device == backend and y.shape == tuple(ty.shape), what
    assert_close(y.numpy(), t2n(ty), 1e-5, 1e-4, f"{what} forward on {backend}")
    y.sum().backward()
    ty.sum().backward()
    assert xt.grad.device == backend
    assert_close(xt.grad.numpy(), tx.grad.numpy(), 1e-5, 1e-4, f"{what} input grad on {backend}")
    tgrads = dict(ref.named_parameters())
    for name, p in layer.named_parameters():
        assert p.grad.device == backend, name
        assert_close(p.grad.numpy(), tgrads[name].grad.numpy(), 1e-4, 1e-4,
                     f"{what} {name} grad on {backend}")
    if backend != "cpu" or not on_numba_cpu():
        def fresh():
            other = copy.deepcopy(layer).to("cpu")
            other.load_state_dict(state)
            other.zero_grad()
            return other
        cy, cgx, cgrads = on_cpu_too(fresh, x, backend)
        assert_close(y.numpy(), cy, 1e-5, 1e-4, f"{what} forward on {backend} against cpu")
        assert_close(xt.grad.numpy(), cgx, 1e-5, 1e-4, f"{what} input grad against cpu")
        for name, p in layer.named_parameters():
            assert_close(p.grad.numpy(), cgrads[name], 1e-4, 1e-4, f"{what} {name} grad against cpu")


# --- torch twins of the models, built with the same names -------------------------------------

class TorchNet(torch.nn.Module):
    def __init__(self, features, classifier):
        super().__init__()
        self.features, self.classifier = features, classifier

    def forward(self, x):
        return self.classifier(self.features(x))


def torch_chestxray(in_channels=1, num_classes=2, image_size=(28, 28), device=None):
    T = torch.nn
    h, w = (s // 8 for s in image_size)
    features = T.Sequential(
        T.Conv2d(in_channels, 16, 3, padding=1, device=device), T.ReLU(), T.MaxPool2d(2),
        T.Conv2d(16, 32, 3, padding=1, device=device), T.ReLU(), T.MaxPool2d(2),
        T.Conv2d(32, 64, 3, padding=1, device=device), T.ReLU(), T.MaxPool2d(2))
    classifier = T.Sequential(T.Flatten(), T.Linear(64 * h * w, 512, device=device), T.ReLU(),
                              T.Dropout(0.0), T.Linear(512, num_classes, device=device))
    return TorchNet(features, classifier)


def torch_alexnet(in_channels=3, num_classes=2, device=None):
    T = torch.nn
    features = T.Sequential(
        T.Conv2d(in_channels, 96, 11, stride=4, device=device), T.ReLU(), T.MaxPool2d(3, 2),
        T.Conv2d(96, 256, 5, padding=2, device=device), T.ReLU(), T.MaxPool2d(3, 2),
        T.Conv2d(256, 384, 3, padding=1, device=device), T.ReLU(),
        T.Conv2d(384, 384, 3, padding=1, device=device), T.ReLU(),
        T.Conv2d(384, 256, 3, padding=1, device=device), T.ReLU(), T.MaxPool2d(3, 2))
    classifier = T.Sequential(
        T.Flatten(), T.Linear(256 * 6 * 6, 4096, device=device), T.ReLU(), T.Dropout(0.5),
        T.Linear(4096, 4096, device=device), T.ReLU(), T.Dropout(0.5),
        T.Linear(4096, num_classes, device=device))
    return TorchNet(features, classifier)


def shapes_of(state):
    return {k: tuple(v.shape) for k, v in state.items()}


# --- layers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("cin,cout,k,stride,padding,hw", [
    (1, 4, 3, 1, 1, (9, 9)), (3, 5, (3, 2), 2, 0, (11, 8)), (2, 3, 5, (2, 3), (2, 1), (13, 10)),
])
def test_conv2d_layer_matches_torch(backend, cin, cout, k, stride, padding, hw):
    layer = nn.Conv2d(cin, cout, k, stride=stride, padding=padding)
    ref = torch.nn.Conv2d(cin, cout, k, stride=stride, padding=padding)
    layer.load_state_dict({k_: t2n(v) for k_, v in ref.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((2, cin) + hw).astype(np.float32)
    check_on_device(layer, ref, x, backend, "Conv2d")
    assert repr(layer) == repr(ref)


def test_linear_flatten_pool_activation_layers_match_torch(backend):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 7, 6)).astype(np.float32)
    pairs = [
        (nn.MaxPool2d(2), torch.nn.MaxPool2d(2)),
        (nn.MaxPool2d(3, stride=2, padding=1), torch.nn.MaxPool2d(3, stride=2, padding=1)),
        (nn.AvgPool2d(2), torch.nn.AvgPool2d(2)),
        (nn.AvgPool2d(3, stride=1, padding=1), torch.nn.AvgPool2d(3, stride=1, padding=1)),
        (nn.ReLU(), torch.nn.ReLU()),
        (nn.Sigmoid(), torch.nn.Sigmoid()),
        (nn.Flatten(), torch.nn.Flatten()),
        (nn.Flatten(2), torch.nn.Flatten(2)),
        (nn.Softmax(dim=1), torch.nn.Softmax(dim=1)),
        (nn.LogSoftmax(dim=-1), torch.nn.LogSoftmax(dim=-1)),
        (nn.AdaptiveAvgPool2d((2, 4)), torch.nn.AdaptiveAvgPool2d((2, 4))),
        (nn.Identity(), torch.nn.Identity()),
    ]
    for ours, ref in pairs:
        xt = minicnn.tensor(x, requires_grad=True, device=backend)
        tx = torch.tensor(x, requires_grad=True)
        y, ty = ours(xt), ref(tx)
        assert y.shape == tuple(ty.shape) and y.device == backend, repr(ours)
        assert_close(y.numpy(), t2n(ty), 1e-6, 1e-5, f"{ours!r} forward on {backend}")
        (y * y).sum().backward()
        (ty * ty).sum().backward()
        assert_close(xt.grad.numpy(), tx.grad.numpy(), 1e-5, 1e-5, f"{ours!r} input grad on {backend}")
        if backend != "cpu" or not on_numba_cpu():
            cy, cgx, _ = on_cpu_too(lambda: ours, x, backend, upstream=2 * y.numpy())
            assert_close(y.numpy(), cy, 1e-6, 1e-5, f"{ours!r} forward against cpu")
            assert_close(xt.grad.numpy(), cgx, 1e-5, 1e-5, f"{ours!r} input grad against cpu")

    lin, tlin = nn.Linear(84, 5), torch.nn.Linear(84, 5)
    lin.load_state_dict({k: t2n(v) for k, v in tlin.state_dict().items()})
    check_on_device(lin, tlin, x.reshape(3, -1), backend, "Linear")
    assert repr(lin) == repr(tlin)
    nobias = nn.Linear(4, 3, bias=False)
    assert nobias.bias is None and [n for n, _ in nobias.named_parameters()] == ["weight"]


def test_sequential_indexing_and_iteration(backend):
    layers = [nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]
    seq = nn.Sequential(*layers).to(backend)
    assert len(seq) == 4
    assert list(seq) == layers
    assert seq[0] is layers[0] and seq[-1] is layers[-1]
    part = seq[1:3]
    assert isinstance(part, nn.Sequential) and list(part) == layers[1:3]
    with pytest.raises(IndexError):
        seq[4]
    with pytest.raises(TypeError, match="parentheses"):
        nn.Sequential(nn.ReLU)
    x = minicnn.randn(2, 1, 8, 8).to(backend)
    y = x
    for layer in layers:
        y = layer(y)
    assert seq(x).device == y.device == backend
    # Conv2d, ReLU, MaxPool2d run fused: the one-channel 3x3 kernel (conv_direct.py) adds
    # the nine taps in its own order, so the two agree to float32 rounding, not bit for bit
    assert_close(seq(x).numpy(), y.numpy(), 1e-7, 1e-6, "Sequential vs layer by layer")


def test_sequential_fuses_conv_then_relu_with_the_same_gradients(backend):
    from minicnn.cli.bench import trace
    minicnn.manual_seed(3)
    seq = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3),
                        nn.ReLU()).to(backend)
    x = minicnn.randn(2, 2, 7, 6, requires_grad=True).to(backend)
    with trace.record(backend) as calls:
        fused = seq(x)
    assert "relu_forward" not in [c.name for c in calls]       # the ReLUs ran inside the convs
    fused.sum().backward()
    got = [x.grad.numpy()] + [p.grad.numpy() for p in seq.parameters()]
    x.grad = None
    seq.zero_grad()
    y = x
    for layer in seq:                                            # the same layers one by one
        y = layer(y)
    assert_close(fused.numpy(), y.numpy(), 0, 0, "fused forward")
    y.sum().backward()
    want = [x.grad.numpy()] + [p.grad.numpy() for p in seq.parameters()]
    for k, (g, w) in enumerate(zip(got, want)):
        assert_close(g, w, 1e-6, 1e-6, f"fused gradient {k}")


# --- Module bookkeeping -------------------------------------------------------------------------

def test_parameter_names_and_counts_match_torch():
    for ours, ref in [(models.ChestXrayCNN(), torch_chestxray()),
                      (models.ChestXrayCNN(3, 4, (30, 27)), torch_chestxray(3, 4, (30, 27)))]:
        assert [(n, p.shape) for n, p in ours.named_parameters()] == \
               [(n, tuple(p.shape)) for n, p in ref.named_parameters()]
        assert ours.num_parameters() == sum(p.numel() for p in ref.parameters())
    # AlexNet's 58 million numbers are counted from a torch model that allocates nothing
    alex, ref = models.AlexNet(), torch_alexnet(device="meta")
    assert shapes_of(alex.state_dict()) == {n: tuple(p.shape) for n, p in ref.state_dict().items()}
    assert alex.num_parameters() == sum(p.numel() for p in ref.parameters()) == 58_289_538


def test_batchnorm_state_dict_has_buffers_like_torch():
    ours = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    ref = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    state = ours.state_dict()
    assert list(state) == list(ref.state_dict())
    for key, value in ref.state_dict().items():
        assert state[key].shape == tuple(value.shape), key
        assert state[key].dtype == t2n(value).dtype, key
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    ours.load_state_dict(ref.state_dict())  # torch tensors are read as arrays
    assert np.array_equal(ours[0].weight.numpy(), t2n(ref[0].weight))
    ours[1].running_mean = np.full(4, 2.0, np.float32)  # assigning to a buffer keeps it one
    assert np.array_equal(ours.state_dict()["1.running_mean"], np.full(4, 2.0))


def test_children_modules_zero_grad_and_modes(backend):
    net = models.ChestXrayCNN(dropout=0.5, image_size=16).to(backend)
    assert [name for name, _ in net.named_children()] == ["features", "classifier"]
    kinds = [type(m).__name__ for m in net.modules()]
    assert kinds[0] == "ChestXrayCNN" and kinds.count("Conv2d") == 3 and kinds.count("Linear") == 2
    assert net.training and all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())

    x = minicnn.randn(2, 1, 16, 16).to(backend)
    minicnn.functional.cross_entropy(net(x), minicnn.tensor([0, 1], device=backend)).backward()
    assert all(p.grad is not None and p.grad.device == backend for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_to_moves_in_place_and_keeps_parameter_objects():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    params = list(net.parameters())
    before = net.state_dict()
    assert net.to("cpu") is net
    assert net.to("cuda-sim") is net
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]  # same objects
    assert all(p.device == "cuda-sim" for p in params) and net.device == "cuda-sim"
    net.to("cpu")
    assert all(p.device == "cpu" for p in params)
    for key, value in net.state_dict().items():
        assert np.array_equal(value, before[key]), key
    with pytest.raises(ValueError, match="unknown device"):
        net.to("tpu")


def test_repr_reads_like_torch():
    text = repr(models.ChestXrayCNN())
    assert text.startswith("ChestXrayCNN(\n  (features): Sequential(\n")
    assert "    (0): Conv2d(1, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))" in text
    assert "    (4): Linear(in_features=512, out_features=2, bias=True)" in text
    assert text.endswith("  )\n)")


# --- state_dict round trip and load errors ------------------------------------------------------

def test_state_dict_round_trip_through_npz(tmp_path, backend):
    minicnn.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).to(backend)
    x = minicnn.randn(5, 1, 8, 8).to(backend)
    net(x)  # a training-mode pass moves the BatchNorm running statistics
    state = net.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert int(state["1.num_batches_tracked"]) == 1
    state["0.weight"][...] = 0  # a copy: changing it leaves the model alone
    assert np.abs(net[0].weight.numpy()).max() > 0

    np.savez(tmp_path / "w.npz", **net.state_dict())
    minicnn.manual_seed(2)
    other = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).to(backend)
    with np.load(tmp_path / "w.npz") as saved:
        result = other.load_state_dict(dict(saved))
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in net.state_dict().items():
        assert np.array_equal(other.state_dict()[key], value), key
    net.eval(), other.eval()
    assert_close(other(x).numpy(), net(x).numpy(), 0, 0, "reloaded model output")


def test_load_state_dict_errors_name_the_key_and_shapes():
    net = models.ChestXrayCNN()
    good = net.state_dict()
    before = {k: v.copy() for k, v in good.items()}

    bad = dict(good)
    bad["features.0.weight"] = np.zeros((16, 3, 3, 3), np.float32)
    bad["classifier.4.bias"] = np.ones(2, np.float32)  # would load if checks ran one by one
    with pytest.raises(nn.StateDictError) as err:
        net.load_state_dict(bad)
    msg = str(err.value)
    assert "features.0.weight" in msg and "(16, 3, 3, 3)" in msg and "(16, 1, 3, 3)" in msg
    for key, value in net.state_dict().items():  # nothing half-loaded
        assert np.array_equal(value, before[key]), key

    missing = {k: v for k, v in good.items() if k != "classifier.1.bias"}
    with pytest.raises(nn.StateDictError, match="missing.*classifier.1.bias"):
        net.load_state_dict(missing)
    extra = dict(good, **{"classifier.9.weight": np.zeros(3)})
    with pytest.raises(nn.StateDictError, match="not in the model: classifier.9.weight"):
        net.load_state_dict(extra)
    result = net.load_state_dict(missing, strict=False)
    assert result.missing_keys == ["classifier.1.bias"] and result.unexpected_keys == []
    result = net.load_state_dict(extra, strict=False)
    assert result.unexpected_keys == ["classifier.9.weight"]
    # a shape mismatch is an error even when not strict
    with pytest.raises(nn.StateDictError, match="features.0.weight"):
        net.load_state_dict({"features.0.weight": np.zeros((1, 1))}, strict=False)
    # the error is one the command line shows as a plain message
    assert issubclass(nn.StateDictError, minicnn.errors.UserError)


# --- dropout and batch norm: training vs evaluation ---------------------------------------------

def test_dropout_train_and_eval(backend):
    minicnn.manual_seed(3)
    drop = nn.Dropout(0.3)
    x = minicnn.ones(200, 500, device=backend)
    y = drop(x).numpy()
    kept = y != 0
    n = kept.size
    # fraction dropped within 5 standard deviations of p
    assert abs((1 - kept.mean()) - 0.3) < 5 * np.sqrt(0.3 * 0.7 / n)
    assert_close(y[kept], np.full(kept.sum(), 1 / 0.7), 0, 1e-6, "kept values scaled by 1/(1-p)")
    drop.eval()
    assert_close(drop(x).numpy(), x.numpy(), 0, 0, "dropout in eval mode")
    # gradient flows only through the kept elements, with the same scale
    drop.train()
    xg = minicnn.ones(50, 40, requires_grad=True, device=backend)
    yg = drop(xg)
    assert yg.device == backend
    yg.sum().backward()
    assert_close(xg.grad.numpy(), yg.numpy(), 0, 0, "dropout gradient equals its mask")
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm2d_matches_torch_in_train_and_eval(backend, momentum):
    rng = np.random.default_rng(4)
    C = 3
    ours = nn.BatchNorm2d(C, momentum=momentum)
    ref = torch.nn.BatchNorm2d(C, momentum=momentum)
    w = rng.uniform(0.5, 1.5, C).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(w))
        ref.bias.copy_(torch.tensor(b))
    ours.load_state_dict({k: t2n(v) for k, v in ref.state_dict().items()})
    ours.to(backend)

    for step in range(3):  # training: batch statistics, running statistics move
        x = (rng.standard_normal((4, C, 5, 6)) * 2 + 1).astype(np.float32)
        gy = rng.standard_normal(x.shape).astype(np.float32)
        xt = minicnn.tensor(x, requires_grad=True, device=backend)
        tx = torch.tensor(x, requires_grad=True)
        y, ty = ours(xt), ref(tx)
        assert y.device == backend
        assert_close(y.numpy(), t2n(ty), 1e-5, 1e-4, f"BatchNorm2d train forward, step {step}")
        y.backward(gy)
        ty.backward(torch.tensor(gy))
        assert_close(xt.grad.numpy(), tx.grad.numpy(), 1e-5, 1e-4, "BatchNorm2d train input grad")
        assert_close(ours.weight.grad.numpy(), ref.weight.grad.numpy(), 1e-4, 1e-4, "weight grad")
        assert_close(ours.bias.grad.numpy(), ref.bias.grad.numpy(), 1e-4, 1e-4, "bias grad")
        ours.zero_grad()
        ref.zero_grad()
    for key, value in ref.state_dict().items():
        assert_close(ours.state_dict()[key], t2n(value), 1e-6, 1e-5, f"BatchNorm2d {key}")
    assert int(ours.num_batches_tracked) == 3

    ours.eval(), ref.eval()  # evaluation: running statistics, which stay put
    running = ours.state_dict()
    x = rng.standard_normal((2, C, 3, 3)).astype(np.float32)
    xt, tx = minicnn.tensor(x, requires_grad=True, device=backend), torch.tensor(x, requires_grad=True)
    y, ty = ours(xt), ref(tx)
    assert_close(y.numpy(), t2n(ty), 1e-5, 1e-4, "BatchNorm2d eval forward")
    (y * y).sum().backward()
    (ty * ty).sum().backward()
    assert_close(xt.grad.numpy(), tx.grad.numpy(), 1e-5, 1e-4, "BatchNorm2d eval input grad")
    assert_close(ours.weight.grad.numpy(), ref.weight.grad.numpy(), 1e-4, 1e-4, "eval weight grad")
    for key, value in ours.state_dict().items():
        assert np.array_equal(value, running[key]), f"{key} changed in eval mode"


# --- initialisation ---------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: nn.Conv2d(8, 64, 5), lambda: nn.Linear(300, 200)],
                         ids=["conv", "linear"])
def test_default_init_statistics(make):
    minicnn.manual_seed(5)
    layer = make()
    w, b = layer.weight.numpy(), layer.bias.numpy()
    fan_in, _ = fan_in_and_fan_out(w.shape)
    bound = 1 / np.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) and the bias rule both give this
    for name, v in (("weight", w), ("bias", b)):
        assert v.dtype == np.float32
        assert np.abs(v).max() <= bound * (1 + 1e-6), name
        assert np.abs(v).max() > 0.9 * bound, f"{name} does not fill its range"
        # U(-b, b): mean 0 and variance b^2/3, checked to 5 standard errors
        n = v.size
        assert abs(v.mean()) < 5 * bound / np.sqrt(3 * n), f"{name} mean {v.mean()}"
        var_se = bound ** 2 * np.sqrt(4 / 45 / n)  # std of the sample variance of U(-b, b)
        assert abs(v.var() - bound ** 2 / 3) < 5 * var_se, f"{name} variance {v.var()}"
    # torch's own layer of the same shape draws from the same distribution
    ref = torch.nn.Conv2d(8, 64, 5) if isinstance(layer, nn.Conv2d) else torch.nn.Linear(300, 200)
    assert abs(float(ref.weight.detach().abs().max()) - np.abs(w).max()) < 0.01 * bound


def test_manual_seed_repeats_initialisation():
    minicnn.manual_seed(7)
    a = models.ChestXrayCNN().state_dict()
    minicnn.manual_seed(7)
    b = models.ChestXrayCNN().state_dict()
    c = models.ChestXrayCNN().state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["features.0.weight"], c["features.0.weight"])


# --- models ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cin,size", [(1, 28), (3, (30, 27)), (1, (64, 8)), (2, 9)])
def test_chestxray_shapes_for_any_size(backend, cin, size):
    net = models.ChestXrayCNN(in_channels=cin, num_classes=3, image_size=size).to(backend)
    H, W = (size, size) if isinstance(size, int) else size
    x = minicnn.randn(2, cin, H, W).to(backend)
    feats = net.features(x)
    assert feats.shape == (2, 64, H // 8, W // 8)
    assert net.classifier(feats).shape == (2, 3)
    y = net(x)
    assert y.shape == (2, 3) and y.device == backend
    assert net.flat_features == 64 * (H // 8) * (W // 8)


def test_chestxray_matches_torch_forward_and_backward(backend):
    ours, ref = models.ChestXrayCNN(3, 2, (30, 27)), torch_chestxray(3, 2, (30, 27))
    ours.load_state_dict({k: t2n(v) for k, v in ref.state_dict().items()})
    ours.to(backend)
    x = np.random.default_rng(6).standard_normal((4, 3, 30, 27)).astype(np.float32)
    target = np.array([0, 1, 1, 0])
    loss = minicnn.functional.cross_entropy(ours(minicnn.tensor(x, device=backend)),
                                            minicnn.tensor(target, device=backend))
    assert loss.device == backend and loss.shape == ()
    tloss = torch.nn.functional.cross_entropy(ref(torch.tensor(x)), torch.tensor(target))
    assert_close(loss.item(), tloss.item(), 0, 1e-5, "ChestXrayCNN loss")
    loss.backward()
    tloss.backward()
    tgrads = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad.numpy(), tgrads[name].grad.numpy(), 1e-6, 1e-4, f"grad of {name}")


def test_model_errors_speak_plainly():
    with pytest.raises(models.ModelConfigError, match="too small.*at least 8x8"):
        models.ChestXrayCNN(image_size=7)
    with pytest.raises(models.ModelConfigError, match="too small"):
        models.AlexNet(image_size=66)
    models.AlexNet(image_size=67, num_classes=2)  # the smallest that fits
    with pytest.raises(models.ModelConfigError, match="image_size"):
        models.ChestXrayCNN(image_size=(28, 28, 1))
    with pytest.raises(models.ModelConfigError, match="num_classes"):
        models.ChestXrayCNN(num_classes=0)
    net = models.ChestXrayCNN()
    with pytest.raises(ValueError, match=r"expected input \(N, 1, 28, 28\).*image_size=\(30, 30\)"):
        net(minicnn.randn(1, 1, 30, 30))
    with pytest.raises(ValueError, match="in_channels=3"):
        net(minicnn.randn(1, 3, 28, 28))


def test_config_and_build_round_trip():
    for model in (models.ChestXrayCNN(3, 4, (30, 27), dropout=0.25),
                  models.AlexNet(in_channels=1, num_classes=3, image_size=67)):
        config = json.loads(json.dumps(model.config()))  # JSON-able
        again = models.build(model.name, **config)
        assert type(again) is type(model) and again.config() == model.config()
        assert shapes_of(again.state_dict()) == shapes_of(model.state_dict())
    assert models.build("chestxray").config() == models.ChestXrayCNN().config()
    with pytest.raises(models.ModelConfigError, match="choose one of chestxray, chestxray_bn, alexnet"):
        models.build("resnet")
    with pytest.raises(models.ModelConfigError, match="unexpected keyword"):
        models.build("chestxray", colour=True)


def test_alexnet_227_forward_and_backward_match_torch():
    minicnn.manual_seed(0)
    ours = models.AlexNet()
    x = np.random.default_rng(8).standard_normal((1, 3, 227, 227)).astype(np.float32)

    # float32, the training dtype: the full forward and backward run at 227x227
    feats = ours.features(minicnn.tensor(x))
    assert feats.shape == (1, 256, 6, 6)
    logits = ours.classifier(feats)
    assert logits.shape == (1, 2)
    minicnn.functional.cross_entropy(logits, minicnn.tensor([1])).backward()
    for name, p in ours.named_parameters():
        assert p.grad is not None and np.isfinite(p.grad.numpy()).all(), name
    ours.zero_grad()

    # float64 against torch: in float32 a pre-activation within rounding of zero can
    # land on the other side of a ReLU kink (or a max-pool tie) in torch, which changes
    # whole blocks of gradient; in float64 that chance is negligible
    ours.double().eval()  # eval: dropout off, so both compute the same function
    # torch's model made on "meta" (no memory, no init) then given our very arrays:
    # neither model changes its weights here, so they can share them
    ref = torch_alexnet(device="meta").eval()
    ref.load_state_dict({k: torch.from_numpy(p.numpy()) for k, p in ours.named_parameters()},
                        assign=True)
    x64 = x.astype(np.float64)
    logits = ours(minicnn.tensor(x64, dtype=np.float64))
    tlogits = ref(torch.tensor(x64))
    assert_close(logits.numpy(), t2n(tlogits), 1e-12, 1e-9, "AlexNet logits (float64)")
    minicnn.functional.cross_entropy(logits, minicnn.tensor([1])).backward()
    torch.nn.functional.cross_entropy(tlogits, torch.tensor([1])).backward()
    tgrads = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        g, tg = p.grad.numpy(), tgrads[name].grad.numpy()
        assert g.dtype == np.float64
        assert_close(g, tg, 1e-9 * np.abs(tg).max(), 1e-7, f"AlexNet grad of {name} (float64)")
