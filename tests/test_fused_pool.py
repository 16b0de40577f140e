"""Conv2d -> ReLU -> MaxPool2d(2) as one op (F.conv2d_relu_pool) gives the numbers of the three
layers in turn: forward, every gradient, on every device and on every path of the cpu kernel."""
import numpy as np
import pytest

import minicnn
from minicnn import functional as F
from minicnn import nn
from minicnn.kernels.cpu import conv, pool
from minicnn.nn import models

from fused_run import forward_backward

# (N, C, F, H, W, kernel, stride, padding): odd and even outputs, 1 to 32 channels, 1x1 to 5x5
SHAPES = [(3, 1, 4, 7, 7, 3, 1, 1), (2, 3, 5, 9, 8, 3, 1, 1), (2, 16, 8, 14, 14, 3, 1, 1),
          (3, 2, 4, 11, 13, 3, 2, 1), (2, 4, 3, 10, 10, 5, 1, 2), (2, 32, 16, 7, 7, 3, 1, 1),
          (2, 2, 3, 8, 9, 1, 1, 0)]


def _draw(shape, ints, dtype, rng):
    """Small integers make ties in the pooling windows (and all-zero windows after the ReLU)."""
    return (rng.integers(-2, 3, shape) if ints else rng.standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize("upto", conv.STEPS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("ints", [False, True], ids=["normal", "ties"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_kernel_pools_as_the_separate_kernels_on_every_path(upto, shape, ints, dtype):
    N, C, Fo, H, W, k, s, p = shape
    rng = np.random.default_rng(sum(shape))
    x, w = _draw((N, C, H, W), ints, dtype, rng), _draw((Fo, C, k, k), ints, dtype, rng)
    b = np.zeros(Fo, dtype) if ints else rng.standard_normal(Fo).astype(dtype)
    y = conv.conv2d_forward(x, w, b, (s, s), (p, p), relu=True, upto=upto)
    want, idx = pool.max_pool2d_forward(y, (2, 2), (2, 2), (0, 0))
    got, got_idx = conv.conv2d_forward(x, w, b, (s, s), (p, p), relu=True, upto=upto, pool=True)
    assert got.shape == want.shape and got.dtype == dtype and got_idx.shape == want.shape
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, want, **tol)
    gyp = rng.standard_normal(want.shape).astype(dtype)
    full = pool.max_pool2d_backward(gyp, idx, y.shape)
    ref = conv.conv2d_backward(x, w, full, (s, s), (p, p), relu_y=y, upto=upto)
    for needs in [(True, True, True), (False, True, False), (True, False, True), (False, False, True)]:
        out = conv.conv2d_backward(x, w, gyp, (s, s), (p, p), needs=needs, relu_y=got,
                                   pool_idx=got_idx, upto=upto)
        for need, g, r in zip(needs, out, ref):
            if not need:
                assert g is None
                continue
            assert g.shape == r.shape and g.dtype == dtype
            np.testing.assert_allclose(g, r, **tol)


def test_pool_needs_the_relu():
    x, w = np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match="relu=True"):
        conv.conv2d_forward(x, w, None, (1, 1), (1, 1), pool=True)


@pytest.mark.parametrize("size", [(7, 7), (8, 11)])
def test_fused_layers_equal_the_layers_in_turn_on_every_device(backend, size):
    rng = np.random.default_rng(3)
    layers = [nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    fused = nn.Sequential(*layers).to(backend)
    assert fused.fusions() == [(0, 3, "F.conv2d_relu_pool")]
    value = rng.integers(-2, 3, (3, 2) + size).astype(np.float32)   # ties, zero windows
    results = []
    for run in ("fused", "in turn"):
        x = minicnn.tensor(value, device=backend, requires_grad=True)
        y = forward_backward(fused, x, fused=run == "fused")
        results.append((y.numpy(), x.grad.numpy(), fused[0].weight.grad.numpy(),
                        fused[0].bias.grad.numpy()))
        fused.zero_grad()
    assert results[0][0].shape == (3, 4, size[0] // 2, size[1] // 2)
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_what_is_fused_is_printed_and_a_pool_that_differs_is_not_fused():
    model = models.ChestXrayCNN(image_size=16)
    assert [k for _, k, _ in model.features.fusions()] == [3, 3, 3]
    assert repr(model.features).count("as one op, F.conv2d_relu_pool") == 3
    for pool_layer in (nn.MaxPool2d(2, stride=1), nn.MaxPool2d(3), nn.MaxPool2d(2, ceil_mode=True),
                       nn.MaxPool2d(2, padding=1), nn.AvgPool2d(2)):
        net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), pool_layer)
        assert net.fusions() == [(0, 2, "F.conv2d_relu")], pool_layer
    hooked = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
    hooked[2].register_forward_hook(lambda m, i, o: None)
    assert hooked.fusions() == [(0, 2, "F.conv2d_relu")]


def test_a_map_too_small_to_pool_is_refused_by_name():
    x = minicnn.tensor(np.ones((1, 1, 3, 3), np.float32))
    w = minicnn.tensor(np.ones((1, 1, 3, 3), np.float32))
    with pytest.raises(ValueError, match="max_pool2d: window 2x2 is larger"):
        F.conv2d_relu_pool(x, w)
