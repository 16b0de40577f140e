"""BatchNorm2d -> ReLU -> MaxPool2d(2) as one op (F.batch_norm_relu_pool) gives the numbers of
the three layers in turn, in training and in eval, running statistics included, on every device."""
import numpy as np
import pytest

import minicnn
from minicnn import functional as F
from minicnn import nn
from minicnn.nn import models

from fused_run import forward_backward


def _layers(channels, affine=True):
    return [nn.BatchNorm2d(channels, affine=affine), nn.ReLU(), nn.MaxPool2d(2)]


@pytest.mark.parametrize("size", [(6, 6), (7, 9)])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_fused_layers_equal_the_layers_in_turn_on_every_device(backend, size, training, affine):
    rng = np.random.default_rng(sum(size) + training)
    value = rng.integers(-2, 3, (3, 4) + size).astype(np.float32) + \
        rng.standard_normal((3, 4) + size).astype(np.float32) * 0.25 * (size[0] % 2)
    results = []
    for run in ("fused", "in turn"):
        minicnn.manual_seed(0)
        net = nn.Sequential(*_layers(4, affine)).to(backend)
        assert net.fusions() == [(0, 3, "F.batch_norm_relu_pool")]
        if affine:  # weights other than 1 and 0, the same in both runs
            net[0].weight.array[...] = net[0].weight.array * 0 + \
                net[0].weight.xp.asarray(np.float32([1.5, -0.5, 1.0, 2.0]))
            net[0].bias.array[...] = net[0].bias.array * 0 + \
                net[0].bias.xp.asarray(np.float32([0.1, 0.0, -0.2, 0.3]))
        net[0].running_mean[...] = net[0].running_mean * 0 + 0.2
        net[0].running_var[...] = net[0].running_var * 0 + 1.5
        net.train(training)
        x = minicnn.tensor(value, device=backend, requires_grad=True)
        y = forward_backward(net, x, fused=run == "fused")
        got = [y.numpy(), x.grad.numpy(), np.asarray(minicnn.tensor(net[0].running_mean).numpy()),
               np.asarray(minicnn.tensor(net[0].running_var).numpy())]
        if affine:
            got += [net[0].weight.grad.numpy(), net[0].bias.grad.numpy()]
        results.append(got)
    assert results[0][0].shape == (3, 4, size[0] // 2, size[1] // 2)
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_default_network_fuses_each_stage_and_prints_it():
    model = models.build("chestxray_bn", image_size=16)
    assert [op for _, _, op in model.features.fusions()] == ["F.batch_norm_relu_pool"] * 3
    assert repr(model.features).count("as one op, F.batch_norm_relu_pool") == 3
    hooked = nn.Sequential(*_layers(2))
    hooked[1].register_forward_hook(lambda m, i, o: None)
    assert hooked.fusions() == []
    for pool in (nn.MaxPool2d(3), nn.MaxPool2d(2, stride=1), nn.AvgPool2d(2)):
        assert nn.Sequential(nn.BatchNorm2d(2), nn.ReLU(), pool).fusions() == []


def test_a_map_too_small_to_pool_is_refused_by_name():
    x = minicnn.tensor(np.ones((2, 1, 1, 3), np.float32))
    with pytest.raises(ValueError, match="max_pool2d: window 2x2 is larger"):
        F.batch_norm_relu_pool(x, None, None, training=True)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_a_graph_of_both_fused_stages_matches_pytorch(backend, training):
    """conv -> [batch norm, ReLU, pool] -> [conv, ReLU, pool] -> linear -> cross-entropy, both
    fused runs inside one graph, against the same network in PyTorch (interop.to_torch): the
    loss, the input's and every parameter's gradient, and the running statistics."""
    torch = pytest.importorskip("torch", reason="compared with PyTorch")
    from minicnn.interop import to_torch
    minicnn.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), *_layers(4),
                        nn.Conv2d(4, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(3 * 2 * 2, 3))
    assert [op for _, _, op in net.fusions()] == ["F.batch_norm_relu_pool", "F.conv2d_relu_pool"]
    net[1].running_mean[...] = 0.1
    net[1].running_var[...] = 2.0
    net.train(training)
    theirs = to_torch(net).train(training)
    net.to(backend)
    value = np.random.default_rng(7).standard_normal((5, 2, 9, 9)).astype(np.float32)
    target = np.array([0, 2, 1, 1, 0])
    x = minicnn.tensor(value, device=backend, requires_grad=True)
    loss = F.cross_entropy(net(x), minicnn.tensor(target, device=backend))
    loss.backward()
    tx = torch.from_numpy(value).requires_grad_()
    tloss = torch.nn.functional.cross_entropy(theirs(tx), torch.from_numpy(target))
    tloss.backward()
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-6)
    grads = {name: p.grad.numpy() for name, p in net.named_parameters()}
    for name, p in theirs.named_parameters():
        assert grads[name].shape == tuple(p.shape), name
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=name)
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(np.asarray(minicnn.tensor(getattr(net[1], name)).numpy()),
                                   getattr(theirs[1], name).numpy(), rtol=1e-5, err_msg=name)
