"""Batch norm -> ReLU -> 2x2 max-pool as one cpu kernel (kernels/cpu/norm_pool.py) gives the
numbers of norm.py, the ReLU and pool.py in turn: outputs, indices, running statistics and
every gradient, for odd and even sizes, ties and all-negative windows, both precisions."""
import itertools

import numpy as np
import pytest

from minicnn.kernels.cpu import norm, pool
from minicnn.kernels.cpu.norm_pool import (batch_norm_relu_pool_backward,
                                           batch_norm_relu_pool_forward)

# (N, C, H, W): odd and even sizes, 1 to 64 channels, 1 to 8 images
SHAPES = [(1, 1, 7, 7), (2, 3, 8, 9), (3, 16, 28, 28), (8, 5, 14, 13), (4, 64, 7, 7),
          (2, 2, 3, 2)]
NEEDS = list(itertools.product([True, False], repeat=3))


def _composed(x, weight, bias, rm, rv, training, momentum, eps):
    """The three kernels in turn; returns what the backward needs too."""
    N, C, H, W = x.shape
    v, mean, invstd = norm.batch_norm_forward(x.reshape(N, C, H * W), weight, bias, rm, rv,
                                              training, momentum, eps)
    r = np.maximum(v.reshape(x.shape), 0)
    yp, idx = pool.max_pool2d_forward(r, (2, 2), (2, 2), (0, 0))
    return yp, idx, r, mean, invstd


def _composed_backward(gy, x, idx, r, weight, mean, invstd, training, needs):
    N, C, H, W = x.shape
    g = pool.max_pool2d_backward(gy, idx, x.shape) * (r > 0)
    gx, gw, gb = norm.batch_norm_backward(g.reshape(N, C, H * W), x.reshape(N, C, H * W),
                                          weight, mean, invstd, training, needs)
    return (None if gx is None else gx.reshape(x.shape)), gw, gb


def _draw(shape, ints, dtype, rng):
    """Small integers make ties in the windows and (after the batch norm) all-negative ones."""
    return (rng.integers(-2, 3, shape) if ints else rng.standard_normal(shape)).astype(dtype)


def _close(got, want, dtype):
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    scale = max(float(np.max(np.abs(want))), 1.0) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("ints", [False, True], ids=["normal", "ties"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_equals_the_kernels_in_turn(shape, training, affine, ints, dtype):
    N, C, H, W = shape
    rng = np.random.default_rng(sum(shape) + 7 * training + 3 * affine + ints)
    x = _draw(shape, ints, dtype, rng)
    weight = rng.uniform(0.5, 2, C).astype(dtype) if affine else None
    bias = rng.uniform(-1, 1, C).astype(dtype) if affine else None
    rm0, rv0 = rng.standard_normal(C).astype(dtype), rng.uniform(0.5, 2, C).astype(dtype)
    rm_f, rv_f, rm_c, rv_c = rm0.copy(), rv0.copy(), rm0.copy(), rv0.copy()
    yp, idx, mean, invstd = batch_norm_relu_pool_forward(x, weight, bias, rm_f, rv_f,
                                                         training, 0.1, 1e-5)
    want, want_idx, r, want_mean, want_invstd = _composed(x, weight, bias, rm_c, rv_c,
                                                          training, 0.1, 1e-5)
    assert yp.shape == want.shape == (N, C, H // 2, W // 2) and yp.dtype == dtype
    assert idx.dtype == np.int32 and idx.shape == yp.shape
    np.testing.assert_array_equal(mean, want_mean)
    np.testing.assert_array_equal(invstd, want_invstd)
    np.testing.assert_allclose(yp, want, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=0)
    on = want > 0
    np.testing.assert_array_equal(idx[on], want_idx[on])   # elsewhere the ReLU zeroes it
    np.testing.assert_array_equal(rm_f, rm_c)
    np.testing.assert_array_equal(rv_f, rv_c)
    if training:
        assert not np.array_equal(rm_f, rm0)                # the update did happen
    else:
        np.testing.assert_array_equal(rm_f, rm0)
    if ints and yp.size >= 16:
        assert (~on).any()                                  # windows the ReLU zeroes
    gy = rng.standard_normal(yp.shape).astype(dtype)
    for needs in NEEDS:
        got = batch_norm_relu_pool_backward(gy, x, yp, idx, weight, mean, invstd, training,
                                            needs)
        ref = _composed_backward(gy, x, want_idx, r, weight, want_mean, want_invstd,
                                 training, needs)
        for need, g, w, n in zip(needs, got, ref, [x.shape, (C,), (C,)]):
            if not need:
                assert g is None
                continue
            assert g.shape == n and g.dtype == dtype
            _close(g, w, dtype)


def test_all_negative_windows_give_zero_and_no_gradient():
    x = np.zeros((2, 1, 4, 4), np.float32)
    x[:, :, :2, :2] = 5.0                               # one window positive after the norm
    gy = np.ones((2, 1, 2, 2), np.float32)
    yp, idx, mean, invstd = batch_norm_relu_pool_forward(x, None, None, None, None, True,
                                                         0.1, 1e-5)
    assert (yp[:, :, 0, 0] > 0).all() and (yp.reshape(2, -1)[:, 1:] == 0).all()
    _, gw, gb = batch_norm_relu_pool_backward(gy, x, yp, idx, None, mean, invstd, True)
    assert gb[0] == 2                                   # only the two positive windows count
    assert gw[0] == pytest.approx(2 * (5.0 - mean[0]) * invstd[0], rel=1e-5)


def test_odd_edges_get_only_the_normalisation_term():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 5, 7)).astype(np.float64)
    yp, idx, mean, invstd = batch_norm_relu_pool_forward(x, None, None, None, None, True,
                                                         0.1, 1e-5)
    gy = rng.standard_normal(yp.shape)
    gx, gw, gb = batch_norm_relu_pool_backward(gy, x, yp, idx, None, mean, invstd, True)
    M = 3 * 5 * 7
    xhat = (x - mean[None, :, None, None]) * invstd[None, :, None, None]
    edge = -invstd[None, :, None, None] / M * (gb[None, :, None, None] + xhat * gw[None, :, None, None])
    np.testing.assert_allclose(gx[:, :, 4, :], edge[:, :, 4, :], rtol=1e-12)
    np.testing.assert_allclose(gx[:, :, :, 6], edge[:, :, :, 6], rtol=1e-12)


def test_bad_shapes_are_refused():
    x = np.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="x must be"):
        batch_norm_relu_pool_forward(x[0], None, None, None, None, True, 0.1, 1e-5)
    yp, idx, mean, invstd = batch_norm_relu_pool_forward(x, None, None, None, None, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="gy must be"):
        batch_norm_relu_pool_backward(np.zeros((2, 3, 4, 4), np.float32), x, yp, idx, None,
                                      mean, invstd, True)
