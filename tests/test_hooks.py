"""Forward hooks as PyTorch's: they see every call, may replace inputs or outputs, and come off."""
import numpy as np
import pytest

import minicnn
from minicnn import nn
from minicnn.nn import models

torch = pytest.importorskip("torch", reason="compared with PyTorch")


def test_hooks_fire_with_the_layers_inputs_and_output_and_can_be_removed(backend):
    seen = []
    layer = nn.Linear(3, 2).to(backend)
    handle = layer.register_forward_hook(lambda m, inputs, out: seen.append((m, inputs, out)))
    x = minicnn.tensor(np.ones((4, 3), np.float32), device=backend)
    y = layer(x)
    assert len(seen) == 1 and seen[0][0] is layer and seen[0][1][0] is x and seen[0][2] is y
    handle.remove()
    layer(x)
    assert len(seen) == 1


def test_a_hook_may_replace_the_output_and_a_pre_hook_the_input_as_in_torch(backend):
    value = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    ours, theirs = nn.ReLU(), torch.nn.ReLU()
    for module in (ours, theirs):
        module.register_forward_pre_hook(lambda m, inputs: (inputs[0] * 2.0,))
        module.register_forward_hook(lambda m, inputs, out: out + 1.0)
    got = ours(minicnn.tensor(value, device=backend)).numpy()
    want = theirs(torch.from_numpy(value)).numpy()
    np.testing.assert_allclose(got, want)


def test_hooks_inside_sequential_see_the_conv_output_before_its_relu(backend):
    model = models.ChestXrayCNN(image_size=16).to(backend).eval()
    x = minicnn.tensor(np.random.default_rng(0).standard_normal((2, 1, 16, 16)).astype(np.float32),
                       device=backend)
    with minicnn.no_grad():
        plain = model(x).numpy()
    maps = {}
    with model.features[0].register_forward_hook(lambda m, i, o: maps.setdefault("conv", o)), \
            model.features[1].register_forward_hook(lambda m, i, o: maps.setdefault("relu", o)):
        with minicnn.no_grad():
            hooked = model(x).numpy()
    np.testing.assert_allclose(hooked, plain, rtol=1e-5, atol=1e-6)
    conv, relu = maps["conv"].numpy(), maps["relu"].numpy()
    assert conv.shape == (2, 16, 16, 16) and conv.min() < 0
    np.testing.assert_array_equal(relu, np.maximum(conv, 0))
    assert not model.features[0].has_hooks, "leaving the with block removed the hooks"


def test_fusion_is_in_plain_sight_and_a_subclass_with_its_own_forward_is_not_fused(backend):
    model = models.ChestXrayCNN(image_size=16)
    assert model.features.fused() == [0, 3, 6]
    shown = repr(model.features).splitlines()
    assert sum("as one op, F.conv2d_relu" in line for line in shown) == 3
    assert "runs with (1)" in shown[1] and "(1): ReLU()" == shown[2].strip()

    class Doubled(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) * 2.0
    net = nn.Sequential(Doubled(1, 2, 3), nn.ReLU()).to(backend)
    assert net.fused() == [] and "one op" not in repr(net)
    x = minicnn.tensor(np.random.default_rng(1).standard_normal((1, 1, 5, 5)).astype(np.float32),
                       device=backend)
    want = np.maximum(net[0](x).numpy(), 0)
    np.testing.assert_allclose(net(x).numpy(), want, rtol=1e-6)
    plain = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    assert plain.fused() == [0]
